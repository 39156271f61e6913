using System.Diagnostics;
using Scout.Diagnostics;
using Scout.Kernels;
using Scout.Model;

namespace Scout.Bench;

/// <summary>
/// Where a decode step's time goes: the same matrix-vector products a token runs (per layer q, k, v, o, router,
/// shared expert, one routed expert; then the output head), timed by category in isolation, against the full
/// Forward() time per token. The remainder is attention over the cache, norms, routing and glue.
/// </summary>
internal static class DecodeProfile
{
    public static void Run(Options o)
    {
        int threads = o.GetInt("threads", Environment.ProcessorCount), steps = o.GetInt("steps", 64);
        WorkerPool.ConfigureShared(threads);
        using var m = Llama4Model.Load(o.Get("model", ""));
        var c = m.Config;
        ModelBenchmark.GenerateOnce(m, 8);
        double tokenMs = 1000.0 / ModelBenchmark.GenerateOnce(m, steps);

        var x = new float[Math.Max(c.QDim, Math.Max(c.HiddenSize, c.IntermediateSize))];
        for (int i = 0; i < x.Length; i++) x[i] = (i % 17 - 8) * 0.01f;
        var y = new float[Math.Max(c.VocabSize, Math.Max(c.QDim, c.IntermediateSize))];
        var times = new Dictionary<string, (double Ms, long Bytes)>();
        void Time(string name, IWeightMatrix w)
        {
            long t0 = Stopwatch.GetTimestamp();
            for (int s = 0; s < steps; s++) w.Multiply(x.AsSpan(0, w.Cols), 1, y.AsSpan(0, w.Rows));
            double ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds / steps;
            times[name] = times.TryGetValue(name, out var v) ? (v.Ms + ms, v.Bytes + w.ByteSize) : (ms, w.ByteSize);
        }
        var rng = new Random(3);
        foreach (var layer in m.Weights.Layers)
        {
            Time("attn q", layer.Q); Time("attn k", layer.K); Time("attn v", layer.V); Time("attn o", layer.O);
            if (layer.Router is { } router)
            {
                Time("router", router);
                Time("shared expert", layer.SharedExpert!.Gate); Time("shared expert", layer.SharedExpert.Up); Time("shared expert", layer.SharedExpert.Down);
                var e = layer.Experts![rng.Next(layer.Experts.Length)];
                Time("routed expert", e.Gate); Time("routed expert", e.Up); Time("routed expert", e.Down);
            }
        }
        Time("output head", m.Weights.Output);
        double matmul = times.Values.Sum(v => v.Ms);
        Console.WriteLine($"decode step: {tokenMs:F3} ms/token ({1000 / tokenMs:F1} tok/s), {threads} threads, kernels {Scout.Kernels.Quant.QuantizedMatrix.KernelPathName}");
        Console.WriteLine("| part | ms/token | share | GB/s |");
        Console.WriteLine("| --- | ---: | ---: | ---: |");
        foreach (var (name, (ms, bytes)) in times.OrderByDescending(kv => kv.Value.Ms))
            Console.WriteLine($"| {name} | {ms:F3} | {100 * ms / tokenMs:F1}% | {bytes / ms / 1e6:F2} |");
        Console.WriteLine($"| everything else (attention, norms, routing, glue) | {tokenMs - matmul:F3} | {100 * (tokenMs - matmul) / tokenMs:F1}% | |");
    }
}
