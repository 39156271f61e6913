using System.Buffers;
using System.Numerics.Tensors;
using Scout.Kernels;
using Scout.Kernels.Attention;
using Scout.Planning;

namespace Scout.Model;

/// <summary>Which rows of logits a forward pass computes.</summary>
public enum LogitsMode { None, Last, All }

/// <summary>
/// One sequence's share of a batched forward pass: its cache, how many new rows it contributes, and whether it
/// needs the logits of its last row (a prompt piece that does not finish the prompt does not).
/// </summary>
public readonly record struct BatchSegment(KvCache Cache, int Count, bool WantLogits = true);

/// <summary>
/// The Llama 4 text model — the forward pass of Meta's <c>models/llama4/model.py</c> and <c>moe.py</c>, in one file.
///
///   h = embed(tokens)
///   for each layer:  h = h + Attention(RMSNorm(h))          (iRoPE: RoPE+chunked on 3 of 4 layers, NoPE+global on every 4th)
///                    h = h + FFN_or_MoE(RMSNorm(h))         (MoE: sigmoid top-k router, routed SwiGLU experts + shared expert)
///   logits = lm_head(RMSNorm(h))
///
/// Matrix products, norms and the thread pool live in <see cref="Kernels"/>; this file only says what is computed.
/// </summary>
public sealed class Llama4Model : IDisposable
{
    private readonly Checkpoint? _checkpoint;
    private readonly float[] _ropeFreqs;
    private readonly AttentionKernels _attention = new(AttentionKernels.Best);

    public Llama4Config Config { get; }
    public Llama4Weights Weights { get; }

    public Llama4Model(Llama4Config config, Llama4Weights weights, Checkpoint? owner = null)
    {
        Config = config;
        Weights = weights;
        _checkpoint = owner;
        _ropeFreqs = AttentionMath.RopeFrequencies(config.HeadDim, config.RopeTheta, config.RopeScaling, weights.RopeFreqDivisors);
    }

    /// <summary>Loads a model from a folder, .safetensors or .gguf (see <see cref="Checkpoint.Open"/>).</summary>
    public static Llama4Model Load(string path, string? configPath = null, Action<int, int>? progress = null, LoadOptions? options = null)
    {
        var ckpt = Checkpoint.Open(path, configPath, progress);
        try
        {
            return new Llama4Model(ckpt.Config, Llama4Weights.Load(ckpt, options), ckpt);
        }
        catch
        {
            ckpt.Dispose();
            throw;
        }
    }

    public Checkpoint? Checkpoint => _checkpoint;

    /// <summary>A cache for one sequence of up to <paramref name="maxContext"/> positions; K and V stored as f32 unless told.</summary>
    public KvCache CreateCache(int maxContext, KvType? keyType = null, KvType? valueType = null) => new(Config, maxContext, keyType, valueType);

    /// <summary>Runs <paramref name="tokens"/> at positions cache.Length.. and appends them to the cache.</summary>
    public void Forward(ReadOnlySpan<int> tokens, KvCache cache, Span<float> logits, LogitsMode mode = LogitsMode.All)
        => ForwardEmbeddings(EmbedTokens(tokens), tokens.Length, cache, logits, mode);

    /// <summary>The token embeddings [n, hidden] of <paramref name="tokens"/> (ids checked against the vocabulary).</summary>
    public float[] EmbedTokens(ReadOnlySpan<int> tokens)
    {
        int d = Config.HiddenSize;
        var h = new float[tokens.Length * d];
        for (int t = 0; t < tokens.Length; t++) Weights.Embed(tokens[t], h.AsSpan(t * d, d));
        return h;
    }

    /// <summary>
    /// Runs n input embeddings [n, hidden] (token embeddings, or image features merged in) through the decoder.
    /// <paramref name="h"/> is used as the residual stream and is overwritten.
    /// </summary>
    public void ForwardEmbeddings(float[] h, int n, KvCache cache, Span<float> logits, LogitsMode mode = LogitsMode.All)
        => ForwardSegments(h, [new BatchSegment(cache, n)], logits, mode);

