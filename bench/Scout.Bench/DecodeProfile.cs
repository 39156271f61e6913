using System.Diagnostics;
using Scout.Diagnostics;
using Scout.Kernels;
using Scout.Model;
using Scout.Tensors;

namespace Scout.Bench;

/// <summary>
/// Where a decode step's time goes: the model is rebuilt with every weight matrix wrapped in a timer, then tokens are
/// decoded one by one as in tg. Matrix time is split by role (attention q/k/v/o, router, shared expert, routed
/// experts, output head); the rest of Forward() is attention over the cache, norms, RoPE, routing and glue.
/// </summary>
internal static class DecodeProfile
{
    private sealed class Timed(string role, IWeightMatrix inner, Dictionary<string, (double Ms, long Bytes, int Calls)> sink) : IWeightMatrix
    {
        public int Rows => inner.Rows;
        public int Cols => inner.Cols;
        public TensorType Type => inner.Type;
        public long ByteSize => inner.ByteSize;

        public void Multiply(ReadOnlySpan<float> x, int n, Span<float> y)
        {
            long t0 = Stopwatch.GetTimestamp();
            inner.Multiply(x, n, y);
            double ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            var v = sink.GetValueOrDefault(role);
            sink[role] = (v.Ms + ms, v.Bytes + inner.ByteSize, v.Calls + 1);
        }
    }

    public static void Run(Options o)
    {
        int threads = o.GetInt("threads", Environment.ProcessorCount), steps = o.GetInt("steps", 64);
        using var backend = new Scout.Backends.CpuBackend(threads);
        using var m = Llama4Model.Load(o.Get("model", ""), backend: backend);
        var sink = new Dictionary<string, (double Ms, long Bytes, int Calls)>();
        IWeightMatrix T(string role, IWeightMatrix w) => new Timed(role, w, sink);
        FeedForward F(string role, FeedForward f) => new(T(role, f.Gate), T(role, f.Up), T(role, f.Down));
        var w = m.Weights;
        var timed = new Llama4Weights
        {
            Embedding = w.Embedding,
            FinalNorm = w.FinalNorm,
            Output = T("output head", w.Output),
            RopeFreqDivisors = w.RopeFreqDivisors,
            Placement = w.Placement,
            EmbeddingMatrix = w.EmbeddingMatrix,
            Layers = w.Layers.Select(l => new LayerWeights
            {
                AttentionNorm = l.AttentionNorm, FfnNorm = l.FfnNorm,
                Q = T("attn q", l.Q), K = T("attn k", l.K), V = T("attn v", l.V), O = T("attn o", l.O),
                Dense = l.Dense is { } d ? F("dense ffn", d) : null,
                Router = l.Router is { } r ? T("router", r) : null,
                SharedExpert = l.SharedExpert is { } s ? F("shared expert", s) : null,
                Experts = l.Experts?.Select(e => F("routed experts", e)).ToArray(),
            }).ToArray(),
        };
        var model = new Llama4Model(m.Config, timed, backend);
        int prompt = o.GetInt("prompt", 0);
        double tokenMs;
        if (prompt > 0)
        {
            // prefill profile: one batch of `prompt` tokens; times are per prompt token
            ModelBenchmark.PromptOnce(model, 16);
            sink.Clear();
            tokenMs = 1000.0 / ModelBenchmark.PromptOnce(model, prompt);
            steps = prompt;
        }
        else
        {
            // Every routed expert is repacked on its first product: warm long enough that all of them were used, so the
            // profile times the kernels, not the one-time repack (tg64 with random tokens touches most experts).
            ModelBenchmark.GenerateOnce(model, o.GetInt("warm", 256));
            sink.Clear();
            tokenMs = 1000.0 / ModelBenchmark.GenerateOnce(model, steps);
        }
        long active = ModelBenchmark.ActiveBytesPerToken(m);
        double matmul = sink.Values.Sum(v => v.Ms) / steps;
        Console.WriteLine($"{(prompt > 0 ? $"prefill of {prompt}" : "decode")}: {tokenMs:F3} ms/token ({1000 / tokenMs:F1} tok/s, {active / tokenMs / 1e6:F2} GB/s of active weights), {threads} threads, kernels {Scout.Kernels.Quant.QuantizedMatrix.KernelPathName}");
        Console.WriteLine("| part | ms/token | share | GB/s | calls/token |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: |");
        foreach (var (name, (ms, bytes, calls)) in sink.OrderByDescending(kv => kv.Value.Ms))
            Console.WriteLine($"| {name} | {ms / steps:F3} | {100 * ms / steps / tokenMs:F1}% | {bytes / ms / 1e6:F2} | {(double)calls / steps:F0} |");
        Console.WriteLine($"| everything else (attention, norms, RoPE, routing, glue) | {tokenMs - matmul:F3} | {100 * (tokenMs - matmul) / tokenMs:F1}% | | |");
    }
}
