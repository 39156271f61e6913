using Scout.Backends;

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
/// Every operation runs on the <see cref="IBackend"/> the model was loaded with, over the buffers of one
/// <see cref="ForwardWorkspace"/> sized for the largest batch seen; this file only says what is computed.
/// </summary>
public sealed class Llama4Model : IDisposable
{
    private readonly Checkpoint? _checkpoint;
    private readonly float[] _ropeFreqs;
    private readonly bool _ownsBackend;
    private readonly object _gate = new();
    private ForwardWorkspace _ws;

    public Llama4Config Config { get; }
    public Llama4Weights Weights { get; }
    /// <summary>Where the operations run.</summary>
    public IBackend Backend { get; }
    /// <summary>The activation buffers (grown only when a forward carries more rows than any before).</summary>
    public ForwardWorkspace Workspace => _ws;

    /// <param name="backend">where the operations run: the backend <paramref name="weights"/> were loaded for</param>
    /// <param name="owner">the checkpoint the weights view, disposed with the model</param>
    /// <param name="ownsBackend">dispose <paramref name="backend"/> with the model</param>
    /// <param name="maxRows">rows (tokens of all sequences) the workspace is first sized for</param>
    public Llama4Model(Llama4Config config, Llama4Weights weights, IBackend backend, Checkpoint? owner = null, bool ownsBackend = false, int maxRows = 1)
    {
        Config = config;
        Weights = weights;
        _checkpoint = owner;
        _ownsBackend = ownsBackend;
        Backend = backend;
        _ropeFreqs = AttentionMath.RopeFrequencies(config.HeadDim, config.RopeTheta, config.RopeScaling, weights.RopeFreqDivisors);
        _ws = new ForwardWorkspace(config, Math.Max(1, maxRows));
    }

    /// <summary>Loads a model from a folder, .safetensors or .gguf (see <see cref="Checkpoint.Open"/>).</summary>
    /// <param name="backend">where the operations run (default: a CPU backend on every core, owned by the model)</param>
    /// <param name="ownsBackend">dispose <paramref name="backend"/> with the model (also when loading fails)</param>
    public static Llama4Model Load(string path, string? configPath = null, Action<int, int>? progress = null, LoadOptions? options = null, IBackend? backend = null,
        bool ownsBackend = false)
    {
        bool owns = backend is null || ownsBackend;
        var device = backend ?? new CpuBackend();
        Checkpoint? ckpt = null;
        try
        {
            ckpt = Checkpoint.Open(path, configPath, progress);
            return new Llama4Model(ckpt.Config, Llama4Weights.Load(ckpt, device, options), device, ckpt, owns);
        }
        catch
        {
            ckpt?.Dispose();
            if (owns) device.Dispose();
            throw;
        }
    }

    public Checkpoint? Checkpoint => _checkpoint;

    /// <summary>A cache for one sequence of up to <paramref name="maxContext"/> positions; K and V stored as f32 unless told.</summary>
    public KvCache CreateCache(int maxContext, Planning.KvType? keyType = null, Planning.KvType? valueType = null) => new(Config, maxContext, keyType, valueType);

    /// <summary>Sizes the workspace for forwards of up to <paramref name="rows"/> rows now, so later steps never allocate.</summary>
    public void ReserveRows(int rows)
    {
        lock (_gate)
            if (rows > _ws.Rows) _ws = new ForwardWorkspace(Config, rows);
    }

    /// <summary>Runs <paramref name="tokens"/> at positions cache.Length.. and appends them to the cache.</summary>
    public void Forward(ReadOnlySpan<int> tokens, KvCache cache, Span<float> logits, LogitsMode mode = LogitsMode.All)
        => ForwardEmbeddings(EmbedTokens(tokens), tokens.Length, cache, logits, mode);

