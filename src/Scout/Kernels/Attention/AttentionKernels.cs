using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Scout.Kernels.Quant;
using Scout.Model;
using Scout.Planning;

namespace Scout.Kernels.Attention;

/// <summary>Instruction-set variant of the attention kernels (the same choice as the weight kernels' paths).</summary>
public enum AttentionPath
{
    /// <summary>Plain C#, one element at a time.</summary>
    Scalar,
    /// <summary>Portable <see cref="System.Runtime.Intrinsics.Vector128"/> code.</summary>
    Vector128,
    /// <summary>256-bit AVX2 + FMA.</summary>
    Avx2,
    /// <summary>512-bit AVX-512F.</summary>
    Avx512,
}

/// <summary>The query rows of one attention call: which cache each row reads and which keys it may see.</summary>
/// <param name="Rows">Number of query rows.</param>
/// <param name="Layers">K/V storage per sequence (one layer of each sequence's cache).</param>
/// <param name="RowSequence">Index into <paramref name="Layers"/> of row r.</param>
/// <param name="RowPosition">Position of row r: it sees keys up to and including it (causal).</param>
/// <param name="RowFirstKey">First key row r sees (the chunk start in chunked layers, 0 in global ones).</param>
internal readonly record struct AttentionRows(int Rows, KvLayer[] Layers, int[] RowSequence, int[] RowPosition, int[] RowFirstKey);

/// <summary>
/// Grouped-query attention over a <see cref="KvCache"/> layer: out = softmax(q·kᵀ/√d)·v for every (row, head), with
/// the keys each row may see given by <see cref="AttentionRows"/> (causal, chunked or global masks exactly).
///
/// Flash-attention style: a job takes a tile of up to <see cref="QueryTile"/> query rows of one sequence and one KV
/// head (so the query heads of a GQA group share every K/V row read), walks the visible keys in tiles of
/// <see cref="KeyTile"/> with an online softmax (running max and sum, the accumulator rescaled once per key tile),
/// and never materialises the full score matrix. When there are too few tiles to keep the threads busy (decode),
/// the key range is split across jobs (flash-decoding) and the partial (max, sum, accumulator) triples are merged.
/// Keys and values are read in their stored type: f32 in place, f16/bf16 widened per row, q8_0/q4_0 keys dotted
/// with the query quantized to 8-bit blocks (as the weight kernels do), q8_0/q4_0 values dequantized per row.
/// </summary>
public sealed unsafe partial class AttentionKernels
{
    public const int QueryTile = 16;
    public const int KeyTile = 64;

    public AttentionPath Path { get; }

    public AttentionKernels(AttentionPath path)
    {
        if (!IsAvailable(path)) throw new ArgumentException($"attention path {path} is not supported by this CPU");
        Path = path;
    }

    /// <summary>
    /// The fastest path this CPU supports. AVX-512 is preferred where the JIT accelerates it (on these Xeons the
    /// 512-bit FMA halves the dot-product instruction count); SCOUT_ATTENTION=Avx512|Avx2|Vector128|Scalar overrides.
    /// </summary>
    public static AttentionPath Best { get; } =
        Environment.GetEnvironmentVariable("SCOUT_ATTENTION") is { } forced && Enum.TryParse<AttentionPath>(forced, true, out var p) && IsAvailable(p) ? p
        : Avx512F.IsSupported && Vector512.IsHardwareAccelerated ? AttentionPath.Avx512
        : Avx2.IsSupported && Fma.IsSupported ? AttentionPath.Avx2
        : System.Runtime.Intrinsics.Vector128.IsHardwareAccelerated ? AttentionPath.Vector128
        : AttentionPath.Scalar;

    public static bool IsAvailable(AttentionPath path) => path switch
    {
        AttentionPath.Scalar or AttentionPath.Vector128 => true,
        AttentionPath.Avx2 => Avx2.IsSupported && Fma.IsSupported,
        AttentionPath.Avx512 => Avx512F.IsSupported,
        _ => false,
    };

