using System.CommandLine;
using System.Text.Json;
using Scout.Diagnostics;
using Scout.Kernels;
using Scout.Model;

namespace Scout.Cli.Commands;

/// <summary>
/// `scout bench`: llama-bench-style pp/tg tokens/s (median ± spread over repetitions, after a warm-up), the weight
/// bytes one decoded token reads, the bandwidth that implies, and the machine's measured read bandwidth.
/// </summary>
public static class BenchCommand
{
    public static Command Create(CliContext ctx)
    {
        var model = new Option<string>("--model", "-m") { Description = "model .gguf (or HF folder / .safetensors)", Required = true };
        var device = new DeviceFlags();
        var threads = new Option<int>("--threads", "-t") { Description = "worker threads (default: all cores)", DefaultValueFactory = _ => Environment.ProcessorCount };
        var prompt = new Option<int>("--prompt", "-p") { Description = "prompt tokens for pp (0 skips)", DefaultValueFactory = _ => 512 };
        var gen = new Option<int>("--gen", "-n") { Description = "generated tokens for tg (0 skips)", DefaultValueFactory = _ => 128 };
        var reps = new Option<int>("--reps", "-r") { Description = "repetitions per test", DefaultValueFactory = _ => 3 };
        var json = new Option<bool>("--json") { Description = "print one JSON object instead of a table" };
        var noProbe = new Option<bool>("--no-bandwidth") { Description = "skip the memory-bandwidth probe" };
        var depth = new Option<int>("--depth", "-d") { Description = "tokens already in the cache before pp and tg (prefilled untimed, as llama-bench -d)", DefaultValueFactory = _ => 0 };
        var batch = new Option<int>("--batch", "-ub") { Description = "tokens per forward pass for the prompt and the depth prefill (llama-bench's micro-batch)", DefaultValueFactory = _ => 512 };
        var randomDepth = new Option<bool>("--random-depth") { Description = "fill --depth with random K/V rows instead of prefilling through the model (for very long contexts; not comparable with llama-bench -d)" };
        var kv = new KvCacheFlags();
        var cmd = new Command("bench", "Measure prompt processing and generation speed (tokens/s) against the memory-bandwidth bound")
            { model, threads, prompt, gen, reps, json, noProbe, depth, batch, randomDepth, kv.KeyType, kv.ValueType, kv.Both, device.Device, device.GpuLayers, device.CpuMoe, device.NCpuMoe };
        ctx.SetAction(cmd, p =>
        {
            int t = p.GetValue(threads), pp = p.GetValue(prompt), tg = p.GetValue(gen), r = p.GetValue(reps);
            if (t < 1) throw new CliException("--threads must be at least 1");
            if (pp < 0 || tg < 0) throw new CliException("--prompt and --gen must not be negative");
            if (r < 1) throw new CliException("--reps must be at least 1");
            if (p.GetValue(depth) < 0) throw new CliException("--depth must not be negative");
            if (p.GetValue(batch) < 1) throw new CliException("--batch must be at least 1");
            var (kt, vt) = kv.Types(p);
            var bench = new BenchCache(kt, vt, p.GetValue(depth), p.GetValue(batch), p.GetValue(randomDepth));
            string path = p.GetValue(model)!;
            if (!File.Exists(path) && !Directory.Exists(path)) throw new CliException($"model not found: {path}");
            using var m = Llama4Model.Load(path, options: device.LoadOptions(p), backend: device.Create(p, t), ownsBackend: true);
            var report = Run(m, Path.GetFileName(path), t, pp, tg, r, !p.GetValue(noProbe), bench);
            if (p.GetValue(json)) ctx.Out.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
            else Print(ctx.Out, report);
            return 0;
        });
        return cmd;
    }

    public sealed record Report(
        string Model, int Threads, string KernelPath, long ActiveBytesPerToken, long WeightBytes,
        double? PpTokensPerSecond, double? PpStdDev, int PromptTokens,
        double? TgTokensPerSecond, double? TgStdDev, int GenTokens,
        double? AchievedBandwidthGBs, double? MachineBandwidthGBs, double? BoundTokensPerSecond, double? FractionOfBound,
        double PoolDispatchMicroseconds, int Depth = 0, string KeyType = "f16", string ValueType = "f16", long KvBytesPerToken = 0, string? Device = null, long WeightBytesPerToken = 0);

