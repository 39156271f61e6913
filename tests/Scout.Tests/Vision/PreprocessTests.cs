using System.Text.Json;
using Scout.Tokenization;
using Scout.Vision;

namespace Scout.Tests.Vision;

public class PreprocessTests
{
    public static TheoryData<string> Images => new() { "synthetic", "wide", "tall", "small" };

    private static JsonElement ImageJson(string name)
        => JsonDocument.Parse(File.ReadAllText(Fixtures.Vision($"preprocess/{name}/image.json"))).RootElement;

    [Theory]
    [MemberData(nameof(Images))]
    public void TilesMatchMetaBitForBit(string name)
    {
        var meta = ImageJson(name);
        var pre = ImagePreprocessor.PreprocessFile(Fixtures.Vision($"images/{name}.png"));
        var expected = Fixtures.ReadF32(Fixtures.Vision($"preprocess/{name}/tiles.f32"));

        var shape = meta.GetProperty("tiles_shape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(shape[0], pre.TileCount);
        Assert.Equal(expected.Length, pre.Pixels.Length);
        int mismatches = 0, first = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(pre.Pixels[i]))
            {
                if (first < 0) first = i;
                mismatches++;
            }
        }
        Assert.True(mismatches == 0, $"{mismatches} of {expected.Length} values differ; first at {first}: {(first >= 0 ? pre.Pixels[first] : 0)} vs {(first >= 0 ? expected[first] : 0)}");