    public static IEnumerable<AttentionPath> AvailablePaths() => Enum.GetValues<AttentionPath>().Where(IsAvailable);

    private KernelPath QuantPath => Path switch
    {
        AttentionPath.Avx512 when DotKernels.IsAvailable(KernelPath.Avx2) => KernelPath.Avx2, // AVX2 is the faster int8 path (see DotKernels.Best)
        AttentionPath.Avx512 => KernelPath.Avx512,
        AttentionPath.Avx2 => KernelPath.Avx2,
        AttentionPath.Vector128 => KernelPath.Vector128,
        _ => KernelPath.Scalar,
    };

    /// <summary>
    /// Attention for every row of <paramref name="rows"/>: <paramref name="q"/> holds rows × heads × headDim queries,
    /// <paramref name="output"/> receives the same shape. <paramref name="splits"/> forces the number of key-range
    /// splits per tile (0: chosen from the work and the pool's threads).
    /// </summary>
    internal void Attend(WorkerPool pool, int heads, int kvHeads, int headDim, ReadOnlySpan<float> q, Span<float> output, in AttentionRows rows, int splits = 0)
    {
        if (heads % kvHeads != 0) throw new ArgumentException($"{heads} query heads is not a multiple of {kvHeads} KV heads");
        int n = rows.Rows;
        if (q.Length < (long)n * heads * headDim || output.Length < (long)n * heads * headDim)
            throw new ArgumentException("query or output buffer too small for the rows");
        if (n == 0) return;

        lock (_job) AttendLocked(pool, heads, kvHeads, headDim, q, output, rows, splits);
    }

    private void AttendLocked(WorkerPool pool, int heads, int kvHeads, int headDim, ReadOnlySpan<float> q, Span<float> output, in AttentionRows rows, int splits)
    {
        int n = rows.Rows;
        // Tiles: runs of consecutive rows of one sequence, at most QueryTile long.
        if (_tileStart.Length < n + 1) _tileStart = new int[n + 1];
        var tileStart = _tileStart;
        int tiles = 0;
        for (int r = 0; r < n;)
        {
            tileStart[tiles++] = r;
            int end = r + 1;
            while (end < n && end - r < QueryTile && rows.RowSequence[end] == rows.RowSequence[r]) end++;
            r = end;
        }
        tileStart[tiles] = n;

        int longest = 0;
        for (int t = 0; t < tiles; t++)
        {
            int lo = int.MaxValue, hi = 0;
            for (int r = tileStart[t]; r < tileStart[t + 1]; r++) { lo = Math.Min(lo, rows.RowFirstKey[r]); hi = Math.Max(hi, rows.RowPosition[r]); }
            longest = Math.Max(longest, hi - lo + 1);
        }
        if (splits <= 0)
        {
            int work = tiles * kvHeads;
            splits = work >= pool.Threads * 2 ? 1 : Math.Clamp((pool.Threads * 4 + work - 1) / work, 1, Math.Max(1, longest / 256));
        }
        splits = Math.Clamp(splits, 1, Math.Max(1, longest));

        int group = heads / kvHeads;
        int jobs = tiles * kvHeads * splits;
        int partialStride = QueryTile * group * (headDim + 2);
        if (splits > 1 && _partials.Length < jobs * partialStride) _partials = new float[jobs * partialStride];
        fixed (float* qp = q)
        fixed (float* op = output)
        {
            var job = _job;
            job.Kernels = this; job.Rows = rows; job.TileStart = tileStart; job.Q = qp; job.Output = op;
            job.Partials = splits > 1 ? _partials : null;
            job.Heads = heads; job.KvHeads = kvHeads; job.HeadDim = headDim; job.Group = group; job.Splits = splits; job.PartialStride = partialStride;
            job.Blocked = BlockedApplies(Path, headDim);
            try
            {
                pool.Run(job, jobs);
                if (splits > 1) job.Merge(tiles);
            }
            finally
            {
                job.Rows = default;
                job.Q = job.Output = null;
            }
        }
    }

