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
/// How a benchmark's cache is set up: K/V types, the tokens already in it (<see cref="Depth"/>, prefilled untimed
/// through the model, as llama-bench <c>-d</c>), and the forward-pass size for prompts and the depth prefill.
/// </summary>
/// <param name="RandomDepth">fill the depth with random K/V rows written straight into the cache instead of running
/// the model over it (for contexts whose prefill would take hours, e.g. 1M tokens: the decode then reads as many
/// K/V bytes as after a real prefill, but the numbers are not comparable with llama-bench -d, which prefills)</param>
public sealed record BenchCache(Planning.KvType? KeyType = null, Planning.KvType? ValueType = null, int Depth = 0, int Batch = 512, bool RandomDepth = false)
{
    public Planning.KvType K => KeyType ?? Planning.KvType.Default;
    public Planning.KvType V => ValueType ?? Planning.KvType.Default;

    public string Name(string test) => Depth > 0 ? $"{test} @ d{Depth}" : test;

    /// <summary>A cache of Depth + <paramref name="tokens"/> positions holding Depth prefilled positions.</summary>
    public KvCache Prepare(Llama4Model model, int tokens)
    {
        var cache = Create(model, tokens);
        Refill(model, cache);
        return cache;
    }

    /// <summary>
    /// An empty cache of Depth + <paramref name="tokens"/> positions whose pages are all allocated and touched, to be
    /// reused across repetitions with <see cref="Refill"/> (llama-bench allocates its K/V once, so no timed pass pays
    /// for mapping fresh pages).
    /// </summary>
    public KvCache Create(Llama4Model model, int tokens)
    {
        if (Batch < 1) throw new ArgumentException($"batch must be at least 1, got {Batch}");
        if (Depth < 0) throw new ArgumentException($"depth must not be negative, got {Depth}");
        var cache = model.CreateCache(checked(Depth + tokens), K, V);
        cache.Reserve(cache.MaxContext);
        return cache;
    }

    /// <summary>Empties <paramref name="cache"/> (keeping its pages) and fills the Depth positions again, untimed.</summary>
    public void Refill(Llama4Model model, KvCache cache)
    {
        if (Batch < 1) throw new ArgumentException($"batch must be at least 1, got {Batch}");
        if (Depth < 0 || Depth > cache.MaxContext) throw new ArgumentException($"depth {Depth} does not fit in a cache of {cache.MaxContext} positions");
        cache.Reset();
        if (RandomDepth)
        {
            FillRandom(model.Config, cache);
            return;
        }
        var ids = ModelBenchmark.Tokens(Math.Min(Depth, Batch), model.Config.VocabSize, seed: 7);
        for (int done = 0; done < Depth; done += Batch)
        {
            int m = Math.Min(Batch, Depth - done);
            model.Forward(ids.AsSpan(0, m), cache, [], LogitsMode.None);
        }
    }

    private void FillRandom(Llama4Config c, KvCache cache)
    {
        int kvDim = c.KvDim, rows = Math.Max(1, Math.Min(Depth, 4096));
        var rng = new Random(3);
        var k = new float[rows * kvDim];
        var v = new float[rows * kvDim];
        for (int i = 0; i < k.Length; i++) { k[i] = (float)(rng.NextDouble() * 2 - 1); v[i] = (float)(rng.NextDouble() * 2 - 1); }
        for (int layer = 0; layer < c.NumLayers; layer++)
        {
            // A ring keeps only the last chunk: earlier positions would be overwritten.
            long from = c.UsesRope(layer) && c.AttentionChunkSize < cache.MaxContext ? Math.Max(0, Depth - c.AttentionChunkSize) : 0;
            for (long p = from; p < Depth; p += rows)
            {
                int m = (int)Math.Min(rows, Depth - p);
                cache.Store(layer, p, k.AsSpan(0, m * kvDim), v.AsSpan(0, m * kvDim), m);
            }
        }
        cache.Length = Depth;
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

    /// <summary>
    /// Tokens/s of processing <paramref name="promptTokens"/> tokens after <c>depth</c> tokens already in
    /// the cache (llama-bench's <c>-d</c>; the depth prefill is not timed), in forward passes of at most
    /// <c>batch</c> tokens (llama-bench's micro-batch).
    /// </summary>
    /// <param name="kv">a cache to reuse (emptied and refilled to the depth first; it must hold Depth + promptTokens
    /// positions), or null for a new one</param>
    public static double PromptOnce(Llama4Model model, int promptTokens, BenchCache? cache = null, KvCache? kv = null)
    {
        cache ??= new BenchCache();
        var ids = Tokens(promptTokens, model.Config.VocabSize);
        using var own = kv is null ? cache.Prepare(model, promptTokens) : null;
        kv = Reuse(model, cache, kv, promptTokens) ?? own!;
        var logits = new float[model.Config.VocabSize];
        long t0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < promptTokens; i += cache.Batch)
        {
            int m = Math.Min(cache.Batch, promptTokens - i);
            model.Forward(ids.AsSpan(i, m), kv, logits, i + m == promptTokens ? LogitsMode.Last : LogitsMode.None);
        }
        return promptTokens / Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }

