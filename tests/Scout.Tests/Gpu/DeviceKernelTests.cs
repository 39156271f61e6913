using ILGPU;
using ILGPU.Runtime;
using Scout.Backends;
using Scout.Gpu;
using Scout.Kernels.Quant;
using Scout.Model;
using Scout.Planning;
using Scout.Tensors;

namespace Scout.Tests.Gpu;

/// <summary>One emulated GPU backend shared by the kernel tests (compiling the kernels is the slow part).</summary>
public sealed class EmulatedGpu : IDisposable
{
    public GpuBackend Gpu { get; } = new(Environment.GetEnvironmentVariable("SCOUT_TEST_GPU") == "cuda" ? GpuKind.Cuda : GpuKind.CpuEmulated, 0, new CpuBackend(2));
    public CpuBackend Cpu { get; } = new(2);

    public void Dispose()
    {
        Gpu.Dispose();
        Cpu.Dispose();
    }
}

/// <summary>
/// Each device kernel of the GPU backend against the CPU backend's operation on small shapes (on ILGPU's CPU
/// accelerator in CI; SCOUT_TEST_GPU=cuda runs them on a GPU).
/// </summary>
public unsafe class DeviceKernelTests(EmulatedGpu fixture) : IClassFixture<EmulatedGpu>
{
    private readonly GpuBackend _gpu = fixture.Gpu;
    private readonly CpuBackend _cpu = fixture.Cpu;

    private static float[] Random(int n, int seed, float scale = 1)
    {
        var rng = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return v;
    }

    private static WorkspaceBuffer Spec(long n, bool ints = false) => new("test", "test", n, 4, Integers: ints);

    /// <summary>A buffer of <paramref name="b"/> holding <paramref name="values"/>.</summary>
    private static BufferView On(IBackend b, float[] values)
    {
        var v = b.Allocate(Spec(values.Length)).All;
        b.Upload(values, v);
        return v;
    }

    private static float[] Read(IBackend b, BufferView v)
    {
        var r = new float[v.Length];
        b.Download(v, r);
        return r;
    }

