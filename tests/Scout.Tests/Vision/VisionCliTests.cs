using Scout.Cli;

namespace Scout.Tests.Vision;

public class VisionCliTests
{
    private static (int Code, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        return (code, stderr.ToString());
    }

    [Theory]
    [InlineData("synthetic", new[] { "synthetic" })]
    [InlineData("wide_small", new[] { "wide", "small" })]
    public void LogitsWithImagesMatchMeta(string caseName, string[] images)
    {
        using var tmp = new Fixtures.TempDir();
        var args = new List<string> { "logits", "--model", Fixtures.Vision(), "--tokens", Fixtures.Vision($"cases/{caseName}/tokens.json"), "--out", tmp.File("x.f32") };
        foreach (var image in images) args.AddRange(["--image", Fixtures.Vision($"images/{image}.png")]);
        var (code, err) = Run(args.ToArray());
        Assert.True(code == 0, err);
        LogitAssert.Close(Fixtures.ReadF32(tmp.File("x.f32")), Fixtures.ReadF32(Fixtures.Vision($"cases/{caseName}/logits.f32")), 512);
    }

    [Fact]
    public void DecodeModeWithAnImageMatchesMeta()
    {
        using var tmp = new Fixtures.TempDir();
        var (code, err) = Run("logits", "--model", Fixtures.Vision(), "--tokens", Fixtures.Vision("cases/synthetic/tokens.json"), "--out", tmp.File("x.f32"),
            "--image", Fixtures.Vision("images/synthetic.png"), "--decode");
        Assert.True(code == 0, err);
        LogitAssert.Close(Fixtures.ReadF32(tmp.File("x.f32")), Fixtures.ReadF32(Fixtures.Vision("cases/synthetic/logits.f32")), 512);
    }

    [Fact]
    public void PatchTokensWithoutImagesAreAnError()
    {
        using var tmp = new Fixtures.TempDir();
        var (code, err) = Run("logits", "--model", Fixtures.Vision(), "--tokens", Fixtures.Vision("cases/synthetic/tokens.json"), "--out", tmp.File("x.f32"));
        Assert.Equal(1, code);
        Assert.Contains("--image", err);
        Assert.False(File.Exists(tmp.File("x.f32")));
    }

    [Fact]
    public void ImageCountMismatchIsAnError()
    {
        using var tmp = new Fixtures.TempDir();
        var (code, err) = Run("logits", "--model", Fixtures.Vision(), "--tokens", Fixtures.Vision("cases/wide_small/tokens.json"), "--out", tmp.File("x.f32"),
            "--image", Fixtures.Vision("images/wide.png"));
        Assert.Equal(1, code);
        Assert.Contains("2 image(s)", err);
    }

    [Fact]
    public void WrongImageForTheLayoutIsAnError()
    {
        using var tmp = new Fixtures.TempDir();
        // The synthetic prompt has one 1-tile image; wide.png needs 3 tiles.
        var (code, err) = Run("logits", "--model", Fixtures.Vision(), "--tokens", Fixtures.Vision("cases/synthetic/tokens.json"), "--out", tmp.File("x.f32"),
            "--image", Fixtures.Vision("images/wide.png"));
        Assert.Equal(1, code);
        Assert.Contains("<|patch|>", err);
    }

    [Fact]
    public void CorruptImageIsAnErrorNamingTheFile()
    {
        using var tmp = new Fixtures.TempDir();
        File.WriteAllBytes(tmp.File("bad.png"), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3]);
        var (code, err) = Run("logits", "--model", Fixtures.Vision(), "--tokens", Fixtures.Vision("cases/synthetic/tokens.json"), "--out", tmp.File("x.f32"),
            "--image", tmp.File("bad.png"));
        Assert.Equal(1, code);
        Assert.Contains("bad.png", err);
        Assert.StartsWith("error:", err.Trim());
    }

    [Fact]
    public void ImagesWithoutPatchTokensAreAnError()
    {
        using var tmp = new Fixtures.TempDir();
        File.WriteAllText(tmp.File("t.json"), "{\"input_ids\": [416, 421, 137, 422]}");
        var (code, err) = Run("logits", "--model", Fixtures.Vision(), "--tokens", tmp.File("t.json"), "--out", tmp.File("x.f32"),
            "--image", Fixtures.Vision("images/synthetic.png"));
        Assert.Equal(1, code);
        Assert.Contains("no <|patch|> tokens", err);
    }

    [Fact]
    public void ImagesWithATextOnlyModelAreAnError()
    {
        using var tmp = new Fixtures.TempDir();
        File.WriteAllText(tmp.File("t.json"), "{\"input_ids\": [1, 2, 3]}");
        var (code, err) = Run("logits", "--model", Fixtures.Text("scout-tiny"), "--tokens", tmp.File("t.json"), "--out", tmp.File("x.f32"),
            "--image", Fixtures.Vision("images/synthetic.png"));
        Assert.Equal(1, code);
        Assert.Contains("no vision weights", err);
    }
}