    // Reused across calls (under the job's lock), so an attention call allocates nothing once warm.
    private readonly Job _job = new();
    private int[] _tileStart = [];
    private float[] _partials = [];
    private KvLayer[] _layers = [];
    private int[] _seq = [], _pos = [], _first = [];

    /// <summary>
    /// One layer's attention for a batch: appends the batch's keys and values to each sequence's cache, then
    /// attends every row over the keys it may see (its own sequence; causal; within its chunk in chunked layers).
    /// A ring (chunked layer) holds one chunk, so a sequence whose rows cross a chunk boundary is stored and attended
    /// one chunk at a time: the later chunk overwrites the earlier one's slots.
    /// </summary>
    public void StoreAndAttend(WorkerPool pool, Llama4Config c, int layer, bool chunked, float[] q, float[] k, float[] v, BatchRows rows, float[] output)
    {
        lock (_job)
        {
            int kvDim = c.KvDim, qDim = c.QDim, chunk = c.AttentionChunkSize, n = rows.Count;
            var segments = rows.Segments;
            if (_layers.Length < segments.Count) _layers = new KvLayer[Math.Max(segments.Count, 2 * _layers.Length)];
            if (_seq.Length < n) (_seq, _pos, _first) = (new int[n], new int[n], new int[n]);
            var layers = _layers;
            bool piecewise = false;
            for (int s = 0; s < segments.Count; s++)
            {
                layers[s] = segments[s].Cache.Layers[layer];
                int first = rows.StartOf(s), last = first + segments[s].Count - 1;
                piecewise |= layers[s].Ring && AttentionMath.ChunkStart(first, chunk) != AttentionMath.ChunkStart(last, chunk);
            }
            try
            {
                if (!piecewise)
                {
                    for (int s = 0; s < segments.Count; s++)
                    {
                        int off = rows.OffsetOf(s) * kvDim, count = segments[s].Count;
                        segments[s].Cache.Store(layer, rows.StartOf(s), k.AsSpan(off, count * kvDim), v.AsSpan(off, count * kvDim), count);
                    }
                    for (int r = 0; r < n; r++)
                    {
                        _seq[r] = rows.SegmentOf(r);
                        _pos[r] = rows.Position(r);
                        _first[r] = AttentionMath.FirstVisibleKey(_pos[r], chunked, chunk);
                    }
                    AttendLocked(pool, c.NumHeads, c.NumKvHeads, c.HeadDim, q.AsSpan(0, n * qDim), output, new AttentionRows(n, layers, _seq, _pos, _first), 0);
                    return;
                }
                for (int s = 0; s < segments.Count; s++)
                {
                    int start = rows.StartOf(s), count = segments[s].Count;
                    layers[0] = segments[s].Cache.Layers[layer];
                    for (int p = start; p < start + count;)
                    {
                        int end = Math.Min(start + count, AttentionMath.ChunkStart(p, chunk) + chunk);
                        int row0 = rows.OffsetOf(s) + p - start, m = end - p;
                        segments[s].Cache.Store(layer, p, k.AsSpan(row0 * kvDim, m * kvDim), v.AsSpan(row0 * kvDim, m * kvDim), m);
                        for (int i = 0; i < m; i++)
                        {
                            _seq[i] = 0;
                            _pos[i] = p + i;
                            _first[i] = AttentionMath.FirstVisibleKey(p + i, chunked, chunk);
                        }
                        AttendLocked(pool, c.NumHeads, c.NumKvHeads, c.HeadDim, q.AsSpan(row0 * qDim, m * qDim), output.AsSpan(row0 * qDim, m * qDim),
                            new AttentionRows(m, layers, _seq, _pos, _first), 0);
                        p = end;
                    }
                }
            }
            finally
            {
                layers.AsSpan(0, segments.Count).Clear(); // hold no cache beyond the call
            }
        }
    }