    public static Report Run(Llama4Model m, string name, int threads, int pp, int tg, int reps, bool probe, BenchCache? bench = null)
    {
        bench ??= new BenchCache();
        var pool = m.Backend.HostPool;
        // Bytes one decoded token reads: the active weights plus the K/V rows it attends to (at the middle of the tg run).
        long kvBytes = ModelBenchmark.KvBytesPerToken(m.Config, bench.Depth + tg / 2 + 1, bench.K, bench.V);
        long weightBytes = ModelBenchmark.ActiveBytesPerToken(m);
        long active = weightBytes + kvBytes;
        ThroughputSample? pps = pp > 0 ? ModelBenchmark.Prompt(m, pp, reps, cache: bench) : null;
        ThroughputSample? tgs = tg > 0 ? ModelBenchmark.Generate(m, tg, reps, cache: bench) : null;
        // On a GPU the bound is the device's: its peak bandwidth as the driver reports it (the host probe would measure RAM).
        double? machine = m.Backend is Scout.Gpu.GpuBackend gpu
            ? gpu.PeakBandwidthBytesPerSecond / 1e9
            : probe ? MemoryBandwidth.MeasureReadBytesPerSecond(pool) / 1e9 : null;
        double? achieved = tgs is null ? null : active * tgs.Median / 1e9;
        double? bound = machine is null ? null : ModelBenchmark.BoundTokensPerSecond(machine.Value * 1e9, weightBytes, kvBytes);
        return new Report(name, pool.Threads, Scout.Kernels.Quant.QuantizedMatrix.KernelPathName, active, ModelBenchmark.TotalWeightBytes(m),
            pps?.Median, pps?.StdDev, pp, tgs?.Median, tgs?.StdDev, tg,
            achieved, machine, bound, achieved is null || machine is null ? null : achieved / machine,
            ModelBenchmark.PoolOverheadMicroseconds(pool, 5000), bench.Depth, bench.K.Name, bench.V.Name, kvBytes,
            m.Backend is Scout.Gpu.GpuBackend g ? $"{g.Name} ({g.DeviceName})" : null, weightBytes);
    }

    private static void Print(TextWriter o, Report r)
    {
        o.WriteLine($"model: {r.Model}   threads: {r.Threads}   kernels: {r.KernelPath}   K/V: {r.KeyType}/{r.ValueType}   depth: {r.Depth}");
        o.WriteLine($"weights: {r.WeightBytes / 1048576.0:F1} MiB   active per token: {r.WeightBytesPerToken / 1048576.0:F1} MiB " +
                    "(attention + router + shared expert + top-k experts + embedding row + output head)");
        o.WriteLine("| test | tokens/s | ± |");
        o.WriteLine("| --- | ---: | ---: |");
        string at = r.Depth > 0 ? $" @ d{r.Depth}" : "";
        if (r.PpTokensPerSecond is { } pp) o.WriteLine($"| pp{r.PromptTokens}{at} | {pp:F2} | {r.PpStdDev:F2} |");
        if (r.TgTokensPerSecond is { } tg) o.WriteLine($"| tg{r.GenTokens}{at} | {tg:F2} | {r.TgStdDev:F2} |");
        int ctxTokens = r.Depth + r.GenTokens / 2 + 1;
        o.WriteLine($"read per decoded token (at context {ctxTokens}, mid-tg): weights {r.WeightBytesPerToken / 1048576.0:F1} MiB + " +
                    $"K/V {r.KvBytesPerToken / 1048576.0:F1} MiB ({r.KeyType}/{r.ValueType}) = {r.ActiveBytesPerToken / 1048576.0:F1} MiB " +
                    "(the bandwidth bound below divides by this sum)");
        if (r.AchievedBandwidthGBs is { } a) o.WriteLine($"achieved bandwidth (active bytes × tg/s): {a:F2} GB/s");
        if (r.MachineBandwidthGBs is { } mb)
        {
            o.WriteLine(r.Device is { } dev
                ? $"{dev} peak bandwidth (driver: memory clock × bus width): {mb:F0} GB/s → bound {r.BoundTokensPerSecond:F2} tokens/s"
                : $"measured read bandwidth ({r.Threads} threads): {mb:F2} GB/s → bound {r.BoundTokensPerSecond:F2} tokens/s");
            if (r.FractionOfBound is { } f) o.WriteLine($"tg reaches {f * 100:F1}% of the bandwidth bound");
        }
        o.WriteLine($"pool dispatch overhead: {r.PoolDispatchMicroseconds:F2} µs per parallel call");
    }
}