    private static void Close(float[] expected, float[] actual, float tol)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tol * (1 + Math.Abs(expected[i])), $"element {i}: expected {expected[i]}, got {actual[i]}");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void RmsNormMatchesTheCpu(bool weighted)
    {
        const int rows = 3, dim = 64;
        var x = Random(rows * dim, 1, 3);
        float[]? w = weighted ? Random(dim, 2) : null;
        var c = On(_cpu, x);
        var g = On(_gpu, x);
        _cpu.RmsNorm(c, w, 1e-5f, rows, dim, c);
        _gpu.RmsNorm(g, w, 1e-5f, rows, dim, g);
        Close(c.HostFloats.ToArray(), Read(_gpu, g), 1e-5f);
    }

    [Fact]
    public void RopeSwiGluAddAndScaleMatchTheCpu()
    {
        const int rows = 2, heads = 3, hd = 16, half = hd / 2;
        var x = Random(rows * heads * hd, 3);
        var cos = Random(rows * half, 4);
        var sin = Random(rows * half, 5);
        var (cx, gx) = (On(_cpu, x), On(_gpu, x));
        _cpu.Rope(cx, rows, heads, hd, On(_cpu, cos), On(_cpu, sin));
        _gpu.Rope(gx, rows, heads, hd, On(_gpu, cos), On(_gpu, sin));
        Close(cx.HostFloats.ToArray(), Read(_gpu, gx), 1e-6f);

        int[] positions = [0, 70000];
        var freqs = Random(half, 11);
        var (cc, cs, gc, gs) = (On(_cpu, new float[rows * half]), On(_cpu, new float[rows * half]), On(_gpu, new float[rows * half]), On(_gpu, new float[rows * half]));
        _cpu.RopeTables(positions, freqs, cc, cs);
        _gpu.RopeTables(positions, freqs, gc, gs);
        Assert.Equal(cc.HostFloats.ToArray(), Read(_gpu, gc));
        Assert.Equal(cs.HostFloats.ToArray(), Read(_gpu, gs));

        var gate = Random(300, 6, 4);
        var up = Random(300, 7);
        var (cg, gg) = (On(_cpu, gate), On(_gpu, gate));
        _cpu.SwiGlu(cg, On(_cpu, up));
        _gpu.SwiGlu(gg, On(_gpu, up));
        Close(cg.HostFloats.ToArray(), Read(_gpu, gg), 1e-5f);

        var delta = Random(300, 8);
        _cpu.Add(cg, On(_cpu, delta));
        _gpu.Add(gg, On(_gpu, delta));
        Close(cg.HostFloats.ToArray(), Read(_gpu, gg), 1e-5f);

        var scales = Random(3, 9);
        _cpu.ScaleRows(cg, 3, 100, On(_cpu, scales));
        _gpu.ScaleRows(gg, 3, 100, On(_gpu, scales));
        Close(cg.HostFloats.ToArray(), Read(_gpu, gg), 1e-5f);
    }

    [Theory]
    [InlineData(TensorType.F32)]
    [InlineData(TensorType.F16)]
    [InlineData(TensorType.BF16)]
    [InlineData(TensorType.Q8_0)]
    [InlineData(TensorType.Q4_0)]
    [InlineData(TensorType.Q4_K)]
    [InlineData(TensorType.Q6_K)]
    public void EmbeddingLookupDecodesEachBlockTypeAsTheCpu(TensorType type)
    {
        const int vocab = 5, d = 256;
        var table = Random(vocab * d, 10);
        var bytes = new byte[type.RowBytes(d) * vocab];
        Quantizer.QuantizeRows(type, table, vocab, d, bytes);
        int[] tokens = [4, 0, 2, 2];
        fixed (byte* p = bytes)
        {
            var tensor = new WeightTensor("token_embd.weight", type, [vocab, d], p, bytes.Length, "test");
            var head = _gpu.RowMajor(type, p, vocab, d);
            var weights = new Llama4Weights { Embedding = tensor, FinalNorm = [], Output = head, Layers = [], EmbeddingMatrix = head, Placement = Placement.All(0) };
            var c = _cpu.Allocate(Spec(tokens.Length * d)).All;
            var g = _gpu.Allocate(Spec(tokens.Length * d)).All;
            _cpu.Embed(weights, tokens, c);
            _gpu.Embed(weights, tokens, g);
            Close(c.HostFloats.ToArray(), Read(_gpu, g), 1e-6f);
            var ex = Assert.Throws<ArgumentException>(() => _gpu.Embed(weights, [vocab], g.Take(d)));
            Assert.Contains("outside the vocabulary", ex.Message);
        }
    }

    /// <summary>A workspace-like set of buffers for the MoE tests (the layout's MoE buffers for n rows).</summary>
    private static ForwardWorkspace MoeWorkspace(IBackend b, int experts, int k, int d, int f, int rows)
    {
        var c = Llama4Config.FromJsonFile(Fixtures.Text("scout-tiny", "config.json")) with
        {
            HiddenSize = d, IntermediateSize = f, IntermediateSizeMlp = f, NumExperts = experts, TopK = k,
        };
        return new ForwardWorkspace(c, rows, b);
    }

    [Theory]
    [InlineData(TensorType.F32, 2, 1e-4f)]
    [InlineData(TensorType.F16, 1, 1e-4f)]
    [InlineData(TensorType.Q8_0, 2, 2e-2f)]
    [InlineData(TensorType.Q4_K, 1, 2e-2f)]
    public void GroupedExpertProductRoutesAndSumsAsTheCpu(TensorType type, int k, float tol)
    {
        const int experts = 4, d = 256, f = 256, n = 3;
        var gate = Random(experts * f * d, 20, 0.1f);
        var up = Random(experts * f * d, 21, 0.1f);
        var down = Random(experts * d * f, 22, 0.1f);
        byte[] Q(float[] w, int rows, int cols)
        {
            var b = new byte[type.RowBytes(cols) * rows];
            Quantizer.QuantizeRows(type, w, rows, cols, b);
            return b;
        }
        var (gq, uq, dq) = (Q(gate, experts * f, d), Q(up, experts * f, d), Q(down, experts * d, f));
        var x = Random(n * d, 23);
        var logits = Random(n * experts, 24);
        logits[1] = logits[2] = 5f;   // a tie in row 0: the lower index wins, as the CPU's top-k
        var bias = Random(n * d, 25);
        fixed (byte* gp = gq, up_ = uq, dp = dq)
        {
            var cpuExperts = _cpu.StackedExperts(type, gp, type, up_, type, dp, experts, f, d);
            var gpuExperts = _gpu.StackedExperts(type, gp, type, up_, type, dp, experts, f, d);
            Assert.All(gpuExperts, e => Assert.IsType<GpuMatrix>(e.Down));
            var cws = MoeWorkspace(_cpu, experts, k, d, f, n);
            var gws = MoeWorkspace(_gpu, experts, k, d, f, n);
            var co = On(_cpu, bias);
            var go = On(_gpu, bias);
            _cpu.RoutedExperts(cpuExperts, On(_cpu, logits), On(_cpu, x), n, k, cws, co);
            _gpu.RoutedExperts(gpuExperts, On(_gpu, logits), On(_gpu, x), n, k, gws, go);
            var expected = co.HostFloats.ToArray();
            var actual = Read(_gpu, go);
            float scale = expected.Max(Math.Abs);
            for (int i = 0; i < expected.Length; i++) Assert.InRange(Math.Abs(expected[i] - actual[i]), 0, tol * scale);

            var choices = new int[n * k];
            _gpu.Synchronize();
            GpuBackend.I(gws.Choice).SubView(0, n * k).CopyToCPU(ref choices[0], n * k);
            Assert.Equal(cws.Choice.HostInts[..(n * k)].ToArray(), choices);
            Assert.Equal(1, choices[0]);

            // Experts uploaded one by one (a load-time quantized model) take the per-row path: same result.
            var separate = new FeedForward[experts];
            long gb = type.RowBytes(d) * f, db = type.RowBytes(f) * d;
            for (int e = 0; e < experts; e++)
                separate[e] = new FeedForward(_gpu.RowMajor(type, gp + e * gb, f, d), _gpu.RowMajor(type, up_ + e * gb, f, d), _gpu.RowMajor(type, dp + e * db, d, f));
            var go2 = On(_gpu, bias);
            _gpu.RoutedExperts(separate, On(_gpu, logits), On(_gpu, x), n, k, gws, go2);
            Close(actual, Read(_gpu, go2), 1e-5f);
        }
    }

    /// <summary>
    /// Attention over the device K/V cache against the CPU backend for two sequences of different lengths: a prefill
    /// that crosses the chunk boundary (ring layers), then decode steps; the host caches the GPU wrote through must
    /// hold what the CPU's hold, and a fork continued on the device (uploaded from the host copy) must match too.
    /// </summary>
    [Theory]
    [InlineData("f32", 0)]
    [InlineData("f16", 0)]
    [InlineData("f16", 3)]
    [InlineData("bf16", 0)]
    public void AttentionOverTheDeviceCacheMatchesTheCpu(string kvType, int layer)
    {
        var c = Llama4Config.FromJsonFile(Fixtures.Text("scout-tiny", "config.json"));
        var type = KvType.Parse(kvType);
        int qDim = c.QDim, kvDim = c.KvDim;
        bool chunked = c.UsesRope(layer);
        using var cpuA = new KvCache(c, 40, type, type);
        using var cpuB = new KvCache(c, 40, type, type);
        using var gpuA = new KvCache(c, 40, type, type);
        using var gpuB = new KvCache(c, 40, type, type);
        var rowsC = new BatchRows(16);
        var rowsG = new BatchRows(16);
        int seed = 30;

        void Step(int na, int nb, KvCache ca, KvCache cb, KvCache ga, KvCache gb)
        {
            int n = na + nb;
            var q = Random(n * qDim, seed++);
            var k = Random(n * kvDim, seed++);
            var v = Random(n * kvDim, seed++);
            var segC = new List<BatchSegment> { new(ca, na), new(cb, nb) };
            var segG = new List<BatchSegment> { new(ga, na), new(gb, nb) };
            rowsC.Plan(segC);
            rowsG.Plan(segG);
            var co = _cpu.Allocate(Spec(n * qDim)).All;
            var go = _gpu.Allocate(Spec(n * qDim)).All;
            _cpu.Attention(c, layer, chunked, On(_cpu, q), On(_cpu, k), On(_cpu, v), rowsC, co);
            _gpu.Attention(c, layer, chunked, On(_gpu, q), On(_gpu, k), On(_gpu, v), rowsG, go);
            Close(co.HostFloats.ToArray(), Read(_gpu, go), 1e-4f);
            foreach (var s in segC) s.Cache.Length += s.Count;
            foreach (var s in segG) s.Cache.Length += s.Count;
        }

        Step(11, 3, cpuA, cpuB, gpuA, gpuB);   // crosses the chunk of 8 in sequence A
        for (int i = 0; i < 3; i++) Step(1, 1, cpuA, cpuB, gpuA, gpuB);

        var (kc, vc, kg, vg) = (new float[kvDim], new float[kvDim], new float[kvDim], new float[kvDim]);
        for (int p = Math.Max(0, gpuA.Length - (chunked ? c.AttentionChunkSize : gpuA.Length)); p < gpuA.Length; p++)
        {
            cpuA.Read(layer, p, kc, vc);
            gpuA.Read(layer, p, kg, vg);
            Assert.Equal(kc, kg);
            Assert.Equal(vc, vg);
        }

        // A fork the device has never seen, then a shared copy: the device rebuilds them from the host rows.
        using var cpuFork = cpuA.Fork();
        using var gpuFork = gpuA.Fork();
        Step(2, 1, cpuFork, cpuB, gpuFork, gpuB);
        gpuB.ShareFrom(gpuA);
        cpuB.ShareFrom(cpuA);
        Step(1, 1, cpuA, cpuB, gpuA, gpuB);
        gpuA.TruncateTo(gpuA.Length - 1);
        cpuA.TruncateTo(cpuA.Length - 1);
        if (!chunked) Step(1, 2, cpuA, cpuB, gpuA, gpuB);
    }

    [Fact]
    public void CacheTypesWithoutADeviceKernelAreAClearError()
    {
        var c = Llama4Config.FromJsonFile(Fixtures.Text("scout-tiny", "config.json")) with { HeadDim = 32 };   // whole q8_0 blocks per head
        using var cache = new KvCache(c, 16, KvType.Parse("q8_0"), KvType.Parse("f16"));
        var rows = new BatchRows(1);
        rows.Plan([new BatchSegment(cache, 1)]);
        var q = _gpu.Allocate(Spec(c.QDim)).All;
        var kv = _gpu.Allocate(Spec(c.KvDim)).All;
        var ex = Assert.Throws<NotSupportedException>(() => _gpu.Attention(c, 0, true, q, kv, kv, rows, q));
        Assert.Contains("f32, f16 or bf16", ex.Message);
        Assert.Contains("q8_0", ex.Message);
    }
}
