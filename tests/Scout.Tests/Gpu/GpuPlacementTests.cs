using Microsoft.Extensions.AI;
using Scout.Backends;
using Scout.Cli.Commands;
using Scout.Gpu;
using Scout.Model;
using Scout.Planning;
using Xunit.Abstractions;

namespace Scout.Tests.Gpu;

/// <summary>
/// Placement on the GPU backend (--gpu-layers, --cpu-moe, --n-cpu-moe), the device-resident forward pass, and the
/// plan's device bytes against what the backend allocates — on ILGPU's CPU accelerator.
/// </summary>
public class GpuPlacementTests(ITestOutputHelper output)
{
    private static GpuBackend Emulated() => new(Environment.GetEnvironmentVariable("SCOUT_TEST_GPU") == "cuda" ? GpuKind.Cuda : GpuKind.CpuEmulated, 0, new CpuBackend(2));

    private static Llama4Model Load(GpuBackend gpu, string model, LoadOptions options)
        => Llama4Model.Load(Fixtures.Text(model, "model.gguf"), Fixtures.Text(model, "config.json"), options: options, backend: gpu, ownsBackend: true);

    /// <summary>llama.cpp's -ngl: the last N layers on the device; the head only when N exceeds the layer count.</summary>
    [Theory]
    [InlineData(0, 0, false)]
    [InlineData(2, 0, true)]
    [InlineData(2, 3, false)]
    [InlineData(4, 1, true)]
    [InlineData(999, 3, false)]
    public void GpuLayersPlaceTheLastLayersOnTheDeviceAndKeepTheLogits(int gpuLayers, int hostExpertLayers, bool decode)
    {
        var gpu = Emulated();
        using var m = Load(gpu, "maverick-tiny", new LoadOptions { GpuLayers = gpuLayers, HostExpertLayers = hostExpertLayers });
        var c = m.Config;
        var place = m.Weights.Placement;
        Assert.Equal(Math.Max(0, c.NumLayers - gpuLayers), place.FirstDeviceLayer);
        for (int i = 0; i < c.NumLayers; i++)
        {
            var l = m.Weights.Layers[i];
            bool device = i >= c.NumLayers - gpuLayers;
            Assert.Equal(device, l.Q is GpuMatrix);
            Assert.Equal(device, l.O is GpuMatrix);
            if (l.Experts is null) continue;
            Assert.Equal(device, l.SharedExpert!.Down is GpuMatrix);
            Assert.All(l.Experts, e => Assert.Equal(device && i >= hostExpertLayers, e.Gate is GpuMatrix));
        }
        Assert.Equal(gpuLayers > c.NumLayers, m.Weights.Output is GpuMatrix);
        Assert.Equal(gpuLayers > c.NumLayers, m.Weights.EmbeddingMatrix is GpuMatrix);
        var ids = LogitsCommand.ReadTokens(Fixtures.Text("maverick-tiny", "tokens.json"));
        double diff = LogitAssert.Close(LogitsCommand.Compute(m, ids, decode), Fixtures.ReadF32(Fixtures.Text("maverick-tiny", "logits.f32")), c.VocabSize);
        output.WriteLine($"-ngl {gpuLayers}, --n-cpu-moe {hostExpertLayers}: {place.Describe()}; max |Δ| = {diff:g3}");
    }

    /// <summary>
    /// A decode step with everything on the device moves only the token id and position tables up, and the logits and
    /// the step's K/V rows (the host cache's write-through copy) down: the residual stream, Q/K/V and the FFN
    /// activations never leave the device.
    /// </summary>
    [Fact]
    public void ADecodeStepKeepsActivationsOnTheDevice()
    {
        var gpu = Emulated();
        using var m = Load(gpu, "scout-tiny", new LoadOptions());
        var c = m.Config;
        Assert.Equal(0, gpu.HostMatrices);
        foreach (var p in typeof(ForwardWorkspace).GetProperties())
            if (p.GetValue(m.Workspace) is BufferView { Length: > 0 } v) Assert.IsType<DeviceBuffer>(v.Buffer);
        var ids = LogitsCommand.ReadTokens(Fixtures.Text("scout-tiny", "tokens.json"));
        var cache = m.CreateCache(64);
        var logits = new float[c.VocabSize];
        m.Forward(ids, cache, logits, LogitsMode.Last);
        m.ForwardBatch([ids[0]], [cache], logits);
        long up = gpu.BytesToDevice, down = gpu.BytesToHost;
        m.ForwardBatch([ids[1]], [cache], logits);
        long tables = 2L * (c.HeadDim / 2) * 4 + (c.AttnTemperatureTuning ? 4 : 0);
        Assert.Equal(4 + tables, gpu.BytesToDevice - up);
        Assert.Equal(c.VocabSize * 4L + c.NumLayers * 2L * c.KvDim * 4, gpu.BytesToHost - down);
    }