        var ratio = meta.GetProperty("aspect_ratio_tiles");
        Assert.Equal(ratio.GetProperty("ratio_h").GetInt32(), pre.RatioH);
        Assert.Equal(ratio.GetProperty("ratio_w").GetInt32(), pre.RatioW);
        Assert.Equal(meta.GetProperty("resized_to").GetProperty("width").GetInt32(), pre.ResizedWidth);
        Assert.Equal(meta.GetProperty("resized_to").GetProperty("height").GetInt32(), pre.ResizedHeight);
        Assert.Equal(meta.GetProperty("has_global_thumbnail").GetBoolean(), pre.HasThumbnail);
    }

    [Theory]
    [MemberData(nameof(Images))]
    public void PromptLayoutMatchesMetaChatFormat(string name)
    {
        var meta = ImageJson(name);
        var ratio = meta.GetProperty("aspect_ratio_tiles");
        var size = meta.GetProperty("input_size");
        var tiling = ImagePromptLayout.TilingFor(size.GetProperty("width").GetInt32(), size.GetProperty("height").GetInt32());
        Assert.Equal(ratio.GetProperty("ratio_w").GetInt32(), tiling.TilesX);
        Assert.Equal(ratio.GetProperty("ratio_h").GetInt32(), tiling.TilesY);

        var llama4 = meta.GetProperty("tokens_llama4").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var fixture = meta.GetProperty("tokens_fixture_vocab").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(llama4, ImagePromptLayout.Tokens(tiling));
        Assert.Equal(fixture, ImagePromptLayout.Tokens(tiling, ImageTokenIds.ForFirstSpecialId(416)));
        Assert.Equal(meta.GetProperty("token_count").GetInt32(), ImagePromptLayout.TokenCount(tiling));
        Assert.Equal(meta.GetProperty("patch_token_count").GetInt32(), ImagePromptLayout.PatchCount(tiling));
    }

    [Fact]
    public void CanvasChoiceMatchesMetaForEverySizeInTheTokenizerFixture()
    {
        var lines = File.ReadAllLines(Fixtures.Tokenizer("image_layouts.jsonl")).Where(l => l.Trim().Length > 0).ToList();
        Assert.True(lines.Count >= 60);
        foreach (var line in lines)
        {
            var e = JsonDocument.Parse(line).RootElement;
            int w = e.GetProperty("width").GetInt32(), h = e.GetProperty("height").GetInt32();
            var tiling = ImagePromptLayout.TilingFor(w, h);
            string what = $"{w}x{h}";
            Assert.True(e.GetProperty("ratio_w").GetInt32() == tiling.TilesX, $"{what}: ratio_w {tiling.TilesX}, expected {e.GetProperty("ratio_w")}");
            Assert.True(e.GetProperty("ratio_h").GetInt32() == tiling.TilesY, $"{what}: ratio_h {tiling.TilesY}, expected {e.GetProperty("ratio_h")}");
            Assert.Equal(e.GetProperty("tiles").GetInt32(), tiling.TilesX * tiling.TilesY);
            var tokens = ImagePromptLayout.Tokens(tiling);
            Assert.Equal(e.GetProperty("token_count").GetInt32(), tokens.Length);
            Assert.Equal(e.GetProperty("patch_count").GetInt32(), tokens.Count(t => t == ImageTokenIds.Llama4.Patch));
        }
    }

    /// <summary>The README's rule, restated independently: brute force over all a·b ≤ 16 for a sweep of sizes.</summary>
    [Fact]
    public void CanvasChoiceFollowsTheReadmeRuleOverASweepOfSizes()
    {
        var order = ImagePreprocessor.CandidateGrids(16);
        Assert.Equal(Enumerable.Range(1, 16).Sum(n => Enumerable.Range(1, n).Count(d => n % d == 0)), order.Count);
        for (int w = 1; w < 6000; w += 37)
        for (int h = 1; h < 6000; h += 41)
        {
            float bestScale = float.NaN;
            bool anyUp = false;
            foreach (var (a, b) in order)
            {
                float s = MathF.Min((float)(336 * a) / w, (float)(336 * b) / h);
                if (s >= 1f) { if (!anyUp || s < bestScale) bestScale = s; anyUp = true; }
                else if (!anyUp && (float.IsNaN(bestScale) || s > bestScale)) bestScale = s;
            }
            (int, int)? expected = null;
            foreach (var (a, b) in order)
            {
                float s = MathF.Min((float)(336 * a) / w, (float)(336 * b) / h);
                if (s == bestScale && (expected is null || a * b < expected.Value.Item1 * expected.Value.Item2)) expected = (a, b);
            }
            var got = ImagePreprocessor.ChooseGrid(w, h);
            Assert.True(expected == got, $"{w}x{h}: chose {got}, rule gives {expected}");
            Assert.True(got.Cols * got.Rows <= 16);
            var (rw, rh) = ImagePreprocessor.ResizedSize(w, h, got.Cols, got.Rows);
            Assert.True(rw <= 336 * got.Cols && rh <= 336 * got.Rows, $"{w}x{h}: resized {rw}x{rh} exceeds the canvas");
            // No upscaling beyond one tile: an image that fits its canvas keeps its size when both sides are ≥ 336.
            if (w >= 336 && h >= 336 && w <= 336 * got.Cols && h <= 336 * got.Rows) Assert.Equal((w, h), (rw, rh));
        }
    }

    [Theory]
    [InlineData(1, 1, 1, 1)]
    [InlineData(3000, 2, 9, 1)] // 9 columns already fit without shrinking (scale 1.008)
    [InlineData(2, 3000, 1, 9)]
    [InlineData(2000, 1500, 4, 3)]
    [InlineData(1400, 1400, 4, 4)] // too large for 16 tiles: shrunk to 1344×1344
    public void ExtremeSizesPreprocessIntoValidTiles(int w, int h, int cols, int rows)
    {
        var rng = new Random(w * 7 + h);
        var pixels = new byte[w * h * 3];
        rng.NextBytes(pixels);
        var pre = ImagePreprocessor.Preprocess(new RgbImage(w, h, pixels));
        Assert.Equal((cols, rows), (pre.RatioW, pre.RatioH));
        Assert.Equal(cols * rows + (cols * rows > 1 ? 1 : 0), pre.TileCount);
        Assert.Equal(pre.TileCount * 3 * 336 * 336, pre.Pixels.Length);
        Assert.True(pre.ResizedWidth <= 336 * cols && pre.ResizedHeight <= 336 * rows && pre.ResizedWidth >= 1 && pre.ResizedHeight >= 1);
        Assert.All(pre.Pixels, v => Assert.InRange(v, -1f, 1f));
    }

    [Fact]
    public void NormalisationTableMatchesMeta()
    {
        var meta = JsonDocument.Parse(File.ReadAllText(Fixtures.Vision("meta.json"))).RootElement;
        var lut = meta.GetProperty("derived").GetProperty("normalize_lut_uint8_to_float32").EnumerateArray().Select(e => e.GetSingle()).ToArray();
        Assert.Equal(lut, ImagePreprocessor.NormalizeLut);
    }

    [Fact]
    public void RgbaIsCompositedOverWhiteLikePil()
    {
        Assert.Equal(255, ImageDecoder.BlendOverWhite(0, 0));
        Assert.Equal(0, ImageDecoder.BlendOverWhite(0, 255));
        Assert.Equal(200, ImageDecoder.BlendOverWhite(200, 255));
        // t = 255·127 + 10·128 + 128 = 33793 → (33793 + 132) >> 8 = 132
        Assert.Equal(132, ImageDecoder.BlendOverWhite(10, 128));
    }

    [Fact]
    public void SameSizeResizeIsACopyAndSizesAreHonoured()
    {
        var img = new RgbImage(5, 3, Enumerable.Range(0, 45).Select(i => (byte)(i * 5)).ToArray());
        var same = PillowResize.Resize(img, 5, 3);
        Assert.Equal(img.Pixels, same.Pixels);
        Assert.NotSame(img.Pixels, same.Pixels);
        var up = PillowResize.Resize(img, 17, 11);
        Assert.Equal((17, 11), (up.Width, up.Height));
        var flat = new RgbImage(40, 30, Enumerable.Repeat((byte)77, 3600).ToArray());
        Assert.All(PillowResize.Resize(flat, 13, 7).Pixels, b => Assert.Equal(77, b));
    }
}