    private sealed class Job : IParallelJob
    {
        public AttentionKernels? Kernels;
        public AttentionRows Rows;
        public int[] TileStart = [];
        public float* Q, Output;
        public float[]? Partials;
        public int Heads, KvHeads, HeadDim, Group, Splits, PartialStride;
        public bool Blocked;

        public void Execute(int index)
        {
            int split = index % Splits;
            int kvHead = index / Splits % KvHeads;
            int tile = index / Splits / KvHeads;
            if (Blocked) Kernels!.RunTileBlocked(this, tile, kvHead, split, index);
            else Kernels!.RunTile(this, tile, kvHead, split, index);
        }

        /// <summary>Combines the splits of every (tile, KV head): out = Σ e^(m_s−M)·acc_s / Σ e^(m_s−M)·l_s.</summary>
        public void Merge(int tiles)
        {
            int hd = HeadDim;
            fixed (float* part = Partials)
                for (int t = 0; t < tiles; t++)
                    for (int kh = 0; kh < KvHeads; kh++)
                    {
                        int r0 = TileStart[t], rowsInTile = TileStart[t + 1] - r0;
                        for (int qi = 0; qi < rowsInTile * Group; qi++)
                        {
                            int i = qi / Group, g = qi % Group;
                            float* dst = Output + (long)(r0 + i) * Heads * hd + (kh * Group + g) * hd;
                            float mMax = float.NegativeInfinity;
                            for (int s = 0; s < Splits; s++)
                            {
                                float* p = part + (long)((t * KvHeads + kh) * Splits + s) * PartialStride + qi * (hd + 2);
                                mMax = MathF.Max(mMax, p[0]);
                            }
                            new Span<float>(dst, hd).Clear();
                            float l = 0;
                            for (int s = 0; s < Splits; s++)
                            {
                                float* p = part + (long)((t * KvHeads + kh) * Splits + s) * PartialStride + qi * (hd + 2);
                                if (p[0] == float.NegativeInfinity) continue;
                                float w = MathF.Exp(p[0] - mMax);
                                l += w * p[1];
                                Axpy(Kernels!.Path, dst, w, p + 2, hd);
                            }
                            Scale(Kernels!.Path, dst, 1f / l, hd);
                        }
                    }
        }
    }

    /// <summary>Per-thread work buffers, grown on demand (no allocation once warm).</summary>
    private sealed class Scratch
    {
        [ThreadStatic] private static Scratch? _current;
        public static Scratch ForCurrentThread() => _current ??= new Scratch();

        public float[] Scores = [], Acc = [], Max = [], Sum = [], Key = [], Value = [], QScale = [], KeyTileRows = [], ValueTileRows = [], QueryScaled = [];
        public sbyte[] QQuant = [];
        public int[] QSums = [];

        private int _queries, _headDim;