    /// <summary>The plan's device bytes (weights, norm vectors, workspace, K/V) are what the backend allocates, for several placements.</summary>
    [Theory]
    [InlineData("scout-tiny", 999, 0, "f16")]
    [InlineData("maverick-tiny", 999, 2, "f32")]
    [InlineData("maverick-tiny", 3, 0, "f16")]
    [InlineData("maverick-tiny", 1, 4, "f16")]
    [InlineData("scout-tiny", 2, 0, "bf16")]
    public void PlanDeviceBytesMatchWhatTheBackendAllocates(string model, int gpuLayers, int hostExpertLayers, string kv)
    {
        const int rows = 9, context = 32, sequences = 2;
        var type = KvType.Parse(kv);
        var gpu = Emulated();
        var options = new LoadOptions { GpuLayers = gpuLayers, HostExpertLayers = hostExpertLayers };
        using var m = Load(gpu, model, options);
        m.ReserveRows(rows);
        var caches = Enumerable.Range(0, sequences).Select(_ => m.CreateCache(context, type, type)).ToList();
        var ids = LogitsCommand.ReadTokens(Fixtures.Text(model, "tokens.json"));
        foreach (var cache in caches) m.Forward(ids.AsSpan(0, Math.Min(rows, ids.Length)), cache, new float[m.Config.VocabSize], LogitsMode.Last);

        var plan = DevicePlan.For(m.Config, m.Checkpoint!.Tensors.Values, Llama4Weights.PlacementFor(m.Config, gpu, options), GpuBackend.Uploads,
            rows, context, sequences, type, type);
        output.WriteLine($"{model} -ngl {gpuLayers} --n-cpu-moe {hostExpertLayers}: plan {plan.WeightBytes}/{plan.VectorBytes}/{plan.WorkspaceBytes}/{plan.KvBytes}, " +
                         $"engine {gpu.UploadedBytes}/{gpu.VectorBytes}/{gpu.WorkspaceBytes}/{gpu.KvBytes}");
        Assert.Equal(plan.WeightBytes, gpu.UploadedBytes);
        Assert.Equal(plan.VectorBytes, gpu.VectorBytes);
        Assert.Equal(plan.WorkspaceBytes, gpu.WorkspaceBytes);
        Assert.Equal(plan.KvBytes, gpu.KvBytes);
        Assert.Equal(m.Checkpoint.Tensors.Values.Sum(t => t.ByteLength), plan.WeightBytes + plan.HostWeightBytes + VectorFileBytes(m));
        foreach (var cache in caches) cache.Dispose();
    }

    /// <summary>File bytes of the 1-D tensors (norms), which the plan counts as f32 vectors rather than weights.</summary>
    private static long VectorFileBytes(Llama4Model m)
        => m.Checkpoint!.Tensors.Values.Where(t => t.Rank == 1 && !t.Name.Contains("rope_freqs")).Sum(t => t.ByteLength);

    /// <summary><c>scout plan --gpu-layers --n-cpu-moe</c> prints the bytes the engine allocates for that file and placement.</summary>
    [Fact]
    public void ThePlanCommandPrintsWhatTheEngineAllocates()
    {
        var (code, json, err) = ScoutCli.Run("plan", "--model", Fixtures.Text("maverick-tiny", "model.gguf"), "--config", Fixtures.Text("maverick-tiny", "config.json"),
            "--context", "32", "--parallel", "2", "--batch", "9", "--kv-type", "f16", "--gpu-layers", "3", "--n-cpu-moe", "2", "--json");
        Assert.True(code == 0, err);
        var device = System.Text.Json.JsonDocument.Parse(json).RootElement.GetProperty("device");
        var gpu = Emulated();
        using var m = Load(gpu, "maverick-tiny", new LoadOptions { GpuLayers = 3, HostExpertLayers = 2 });
        m.ReserveRows(9);
        var ids = LogitsCommand.ReadTokens(Fixtures.Text("maverick-tiny", "tokens.json"));
        using var a = m.CreateCache(32, KvType.F16, KvType.F16);
        using var b = m.CreateCache(32, KvType.F16, KvType.F16);
        m.Forward(ids.AsSpan(0, 2), a, new float[m.Config.VocabSize], LogitsMode.Last);
        m.Forward(ids.AsSpan(0, 2), b, new float[m.Config.VocabSize], LogitsMode.Last);
        Assert.Equal(gpu.UploadedBytes, device.GetProperty("weightBytes").GetInt64());
        Assert.Equal(gpu.VectorBytes, device.GetProperty("vectorBytes").GetInt64());
        Assert.Equal(gpu.WorkspaceBytes, device.GetProperty("workspaceBytes").GetInt64());
        Assert.Equal(gpu.KvBytes, device.GetProperty("kvBytes").GetInt64());
        var (bad, _, badErr) = ScoutCli.Run("plan", "--model", "scout", "--gpu-layers", "10");
        Assert.Equal(1, bad);
        Assert.Contains("need a checkpoint file", badErr);
    }

