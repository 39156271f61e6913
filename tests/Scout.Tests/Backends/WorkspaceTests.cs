using Scout.Backends;
using Scout.Cli.Commands;
using Scout.Model;
using Scout.Planning;
using Xunit.Abstractions;

namespace Scout.Tests.Backends;

/// <summary>The forward workspace: what the planner prints is what the model allocates, and decoding allocates nothing.</summary>
public class WorkspaceTests(ITestOutputHelper output)
{
    /// <summary>Bytes of every array a workspace really holds, found by reflection (so a buffer added without the layout is caught).</summary>
    private static long AllocatedBytes(ForwardWorkspace ws)
    {
        long bytes = 0;
        foreach (var p in typeof(ForwardWorkspace).GetProperties())
        {
            var value = p.GetValue(ws);
            if (value is BufferView v) bytes += v.Buffer.Length * 4L;
            else if (value is int[] i) bytes += i.Length * 4L;
            else if (value is BatchRows rows) bytes += 3L * rows.Capacity * 4;
        }
        return bytes;
    }

    [Theory]
    [InlineData("scout-tiny", 1)]
    [InlineData("scout-tiny", 37)]
    [InlineData("maverick-tiny", 512)]
    public void PlanCountsWhatTheWorkspaceAllocates(string model, int rows)
    {
        var c = Llama4Config.FromJsonFile(Fixtures.Text(model, "config.json"));
        using var cpu = new CpuBackend(1);
        var ws = new ForwardWorkspace(c, rows, cpu);
        var plan = EngineBuffers.ForForward(c, rows, 4096, 1, 2);
        long planned = plan.Buffers.Where(b => b.Phase == "workspace").Sum(b => b.Bytes);
        Assert.Equal(AllocatedBytes(ws), planned);
        Assert.Equal(ws.Bytes, planned);
        Assert.True(plan.PeakBytes > planned);
    }

    [Fact]
    public void WorkspaceGrowsOnlyForALargerBatch()
    {
        using var m = Llama4Model.Load(Fixtures.Text("scout-tiny", "model.safetensors"));
        var ids = LogitsCommand.ReadTokens(Fixtures.Text("scout-tiny", "tokens.json"));
        var cache = m.CreateCache(64);
        m.Forward(ids, cache, new float[m.Config.VocabSize], LogitsMode.Last);
        var afterPrefill = m.Workspace;
        Assert.Equal(ids.Length, afterPrefill.Rows);
        m.ForwardBatch([ids[0]], [cache], new float[m.Config.VocabSize]);
        Assert.Same(afterPrefill, m.Workspace);
    }

    [Theory]
    [InlineData("scout-tiny", "model.safetensors")]
    [InlineData("maverick-tiny", "model.gguf")]
    public void DecodeStepsAllocateNothingOnTheCallingThread(string model, string file)
    {
        using var m = Llama4Model.Load(Fixtures.Text(model, file), Fixtures.Text(model, "config.json"));
        var ids = LogitsCommand.ReadTokens(Fixtures.Text(model, "tokens.json"));
        var caches = new[] { m.CreateCache(64), m.CreateCache(64) };
        var logits = new float[2 * m.Config.VocabSize];
        m.ReserveRows(ids.Length);
        foreach (var cache in caches) m.Forward(ids, cache, logits.AsSpan(0, m.Config.VocabSize), LogitsMode.Last);
        int[] step = [ids[1], ids[2]];
        for (int i = 0; i < 3; i++) m.ForwardBatch(step, caches, logits);   // warm: JIT, pools, cache growth
        GC.Collect(2, GCCollectionMode.Forced, true);   // a gen-2 GC between steps (pools trimmed) must not matter
        GC.WaitForPendingFinalizers();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 5; i++) m.ForwardBatch(step, caches, logits);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        output.WriteLine($"{model}/{file}: {allocated} bytes over 5 batch-2 decode steps");
        Assert.Equal(0, allocated);
    }

    /// <summary>Single-sequence decode through <see cref="Llama4Model.Forward"/> (the bench's tg loop and the CLI's
    /// logits path), with the products on 1 and 2 threads.</summary>
    [Theory]
    [InlineData("scout-tiny", "model.safetensors", 1)]
    [InlineData("maverick-tiny", "model.gguf", 1)]
    [InlineData("maverick-tiny", "model.gguf", 2)]
    public void SingleSequenceForwardStepsAllocateNothingOnTheCallingThread(string model, string file, int threads)
    {
        using var cpu = new CpuBackend(threads);
        using var m = Llama4Model.Load(Fixtures.Text(model, file), Fixtures.Text(model, "config.json"), backend: cpu);
        var ids = LogitsCommand.ReadTokens(Fixtures.Text(model, "tokens.json"));
        var cache = m.CreateCache(64);
        var logits = new float[m.Config.VocabSize];
        m.Forward(ids, cache, logits, LogitsMode.Last);
        for (int i = 0; i < 3; i++) m.Forward(ids.AsSpan(i, 1), cache, logits, LogitsMode.Last);   // warm: JIT, pools
        GC.Collect(2, GCCollectionMode.Forced, true);
        GC.WaitForPendingFinalizers();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 3; i < 8; i++) m.Forward(ids.AsSpan(i % ids.Length, 1), cache, logits, LogitsMode.Last);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        output.WriteLine($"{model}/{file}, {threads} threads: {allocated} bytes over 5 single-token Forward steps");
        Assert.Equal(0, allocated);
    }
}