        public void Ensure(int queries, int headDim)
        {
            if (queries <= _queries && headDim <= _headDim) return;
            queries = _queries = Math.Max(queries, _queries);
            headDim = _headDim = Math.Max(headDim, _headDim);
            Scores = new float[queries * KeyTile];
            Acc = new float[queries * headDim];
            Max = new float[queries];
            Sum = new float[queries];
            Key = new float[headDim];
            Value = new float[headDim];
            KeyTileRows = new float[KeyTile * headDim];
            ValueTileRows = new float[KeyTile * headDim];
            QueryScaled = new float[queries * headDim];
            QQuant = new sbyte[queries * headDim];
            QScale = new float[queries * ((headDim + 31) / 32)];
            QSums = new int[queries * ((headDim + 31) / 32)];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RunTile(Job job, int tile, int kvHead, int split, int jobIndex)
    {
        ref readonly var rows = ref job.Rows;
        int r0 = job.TileStart[tile], tr = job.TileStart[tile + 1] - r0;
        int hd = job.HeadDim, group = job.Group, queries = tr * group;
        var layer = rows.Layers[rows.RowSequence[r0]];
        float scale = 1f / MathF.Sqrt(hd);

        int lo = int.MaxValue, hi = 0;
        for (int i = 0; i < tr; i++) { lo = Math.Min(lo, rows.RowFirstKey[r0 + i]); hi = Math.Max(hi, rows.RowPosition[r0 + i]); }
        var (from, to) = SplitRange(lo, hi, split, job.Splits);

        var sc = Scratch.ForCurrentThread();
        sc.Ensure(queries, hd);
        var kKind = layer.KeyType.Kind;
        var vKind = layer.ValueType.Kind;
        bool quantKeys = kKind is KvKind.Q8_0 or KvKind.Q4_0;
        int blocks = hd / 32;
        var qpath = QuantPath;

        fixed (float* scores = sc.Scores, acc = sc.Acc, mrow = sc.Max, lrow = sc.Sum, kbuf = sc.Key, vbuf = sc.Value, qd = sc.QScale)
        fixed (sbyte* qq = sc.QQuant)
        fixed (int* qs = sc.QSums)
        {
            float** qv = stackalloc float*[queries];
            byte** kptr = stackalloc byte*[KeyTile];
            byte** vptr = stackalloc byte*[KeyTile];
            StartTile(job, r0, kvHead, queries, quantKeys, qv, mrow, lrow, acc, qq, qd, qs);

            for (int k0 = from; k0 < to; k0 += KeyTile)
            {
                int kn = Math.Min(KeyTile, to - k0);
                // Scores of the tile, masked rows at -inf.
                layer.RowPointers(k0, kn, kptr, vptr, kvHead);
                for (int j = 0; j < kn; j++)
                {
                    int pos = k0 + j;
                    byte* krow = kptr[j];
                    float* kf = (float*)krow;
                    if (kKind == KvKind.F16 || kKind == KvKind.BF16)
                    {
                        KvRowCodec.Decode(layer.KeyType, krow, new Span<float>(kbuf, hd));
                        kf = kbuf;
                    }
                    for (int i = 0; i < tr; i++)
                    {
                        bool visible = pos >= rows.RowFirstKey[r0 + i] && pos <= rows.RowPosition[r0 + i];
                        for (int g = 0; g < group; g++)
                        {
                            int qi = i * group + g;
                            float s;
                            if (!visible) s = float.NegativeInfinity;
                            else if (kKind == KvKind.Q8_0) s = DotKernels.DotQ8_0(qpath, krow, qq + qi * hd, qd + qi * blocks, blocks) * scale;
                            else if (kKind == KvKind.Q4_0) s = DotKernels.DotQ4_0(qpath, krow, qq + qi * hd, qd + qi * blocks, qs + qi * blocks, blocks) * scale;
                            else s = Dot(Path, qv[qi], kf, hd) * scale;
                            scores[qi * KeyTile + j] = s;
                        }
                    }
                }
                // Online softmax: rescale each accumulator once per tile, turn scores into weights.
                for (int qi = 0; qi < queries; qi++)
                {
                    float* srow = scores + qi * KeyTile;
                    float tmax = float.NegativeInfinity;
                    for (int j = 0; j < kn; j++) tmax = MathF.Max(tmax, srow[j]);
                    if (tmax == float.NegativeInfinity)
                    {
                        new Span<float>(srow, kn).Clear(); // nothing visible in this tile: zero weights
                        continue;
                    }
                    float mNew = MathF.Max(mrow[qi], tmax);
                    RaiseMax(qi, mNew, mrow, lrow, acc, hd);
                    float sum = 0;
                    for (int j = 0; j < kn; j++)
                    {
                        float p = srow[j] == float.NegativeInfinity ? 0 : MathF.Exp(srow[j] - mNew);
                        srow[j] = p;
                        sum += p;
                    }
                    lrow[qi] += sum;
                }
                // Values: each row read once for the whole group and tile.
                for (int j = 0; j < kn; j++)
                {
                    byte* vrow = vptr[j];
                    float* vf = (float*)vrow;
                    if (vKind != KvKind.F32)
                    {
                        KvRowCodec.Decode(layer.ValueType, vrow, new Span<float>(vbuf, hd));
                        vf = vbuf;
                    }
                    for (int qi = 0; qi < queries; qi++)
                    {
                        float p = scores[qi * KeyTile + j];
                        if (p != 0) Axpy(Path, acc + qi * hd, p, vf, hd);
                    }
                }
            }

            WriteTileResult(job, qv, queries, hd, acc, mrow, lrow, jobIndex);
        }
    }

    /// <summary>Keys [from, to) of split <paramref name="split"/> of <paramref name="splits"/> over the positions lo..hi (inclusive).</summary>
    private static (int From, int To) SplitRange(int lo, int hi, int split, int splits)
    {
        long len = hi - lo + 1;
        return (lo + (int)(len * split / splits), lo + (int)(len * (split + 1) / splits));
    }

    /// <summary>
    /// Starts a tile of <paramref name="queries"/> (row, group member) queries of one KV head: each query's pointer into
    /// job.Q, an empty softmax state (max −∞, sum 0, zero accumulator) and, for quantized keys, its q8_0 blocks and their
    /// sums (what the integer key dots read).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StartTile(Job job, int r0, int kvHead, int queries, bool quantKeys, float** qv, float* mrow, float* lrow, float* acc,
        sbyte* qq, float* qd, int* qs)
    {
        int hd = job.HeadDim, group = job.Group, blocks = hd / 32;
        for (int qi = 0; qi < queries; qi++)
        {
            int i = qi / group, g = qi % group;
            qv[qi] = job.Q + (long)(r0 + i) * job.Heads * hd + (kvHead * group + g) * hd;
            mrow[qi] = float.NegativeInfinity;
            lrow[qi] = 0;
            if (quantKeys)
                for (int b = 0; b < blocks; b++)
                {
                    sbyte* dst = qq + qi * hd + b * 32;
                    qd[qi * blocks + b] = Q8Activations.QuantizeBlock(qv[qi] + b * 32, dst, 32);
                    int s = 0;
                    for (int j = 0; j < 32; j++) s += dst[j];
                    qs[qi * blocks + b] = s;
                }
        }
        new Span<float>(acc, queries * hd).Clear();
    }

