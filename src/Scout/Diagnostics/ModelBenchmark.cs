using System.Diagnostics;
using Scout.Kernels;
using Scout.Model;
using Scout.Tensors;

namespace Scout.Diagnostics;

/// <summary>Tokens/s over repetitions: median and spread as llama-bench reports them.</summary>
public sealed record ThroughputSample(string Test, int Tokens, double[] TokensPerSecond)
{
    public double Median
    {
        get
        {
            var s = TokensPerSecond.Order().ToArray();
            return s.Length == 0 ? 0 : s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
        }
    }

    public double Mean => TokensPerSecond.Length == 0 ? 0 : TokensPerSecond.Average();

    public double StdDev
    {
        get
        {
            if (TokensPerSecond.Length < 2) return 0;
            double m = Mean;
            return Math.Sqrt(TokensPerSecond.Sum(v => (v - m) * (v - m)) / (TokensPerSecond.Length - 1));
        }
    }
}

/// <summary>
/// llama-bench-style measurements of a loaded model: pp (one batch of N prompt tokens into an empty cache) and tg
/// (N tokens decoded one at a time from an empty cache), plus the weight bytes one decoded token reads.
/// </summary>
public static class ModelBenchmark
{
    /// <summary>Deterministic pseudo-random token ids (as llama-bench, whose inputs are random tokens).</summary>
    public static int[] Tokens(int count, int vocab, int seed = 1234)
    {
        var rng = new Random(seed);
        var ids = new int[count];
        for (int i = 0; i < count; i++) ids[i] = rng.Next(vocab);
        return ids;
    }

    /// <summary>Tokens/s of one pass processing <paramref name="promptTokens"/> tokens as one batch.</summary>
    public static double PromptOnce(Llama4Model model, int promptTokens)
    {
        var ids = Tokens(promptTokens, model.Config.VocabSize);
        var cache = model.CreateCache(promptTokens);
        var logits = new float[model.Config.VocabSize];
        long t0 = Stopwatch.GetTimestamp();
        model.Forward(ids, cache, logits, LogitsMode.Last);
        return promptTokens / Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }

    /// <summary>Tokens/s of decoding <paramref name="genTokens"/> tokens one by one from an empty cache.</summary>
    public static double GenerateOnce(Llama4Model model, int genTokens)
    {
        var ids = Tokens(genTokens, model.Config.VocabSize, seed: 99);
        var cache = model.CreateCache(genTokens);
        var logits = new float[model.Config.VocabSize];
        long t0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < genTokens; i++) model.Forward(ids.AsSpan(i, 1), cache, logits, LogitsMode.Last);
        return genTokens / Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }

    public static ThroughputSample Prompt(Llama4Model model, int promptTokens, int reps, bool warmUp = true)
    {
        if (warmUp) PromptOnce(model, Math.Min(promptTokens, 32));
        return new ThroughputSample($"pp{promptTokens}", promptTokens, Enumerable.Range(0, reps).Select(_ => PromptOnce(model, promptTokens)).ToArray());
    }

    public static ThroughputSample Generate(Llama4Model model, int genTokens, int reps, bool warmUp = true)
    {
        if (warmUp) GenerateOnce(model, Math.Min(genTokens, 8));
        return new ThroughputSample($"tg{genTokens}", genTokens, Enumerable.Range(0, reps).Select(_ => GenerateOnce(model, genTokens)).ToArray());
    }

    /// <summary>
    /// Weight bytes read to decode one token: per layer the attention projections (q, k, v, o), the router, the shared
    /// expert and the top-k routed experts (or the dense FFN), plus one embedding row and the output head. Norm
    /// vectors and the KV cache are not counted (together well under 1% at short contexts).
    /// </summary>
    public static long ActiveBytesPerToken(Llama4Model model)
    {
        var c = model.Config;
        var w = model.Weights;
        long total = w.Embedding.Type.RowBytes(c.HiddenSize) + w.Output.ByteSize;
        foreach (var layer in w.Layers)
        {
            total += layer.Q.ByteSize + layer.K.ByteSize + layer.V.ByteSize + layer.O.ByteSize;
            if (layer.Dense is { } dense) total += FfnBytes(dense);
            else
            {
                total += layer.Router!.ByteSize + FfnBytes(layer.SharedExpert!);
                // every expert of a layer has the same types and shapes
                total += c.TopK * FfnBytes(layer.Experts![0]);
            }
        }
        return total;
    }

    private static long FfnBytes(FeedForward f) => f.Gate.ByteSize + f.Up.ByteSize + f.Down.ByteSize;

    /// <summary>Total weight bytes a batch reads at least once (every expert), for reference.</summary>
    public static long TotalWeightBytes(Llama4Model model)
    {
        var w = model.Weights;
        long total = w.Embedding.ByteLength + w.Output.ByteSize;
        foreach (var layer in w.Layers)
        {
            total += layer.Q.ByteSize + layer.K.ByteSize + layer.V.ByteSize + layer.O.ByteSize;
            if (layer.Dense is { } dense) total += FfnBytes(dense);
            else total += layer.Router!.ByteSize + FfnBytes(layer.SharedExpert!) + layer.Experts!.Sum(FfnBytes);
        }
        return total;
    }

    /// <summary>Average time of one pool dispatch with trivial work (the fixed cost paid per matmul).</summary>
    public static double PoolOverheadMicroseconds(WorkerPool pool, int calls = 20000)
    {
        var job = new NoOpJob();
        for (int i = 0; i < 1000; i++) pool.Run(job, pool.Threads);
        long t0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < calls; i++) pool.Run(job, pool.Threads);
        return Stopwatch.GetElapsedTime(t0).TotalMicroseconds / calls;
    }

    private sealed class NoOpJob : IParallelJob
    {
        public int Hits;
        public void Execute(int index) => Interlocked.Increment(ref Hits);
    }
}