    /// <summary>
    /// One decode step for several sequences at once: token i goes to caches[i] at that cache's next position.
    /// Every weight matrix is read once for the whole batch; attention runs per sequence against its own cache.
    /// <paramref name="logits"/> receives one row per sequence.
    /// </summary>
    public void ForwardBatch(ReadOnlySpan<int> tokens, IReadOnlyList<KvCache> caches, Span<float> logits)
    {
        if (tokens.Length != caches.Count)
            throw new ArgumentException($"{tokens.Length} tokens for {caches.Count} caches: a batch step takes one token per sequence");
        var segments = new BatchSegment[tokens.Length];
        for (int i = 0; i < segments.Length; i++) segments[i] = new BatchSegment(caches[i], 1);
        ForwardSegments(EmbedTokens(tokens), segments, logits, LogitsMode.Last);
    }

    /// <summary>
    /// The decoder over rows that belong to one or more sequences: segment s owns the next segments[s].Count rows of
    /// <paramref name="h"/> and continues its cache at cache.Length. With <see cref="LogitsMode.Last"/> each segment
    /// that wants logits gets one row (its last token), in segment order; with All, every row does.
    /// </summary>
    public void ForwardSegments(float[] h, IReadOnlyList<BatchSegment> segments, Span<float> logits, LogitsMode mode = LogitsMode.All)
    {
        var c = Config;
        int d = c.HiddenSize;
        var rows = SegmentRows.Plan(segments);
        int n = rows.Count;
        var lastRows = new List<int>();
        for (int s = 0; s < segments.Count; s++)
            if (segments[s].WantLogits) lastRows.Add(rows.Offset[s] + segments[s].Count - 1);
        int logitRows = mode switch { LogitsMode.All => n, LogitsMode.Last => lastRows.Count, _ => 0 };
        if (logits.Length < logitRows * c.VocabSize)
            throw new ArgumentException($"logits buffer holds {logits.Length} floats, needs {logitRows * c.VocabSize}");

        var normed = new float[n * d];
        var delta = new float[n * d];
        for (int layer = 0; layer < c.NumLayers; layer++)
        {
            var w = Weights.Layers[layer];
            RmsNormRows(h, w.AttentionNorm, normed, n);
            Attention(layer, normed, rows, delta);
            TensorPrimitives.Add(h.AsSpan(0, n * d), delta, h.AsSpan(0, n * d));

            RmsNormRows(h, w.FfnNorm, normed, n);
            if (w.Dense is { } dense) FeedForward(dense, normed, n, delta);
            else MixtureOfExperts(w, normed, n, delta);
            TensorPrimitives.Add(h.AsSpan(0, n * d), delta, h.AsSpan(0, n * d));
        }
        for (int s = 0; s < segments.Count; s++) segments[s].Cache.Length = rows.Start[s] + segments[s].Count;

        if (logitRows == 0) return;
        var finalNormed = normed.AsSpan(0, logitRows * d);
        for (int r = 0; r < logitRows; r++)
        {
            int row = mode == LogitsMode.All ? r : lastRows[r];
            Ops.RmsNorm(h.AsSpan(row * d, d), Weights.FinalNorm, (float)c.RmsNormEps, finalNormed.Slice(r * d, d));
        }
        Weights.Output.Multiply(finalNormed, logitRows, logits[..(logitRows * c.VocabSize)]);
    }

    /// <summary>Where each row of a multi-sequence batch belongs: its segment, and each segment's first row and position.</summary>
    private sealed class SegmentRows
    {
        public required IReadOnlyList<BatchSegment> Segments;
        public required int[] Offset;   // first row of segment s
        public required int[] Start;    // position of that row (cache length before the step)
        public required int[] Segment;  // segment of row r
        public int Count => Segment.Length;
        public int Position(int row) => Start[Segment[row]] + row - Offset[Segment[row]];