    /// <summary>Online softmax: when a tile raises query qi's running max to <paramref name="mNew"/>, its sum and accumulator are rescaled once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void RaiseMax(int qi, float mNew, float* mrow, float* lrow, float* acc, int hd)
    {
        if (mNew == mrow[qi]) return;
        float alpha = MathF.Exp(mrow[qi] - mNew);
        lrow[qi] *= alpha;
        Scale(Path, acc + qi * hd, alpha, hd);
        mrow[qi] = mNew;
    }

    /// <summary>The tile's normalised output rows, or its (max, sum, accumulator) triples when the keys are split.</summary>
    private static void WriteTileResult(Job job, float** qv, int queries, int hd, float* acc, float* mrow, float* lrow, int jobIndex)
    {
        if (job.Partials is null)
        {
            for (int qi = 0; qi < queries; qi++)
            {
                float* dst = qv[qi] - job.Q + job.Output;
                float inv = 1f / lrow[qi];
                for (int e = 0; e < hd; e++) dst[e] = acc[qi * hd + e] * inv;
            }
        }
        else
        {
            fixed (float* part = job.Partials)
                for (int qi = 0; qi < queries; qi++)
                {
                    float* p = part + (long)jobIndex * job.PartialStride + qi * (hd + 2);
                    p[0] = mrow[qi];
                    p[1] = lrow[qi];
                    new Span<float>(acc + qi * hd, hd).CopyTo(new Span<float>(p + 2, hd));
                }
        }
    }

