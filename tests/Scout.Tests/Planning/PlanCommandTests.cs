using System.Text.Json;
using Scout.Cli;

namespace Scout.Tests.Planning;

public class PlanCommandTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => ScoutCli.Run(args);

    [Fact]
    public void NoArgumentsPlansScoutFromThePreset()
    {
        var (code, output, err) = Run("plan");
        Assert.True(code == 0, err);
        Assert.Contains("Llama-4-Scout-17B-16E-Instruct", output);
        Assert.Contains("108,641,793,536", output);
        Assert.Contains("107,769,861,120", output);
        Assert.Contains("Q4_K_M", output);
        Assert.Contains("H200 141GB", output);
        Assert.Contains("481.125 GiB", output); // 10M context, bf16, chunk-aware
    }

    [Fact]
    public void JsonCarriesEveryNumber()
    {
        var (code, output, err) = Run("plan", "--json", "--context", "1M");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        Assert.Equal(108_641_793_536L, root.GetProperty("parameters").GetProperty("total").GetInt64());
        var kv = root.GetProperty("kv").GetProperty("requested");
        Assert.Equal(49.125 * (1L << 30), kv.GetProperty("bytes").GetInt64());
        Assert.Equal(192L << 30, kv.GetProperty("naiveBytes").GetInt64());
        Assert.Equal(11, root.GetProperty("schemes").GetArrayLength());
        Assert.True(root.GetProperty("fit").GetArrayLength() > 0);
        Assert.True(root.GetProperty("engineBuffers").GetProperty("peakBytes").GetInt64() > 0);
    }

    [Fact]
    public void TensorListingAddsUpToTheTotals()
    {
        var (code, output, err) = Run("plan", "--json", "--tensors", "--scheme", "Q4_K_M", "--device", "H200");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(output);
        var tensors = doc.RootElement.GetProperty("tensors").EnumerateArray().ToList();
        Assert.Equal(108_641_793_536L, tensors.Sum(t => t.GetProperty("parameters").GetInt64()));
        long q4km = tensors.Where(t => !t.GetProperty("group").GetString()!.StartsWith("vision"))
            .Sum(t => long.Parse(t.GetProperty("schemes").GetProperty("Q4_K_M").GetString()!.Split(' ')[1]));
        Assert.Equal(doc.RootElement.GetProperty("schemes")[0].GetProperty("textBytes").GetInt64(), q4km);
    }

    [Fact]
    public void MaverickPreset()
    {
        var (code, output, err) = Run("plan", "--model", "maverick", "--device", "H100", "--scheme", "Q4_K_M,FP8");
        Assert.True(code == 0, err);
        Assert.Contains("Llama-4-Maverick-17B-128E-Instruct", output);
        Assert.Contains("401,583,781,376", output);
        Assert.Contains("8x H100 80GB", output);
        Assert.DoesNotContain("RTX 4090", output);
    }

    [Fact]
    public void MemoryOptionAddsACustomDevice()
    {
        var (code, output, err) = Run("plan", "--memory", "80GiB", "--json");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(output);
        var fit = doc.RootElement.GetProperty("fit").EnumerateArray().ToList();
        Assert.All(fit, f => Assert.Equal(80L << 30, f.GetProperty("usableBytes").GetInt64()));
        // Q4_K_M (60.9 GiB of text weights) fits in 80 GiB at 1k context; BF16 (200.7 GiB) does not.
        Assert.True(fit.Single(f => f.GetProperty("scheme").GetString() == "Q4_K_M").GetProperty("fits").GetBoolean());
        Assert.False(fit.Single(f => f.GetProperty("scheme").GetString() == "BF16").GetProperty("fits").GetBoolean());
    }

    [Fact]
    public void PlansAGgufFixtureFromItsFile()
    {
        var (code, output, err) = Run("plan", "--model", Fixtures.Text("scout-tiny", "model.gguf"), "--config", Fixtures.Text("scout-tiny", "config.json"), "--device", "4090");
        Assert.True(code == 0, err);
        Assert.Contains("matches the planner's F32 (GGUF) layout exactly (1,693,984 bytes)", output);
    }

    [Theory]
    [InlineData("unknown model", "plan", "--model", "llama-9-giant")]
    [InlineData("positive", "plan", "--context=-5")]
    [InlineData("absurd", "plan", "--context", "2G")]
    [InlineData("not a number", "plan", "--context", "lots")]
    [InlineData("unknown scheme", "plan", "--scheme", "Q9_K")]
    [InlineData("unknown KV cache type", "plan", "--kv-type", "q3_k")]
    [InlineData("no device matches", "plan", "--device", "TPU v5")]
    [InlineData("needs a unit", "plan", "--memory", "80")]
    [InlineData("parallel", "plan", "--parallel", "0")]
    [InlineData("batch", "plan", "--batch", "-3")]
    public void BadInputGivesAClearError(string expected, params string[] args)
    {
        var (code, _, err) = Run(args);
        Assert.Equal(1, code);
        Assert.Contains(expected, err);
        Assert.DoesNotContain("   at ", err); // no stack trace
    }

    [Fact]
    public void MalformedAndIncompleteConfigsAreRejected()
    {
        using var dir = new Fixtures.TempDir();
        File.WriteAllText(dir.File("broken.json"), "{ \"text_config\": { \"hidden_size\": 64, ");
        var (code, _, err) = Run("plan", "--model", dir.File("broken.json"));
        Assert.Equal(1, code);
        Assert.Contains("malformed JSON", err);

        File.WriteAllText(dir.File("config.json"), "{ \"text_config\": { \"model_type\": \"llama4_text\", \"hidden_size\": 64 } }");
        (code, _, err) = Run("plan", "--model", dir.File("config.json"));
        Assert.Equal(1, code);
        Assert.Contains("num_hidden_layers", err);

        File.WriteAllText(dir.File("other.json"), "{ \"model_type\": \"mistral\", \"num_hidden_layers\": 2 }");
        (code, _, err) = Run("plan", "--model", dir.File("other.json"));
        Assert.Equal(1, code);
        Assert.Contains("not a Llama 4 model", err);
    }
}
