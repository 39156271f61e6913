namespace Scout.Tests.Cli;

/// <summary>What a new user of `scout` sees first: usage lines, a wrong --model, a file that only claims to be GGUF, --threads.</summary>
public class UsabilityTests
{
    [Fact]
    public void UsageLinesSayScout()
    {
        var (code, stdout, _) = ScoutCli.Run("run", "--help");
        Assert.Equal(0, code);
        Assert.Contains("scout run [options]", stdout);
        Assert.DoesNotContain("Scout.Cli", stdout);
        var root = ScoutCli.Run("--help");
        Assert.Contains("scout [command] [options]", root.Out);
        foreach (var command in new[] { "run", "chat", "serve" })
            Assert.Contains("--threads", ScoutCli.Run(command, "--help").Out);
        Assert.Contains("--cors-origin", ScoutCli.Run("serve", "--help").Out);
    }

    [Theory]
    [InlineData("run")]
    [InlineData("serve")]
    [InlineData("chat")]
    public void MissingModelIsReportedAsMissing(string command)
    {
        string path = Path.Combine(Path.GetTempPath(), "scout-no-such-model-" + Guid.NewGuid().ToString("N") + ".gguf");
        var (code, _, err) = ScoutCli.Run(command, "--model", path, "-p", "hi");
        if (command != "run") (code, _, err) = ScoutCli.Run(command, "--model", path);
        Assert.Equal(1, code);
        Assert.Equal($"error: --model: {path} does not exist", err.Trim());
    }

    [Fact]
    public void TextFileNamedGgufIsNotATokenizer()
    {
        using var dir = new Fixtures.TempDir();
        string fake = dir.File("model.gguf");
        File.WriteAllText(fake, "hello world, not a GGUF\n");
        var (code, _, err) = ScoutCli.Run("tokenize", "--tokenizer", fake, "--text", "hi");
        Assert.Equal(1, code);
        Assert.Contains("not a GGUF file", err);
        (code, _, err) = ScoutCli.Run("run", "--model", fake, "-p", "hi");
        Assert.Equal(1, code);
        Assert.Contains("not a GGUF file", err);
        Assert.DoesNotContain("no tokenizer found", err);
    }

    [Fact]
    public void ThreadsFlagIsCheckedAndUsed()
    {
        string model = Fixtures.Text("scout-tiny", "model.gguf");
        var (code, _, err) = ScoutCli.Run("run", "--model", model, "--tokenizer", Fixtures.Tokenizer("llama4/tokenizer.model"), "-p", "hi", "--threads", "-1");
        Assert.Equal(1, code);
        Assert.Contains("--threads", err);
        string stdout;
        (code, stdout, err) = ScoutCli.Run("run", "--model", Fixtures.Text("scout-tiny", "model.gguf"), "--raw", "-p", "hi", "-n", "3", "-t", "0", "--threads", "1", "--json");
        Assert.True(code == 0, err);
        Assert.Contains("\"completion_tokens\":3", stdout);
    }
}
