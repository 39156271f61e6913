using System.Buffers;
using System.Numerics.Tensors;
using Scout.Kernels;
using Scout.Model;

namespace Scout.Backends;

/// <summary>
/// The operations on this machine's cores: SIMD kernels (<see cref="Ops"/>, the weight matrices' own products) and
/// a fork/join <see cref="WorkerPool"/> for the parallel ones. Allocates nothing per call.
/// </summary>
public sealed class CpuBackend : IBackend
{
    private readonly bool _ownsPool;
    private readonly AttendJob _attendJob = new();

    /// <summary>A backend over <paramref name="threads"/> worker threads (0: every core).</summary>
    public CpuBackend(int threads = 0)
    {
        Pool = WorkerPool.Shared;
        if (threads > 0 && threads != Pool.Threads)
        {
            WorkerPool.ConfigureShared(threads);
            Pool = WorkerPool.Shared;
        }
        _ownsPool = false;
    }

    public string Name => "cpu";

    /// <summary>The threads the parallel operations run on.</summary>
    public WorkerPool Pool { get; }

    public int Threads => Pool.Threads;

    public void MatMul(IWeightMatrix w, ReadOnlySpan<float> x, int n, Span<float> y) => w.Multiply(x, n, y);

    public void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, int rows, int dim, Span<float> y)
    {
        for (int r = 0; r < rows; r++) Ops.RmsNorm(x.Slice(r * dim, dim), weight, eps, y.Slice(r * dim, dim));
    }

    public void RopeTables(ReadOnlySpan<int> positions, ReadOnlySpan<float> freqs, Span<float> cos, Span<float> sin)
    {
        int half = freqs.Length;
        for (int r = 0; r < positions.Length; r++)
        {
            int pos = positions[r];
            for (int j = 0; j < half; j++)
            {
                float angle = pos * freqs[j];
                cos[r * half + j] = (float)Math.Cos(angle);
                sin[r * half + j] = (float)Math.Sin(angle);
            }
        }
    }

    public void Rope(Span<float> x, int rows, int heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = headDim / 2, width = heads * headDim;
        for (int r = 0; r < rows; r++)
        {
            var c = cos.Slice(r * half, half);
            var s = sin.Slice(r * half, half);
            for (int h = 0; h < heads; h++) Ops.Rope(x.Slice(r * width + h * headDim, headDim), c, s);
        }
    }

    public void ScaleRows(Span<float> x, int dim, ReadOnlySpan<float> scales)
    {
        for (int r = 0; r < scales.Length; r++)
        {
            var row = x.Slice(r * dim, dim);
            TensorPrimitives.Multiply(row, scales[r], row);
        }
    }

    public void SwiGlu(Span<float> gate, ReadOnlySpan<float> up)
    {
        // silu(g)·u in stack-sized pieces (no scratch buffer, same per-element arithmetic as Ops.SwiGlu).
        const int Piece = 2048;
        Span<float> tmp = stackalloc float[Piece];
        for (int i = 0; i < gate.Length; i += Piece)
        {
            int len = Math.Min(Piece, gate.Length - i);
            var g = gate.Slice(i, len);
            var t = tmp[..len];
            TensorPrimitives.Sigmoid(g, t);
            TensorPrimitives.Multiply(g, t, g);
            TensorPrimitives.Multiply(g, up.Slice(i, len), g);
        }
    }

    public void Add(Span<float> x, ReadOnlySpan<float> delta) => TensorPrimitives.Add(x, delta, x);

    public void Embed(Llama4Weights weights, ReadOnlySpan<int> tokens, Span<float> h)
    {
        int d = h.Length / Math.Max(1, tokens.Length);
        for (int t = 0; t < tokens.Length; t++) weights.Embed(tokens[t], h.Slice(t * d, d));
    }

    public void RoutedExperts(FeedForward[] experts, ReadOnlySpan<float> x, int dim, ExpertRouting routing, ForwardWorkspace ws, Span<float> output)
    {
        int d = dim;
        for (int e = 0; e < experts.Length; e++)
        {
            int from = routing.FirstSlot[e], m = routing.FirstSlot[e + 1] - from;
            if (m == 0) continue;
            var xin = ws.ExpertIn.AsSpan(0, m * d);
            var yout = ws.ExpertOut.AsSpan(0, m * d);
            for (int i = 0; i < m; i++)
                TensorPrimitives.Multiply(x.Slice(routing.Rows[from + i] * d, d), routing.Gates[from + i], xin.Slice(i * d, d));
            var ff = experts[e];
            int f = ff.Gate.Rows;
            var gate = ws.Gate.AsSpan(0, m * f);
            var up = ws.Up.AsSpan(0, m * f);
            ff.Gate.Multiply(xin, m, gate);
            ff.Up.Multiply(xin, m, up);
            SwiGlu(gate, up);
            ff.Down.Multiply(gate, m, yout);
            for (int i = 0; i < m; i++)
            {
                var dst = output.Slice(routing.Rows[from + i] * d, d);
                TensorPrimitives.Add(dst, yout.Slice(i * d, d), dst);
            }
        }
    }

    public void Attention(Llama4Config config, int layer, bool chunked, float[] q, float[] k, float[] v, BatchRows rows, float[] output)
    {
        var segments = rows.Segments;
        for (int s = 0; s < segments.Count; s++)
            segments[s].Cache.Layers[layer].EnsureSlots(rows.StartOf(s) + segments[s].Count);
        AttendAll(config, layer, q, k, v, rows, chunked, output);

        // Store this batch's keys/values; chunked layers overwrite ring slots of earlier chunks.
        int kvDim = config.KvDim;
        for (int s = 0; s < segments.Count; s++)
        {
            var lc = segments[s].Cache.Layers[layer];
            int count = segments[s].Count;
            int firstStored = lc.Ring ? Math.Max(0, count - lc.Capacity) : 0;
            for (int t = firstStored; t < count; t++)
            {
                int row = rows.OffsetOf(s) + t;
                int slot = lc.Slot(rows.StartOf(s) + t);
                k.AsSpan(row * kvDim, kvDim).CopyTo(lc.K.AsSpan(slot * kvDim, kvDim));
                v.AsSpan(row * kvDim, kvDim).CopyTo(lc.V.AsSpan(slot * kvDim, kvDim));
            }
        }
    }

    /// <summary>softmax(q·kᵀ/√d)·v for every (row, head); keys before the batch come from the row's own cache.</summary>
    private void AttendAll(Llama4Config c, int layer, float[] q, float[] k, float[] v, BatchRows rows, bool chunked, float[] output)
    {
        // One job per (token, KV head): the query heads sharing that KV head are done together, so every key and
        // value row is read once per group rather than once per query head.
        var job = _attendJob;
        lock (job)
        {
            job.Set(c, layer, q, k, v, rows, chunked, output);
            try { Pool.Run(job, rows.Count * c.NumKvHeads); }
            finally { job.Clear(); }
        }
    }

    /// <summary>The per-(row, KV head) attention body as a reusable job object, so a layer's attention allocates no closure.</summary>
    private sealed class AttendJob : IParallelJob
    {
        private Llama4Config? _c;
        private int _layer;
        private float[] _q = [], _k = [], _v = [], _output = [];
        private BatchRows? _rows;
        private bool _chunked;

        public void Set(Llama4Config c, int layer, float[] q, float[] k, float[] v, BatchRows rows, bool chunked, float[] output)
        {
            _c = c; _layer = layer; _q = q; _k = k; _v = v; _rows = rows; _chunked = chunked; _output = output;
        }

        public void Clear()
        {
            _c = null; _rows = null; _q = _k = _v = _output = [];
        }

        public void Execute(int job)
        {
            var c = _c!;
            var rows = _rows!;
            float[] q = _q, k = _k, v = _v, output = _output;
            int hd = c.HeadDim, qDim = c.QDim, kvDim = c.KvDim, kvHeads = c.NumKvHeads;
            int group = c.NumHeads / kvHeads;
            float scale = 1f / MathF.Sqrt(hd);
            int chunk = c.AttentionChunkSize;

            int t = job / kvHeads, kvHead = job % kvHeads;
            int s = rows.SegmentOf(t);
            int start = rows.StartOf(s), rowOffset = rows.OffsetOf(s);
            var lc = rows.Segments[s].Cache.Layers[_layer];
            int pos = rows.Position(t);
            int from = AttentionMath.FirstVisibleKey(pos, _chunked, chunk);
            int count = pos - from + 1;
            int firstHead = kvHead * group;
            float[] scores = ArrayPool<float>.Shared.Rent(group * count);
            try
            {
                for (int kp = from; kp <= pos; kp++)
                {
                    var key = KeyOrValue(k, lc.K, kp, start, rowOffset, lc, kvDim).Slice(kvHead * hd, hd);
                    for (int g = 0; g < group; g++)
                        scores[g * count + kp - from] = Ops.Dot(new ReadOnlySpan<float>(q, t * qDim + (firstHead + g) * hd, hd), key) * scale;
                }
                for (int g = 0; g < group; g++)
                {
                    Ops.Softmax(scores.AsSpan(g * count, count));
                    output.AsSpan(t * qDim + (firstHead + g) * hd, hd).Clear();
                }
                for (int kp = from; kp <= pos; kp++)
                {
                    var value = KeyOrValue(v, lc.V, kp, start, rowOffset, lc, kvDim).Slice(kvHead * hd, hd);
                    for (int g = 0; g < group; g++)
                        Ops.AddScaled(output.AsSpan(t * qDim + (firstHead + g) * hd, hd), value, scores[g * count + kp - from]);
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(scores);
            }
        }
    }

    private static ReadOnlySpan<float> KeyOrValue(float[] batch, float[] cached, int pos, int start, int rowOffset, KvCache.LayerCache lc, int kvDim)
        => pos >= start
            ? new ReadOnlySpan<float>(batch, (rowOffset + pos - start) * kvDim, kvDim)
            : new ReadOnlySpan<float>(cached, lc.Slot(pos) * kvDim, kvDim);

    public void Dispose()
    {
        if (_ownsPool) Pool.Dispose();
    }
}
