using Scout.Backends;
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
        _ws = new ForwardWorkspace(config, Math.Max(1, maxRows), backend);
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
            if (rows > _ws.Rows) Grow(rows);
    }

    /// <summary>Replaces the workspace by one for <paramref name="rows"/> rows (the old one's device memory is freed).</summary>
    private void Grow(int rows)
    {
        var old = _ws;
        _ws = new ForwardWorkspace(Config, rows, Backend);
        old.Release();
    }

    /// <summary>
    /// Runs <paramref name="tokens"/> at positions cache.Length.. and appends them to the cache. The embeddings are
    /// looked up straight into the workspace, so a decode step (one token) allocates nothing once the workspace holds it.
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, KvCache cache, Span<float> logits, LogitsMode mode = LogitsMode.All)
    {
        if (tokens.Length == 0)
        {
            ForwardEmbeddings([], 0, cache, logits, mode);
            return;
        }
        lock (_gate)
        {
            int n = tokens.Length;
            if (n > _ws.Rows) Grow(n);
            var segments = _ws.Segments;
            segments.Clear();
            segments.Add(new BatchSegment(cache, n));
            var side = Placement.EmbeddingOnDevice ? Device : HostSide;
            side.Backend.Embed(Weights, tokens, side.Ws.Input.Take(n * Config.HiddenSize));
            try { Decode(segments, side, logits, mode); }
            finally { segments.Clear(); }
        }
    }

    /// <summary>The token embeddings [n, hidden] of <paramref name="tokens"/> in host memory (ids checked against the vocabulary).</summary>
    public float[] EmbedTokens(ReadOnlySpan<int> tokens)
    {
        int d = Config.HiddenSize;
        var h = new float[tokens.Length * d];
        for (int t = 0; t < tokens.Length; t++) Weights.Embed(tokens[t], h.AsSpan(t * d, d));
        return h;
    }

    /// <summary>
    /// Runs n input embeddings [n, hidden] (token embeddings, or image features merged in) through the decoder.
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
            if (tokens.Length > _ws.Rows) Grow(tokens.Length);
            var segments = _ws.Segments;
            segments.Clear();
            for (int i = 0; i < tokens.Length; i++) segments.Add(new BatchSegment(caches[i], 1));
            var side = Placement.EmbeddingOnDevice ? Device : HostSide;
            side.Backend.Embed(Weights, tokens, side.Ws.Input.Take(tokens.Length * Config.HiddenSize));
            try { Decode(segments, side, logits, LogitsMode.Last); }
            finally { segments.Clear(); }
        }
    }

    /// <summary>
    /// The decoder over rows that belong to one or more sequences: segment s owns the next segments[s].Count rows of
    /// <paramref name="h"/> (host memory, not modified) and continues its cache at cache.Length. With
    /// <see cref="LogitsMode.Last"/> each segment that wants logits gets one row (its last token), in segment order;
    /// with All, every row does.
    /// </summary>
    public void ForwardSegments(float[] h, IReadOnlyList<BatchSegment> segments, Span<float> logits, LogitsMode mode = LogitsMode.All)
    {
        int d = Config.HiddenSize;
        int n = BatchRows.RowsOf(segments);
        if (h.Length < n * d) throw new ArgumentException($"input holds {h.Length} floats, the batch needs {n * d}");
        lock (_gate)
        {
            if (n > _ws.Rows) Grow(n);
            var side = LayerSide(0);
            side.Backend.Upload(h.AsSpan(0, n * d), side.Ws.Input.Take(n * d));
            Decode(segments, side, logits, mode);
        }
    }

    /// <summary>The backend and workspace one part of the model runs on.</summary>
    private readonly record struct Side(IBackend Backend, ForwardWorkspace Ws);

    private Placement Placement => Weights.Placement;
    private Side Device => new(Backend, _ws);
    private Side HostSide => new(Backend.Host, _ws.Host);
    private Side LayerSide(int layer) => Placement.LayerOnDevice(layer) ? Device : HostSide;

    /// <summary>Moves the residual stream (n rows, in <c>Input</c>) from one side to the other.</summary>
    private Side MoveTo(Side from, Side to, int floats)
    {
        if (ReferenceEquals(from.Backend, to.Backend)) return to;
        if (ReferenceEquals(to.Backend, Backend.Host)) from.Backend.Download(from.Ws.Input.Take(floats), to.Ws.Input.Take(floats).HostFloats);
        else to.Backend.Upload(from.Ws.Input.Take(floats).HostFloats, to.Ws.Input.Take(floats));
        return to;
    }

    /// <summary>The layers and the head over the residual rows in <paramref name="side"/>'s Input (see <see cref="ForwardSegments"/>).</summary>
    private void Decode(IReadOnlyList<BatchSegment> segments, Side side, Span<float> logits, LogitsMode mode)
    {
        var c = Config;
        int d = c.HiddenSize;
        var ws = _ws;
        var rows = ws.Batch;
        rows.Plan(segments);
        int n = rows.Count;
        int lastRows = 0;
        for (int s = 0; s < segments.Count; s++)
            if (segments[s].WantLogits) ws.LogitRows[lastRows++] = rows.OffsetOf(s) + segments[s].Count - 1;
        int logitRows = mode switch { LogitsMode.All => n, LogitsMode.Last => lastRows, _ => 0 };
        if (logits.Length < logitRows * c.VocabSize)
            throw new ArgumentException($"logits buffer holds {logits.Length} floats, needs {logitRows * c.VocabSize}");

        // Position-dependent factors, once per forward for every layer: RoPE rotations and NoPE temperatures,
        // computed on the host and copied to the device when layers run there.
        var positions = ws.Positions.AsSpan(0, n);
        for (int t = 0; t < n; t++) positions[t] = rows.Position(t);
        PositionTables(positions);

        float eps = (float)c.RmsNormEps;
        for (int layer = 0; layer < c.NumLayers; layer++)
        {
            var w = Weights.Layers[layer];
            side = MoveTo(side, LayerSide(layer), n * d);
            var (b, lw) = side;
            var h = lw.Input.Take(n * d);
            var normed = lw.Normed.Take(n * d);
            var delta = lw.Delta.Take(n * d);
            b.RmsNorm(h, w.AttentionNorm, eps, n, d, normed);
            Attention(side, layer, n, delta);
            b.Add(h, delta);

            b.RmsNorm(h, w.FfnNorm, eps, n, d, normed);
            if (w.Dense is { } dense) FeedForward(side, dense, normed, n, delta);
            else MixtureOfExperts(side, w, n, delta);
            b.Add(h, delta);
        }
        for (int s = 0; s < segments.Count; s++) segments[s].Cache.Length = rows.StartOf(s) + segments[s].Count;

        if (logitRows == 0) return;
        side = MoveTo(side, Placement.OutputOnDevice ? Device : HostSide, n * d);
        var hs = side.Ws.Input.Take(n * d);
        var finalNormed = side.Ws.Normed.Take(logitRows * d);
        for (int r = 0; r < logitRows; r++)
        {
            int row = mode == LogitsMode.All ? r : ws.LogitRows[r];
            side.Backend.RmsNorm(hs.Slice(row * d, d), Weights.FinalNorm, eps, 1, d, finalNormed.Slice(r * d, d));
        }
        side.Backend.MatMulToHost(Weights.Output, finalNormed, logitRows, side.Ws, logits[..(logitRows * c.VocabSize)]);
    }

    private void PositionTables(ReadOnlySpan<int> positions)
    {
        var c = Config;
        int n = positions.Length, half = c.HeadDim / 2;
        var (host, hw) = HostSide;
        var (device, dw) = Device;
        bool upload = !ReferenceEquals(host, device) && Placement.DeviceLayers > 0;
        host.RopeTables(positions, _ropeFreqs, hw.RopeCos.Take(n * half), hw.RopeSin.Take(n * half));
        if (upload)
        {
            device.Upload(hw.RopeCos.Take(n * half).HostFloats, dw.RopeCos.Take(n * half));
            device.Upload(hw.RopeSin.Take(n * half).HostFloats, dw.RopeSin.Take(n * half));
        }
        if (!c.AttnTemperatureTuning) return;
        host.AttentionTemperature(positions, (float)c.FloorScale, (float)c.AttnScale, hw.Temperature.Take(n));
        if (upload) device.Upload(hw.Temperature.Take(n).HostFloats, dw.Temperature.Take(n));
    }

    /// <summary>
    /// Grouped-query attention. RoPE layers: rotate q,k (adjacent pairs), then QK-norm, then attend within the
    /// current chunk. NoPE layers: no rotation, temperature-scaled queries, attend to every earlier position.
    /// Each row attends only to its own sequence's keys.
    /// </summary>
    private void Attention(Side side, int layer, int n, BufferView output)
    {
        var c = Config;
        var (b, ws) = side;
        var w = Weights.Layers[layer];
        int hd = c.HeadDim, qDim = c.QDim, kvDim = c.KvDim, half = hd / 2;
        bool useRope = c.UsesRope(layer);
        float eps = (float)c.RmsNormEps;
        var x = ws.Normed.Take(n * c.HiddenSize);
        var q = ws.Q.Take(n * qDim);
        var k = ws.K.Take(n * kvDim);

        b.MatMulShared(x, n, w.Q, q, w.K, k, w.V, ws.V.Take(n * kvDim));
        if (useRope)
        {
            var cos = ws.RopeCos.Take(n * half);
            var sin = ws.RopeSin.Take(n * half);
            b.Rope(q, n, c.NumHeads, hd, cos, sin);
            b.Rope(k, n, c.NumKvHeads, hd, cos, sin);
            if (c.UseQkNorm)
            {
                b.RmsNorm(q, null, eps, n * c.NumHeads, hd, q);
                b.RmsNorm(k, null, eps, n * c.NumKvHeads, hd, k);
            }
        }
        else if (c.AttnTemperatureTuning)
        {
            b.ScaleRows(q, n, qDim, ws.Temperature.Take(n));
        }

        b.Attention(c, layer, chunked: useRope, ws.Q, ws.K, ws.V, _ws.Batch, ws.Attn);
        b.MatMul(w.O, ws.Attn.Take(n * qDim), n, output);
    }

    /// <summary>SwiGLU: down(silu(gate·x) ⊙ up·x).</summary>
    private static void FeedForward(Side side, FeedForward ff, BufferView x, int n, BufferView output)
    {
        var (b, ws) = side;
        int f = ff.Gate.Rows;
        var gate = ws.Gate.Take(n * f);
        var up = ws.Up.Take(n * f);
        b.MatMulShared(x, n, ff.Gate, gate, ff.Up, up);
        b.SwiGlu(gate, up);
        b.MatMul(ff.Down, gate, n, output);
    }

    /// <summary>
    /// MoE: router logits r = W_router·x; the top-k experts by raw logit are chosen; each chosen expert sees its
    /// input scaled by sigmoid(r_e) (scaling the input, not the output); the shared expert always runs on x.
    /// The backend groups rows by expert so each expert's weights are read once per batch.
    /// </summary>
    private void MixtureOfExperts(Side side, LayerWeights w, int n, BufferView output)
    {
        var c = Config;
        var (b, ws) = side;
        var x = ws.Normed.Take(n * c.HiddenSize);
        var routerLogits = ws.RouterLogits.Take(n * c.NumExperts);
        b.MatMul(w.Router!, x, n, routerLogits);
        FeedForward(side, w.SharedExpert!, x, n, output);
        b.RoutedExperts(w.Experts!, routerLogits, x, n, c.TopK, ws, output);
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
        _ws.Release();
        if (_ownsBackend) Backend.Dispose();
    }
}