    [Fact]
    public void TheLogitsCommandTakesGpuLayersOnTheEmulatedDevice()
    {
        string outFile = Path.Combine(Path.GetTempPath(), $"scout-ngl-{Guid.NewGuid():N}.f32");
        try
        {
            var (code, _, err) = ScoutCli.Run("logits", "--model", Fixtures.Text("maverick-tiny", "model.gguf"), "--config", Fixtures.Text("maverick-tiny", "config.json"),
                "--tokens", Fixtures.Text("maverick-tiny", "tokens.json"), "--out", outFile, "--device", "ilgpu-cpu", "--gpu-layers", "3", "--n-cpu-moe", "2");
            Assert.True(code == 0, err);
            var c = Llama4Config.FromJsonFile(Fixtures.Text("maverick-tiny", "config.json"));
            LogitAssert.Close(Fixtures.ReadF32(outFile), Fixtures.ReadF32(Fixtures.Text("maverick-tiny", "logits.f32")), c.VocabSize);
            var (bad, _, badErr) = ScoutCli.Run("logits", "--model", Fixtures.Text("maverick-tiny", "model.gguf"), "--tokens", Fixtures.Text("maverick-tiny", "tokens.json"),
                "--out", outFile, "--device", "ilgpu-cpu", "--gpu-layers", "-1");
            Assert.Equal(1, bad);
            Assert.Contains("--gpu-layers must not be negative", badErr);
        }
        finally
        {
            File.Delete(outFile);
        }
    }
}

/// <summary>The engine (scheduler, prefix cache, several sequences per step) on the GPU backend answers as on the CPU.</summary>
public class GpuEngineTests
{
    private static async Task<string[]> Replies(Llama4Model model)
    {
        using var engine = new Scout.Generation.ScoutEngine(model, new Scout.Generation.TokenizerBundle(Scout.Tests.Generation.StandInTokenizer.Instance, Scout.Tests.Generation.StandInChatFormat.Instance),
            new Scout.Generation.SchedulerOptions { MaxContext = 128, Parallel = 2 });
        var chat = Scout.Generation.ScoutEngineChatExtensions.AsChatClient(engine);
        var options = new Microsoft.Extensions.AI.ChatOptions { MaxOutputTokens = 6, Temperature = 0 };
        // Two at once (one batch step for both), then a repeat that the prefix cache shares from the first.
        var both = await Task.WhenAll(chat.GetResponseAsync("Why is the sky blue?", options), chat.GetResponseAsync("Name a prime.", options));
        var again = await chat.GetResponseAsync("Why is the sky blue? Say more.", options);
        return [both[0].Text, both[1].Text, again.Text];
    }

    [Fact]
    public async Task GreedyRepliesMatchTheCpuBackend()
    {
        string file = Fixtures.Text("scout-tiny", "model.gguf"), config = Fixtures.Text("scout-tiny", "config.json");
        string[] cpu;
        using (var m = Llama4Model.Load(file, config)) cpu = await Replies(m);
        var gpu = new GpuBackend(Environment.GetEnvironmentVariable("SCOUT_TEST_GPU") == "cuda" ? GpuKind.Cuda : GpuKind.CpuEmulated, 0, new CpuBackend(2));
        using var g = Llama4Model.Load(file, config, options: new LoadOptions { GpuLayers = 3 }, backend: gpu, ownsBackend: true);
        Assert.Equal(cpu, await Replies(g));
        Assert.True(gpu.KvBytes > 0);
    }
}
