using System.Text.Json;
using Scout.Cli;

namespace Scout.Tests.Cli;

public class BenchCommandTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => ScoutCli.Run(args);

    [Fact]
    public void ReportsSpeedsAndActiveBytesAsJson()
    {
        string model = Fixtures.Text("scout-tiny", "model.gguf");
        var (code, output, err) = Run("bench", "--model", model, "--threads", Environment.ProcessorCount.ToString(),
            "--prompt", "8", "--gen", "4", "--reps", "2", "--json", "--no-bandwidth");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(output);
        var r = doc.RootElement;
        Assert.True(r.GetProperty("PpTokensPerSecond").GetDouble() > 0);
        Assert.True(r.GetProperty("TgTokensPerSecond").GetDouble() > 0);
        long active = r.GetProperty("ActiveBytesPerToken").GetInt64();
        long total = r.GetProperty("WeightBytes").GetInt64();
        // one routed expert of several, one embedding row: strictly less than the whole file's weights
        Assert.InRange(active, 1, total - 1);
        Assert.Equal(JsonValueKind.Null, r.GetProperty("MachineBandwidthGBs").ValueKind);
        Assert.Equal(8, r.GetProperty("PromptTokens").GetInt32());
        // active = weights per token + K/V per token (at depth 0 and 4 generated tokens: context 3)
        long weights = r.GetProperty("WeightBytesPerToken").GetInt64(), kv = r.GetProperty("KvBytesPerToken").GetInt64();
        Assert.InRange(weights, 1, total - 1);
        Assert.True(kv > 0);
        Assert.Equal(active, weights + kv);
    }

    [Fact]
    public void PrintsATableWithTheBandwidthBound()
    {
        string model = Fixtures.Text("scout-tiny", "model.gguf");
        var (code, output, err) = Run("bench", "--model", model, "--threads", Environment.ProcessorCount.ToString(), "--prompt", "4", "--gen", "2", "--reps", "1");
        Assert.True(code == 0, err);
        Assert.Contains("| pp4 |", output);
        Assert.Contains("| tg2 |", output);
        Assert.Contains("measured read bandwidth", output);
        Assert.Contains("read per decoded token (at context 2, mid-tg): weights ", output);
        Assert.Contains("% of the bandwidth bound", output);
    }

    [Theory]
    [InlineData("--threads", "0", "--threads must be at least 1")]
    [InlineData("--reps", "0", "--reps must be at least 1")]
    [InlineData("--gen", "-1", "must not be negative")]
    public void BadArgumentsGiveClearErrors(string option, string value, string message)
    {
        var (code, _, err) = Run("bench", "--model", Fixtures.Text("scout-tiny", "model.gguf"), option, value);
        Assert.Equal(1, code);
        Assert.Contains(message, err);
    }

    [Fact]
    public void MissingModelIsReported()
    {
        var (code, _, err) = Run("bench", "--model", "/nonexistent/model.gguf");
        Assert.Equal(1, code);
        Assert.Contains("model not found", err);
    }
}
