using Scout.Formats;
using Scout.Model;
using Scout.Planning;
using Xunit.Abstractions;

namespace Scout.Tests.Planning;

/// <summary>Plans each text fixture from its files and checks the numbers against the files and the engine.</summary>
public class FixturePlanTests(ITestOutputHelper output)
{
    public static TheoryData<string, string, string> Files()
    {
        var data = new TheoryData<string, string, string>();
        foreach (var model in new[] { "scout-tiny", "maverick-tiny" })
        {
            data.Add(model, "", "F32");                      // the folder: config.json + model.safetensors
            data.Add(model, "model.safetensors", "F32");
            data.Add(model, "model-bf16.safetensors", "BF16");
            data.Add(model, "model.gguf", "F32 (GGUF)");
        }
        return data;
    }

    /// <summary>Bytes of tensor data in the file, read from its own header (independent of the planner).</summary>
    private static long DataBytes(string path)
    {
        if (path.EndsWith(".gguf", StringComparison.Ordinal))
        {
            using var g = GgufFile.Open(path);
            return g.FileSize - g.DataStart;
        }
        using var f = File.OpenRead(path);
        Span<byte> len = stackalloc byte[8];
        f.ReadExactly(len);
        return f.Length - 8 - BitConverter.ToInt64(len);
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void PlanMatchesTheFile(string model, string file, string scheme)
    {
        string path = Fixtures.Text(model, file);
        var report = MemoryPlanner.Plan(new PlanOptions { Model = file.Length == 0 ? path.TrimEnd('/') : path, Devices = [Devices.Custom(1L << 30)] });
        var ck = report.Checkpoint!;
        string weightsFile = file.Length == 0 ? Fixtures.Text(model, "model.safetensors") : path;
        long data = DataBytes(weightsFile);
        output.WriteLine($"{model}/{file}: planned {ck.MatchingSchemeBytes} ({ck.MatchingScheme}), tensors {ck.TensorBytes}, file data {data}");
        Assert.Equal(scheme, ck.MatchingScheme);
        Assert.Equal(ck.TensorBytes, ck.MatchingSchemeBytes);
        // safetensors data is packed; GGUF pads each tensor to its alignment (32).
        Assert.InRange(data - ck.TensorBytes, 0, file.EndsWith(".gguf") ? 32L * ck.Tensors : 0);
        Assert.Equal(new FileInfo(weightsFile).Length, ck.FileBytes);
    }

    [Theory]
    [InlineData("scout-tiny")]
    [InlineData("maverick-tiny")]
    public void ConfigAloneGivesTheSameBytesAsTheFiles(string model)
    {
        var c = Llama4Config.FromJsonFile(Fixtures.Text(model, "config.json"));
        using var f32 = Checkpoint.Open(Fixtures.Text(model, "model.safetensors"));
        using var bf16 = Checkpoint.Open(Fixtures.Text(model, "model-bf16.safetensors"));
        Assert.Equal(f32.Tensors.Values.Sum(t => t.ByteLength), MemoryPlanner.Weights(QuantScheme.F32, c, null).TextBytes);
        Assert.Equal(bf16.Tensors.Values.Sum(t => t.ByteLength), MemoryPlanner.Weights(QuantScheme.BF16, c, null).TextBytes);
        var counts = MemoryPlanner.CountParameters(TensorInventory.FromConfig(c), c);
        Assert.Equal(ParameterCount.Of(f32).Total, counts.Total);
        Assert.Equal(ParameterCount.Of(f32).ActivePerToken, counts.ActivePerToken);
    }

    [Theory]
    [InlineData("scout-tiny", "model.safetensors")]
    [InlineData("scout-tiny", "model-bf16.safetensors")]
    [InlineData("maverick-tiny", "model.safetensors")]
    [InlineData("maverick-tiny", "model.gguf")]
    public void PlannerAgreesWithTheLoadedEngine(string model, string file)
    {
        using var m = Llama4Model.Load(Fixtures.Text(model, file), Fixtures.Text(model, "config.json"));
        var c = m.Config;
        var w = m.Weights;
        // What the engine maps: every matrix it multiplies with, the embedding table, and its float copies of the norms.
        long mapped = w.Embedding.ByteLength + w.Output.ByteSize + w.FinalNorm.Length * 4L;
        foreach (var l in w.Layers)
        {
            mapped += l.Q.ByteSize + l.K.ByteSize + l.V.ByteSize + l.O.ByteSize + (l.AttentionNorm.Length + l.FfnNorm.Length) * 4L;
            foreach (var ff in new[] { l.Dense, l.SharedExpert }.Concat(l.Experts ?? []).OfType<FeedForward>())
                mapped += ff.Gate.ByteSize + ff.Up.ByteSize + ff.Down.ByteSize;
            mapped += l.Router?.ByteSize ?? 0;
        }
        var scheme = file.Contains("bf16") ? QuantScheme.BF16 : QuantScheme.F32;
        long planned = file.EndsWith(".gguf") ? MemoryPlanner.WeightsAsGgufF32(c, m.Checkpoint!.Find("rope_freqs.weight") != null).TextBytes
                                              : MemoryPlanner.Weights(scheme, c, null).TextBytes;
        long ropeFreqs = m.Checkpoint!.Find("rope_freqs.weight")?.ByteLength ?? 0;
        output.WriteLine($"{model}/{file}: engine maps {mapped:N0} bytes (+{ropeFreqs} rope_freqs), planner {planned:N0}");
        // The engine keeps its norms as float copies (bf16 files: 4 bytes instead of 2), so allow the stated 2 %.
        Assert.InRange(Math.Abs(planned - (mapped + ropeFreqs)) / (double)planned, 0, 0.02);

        var ids = Scout.Cli.Commands.LogitsCommand.ReadTokens(Fixtures.Text(model, "tokens.json"));
        foreach (int context in new[] { ids.Length, 4 * ids.Length, 3 })
            Assert.Equal(m.CreateCache(context).CapacityBytes, KvCachePlan.EngineBytes(c, context));
        // After a full prefill the cache has really allocated what the planner says, for every K/V type this head_dim allows.
        foreach (var type in KvType.All.Where(t => c.HeadDim % t.BlockElements == 0))
        {
            using var cache = m.CreateCache(ids.Length, type, type);
            m.Forward(ids, cache, new float[c.VocabSize], LogitsMode.Last);
            Assert.Equal(KvCachePlan.EngineBytes(c, ids.Length, 1, type, type), cache.AllocatedBytes);
        }
    }
}
