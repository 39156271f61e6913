using System.Diagnostics;
using System.Runtime.InteropServices;
using LLama;
using LLama.Common;
using LLama.Native;
using Scout.Bench;
using Scout.Diagnostics;
using Scout.Kernels;
using Scout.Kernels.Quant;
using Scout.Model;
using Scout.Tensors;

// Scout.Bench: side-by-side Scout vs llama.cpp (LLamaSharp 0.30.0 CPU backend) on the same GGUF, plus kernel sweeps.
//   gen     --shape bench-1b|bench-4b|tiny --type Q4_0|Q8_0|Q4_K_M --out file.gguf
//   compare --model file.gguf [--threads N] [--prompt 512] [--gen 128] [--reps 3] [--avx avx512|avx2]
//   kernels [--threads N] [--types Q4_0,..] [--paths all|rowmajor|repacked] GB/s of each block kernel and path on a matrix ≫ L3, pool dispatch cost
//   bdn                                   BenchmarkDotNet run of the decode kernels
//   profile --model file.gguf [--threads N]  per-op time of decode steps in Scout
//   logits  --model file.gguf [--tokens 24]  Scout's logits vs llama.cpp's on the same file (KL, top-1, max |Δ|)
var opts = Options.Parse(args.Skip(1).ToArray());
switch (args.FirstOrDefault())
{
    case "gen":
    {
        // The product's own generator (`scout synth`): random weights through Scout's quantizers and GGUF writer,
        // so every file llama.cpp loads here is a Scout-written GGUF.
        string shapeName = opts.Get("shape", "bench-1b");
        if (!Scout.Quantization.SynthShape.Presets.TryGetValue(shapeName, out var shape))
            throw new ArgumentException($"unknown shape {shapeName} ({string.Join(", ", Scout.Quantization.SynthShape.Presets.Keys)})");
        string type = opts.Get("type", "Q4_0"), output = opts.Get("out", $"{shapeName}-{type}.gguf");
        var sw = Stopwatch.StartNew();
        Scout.Quantization.SyntheticModel.Write(output, shape, Scout.Quantization.QuantMix.Parse(type), opts.GetInt("seed", 7));
        Console.WriteLine($"wrote {output}: {new FileInfo(output).Length / 1048576.0:F1} MiB in {sw.Elapsed.TotalSeconds:F1} s");
        return 0;
    }
    case "compare":
        return Compare.Run(opts);
    case "kernels":
        KernelSweep.Run(opts.GetInt("threads", Environment.ProcessorCount), opts.Get("types", "Q4_0,Q8_0,Q4_K,Q6_K"), opts.Get("paths", "all"));
        return 0;
    case "batch":
        KernelSweep.Batch(opts.GetInt("threads", 1), opts.Get("types", "Q4_0,Q8_0,Q4_K,Q6_K"), opts.GetInt("rows", 1024), opts.GetInt("cols", 1024),
            opts.Get("ns", "1,2,4,8,16,17,19,32,64,128"));
        return 0;
    case "bdn":
        BenchmarkDotNet.Running.BenchmarkRunner.Run<DecodeKernelBenchmarks>();
        return 0;
    case "logits":
        return LogitsCheck.Run(opts);
    case "profile":
        DecodeProfile.Run(opts);
        return 0;
    default:
        Console.Error.WriteLine("usage: Scout.Bench gen|compare|kernels|bdn|profile [options] (see Program.cs)");
        return 2;
}

internal sealed class Options(Dictionary<string, string> values)
{
    public static Options Parse(string[] a)
    {
        var d = new Dictionary<string, string>();
        for (int i = 0; i < a.Length; i++)
            if (a[i].StartsWith("--")) d[a[i][2..]] = i + 1 < a.Length && !a[i + 1].StartsWith("--") ? a[++i] : "true";
        return new Options(d);
    }

    public string Get(string k, string def) => values.TryGetValue(k, out var v) ? v : def;
    public int GetInt(string k, int def) => values.TryGetValue(k, out var v) ? int.Parse(v) : def;
    public bool Has(string k) => values.ContainsKey(k);
}

