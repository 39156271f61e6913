using System.Text.Json;
using Scout.Model;

namespace Scout.Tests.Model;

public class AttentionMathTests
{
    [Theory]
    [InlineData(0, 0, true)]
    [InlineData(7, 0, true)]     // last position of chunk 0 still sees its start
    [InlineData(8, 7, false)]    // first position of chunk 1 cannot see chunk 0
    [InlineData(8, 8, true)]
    [InlineData(15, 8, true)]
    [InlineData(16, 15, false)]
    [InlineData(5, 6, false)]    // never the future
    public void ChunkMaskAtBoundaries(int q, int k, bool visible)
    {
        Assert.Equal(visible, AttentionMath.IsVisible(q, k, chunked: true, chunkSize: 8));
        Assert.Equal(k <= q, AttentionMath.IsVisible(q, k, chunked: false, chunkSize: 8));
    }

    [Fact]
    public void FirstVisibleKeyFollowsChunks()
    {
        Assert.Equal(0, AttentionMath.FirstVisibleKey(7, true, 8));
        Assert.Equal(8, AttentionMath.FirstVisibleKey(8, true, 8));
        Assert.Equal(8192, AttentionMath.FirstVisibleKey(16383, true, 8192));
        Assert.Equal(0, AttentionMath.FirstVisibleKey(16383, false, 8192));
    }

    [Theory]
    [InlineData("scout-tiny")]
    [InlineData("maverick-tiny")]
    public void TemperatureScaleMatchesMetaPerPosition(string model)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.Text(model, "meta.json")));
        var p = doc.RootElement.GetProperty("meta_params");
        double floor = p.GetProperty("floor_scale").GetDouble(), scale = p.GetProperty("attn_scale").GetDouble();
        var expected = doc.RootElement.GetProperty("derived").GetProperty("temperature_scale_per_position (NoPE layers only)")
            .EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.True(expected.Length >= 40);
        for (int pos = 0; pos < expected.Length; pos++)
            Assert.Equal(expected[pos], AttentionMath.TemperatureScale(pos, floor, scale), 6);
    }

    [Fact]
    public void TemperatureScaleForRealScoutDefaults()
    {
        Assert.Equal(1f, AttentionMath.TemperatureScale(8190, 8192, 0.1));
        Assert.Equal(1 + 0.1 * Math.Log(2), AttentionMath.TemperatureScale(8191, 8192, 0.1), 6);
        Assert.Equal(1 + 0.1 * Math.Log(124), AttentionMath.TemperatureScale(122 * 8192 + 8191, 8192, 0.1), 5); // ⌊(p+1)/8192⌋ = 123
    }

    [Fact]
    public void RopeFrequenciesWithoutScalingAreThetaPowers()
    {
        var f = AttentionMath.RopeFrequencies(16, 500000, null);
        Assert.Equal(8, f.Length);
        for (int j = 0; j < 8; j++) Assert.Equal(Math.Pow(500000, -2.0 * j / 16), f[j], 1e-6 * Math.Max(1, f[j]));
    }

    [Fact]
    public void Llama3ScalingDividesLongWavelengthsOnly()
    {
        // scout-tiny: head_dim 16, factor 16, low = high = 1 → pairs 5, 6, 7 (wavelength > 8192) are divided by 16.
        var s = new RopeScaling(16, 1, 1, 8192);
        var plain = AttentionMath.RopeFrequencies(16, 500000, null);
        var scaled = AttentionMath.RopeFrequencies(16, 500000, s);
        for (int j = 0; j < 8; j++)
        {
            bool longWave = 2 * Math.PI / plain[j] > 8192;
            Assert.Equal(j >= 5, longWave);
            Assert.Equal(longWave ? plain[j] / 16 : plain[j], scaled[j], 1e-9);
        }
    }

    [Fact]
    public void Llama3ScalingSmoothBandInterpolates()
    {
        // Real Scout: factor 16, low 1, high 4: wavelengths between 2048 and 8192 are blended.
        var s = new RopeScaling(16, 1, 4, 8192);
        float freq = (float)(2 * Math.PI / 4096); // wavelength 4096: smooth = (8192/4096 - 1)/(4 - 1) = 1/3
        double smooth = 1.0 / 3;
        Assert.Equal((1 - smooth) * freq / 16 + smooth * freq, AttentionMath.Llama3Scale(freq, s), 6);
        Assert.Equal(freq * 8, AttentionMath.Llama3Scale(freq * 8, s));          // short wavelength untouched
        Assert.Equal(freq / 4 / 16, AttentionMath.Llama3Scale(freq / 4, s), 9); // long wavelength divided
    }

    [Fact]
    public void GgufRopeDivisorsReproduceLlama3Scaling()
    {
        using var ckpt = Checkpoint.Open(Fixtures.Text("scout-tiny", "model.gguf"));
        var divisors = ckpt.Get("rope_freqs.weight").ToFloatArray();
        var fromGguf = AttentionMath.RopeFrequencies(16, 500000, null, divisors);
        var fromConfig = AttentionMath.RopeFrequencies(16, 500000, new RopeScaling(16, 1, 1, 8192));
        for (int j = 0; j < 8; j++) Assert.Equal(fromConfig[j], fromGguf[j], 1e-7);
    }

    [Fact]
    public void RouterTopKPicksLargestRawLogits()
    {
        Span<int> top1 = stackalloc int[1];
        Llama4Model.TopK([0.1f, -2f, 3f, 2.9f], top1);
        Assert.Equal(2, top1[0]);
        Span<int> top2 = stackalloc int[2];
        Llama4Model.TopK([-5f, -1f, -3f, -0.5f, -4f], top2);
        Assert.Equal(new[] { 3, 1 }, top2.ToArray());
        Llama4Model.TopK([1f, 1f, 0f], top1); // ties: the lower index, as torch.topk
        Assert.Equal(0, top1[0]);
    }
}