        public static SegmentRows Plan(IReadOnlyList<BatchSegment> segments)
        {
            if (segments.Count == 0) throw new ArgumentException("a forward pass needs at least one sequence");
            var offset = new int[segments.Count];
            var start = new int[segments.Count];
            var seen = new HashSet<KvCache>(ReferenceEqualityComparer.Instance);
            int n = 0;
            for (int s = 0; s < segments.Count; s++)
            {
                var (cache, count) = (segments[s].Cache, segments[s].Count);
                if (count <= 0) throw new ArgumentException($"sequence {s} of the batch has no tokens");
                if (!seen.Add(cache)) throw new ArgumentException("the same KV cache appears twice in one batch");
                if (cache.Length + count > cache.MaxContext)
                    throw new InvalidOperationException($"context is full: {cache.Length} + {count} tokens exceeds the context length {cache.MaxContext}");
                offset[s] = n;
                start[s] = cache.Length;
                n += count;
            }
            var segment = new int[n];
            for (int s = 0; s < segments.Count; s++) segment.AsSpan(offset[s], segments[s].Count).Fill(s);
            return new SegmentRows { Segments = segments, Offset = offset, Start = start, Segment = segment };
        }
    }

    private void RmsNormRows(float[] x, float[] weight, float[] y, int n)
    {
        int d = Config.HiddenSize;
        float eps = (float)Config.RmsNormEps;
        for (int t = 0; t < n; t++) Ops.RmsNorm(x.AsSpan(t * d, d), weight, eps, y.AsSpan(t * d, d));
    }

    /// <summary>
    /// Grouped-query attention. RoPE layers: rotate q,k (adjacent pairs), then QK-norm, then attend within the
    /// current chunk. NoPE layers: no rotation, temperature-scaled queries, attend to every earlier position.
    /// Each row attends only to its own sequence's keys.
    /// </summary>
    private void Attention(int layer, float[] x, SegmentRows rows, float[] output)
    {
        var c = Config;
        var w = Weights.Layers[layer];
        int n = rows.Count;
        int hd = c.HeadDim, qDim = c.QDim, kvDim = c.KvDim;
        bool useRope = c.UsesRope(layer);
        bool chunked = useRope;
        float eps = (float)c.RmsNormEps;

        var q = ArrayPool<float>.Shared.Rent(n * qDim);
        var k = ArrayPool<float>.Shared.Rent(n * kvDim);
        var v = ArrayPool<float>.Shared.Rent(n * kvDim);
        var attn = ArrayPool<float>.Shared.Rent(n * qDim);
        try
        {
            w.Q.Multiply(x, n, q);
            w.K.Multiply(x, n, k);
            w.V.Multiply(x, n, v);

            Span<float> cos = stackalloc float[hd / 2], sin = stackalloc float[hd / 2];
            for (int t = 0; t < n; t++)
            {
                int pos = rows.Position(t);
                var qt = q.AsSpan(t * qDim, qDim);
                var kt = k.AsSpan(t * kvDim, kvDim);
                if (useRope)
                {
                    for (int j = 0; j < hd / 2; j++)
                    {
                        float angle = pos * _ropeFreqs[j];
                        cos[j] = (float)Math.Cos(angle);
                        sin[j] = (float)Math.Sin(angle);
                    }
                    for (int hh = 0; hh < c.NumHeads; hh++) Ops.Rope(qt.Slice(hh * hd, hd), cos, sin);
                    for (int hh = 0; hh < c.NumKvHeads; hh++) Ops.Rope(kt.Slice(hh * hd, hd), cos, sin);
                    if (c.UseQkNorm)
                    {
                        for (int hh = 0; hh < c.NumHeads; hh++) Ops.RmsNorm(qt.Slice(hh * hd, hd), default, eps, qt.Slice(hh * hd, hd));
                        for (int hh = 0; hh < c.NumKvHeads; hh++) Ops.RmsNorm(kt.Slice(hh * hd, hd), default, eps, kt.Slice(hh * hd, hd));
                    }
                }
                else if (c.AttnTemperatureTuning)
                {
                    TensorPrimitives.Multiply(qt, AttentionMath.TemperatureScale(pos, c.FloorScale, c.AttnScale), qt);
                }
            }

            StoreAndAttend(layer, chunked, q, k, v, rows, attn);

            w.O.Multiply(attn.AsSpan(0, n * qDim), n, output);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(q);
            ArrayPool<float>.Shared.Return(k);
            ArrayPool<float>.Shared.Return(v);
            ArrayPool<float>.Shared.Return(attn);
        }
    }