/// <summary>Scout and llama.cpp alternating on the same file, same threads: pp then tg, rep by rep.</summary>
internal static class Compare
{
    public static int Run(Options o)
    {
        string path = o.Get("model", "");
        int threads = o.GetInt("threads", Environment.ProcessorCount), pp = o.GetInt("prompt", 512), tg = o.GetInt("gen", 128), reps = o.GetInt("reps", 3);
        var avx = o.Get("avx", "avx512") == "avx2" ? AvxLevel.Avx2 : AvxLevel.Avx512;
        NativeLibraryConfig.All.WithAvx(avx).WithLogCallback((level, message) => { if (level == LLamaLogLevel.Error) Console.Error.Write(message); });

        using var backend = new Scout.Backends.CpuBackend(threads);
        using var scout = Llama4Model.Load(path, backend: backend);
        long active = ModelBenchmark.ActiveBytesPerToken(scout);

        var mp = new ModelParams(path)
        {
            ContextSize = (uint)(Math.Max(pp, tg) + 16),
            BatchSize = (uint)Math.Max(pp, 1),
            UBatchSize = (uint)Math.Max(pp, 1),
            Threads = threads,
            BatchThreads = threads,
            GpuLayerCount = 0,
        };
        LLamaWeights weights;
        try { weights = LLamaWeights.LoadFromFile(mp); }
        catch (Exception e)
        {
            Console.WriteLine($"llama.cpp ({avx}) could not load {path}: {e.Message}");
            return 1;
        }
        using var _w = weights;
        using var ctx = weights.CreateContext(mp);
        var vocab = scout.Config.VocabSize;

        // warm-up both
        ModelBenchmark.PromptOnce(scout, Math.Min(pp, 32));
        ModelBenchmark.GenerateOnce(scout, 8);
        LlamaPrompt(ctx, Math.Min(pp, 32), vocab);
        LlamaGenerate(ctx, 8, vocab);

        bool runScout = o.Get("only", "both") != "llama", runLlama = o.Get("only", "both") != "scout";
        var s = new List<double>[4];
        for (int i = 0; i < 4; i++) s[i] = [];
        for (int r = 0; r < reps; r++)
        {
            if (pp > 0)
            {
                if (runScout) s[0].Add(ModelBenchmark.PromptOnce(scout, pp));
                if (runLlama) s[1].Add(LlamaPrompt(ctx, pp, vocab));
            }
            if (tg > 0)
            {
                if (runScout) s[2].Add(ModelBenchmark.GenerateOnce(scout, tg));
                if (runLlama) s[3].Add(LlamaGenerate(ctx, tg, vocab));
            }
        }
        double bw = MemoryBandwidth.MeasureReadBytesPerSecond(backend.Pool) / 1e9;
        var sp = new ThroughputSample($"pp{pp}", pp, [.. s[0]]);
        var lp = new ThroughputSample($"pp{pp}", pp, [.. s[1]]);
        var st = new ThroughputSample($"tg{tg}", tg, [.. s[2]]);
        var lt = new ThroughputSample($"tg{tg}", tg, [.. s[3]]);
        double bound = bw * 1e9 / active;
        Console.WriteLine($"model {Path.GetFileName(path)}  threads {threads}  scout kernels {QuantizedMatrix.KernelPathName}  llama.cpp backend {avx}");
        Console.WriteLine($"active bytes/token {active / 1048576.0:F1} MiB  measured read bandwidth {bw:F2} GB/s  bound {bound:F1} tok/s");
        Console.WriteLine("| test | Scout tok/s | llama.cpp tok/s | Scout/llama.cpp | Scout % of bound | llama.cpp % of bound |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: |");
        if (pp > 0) Console.WriteLine($"| pp{pp} | {sp.Median:F2} ± {sp.StdDev:F2} | {lp.Median:F2} ± {lp.StdDev:F2} | {sp.Median / lp.Median:F2} | | |");
        if (tg > 0) Console.WriteLine($"| tg{tg} | {st.Median:F2} ± {st.StdDev:F2} | {lt.Median:F2} ± {lt.StdDev:F2} | {st.Median / lt.Median:F2} | {100 * st.Median / bound:F1}% | {100 * lt.Median / bound:F1}% |");
        return 0;
    }

    private static int[] Ids(int n, int vocab, int seed) => ModelBenchmark.Tokens(n, vocab - 3, seed);

    private static double LlamaPrompt(LLamaContext ctx, int n, int vocab)
    {
        var ids = Ids(n, vocab, 1234);
        ctx.NativeHandle.MemoryClear(true);
        var batch = new LLamaBatch();
        for (int i = 0; i < n; i++) batch.Add(ids[i], i, LLamaSeqId.Zero, i == n - 1);
        long t0 = Stopwatch.GetTimestamp();
        var result = ctx.Decode(batch);
        ctx.NativeHandle.Synchronize();
        double tps = n / Stopwatch.GetElapsedTime(t0).TotalSeconds;
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {result}");
        return tps;
    }

    private static double LlamaGenerate(LLamaContext ctx, int n, int vocab)
    {
        var ids = Ids(n, vocab, 99);
        ctx.NativeHandle.MemoryClear(true);
        var batch = new LLamaBatch();
        long t0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < n; i++)
        {
            batch.Clear();
            batch.Add(ids[i], i, LLamaSeqId.Zero, true);
            var result = ctx.Decode(batch);
            if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {result}");
        }
        ctx.NativeHandle.Synchronize();
        return n / Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }
}

