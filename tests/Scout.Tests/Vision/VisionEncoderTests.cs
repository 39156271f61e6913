using System.Diagnostics;
using System.Text.Json;
using Scout.Model;
using Scout.Vision;
using Xunit.Abstractions;

namespace Scout.Tests.Vision;

/// <summary>The fixture model, loaded once for the class.</summary>
public sealed class VisionModelFixture : IDisposable
{
    public VisionLanguageModel Model { get; } = VisionLanguageModel.Load(Fixtures.Vision());
    public void Dispose() => Model.Dispose();
}

public class VisionEncoderTests(VisionModelFixture fixture, ITestOutputHelper output) : IClassFixture<VisionModelFixture>
{
    public static TheoryData<string> Cases => new() { "synthetic", "wide_small" };

    private VisionLanguageModel Model => fixture.Model;

    /// <summary>|a − ref| ≤ 1e-4 + 1e-4·|ref| elementwise (the fixture README's rule); returns max |Δ|.</summary>
    internal static double AssertClose(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} values, expected {expected.Length}");
        double max = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double diff = Math.Abs(actual[i] - expected[i]);
            if (!(diff <= 1e-4 + 1e-4 * Math.Abs(expected[i])))
                Assert.Fail($"{what}: element {i}: {actual[i]} vs {expected[i]} (|Δ| {diff:g3})");
            max = Math.Max(max, diff);
        }
        return max;
    }

    private static (int[] Ids, string[] Images) ReadCase(string name)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.Vision($"cases/{name}/tokens.json")));
        var ids = doc.RootElement.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var images = doc.RootElement.GetProperty("images").EnumerateArray().Select(e => e.GetProperty("name").GetString()!).ToArray();
        return (ids, images);
    }

    private static List<PreprocessedImage> Preprocess(string[] names)
        => names.Select(n => ImagePreprocessor.PreprocessFile(Fixtures.Vision($"images/{n}.png"))).ToList();

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryStageMatchesMeta(string name)
    {
        var (ids, imageNames) = ReadCase(name);
        var images = Preprocess(imageNames);
        var tiles = images.SelectMany(i => i.Pixels).ToArray();
        int count = images.Sum(i => i.TileCount);
        var outputs = Model.Vision.Run(tiles, count);

        string dir = Fixtures.Vision($"cases/{name}/");
        double enc = AssertClose(outputs.Encoded, Fixtures.ReadF32(dir + "vision_encoder.f32"), $"{name} vision_encoder");
        double ada = AssertClose(outputs.Adapted, Fixtures.ReadF32(dir + "adapter.f32"), $"{name} adapter");
        double emb = AssertClose(outputs.Embeddings, Fixtures.ReadF32(dir + "image_embeds.f32"), $"{name} image_embeds");
        output.WriteLine($"{name}: max |Δ| vision_encoder {enc:g3}, adapter {ada:g3}, image_embeds {emb:g3}");
        if (File.Exists(dir + "pixel_shuffle.f32"))
            output.WriteLine($"{name}: max |Δ| pixel_shuffle {AssertClose(outputs.Shuffled, Fixtures.ReadF32(dir + "pixel_shuffle.f32"), $"{name} pixel_shuffle"):g3}");

        // The whole prompt through the public merge + text forward.
        int vocab = Model.Text.Config.VocabSize;
        var logits = new float[ids.Length * vocab];
        var cache = Model.Text.CreateCache(ids.Length);
        Model.Forward(ids, images, cache, logits, LogitsMode.All);
        double lg = LogitAssert.Close(logits, Fixtures.ReadF32(dir + "logits.f32"), vocab);
        output.WriteLine($"{name}: max |Δ| logits {lg:g3}");
    }

    [Fact]
    public void EncoderInternalsMatchMetaForTheSyntheticTile()
    {
        var image = ImagePreprocessor.PreprocessFile(Fixtures.Vision("images/synthetic.png"));
        var trace = new VisionTrace();
        var encoded = new float[576 * Model.Vision.Config.HiddenSize];
        Model.Vision.EncodeTile(image.Tile(0), encoded, trace);
        string dir = Fixtures.Vision("cases/synthetic/");
        double pe = AssertClose(trace.PatchEmbeds, Fixtures.ReadF32(dir + "patch_embeds.f32"), "patch_embeds");
        var hidden = Fixtures.ReadF32(dir + "vision_hidden.f32");
        int per = 577 * Model.Vision.Config.HiddenSize;
        Assert.Equal(hidden.Length / per, trace.Hidden.Count);
        double hmax = 0;
        for (int i = 0; i < trace.Hidden.Count; i++)
            hmax = Math.Max(hmax, AssertClose(trace.Hidden[i], hidden.AsSpan(i * per, per), $"vision_hidden[{i}]"));
        output.WriteLine($"synthetic: max |Δ| patch_embeds {pe:g3}, vision_hidden {hmax:g3}");
    }

    [Fact]
    public void PatchCountMismatchIsRefused()
    {
        var (ids, names) = ReadCase("wide_small");
        var images = Preprocess(names.Take(1).ToArray());
        var cache = Model.Text.CreateCache(ids.Length);
        var e = Assert.Throws<ArgumentException>(() => Model.Forward(ids, images, cache, new float[ids.Length * 512], LogitsMode.All));
        Assert.Contains("<|patch|>", e.Message);
    }

    [Fact]
    public void TextOnlyCheckpointsSayTheyHaveNoVisionWeights()
    {
        using var hf = Checkpoint.Open(Fixtures.Text("scout-tiny"));
        Assert.False(VisionEncoder.IsPresent(hf));
        Assert.Contains("no vision weights", Assert.Throws<Scout.Formats.ModelLoadException>(() => VisionEncoder.Load(hf, TestPool.Instance)).Message);
        using var gguf = Checkpoint.Open(Fixtures.Text("scout-tiny", "model.gguf"));
        Assert.Contains("mmproj", Assert.Throws<Scout.Formats.ModelLoadException>(() => VisionEncoder.Load(gguf, TestPool.Instance)).Message);
    }

    [Fact]
    public void VisionWeightBytesAreCounted()
    {
        using var ckpt = Checkpoint.Open(Fixtures.Vision());
        long counted = VisionEncoder.CountWeightBytes(ckpt);
        Assert.Equal(counted, Model.Vision.WeightBytes);
        Assert.True(counted > 0 && counted < new FileInfo(Fixtures.Vision("model.safetensors")).Length);
    }

    [Fact]
    public void ImageTokenIdsComeFromTheConfig()
    {
        Assert.Equal(new ImageTokenIds(496, 497, 506, 508, 500, 501), Model.ImageTokens);
    }

    [Fact]
    public void ErfIsAccurate()
    {
        // Reference values of erf (Abramowitz & Stegun table / high-precision).
        Assert.Equal(0.0, VisionMath.Erf(0), 15);
        Assert.Equal(0.5204998778130465, VisionMath.Erf(0.5), 13);
        Assert.Equal(0.8427007929497149, VisionMath.Erf(1), 13);
        Assert.Equal(-0.9953222650189527, VisionMath.Erf(-2), 13);
        Assert.Equal(0.9995930479825550, VisionMath.Erf(2.5), 13);
        Assert.Equal(0.9999779095030014, VisionMath.Erf(3), 13);
        Assert.Equal(0.9999999845827421, VisionMath.Erf(4), 13);
    }

    [Fact]
    public void FastGeluMatchesTheExactErfForm()
    {
        var xs = Enumerable.Range(-4000, 8001).Select(i => i * 0.004f).ToArray();
        var fast = (float[])xs.Clone();
        VisionMath.Gelu(fast);
        for (int i = 0; i < xs.Length; i++)
        {
            double exact = 0.5 * xs[i] * (1 + VisionMath.Erf(xs[i] / Math.Sqrt(2)));
            Assert.True(Math.Abs(fast[i] - exact) <= 2e-7 * Math.Abs(exact) + 1e-12, $"gelu({xs[i]}) = {fast[i]}, exact {exact}");
        }
    }

    /// <summary>Not asserted: prints the time to encode one tile with the fixture's (tiny) encoder.</summary>
    [Fact]
    public void MeasureOneTile()
    {
        var image = ImagePreprocessor.PreprocessFile(Fixtures.Vision("images/synthetic.png"));
        var encoded = new float[576 * Model.Vision.Config.HiddenSize];
        Model.Vision.EncodeTile(image.Tile(0), encoded);
        var sw = Stopwatch.StartNew();
        const int runs = 5;
        for (int i = 0; i < runs; i++) Model.Vision.EncodeTile(image.Tile(0), encoded);
        output.WriteLine($"fixture encoder (D=48, 2 layers): {sw.Elapsed.TotalMilliseconds / runs:F2} ms per tile on {Environment.ProcessorCount} threads");
        Assert.True(encoded.All(float.IsFinite));
    }
}