    // ------------------------------------------------------------------ vector primitives, one per path

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Dot(AttentionPath path, float* a, float* b, int n)
    {
        int i = 0;
        float sum = 0;
        switch (path)
        {
            case AttentionPath.Avx512:
            {
                var s0 = Vector512<float>.Zero;
                var s1 = Vector512<float>.Zero;
                for (; i + 32 <= n; i += 32)
                {
                    s0 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), s0);
                    s1 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + i + 16), Vector512.Load(b + i + 16), s1);
                }
                for (; i + 16 <= n; i += 16) s0 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), s0);
                sum = Vector512.Sum(s0 + s1);
                break;
            }
            case AttentionPath.Avx2:
            {
                var s0 = Vector256<float>.Zero;
                var s1 = Vector256<float>.Zero;
                for (; i + 16 <= n; i += 16)
                {
                    s0 = Fma.MultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), s0);
                    s1 = Fma.MultiplyAdd(Vector256.Load(a + i + 8), Vector256.Load(b + i + 8), s1);
                }
                for (; i + 8 <= n; i += 8) s0 = Fma.MultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), s0);
                sum = Vector256.Sum(s0 + s1);
                break;
            }
            case AttentionPath.Vector128:
            {
                var s0 = Vector128<float>.Zero;
                var s1 = Vector128<float>.Zero;
                for (; i + 8 <= n; i += 8)
                {
                    s0 += System.Runtime.Intrinsics.Vector128.Load(a + i) * System.Runtime.Intrinsics.Vector128.Load(b + i);
                    s1 += System.Runtime.Intrinsics.Vector128.Load(a + i + 4) * System.Runtime.Intrinsics.Vector128.Load(b + i + 4);
                }
                for (; i + 4 <= n; i += 4) s0 += System.Runtime.Intrinsics.Vector128.Load(a + i) * System.Runtime.Intrinsics.Vector128.Load(b + i);
                sum = System.Runtime.Intrinsics.Vector128.Sum(s0 + s1);
                break;
            }
        }
        for (; i < n; i++) sum += a[i] * b[i];
        return sum;
    }

    /// <summary>y += a·x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Axpy(AttentionPath path, float* y, float a, float* x, int n)
    {
        int i = 0;
        switch (path)
        {
            case AttentionPath.Avx512:
            {
                var va = Vector512.Create(a);
                for (; i + 16 <= n; i += 16) Avx512F.FusedMultiplyAdd(Vector512.Load(x + i), va, Vector512.Load(y + i)).Store(y + i);
                break;
            }
            case AttentionPath.Avx2:
            {
                var va = Vector256.Create(a);
                for (; i + 8 <= n; i += 8) Fma.MultiplyAdd(Vector256.Load(x + i), va, Vector256.Load(y + i)).Store(y + i);
                break;
            }
            case AttentionPath.Vector128:
            {
                var va = System.Runtime.Intrinsics.Vector128.Create(a);
                for (; i + 4 <= n; i += 4) (System.Runtime.Intrinsics.Vector128.Load(y + i) + System.Runtime.Intrinsics.Vector128.Load(x + i) * va).Store(y + i);
                break;
            }
        }
        for (; i < n; i++) y[i] += a * x[i];
    }

    /// <summary>y *= a.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Scale(AttentionPath path, float* y, float a, int n)
    {
        int i = 0;
        switch (path)
        {
            case AttentionPath.Avx512:
            {
                var va = Vector512.Create(a);
                for (; i + 16 <= n; i += 16) (Vector512.Load(y + i) * va).Store(y + i);
                break;
            }
            case AttentionPath.Avx2:
            {
                var va = Vector256.Create(a);
                for (; i + 8 <= n; i += 8) (Vector256.Load(y + i) * va).Store(y + i);
                break;
            }
            case AttentionPath.Vector128:
            {
                var va = System.Runtime.Intrinsics.Vector128.Create(a);
                for (; i + 4 <= n; i += 4) (System.Runtime.Intrinsics.Vector128.Load(y + i) * va).Store(y + i);
                break;
            }
        }
        for (; i < n; i++) y[i] *= a;
    }
}