/// <summary>Throughput of each block kernel and path on a weight matrix much larger than the L3 cache.</summary>
internal static unsafe partial class KernelSweep
{
    /// <param name="types">comma-separated tensor types to sweep</param>
    /// <param name="paths">"all", "rowmajor" or "repacked"</param>
    public static void Run(int threads, string types, string paths)
    {
        using var pool = new WorkerPool(threads);
        Console.WriteLine($"threads {threads}; pool dispatch {ModelBenchmark.PoolOverheadMicroseconds(pool):F2} µs/call; read bandwidth {MemoryBandwidth.MeasureReadBytesPerSecond(pool) / 1e9:F2} GB/s");
        Console.WriteLine("GB/s per CPU-second = weight bytes / process CPU time (robust to a loaded machine); hot = 1 MiB matrix in L2");
        Console.WriteLine("| type | path | n=1 GB/s wall | n=1 GB/s per CPU-s | hot GB/s per CPU-s | n=64 weight GB/s per CPU-s |");
        Console.WriteLine("| --- | --- | ---: | ---: | ---: | ---: |");
        const int cols = 4096;
        foreach (var type in types.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Enum.Parse<TensorType>))
        {
            int rows = (int)((160L << 20) / type.RowBytes(cols));
            long bytes = rows * type.RowBytes(cols);
            byte* data = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
            var rng = new Random(1);
            var span = new Span<byte>(data, (int)bytes);
            rng.NextBytes(span);
            int bb = type.BlockBytes();
            for (long o = 0; o + bb <= bytes; o += bb)
            {
                int at = type switch { TensorType.Q6_K => 208, _ => 0 };
                *(ushort*)(data + o + at) = BitConverter.HalfToUInt16Bits((Half)0.001);
                if (type == TensorType.Q4_K) *(ushort*)(data + o + 2) = BitConverter.HalfToUInt16Bits((Half)0.001);
            }
            var m = new QuantizedMatrix(type, data, rows, cols, pool);
            var x = new float[64 * cols];
            for (int i = 0; i < x.Length; i++) x[i] = (float)rng.NextDouble() - 0.5f;
            var y = new float[64 * rows];
            foreach (var path in DotKernels.AvailablePaths())
            {
                if (path == KernelPath.Scalar || paths == "repacked") continue;
                var (wall, cpu) = Measure(m, x, y, 1, path, pool.Threads);
                var hot = new QuantizedMatrix(type, data, (int)((1 << 20) / type.RowBytes(cols)), cols, pool);
                var (_, hotCpu) = Measure(hot, x, y, 1, path, pool.Threads);
                var (_, prefillCpu) = Measure(m, x, y, 64, path, pool.Threads, 1);
                Console.WriteLine($"| {type} | {path} | {bytes / wall / 1e9:F2} | {bytes / cpu / 1e9:F2} | {hot.ByteSize / hotCpu / 1e9:F2} | {bytes / prefillCpu / 1e9:F2} |");
            }
            foreach (var path in RepackedMatrix.AvailablePaths())
            {
                if (path == RepackPath.Scalar || paths == "rowmajor") continue;
                var rm = new RepackedMatrix(type, data, rows, cols, pool, path, releaseSource: false);
                var hot = new RepackedMatrix(type, data, (int)((1 << 20) / type.RowBytes(cols)), cols, pool, path, releaseSource: false);
                var (wall, cpu) = Measure((xx, nn, yy) => rm.Multiply(xx, nn, yy, path), x, y, 1, pool.Threads);
                var (_, hotCpu) = Measure((xx, nn, yy) => hot.Multiply(xx, nn, yy, path), x, y, 1, pool.Threads);
                var (_, prefillCpu) = Measure((xx, nn, yy) => rm.Multiply(xx, nn, yy, path), x, y, 64, pool.Threads, 1);
                Console.WriteLine($"| {type} | repacked {path} | {bytes / wall / 1e9:F2} | {bytes / cpu / 1e9:F2} | {hot.ByteSize / hotCpu / 1e9:F2} | {bytes / prefillCpu / 1e9:F2} |");
            }
            NativeMemory.AlignedFree(data);
        }
    }

    /// <summary>Seconds per call: wall clock and process CPU time (divided by the threads that ran).</summary>
    private static (double Wall, double Cpu) Measure(QuantizedMatrix m, float[] x, float[] y, int n, KernelPath path, int threads, int minCalls = 3)
        => Measure((xx, nn, yy) => m.Multiply(xx, nn, yy, path), x, y, n, threads, minCalls);

    private static (double Wall, double Cpu) Measure(Action<float[], int, float[]> product, float[] x, float[] y, int n, int threads, int minCalls = 3)
    {
        product(x, n, y);
        var proc = Process.GetCurrentProcess();
        proc.Refresh();
        var cpu0 = proc.TotalProcessorTime;
        int calls = 0;
        var sw = Stopwatch.StartNew();
        while (sw.ElapsedMilliseconds < 1000 || calls < minCalls) { product(x, n, y); calls++; }
        double wall = sw.Elapsed.TotalSeconds / calls;
        proc.Refresh();
        double cpu = (proc.TotalProcessorTime - cpu0).TotalSeconds / calls / threads;
        return (wall, cpu);
    }
}