    /// <summary>The token embeddings [n, hidden] of <paramref name="tokens"/> (ids checked against the vocabulary).</summary>
    public float[] EmbedTokens(ReadOnlySpan<int> tokens)
    {
        var h = new float[tokens.Length * Config.HiddenSize];
        Backend.Embed(Weights, tokens, h);
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
    /// <paramref name="logits"/> receives one row per sequence. Allocates nothing once the workspace holds the batch.
    /// </summary>
    public void ForwardBatch(ReadOnlySpan<int> tokens, IReadOnlyList<KvCache> caches, Span<float> logits)
    {
        if (tokens.Length != caches.Count)
            throw new ArgumentException($"{tokens.Length} tokens for {caches.Count} caches: a batch step takes one token per sequence");
        if (tokens.Length == 0) throw new ArgumentException("a forward pass needs at least one sequence");
        lock (_gate)
        {
            if (tokens.Length > _ws.Rows) _ws = new ForwardWorkspace(Config, tokens.Length);
            var ws = _ws;
            var segments = ws.Segments;
            segments.Clear();
            for (int i = 0; i < tokens.Length; i++) segments.Add(new BatchSegment(caches[i], 1));
            Backend.Embed(Weights, tokens, ws.Input.AsSpan(0, tokens.Length * Config.HiddenSize));
            try { ForwardSegments(ws.Input, segments, logits, LogitsMode.Last); }
            finally { segments.Clear(); }
        }
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
        int n = BatchRows.RowsOf(segments);
        if (h.Length < n * d) throw new ArgumentException($"input holds {h.Length} floats, the batch needs {n * d}");
        lock (_gate)
        {
            if (n > _ws.Rows) _ws = new ForwardWorkspace(c, n);
            var ws = _ws;
            var rows = ws.Batch;
            rows.Plan(segments);
            int lastRows = 0;
            for (int s = 0; s < segments.Count; s++)
                if (segments[s].WantLogits) ws.LogitRows[lastRows++] = rows.OffsetOf(s) + segments[s].Count - 1;
            int logitRows = mode switch { LogitsMode.All => n, LogitsMode.Last => lastRows, _ => 0 };
            if (logits.Length < logitRows * c.VocabSize)
                throw new ArgumentException($"logits buffer holds {logits.Length} floats, needs {logitRows * c.VocabSize}");

            // Position-dependent factors, once per forward for every layer: RoPE rotations and NoPE temperatures.
            var positions = ws.Positions.AsSpan(0, n);
            for (int t = 0; t < n; t++) positions[t] = rows.Position(t);
            int half = c.HeadDim / 2;
            Backend.RopeTables(positions, _ropeFreqs, ws.RopeCos.AsSpan(0, n * half), ws.RopeSin.AsSpan(0, n * half));
            if (c.AttnTemperatureTuning)
                for (int t = 0; t < n; t++) ws.Temperature[t] = AttentionMath.TemperatureScale(positions[t], c.FloorScale, c.AttnScale);

            var hs = h.AsSpan(0, n * d);
            var normed = ws.Normed.AsSpan(0, n * d);
            var delta = ws.Delta.AsSpan(0, n * d);
            float eps = (float)c.RmsNormEps;
            for (int layer = 0; layer < c.NumLayers; layer++)
            {
                var w = Weights.Layers[layer];
                Backend.RmsNorm(hs, w.AttentionNorm, eps, n, d, normed);
                Attention(ws, layer, n, ws.Delta);
                Backend.Add(hs, delta);

                Backend.RmsNorm(hs, w.FfnNorm, eps, n, d, normed);
                if (w.Dense is { } dense) FeedForward(ws, dense, normed, n, delta);
                else MixtureOfExperts(ws, w, n, delta);
                Backend.Add(hs, delta);
            }
            for (int s = 0; s < segments.Count; s++) segments[s].Cache.Length = rows.StartOf(s) + segments[s].Count;

            if (logitRows == 0) return;
            var finalNormed = normed[..(logitRows * d)];
            for (int r = 0; r < logitRows; r++)
            {
                int row = mode == LogitsMode.All ? r : ws.LogitRows[r];
                Backend.RmsNorm(hs.Slice(row * d, d), Weights.FinalNorm, eps, 1, d, finalNormed.Slice(r * d, d));
            }
            Backend.MatMul(Weights.Output, finalNormed, logitRows, logits[..(logitRows * c.VocabSize)]);
        }
    }

    /// <summary>
    /// Grouped-query attention. RoPE layers: rotate q,k (adjacent pairs), then QK-norm, then attend within the
    /// current chunk. NoPE layers: no rotation, temperature-scaled queries, attend to every earlier position.
    /// Each row attends only to its own sequence's keys.
    /// </summary>
    private void Attention(ForwardWorkspace ws, int layer, int n, float[] output)
    {
        var c = Config;
        var w = Weights.Layers[layer];
        int hd = c.HeadDim, qDim = c.QDim, kvDim = c.KvDim, half = hd / 2;
        bool useRope = c.UsesRope(layer);
        float eps = (float)c.RmsNormEps;
        var x = ws.Normed.AsSpan(0, n * c.HiddenSize);
        var q = ws.Q.AsSpan(0, n * qDim);
        var k = ws.K.AsSpan(0, n * kvDim);

        Backend.MatMul(w.Q, x, n, q);
        Backend.MatMul(w.K, x, n, k);
        Backend.MatMul(w.V, x, n, ws.V.AsSpan(0, n * kvDim));
        if (useRope)
        {
            var cos = ws.RopeCos.AsSpan(0, n * half);
            var sin = ws.RopeSin.AsSpan(0, n * half);
            Backend.Rope(q, n, c.NumHeads, hd, cos, sin);
            Backend.Rope(k, n, c.NumKvHeads, hd, cos, sin);
            if (c.UseQkNorm)
            {
                Backend.RmsNorm(q, default, eps, n * c.NumHeads, hd, q);
                Backend.RmsNorm(k, default, eps, n * c.NumKvHeads, hd, k);
            }
        }
        else if (c.AttnTemperatureTuning)
        {
            Backend.ScaleRows(q, qDim, ws.Temperature.AsSpan(0, n));
        }

        Backend.Attention(c, layer, chunked: useRope, ws.Q, ws.K, ws.V, ws.Batch, ws.Attn);
        Backend.MatMul(w.O, ws.Attn.AsSpan(0, n * qDim), n, output.AsSpan(0, n * c.HiddenSize));
    }

    /// <summary>SwiGLU: down(silu(gate·x) ⊙ up·x).</summary>
    private void FeedForward(ForwardWorkspace ws, FeedForward ff, ReadOnlySpan<float> x, int n, Span<float> output)
    {
        int f = ff.Gate.Rows;
        var gate = ws.Gate.AsSpan(0, n * f);
        var up = ws.Up.AsSpan(0, n * f);
        Backend.MatMul(ff.Gate, x, n, gate);
        Backend.MatMul(ff.Up, x, n, up);
        Backend.SwiGlu(gate, up);
        Backend.MatMul(ff.Down, gate, n, output);
    }

    /// <summary>
    /// MoE: router logits r = W_router·x; the top-k experts by raw logit are chosen; each chosen expert sees its
    /// input scaled by sigmoid(r_e) (scaling the input, not the output); the shared expert always runs on x.
    /// Tokens are grouped by expert so each expert's weights are read once per batch.
    /// </summary>
    private void MixtureOfExperts(ForwardWorkspace ws, LayerWeights w, int n, Span<float> output)
    {
        var c = Config;
        int d = c.HiddenSize, experts = c.NumExperts, k = c.TopK;
        var x = ws.Normed.AsSpan(0, n * d);
        var routerLogits = ws.RouterLogits.AsSpan(0, n * experts);
        Backend.MatMul(w.Router!, x, n, routerLogits);
        FeedForward(ws, w.SharedExpert!, x, n, output[..(n * d)]);

        // Routing table, grouped by expert (counting sort, tokens in order): slot i holds token SlotRows[i] with gate weight SlotGates[i].
        var firstSlot = ws.FirstSlot.AsSpan(0, experts + 1);
        var choice = ws.Choice;
        firstSlot.Clear();
        for (int t = 0; t < n; t++)
        {
            var top = choice.AsSpan(t * k, k);
            TopK(routerLogits.Slice(t * experts, experts), top);
            foreach (int e in top) firstSlot[e + 1]++;
        }
        for (int e = 0; e < experts; e++) firstSlot[e + 1] += firstSlot[e];
        var fill = ws.Fill.AsSpan(0, experts);
        firstSlot[..experts].CopyTo(fill);
        for (int t = 0; t < n; t++)
            foreach (int e in choice.AsSpan(t * k, k))
            {
                int slot = fill[e]++;
                ws.SlotRows[slot] = t;
                ws.SlotGates[slot] = Kernels.Ops.Sigmoid(routerLogits[t * experts + e]);
            }

        Backend.RoutedExperts(w.Experts!, x, d, new ExpertRouting(firstSlot, ws.SlotRows.AsSpan(0, n * k), ws.SlotGates.AsSpan(0, n * k)), ws, output[..(n * d)]);
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
        if (_ownsBackend) Backend.Dispose();
    }
}