    /// <summary>
    /// Appends this batch's keys and values to each sequence's cache, then softmax(q·kᵀ/√d)·v for every (row, head)
    /// over the keys the row may see (its own sequence; causal; within its chunk in chunked layers). A ring (chunked
    /// layer) holds one chunk, so a sequence whose rows cross a chunk boundary is stored and attended one chunk at a
    /// time: the later chunk overwrites the earlier one's slots.
    /// </summary>
    private void StoreAndAttend(int layer, bool chunked, float[] q, float[] k, float[] v, SegmentRows rows, float[] output)
    {
        var c = Config;
        int kvDim = c.KvDim, qDim = c.QDim, chunk = c.AttentionChunkSize;
        int segments = rows.Segments.Count;
        var layers = new KvLayer[segments];
        bool piecewise = false;
        for (int s = 0; s < segments; s++)
        {
            var cache = rows.Segments[s].Cache;
            layers[s] = cache.Layers[layer];
            int first = rows.Start[s], last = first + rows.Segments[s].Count - 1;
            piecewise |= layers[s].Ring && AttentionMath.ChunkStart(first, chunk) != AttentionMath.ChunkStart(last, chunk);
        }
        var pool = ArrayPool<int>.Shared;
        var seq = pool.Rent(rows.Count);
        var pos = pool.Rent(rows.Count);
        var firstKey = pool.Rent(rows.Count);
        try
        {
            if (!piecewise)
            {
                for (int s = 0; s < segments; s++)
                {
                    int off = rows.Offset[s] * kvDim, count = rows.Segments[s].Count;
                    rows.Segments[s].Cache.Store(layer, rows.Start[s], k.AsSpan(off, count * kvDim), v.AsSpan(off, count * kvDim), count);
                }
                for (int r = 0; r < rows.Count; r++)
                {
                    seq[r] = rows.Segment[r];
                    pos[r] = rows.Position(r);
                    firstKey[r] = AttentionMath.FirstVisibleKey(pos[r], chunked, chunk);
                }
                _attention.Attend(WorkerPool.Shared, c.NumHeads, c.NumKvHeads, c.HeadDim, q.AsSpan(0, rows.Count * qDim), output,
                    new AttentionRows(rows.Count, layers, seq, pos, firstKey));
                return;
            }
            for (int s = 0; s < segments; s++)
            {
                int start = rows.Start[s], count = rows.Segments[s].Count;
                for (int p = start; p < start + count;)
                {
                    int end = Math.Min(start + count, AttentionMath.ChunkStart(p, chunk) + chunk);
                    int row0 = rows.Offset[s] + p - start, m = end - p;
                    rows.Segments[s].Cache.Store(layer, p, k.AsSpan(row0 * kvDim, m * kvDim), v.AsSpan(row0 * kvDim, m * kvDim), m);
                    for (int i = 0; i < m; i++)
                    {
                        seq[i] = 0;
                        pos[i] = p + i;
                        firstKey[i] = AttentionMath.FirstVisibleKey(p + i, chunked, chunk);
                    }
                    _attention.Attend(WorkerPool.Shared, c.NumHeads, c.NumKvHeads, c.HeadDim, q.AsSpan(row0 * qDim, m * qDim),
                        output.AsSpan(row0 * qDim, m * qDim), new AttentionRows(m, [layers[s]], seq, pos, firstKey));
                    p = end;
                }
            }
        }
        finally
        {
            pool.Return(seq);
            pool.Return(pos);
            pool.Return(firstKey);
        }
    }

    /// <summary>SwiGLU: down(silu(gate·x) ⊙ up·x).</summary>
    private static void FeedForward(FeedForward ff, ReadOnlySpan<float> x, int n, Span<float> output)
    {
        int f = ff.Gate.Rows;
        var gate = ArrayPool<float>.Shared.Rent(n * f);
        var up = ArrayPool<float>.Shared.Rent(n * f);
        try
        {
            ff.Gate.Multiply(x, n, gate);
            ff.Up.Multiply(x, n, up);
            Ops.SwiGlu(gate.AsSpan(0, n * f), up.AsSpan(0, n * f));
            ff.Down.Multiply(gate.AsSpan(0, n * f), n, output);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(gate);
            ArrayPool<float>.Shared.Return(up);
        }
    }