internal static partial class KernelSweepHelpers { }

internal static unsafe partial class KernelSweep
{
    /// <summary>Repacked product time per token for several batch sizes on one L2-sized matrix (a routed expert's shape):
    /// where small batches (tails run the 1-token kernel) lose against long ones.</summary>
    public static void Batch(int threads, string types, int rows, int cols, string ns)
    {
        using var pool = new WorkerPool(threads);
        var counts = ns.Split(',').Select(int.Parse).ToArray();
        Console.WriteLine($"threads {threads}; W [{rows}, {cols}]; µs per token (repacked, best path {RepackedMatrix.BestPath})");
        Console.WriteLine("| type | " + string.Join(" | ", counts.Select(c => $"n={c}")) + " |");
        Console.WriteLine("| --- |" + string.Concat(counts.Select(_ => " ---: |")));
        foreach (var type in types.Split(',').Select(Enum.Parse<TensorType>))
        {
            long bytes = rows * type.RowBytes(cols);
            byte* data = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
            var rng = new Random(1);
            rng.NextBytes(new Span<byte>(data, (int)bytes));
            int bb = type.BlockBytes();
            for (long o = 0; o + bb <= bytes; o += bb)
            {
                *(ushort*)(data + o + (type == TensorType.Q6_K ? 208 : 0)) = BitConverter.HalfToUInt16Bits((Half)0.001);
                if (type == TensorType.Q4_K) *(ushort*)(data + o + 2) = BitConverter.HalfToUInt16Bits((Half)0.001);
            }
            var path = RepackedMatrix.BestPath ?? RepackPath.Scalar;
            var m = new RepackedMatrix(type, data, rows, cols, pool, path, releaseSource: false);
            int max = counts.Max();
            var x = new float[max * cols];
            for (int i = 0; i < x.Length; i++) x[i] = (float)rng.NextDouble() - 0.5f;
            var y = new float[max * rows];
            var cells = new List<string>();
            foreach (int n in counts)
            {
                var (wall, _) = Measure((xx, nn, yy) => m.Multiply(xx, nn, yy, path), x, y, n, threads, 3);
                cells.Add($"{wall / n * 1e6:F1}");
            }
            Console.WriteLine($"| {type} | " + string.Join(" | ", cells) + " |");
            NativeMemory.AlignedFree(data);
        }
    }
}

/// <summary>BenchmarkDotNet microbenchmarks of the decode (n = 1) products, one per type × path.</summary>
[BenchmarkDotNet.Attributes.ShortRunJob]
public unsafe class DecodeKernelBenchmarks
{
    private byte* _data;
    private QuantizedMatrix? _m;
    private WorkerPool? _pool;
    private float[] _x = [], _y = [];

    [BenchmarkDotNet.Attributes.Params("Q4_0", "Q8_0", "Q4_K", "Q6_K")] public string Type = "Q4_0";
    [BenchmarkDotNet.Attributes.Params("Vector128", "Avx2", "Avx512")] public string Path = "Avx2";

    [BenchmarkDotNet.Attributes.GlobalSetup]
    public void Setup()
    {
        var type = Enum.Parse<TensorType>(Type);
        const int cols = 4096, rows = 4096;
        long bytes = rows * type.RowBytes(cols);
        _data = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        new Random(1).NextBytes(new Span<byte>(_data, (int)bytes));
        _pool ??= new WorkerPool(Environment.ProcessorCount);
        _m = new QuantizedMatrix(type, _data, rows, cols, _pool);
        _x = new float[cols];
        _y = new float[rows];
        for (int i = 0; i < cols; i++) _x[i] = i % 13 * 0.01f;
    }

    [BenchmarkDotNet.Attributes.Benchmark]
    public void MatVec() => _m!.Multiply(_x, 1, _y, Enum.Parse<KernelPath>(Path));

    [BenchmarkDotNet.Attributes.GlobalCleanup]
    public void Cleanup() => NativeMemory.AlignedFree(_data);
}