    /// <summary>Tokens/s of decoding <paramref name="genTokens"/> tokens one by one after the cache's depth.</summary>
    /// <param name="kv">a cache to reuse, as for <see cref="PromptOnce"/></param>
    public static double GenerateOnce(Llama4Model model, int genTokens, BenchCache? cache = null, KvCache? kv = null)
    {
        cache ??= new BenchCache();
        var ids = Tokens(genTokens, model.Config.VocabSize, seed: 99);
        using var own = kv is null ? cache.Prepare(model, genTokens) : null;
        kv = Reuse(model, cache, kv, genTokens) ?? own!;
        var logits = new float[model.Config.VocabSize];
        long t0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < genTokens; i++) model.Forward(ids.AsSpan(i, 1), kv, logits, LogitsMode.Last);
        return genTokens / Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }

    /// <summary>Empties and refills <paramref name="kv"/> for a run of <paramref name="tokens"/> (null when there is none to reuse).</summary>
    private static KvCache? Reuse(Llama4Model model, BenchCache cache, KvCache? kv, int tokens)
    {
        if (kv is null) return null;
        if (cache.Depth + tokens > kv.MaxContext)
            throw new ArgumentException($"the cache holds {kv.MaxContext} positions; depth {cache.Depth} + {tokens} tokens do not fit");
        cache.Refill(model, kv);
        return kv;
    }

    /// <summary>
    /// pp over <paramref name="reps"/> repetitions, all in one cache allocated (and its pages touched) before the
    /// warm-up and emptied between repetitions, as llama-bench's context.
    /// </summary>
    public static ThroughputSample Prompt(Llama4Model model, int promptTokens, int reps, bool warmUp = true, BenchCache? cache = null)
    {
        cache ??= new BenchCache();
        using var kv = cache.Create(model, promptTokens);
        if (warmUp) PromptOnce(model, Math.Min(promptTokens, 32), cache with { Depth = 0 }, kv);
        var speeds = new double[reps];
        for (int r = 0; r < reps; r++) speeds[r] = PromptOnce(model, promptTokens, cache, kv);
        return new ThroughputSample(cache.Name($"pp{promptTokens}"), promptTokens, speeds);
    }

    /// <summary>tg over <paramref name="reps"/> repetitions in one reused cache (see <see cref="Prompt"/>).</summary>
    public static ThroughputSample Generate(Llama4Model model, int genTokens, int reps, bool warmUp = true, BenchCache? cache = null)
    {
        cache ??= new BenchCache();
        using var kv = cache.Create(model, genTokens);
        if (warmUp) GenerateOnce(model, Math.Min(genTokens, 8), cache with { Depth = 0 }, kv);
        var speeds = new double[reps];
        for (int r = 0; r < reps; r++) speeds[r] = GenerateOnce(model, genTokens, cache, kv);
        return new ThroughputSample(cache.Name($"tg{genTokens}"), genTokens, speeds);
    }

    /// <summary>
    /// K/V bytes one decoded token reads when it is the <paramref name="context"/>-th position (position context − 1):
    /// every K and V row each layer attends to, in the cache's element types. Global (NoPE) layers see all
    /// <paramref name="context"/> keys; chunked (RoPE) layers only the keys from their chunk's start up to the token
    /// (as the attention masks them: the kernels never read the rest).
    /// </summary>
    public static long KvBytesPerToken(Llama4Config c, long context, Planning.KvType keyType, Planning.KvType valueType)
    {
        if (context <= 0) return 0;
        long rowBytes = keyType.RowBytes(c.KvDim) + valueType.RowBytes(c.KvDim);
        long position = context - 1, total = 0;
        for (int layer = 0; layer < c.NumLayers; layer++)
        {
            long visible = c.UsesRope(layer) ? position - position / c.AttentionChunkSize * c.AttentionChunkSize + 1 : context;
            total += visible * rowBytes;
        }
        return total;
    }

    /// <summary>
    /// The memory-bandwidth bound on decode speed: tokens/s if every byte a token must read (its active weights plus
    /// the K/V rows it attends to) came from memory at <paramref name="bytesPerSecond"/> and nothing else took time.
    /// </summary>
    public static double BoundTokensPerSecond(double bytesPerSecond, long weightBytesPerToken, long kvBytesPerToken)
    {
        long bytes = weightBytesPerToken + kvBytesPerToken;
        if (bytes <= 0) throw new ArgumentException("a token reads at least one byte");
        return bytesPerSecond / bytes;
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