    /// <summary>
    /// MoE: router logits r = W_router·x; the top-k experts by raw logit are chosen; each chosen expert sees its
    /// input scaled by sigmoid(r_e) (scaling the input, not the output); the shared expert always runs on x.
    /// Tokens are grouped by expert so each expert's weights are read once per batch.
    /// </summary>
    private void MixtureOfExperts(LayerWeights w, float[] x, int n, float[] output)
    {
        var c = Config;
        int d = c.HiddenSize, experts = c.NumExperts, k = c.TopK;
        var pool = ArrayPool<float>.Shared;
        var routerLogits = pool.Rent(n * experts);
        // Routing table, grouped by expert (counting sort, tokens in order): slot i holds token routed[i] with gate weight gates[i].
        var routed = ArrayPool<int>.Shared.Rent(n * k);
        var gates = pool.Rent(n * k);
        var choice = ArrayPool<int>.Shared.Rent(n * k);
        var firstSlot = ArrayPool<int>.Shared.Rent(experts + 1);
        try
        {
            w.Router!.Multiply(x.AsSpan(0, n * d), n, routerLogits);
            FeedForward(w.SharedExpert!, x.AsSpan(0, n * d), n, output.AsSpan(0, n * d));

            Array.Clear(firstSlot, 0, experts + 1);
            for (int t = 0; t < n; t++)
            {
                var top = choice.AsSpan(t * k, k);
                TopK(routerLogits.AsSpan(t * experts, experts), top);
                foreach (int e in top) firstSlot[e + 1]++;
            }
            for (int e = 0; e < experts; e++) firstSlot[e + 1] += firstSlot[e];
            Span<int> fill = experts <= 256 ? stackalloc int[experts] : new int[experts];
            firstSlot.AsSpan(0, experts).CopyTo(fill);
            for (int t = 0; t < n; t++)
                foreach (int e in choice.AsSpan(t * k, k))
                {
                    int slot = fill[e]++;
                    routed[slot] = t;
                    gates[slot] = Ops.Sigmoid(routerLogits[t * experts + e]);
                }

            for (int e = 0; e < experts; e++)
            {
                int from = firstSlot[e], m = firstSlot[e + 1] - from;
                if (m == 0) continue;
                var xin = pool.Rent(m * d);
                var yout = pool.Rent(m * d);
                try
                {
                    for (int i = 0; i < m; i++)
                        TensorPrimitives.Multiply(x.AsSpan(routed[from + i] * d, d), gates[from + i], xin.AsSpan(i * d, d));
                    FeedForward(w.Experts![e], xin.AsSpan(0, m * d), m, yout.AsSpan(0, m * d));
                    for (int i = 0; i < m; i++)
                    {
                        var dst = output.AsSpan(routed[from + i] * d, d);
                        TensorPrimitives.Add(dst, yout.AsSpan(i * d, d), dst);
                    }
                }
                finally
                {
                    pool.Return(xin);
                    pool.Return(yout);
                }
            }
        }
        finally
        {
            pool.Return(routerLogits);
            pool.Return(gates);
            ArrayPool<int>.Shared.Return(routed);
            ArrayPool<int>.Shared.Return(choice);
            ArrayPool<int>.Shared.Return(firstSlot);
        }
    }

    /// <summary>Indices of the k largest values (ties: lower index first, as torch.topk on CPU).</summary>
    public static void TopK(ReadOnlySpan<float> values, Span<int> result)
    {
        int k = result.Length;
        for (int i = 0; i < k; i++) result[i] = -1;
        for (int e = 0; e < values.Length; e++)
        {
            float v = values[e];
            int pos = k;
            while (pos > 0 && (result[pos - 1] < 0 || values[result[pos - 1]] < v)) pos--;
            if (pos >= k) continue;
            for (int j = k - 1; j > pos; j--) result[j] = result[j - 1];
            result[pos] = e;
        }
    }

    public void Dispose()
    {
        _checkpoint?.Dispose();
        Weights.Owned?.Dispose();
    }
}
