using System.Text.Json;
using Scout.Cli;
using Scout.Planning;
using Scout.Vision;

namespace Scout.Tests.Planning;

/// <summary>`scout plan --images N [--image-size WxH]`: image tokens in the context, vision weights and image buffers in the totals.</summary>
public class ImagePlanTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => ScoutCli.Run(args);

    private static readonly Device EightyGiB = Devices.Custom(80L << 30);

    private static PlanReport Plan(long context, int images = 0, (int, int)? size = null, bool withVision = false) => MemoryPlanner.Plan(new PlanOptions
    {
        Context = context, Images = images, ImageSize = size, WithVision = withVision, Threads = 2,
        Schemes = [QuantScheme.Parse("Q4_K_M")], Devices = [EightyGiB],
    });

    [Fact]
    public void TokenCountsMatchMetasLayouts()
    {
        foreach (var line in File.ReadLines(Fixtures.Tokenizer("image_layouts.jsonl")))
        {
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            int w = r.GetProperty("width").GetInt32(), h = r.GetProperty("height").GetInt32();
            var images = Plan(1000, 3, (w, h)).Images!;
            Assert.True(r.GetProperty("token_count").GetInt32() == images.TokensPerImage, $"{w}x{h}: {images.TokensPerImage} tokens");
            Assert.Equal(r.GetProperty("tiles").GetInt32(), images.TilesX * images.TilesY);
            Assert.Equal((r.GetProperty("ratio_w").GetInt32(), r.GetProperty("ratio_h").GetInt32()), (images.TilesX, images.TilesY));
            Assert.Equal(r.GetProperty("patch_count").GetInt32(), images.EncodedTiles * 144);
            Assert.Equal(3L * images.TokensPerImage, images.ImageTokens);
            Assert.Equal(1000 + images.ImageTokens, images.Context);
        }
    }

    [Fact]
    public void DefaultIsTheWorstCaseSixteenTilesAndAThumbnail()
    {
        var images = Plan(1024, 1).Images!;
        Assert.Equal((4, 4, 17), (images.TilesX, images.TilesY, images.EncodedTiles));
        Assert.Equal(145 * 16 + 144 + 3, images.TokensPerImage); // 2,467: the README's 1280x1280 case
    }

    [Fact]
    public void TotalsGrowByExactlyTheImageBytes()
    {
        // Two worst-case images in Scout: 2 x 2,467 tokens join the 1,024-token context.
        var plain = Plan(1024);
        var vision = Plan(1024 + 2 * 2467, withVision: true);
        var withImages = Plan(1024, 2);
        var im = withImages.Images!;
        Assert.Equal(2 * 2467, im.ImageTokens);
        Assert.Equal(1024 + 2 * 2467, withImages.Inputs.Context);
        Assert.True(withImages.Inputs.WithVision);

        // KV cache and engine buffers are those of the longer context, exactly.
        Assert.Equal(vision.Kv.Requested.Bytes, withImages.Kv.Requested.Bytes);
        Assert.Equal(vision.EngineBuffers.PeakBytes, withImages.EngineBuffers.PeakBytes);
        Assert.True(withImages.Kv.Requested.Bytes > plain.Kv.Requested.Bytes);

        // Image buffers, float32, from Scout's vision_config (hidden 1408, MLP 5632, 336-pixel tiles of 24x24 patches,
        // 144 rows per tile after the pixel shuffle, adapter 4096 -> 4096, text hidden 5120); 17 tiles per image.
        const long n = 577, p = 576, tiles = 17, rows = tiles * 144;
        Assert.Equal(4 * (n * 1408 * 8 + n * 5632 + p * 588), im.EncoderScratchBytes);
        long pixels = 4 * tiles * 3 * 336 * 336, projected = 4 * rows * 5120;
        Assert.Equal(pixels + 4 * tiles * p * 1408 + 4 * rows * (1408 * 4 + 4096 + 4096) + projected, im.ImageBufferBytes);
        Assert.Equal(pixels + projected + 2 * projected, im.HeldImageBytes);
        Assert.Equal(4L * (1024 + 2 * 2467) * 5120, im.PromptRowBytes);

        // Weights: --images counts the vision weights as --with-vision does; the fit totals grow by the image buffers only.
        var fitVision = Assert.Single(vision.Fit);
        var fitImages = Assert.Single(withImages.Fit);
        var fitPlain = Assert.Single(plain.Fit);
        long visionWeights = withImages.Schemes[0].VisionBytes;
        Assert.True(visionWeights > 0);
        Assert.Equal(fitPlain.WeightBytes + visionWeights, fitImages.WeightBytes);
        Assert.Equal(fitVision.WeightBytes, fitImages.WeightBytes);
        Assert.Equal(fitVision.NeedBytes + im.ScratchBytes, fitImages.NeedBytes);
        Assert.Equal(fitPlain.NeedBytes + visionWeights + (vision.Kv.Requested.Bytes - plain.Kv.Requested.Bytes)
            + (vision.EngineBuffers.PeakBytes - plain.EngineBuffers.PeakBytes) + im.ScratchBytes, fitImages.NeedBytes);
        // The largest context that fits leaves room for the image buffers too.
        Assert.True(fitImages.MaxContext < fitVision.MaxContext, $"{fitImages.MaxContext} vs {fitVision.MaxContext}");
    }

    [Fact]
    public void EncoderScratchIsTheLoadedEncodersOwn()
    {
        using var vlm = VisionLanguageModel.Load(Fixtures.Vision());
        var report = MemoryPlanner.Plan(new PlanOptions
        {
            Model = Fixtures.Vision(), Images = 1, ImageSize = (500, 300), Threads = 2, Schemes = [QuantScheme.Parse("BF16")], Devices = [EightyGiB],
        });
        var im = report.Images!;
        Assert.Equal(vlm.Vision.ScratchBytesPerTile, im.EncoderScratchBytes);
        Assert.Equal(VisionEncoder.ImageBufferBytes(vlm.Vision.Config, im.EncodedTiles, vlm.Text.Config.HiddenSize), im.ImageBufferBytes);
    }

    [Fact]
    public void CliShowsImagesInTextAndJson()
    {
        var (code, output, err) = Run("plan", "--images", "2", "--image-size", "1280x1280", "-s", "Q4_0", "-d", "H100");
        Assert.True(code == 0, err);
        Assert.Contains("Images: 2 of 1280x1280 (4x4 tiles + thumbnail, 2,467 tokens each)", output);
        Assert.Contains("5,958", output); // 1,024 + 2 x 2,467

        (code, output, err) = Run("plan", "--json", "--images", "1", "--image-size", "500x300", "-s", "Q4_0", "--memory", "80GiB");
        Assert.True(code == 0, err);
        var images = JsonDocument.Parse(output).RootElement.GetProperty("images");
        Assert.Equal(437, images.GetProperty("tokensPerImage").GetInt32()); // 2x1 tiles: 145 x 2 + 144 + 3
        Assert.Equal(1024 + 437, images.GetProperty("context").GetInt64());
        Assert.True(images.GetProperty("scratchBytes").GetInt64() > images.GetProperty("encoderScratchBytes").GetInt64());
    }

    [Theory]
    [InlineData("images must be in 0..1024, got -1", "--images", "-1")]
    [InlineData("images must be in 0..1024, got 5000", "--images", "5000")]
    [InlineData("is not WxH in pixels", "--images", "1", "--image-size", "12x")]
    [InlineData("is not WxH in pixels", "--images", "1", "--image-size", "big")]
    [InlineData("must have positive width and height", "--images", "1", "--image-size", "0x5")]
    [InlineData("needs a number of images (--images N)", "--image-size", "100x100")]
    public void BadImageOptionsGiveClearErrors(string message, params string[] args)
    {
        var (code, _, err) = Run(["plan", .. args]);
        Assert.Equal(1, code);
        Assert.Contains(message, err);
    }

    [Fact]
    public void AModelWithoutAVisionEncoderCannotPlanImages()
    {
        var (code, _, err) = Run("plan", "--model", Fixtures.Text("scout-tiny", "model.gguf"), "--images", "1");
        Assert.Equal(1, code);
        Assert.Contains("no vision encoder", err);
    }
}
