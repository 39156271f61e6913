namespace Scout.Kernels.Quant;

public sealed unsafe partial class RepackedMatrix
{
    /// <summary>
    /// y_i = x·W_iᵀ for two or three repacked matrices that read the same input (gate and up of a SwiGLU block; q, k
    /// and v): x is quantized once and every matrix's row groups run in one pool dispatch. Each output value is
    /// computed exactly as by <see cref="Multiply(ReadOnlySpan{float}, int, Span{float})"/> (same activations, same
    /// kernel, same float order), so the results are bit-identical to separate products. Returns false, computing
    /// nothing, when the matrices cannot share (not all repacked, different columns, activation formats, paths or pools).
    /// </summary>
    internal static bool TryMultiplyShared(ReadOnlySpan<float> x, int n, IWeightMatrix a, Span<float> ya, IWeightMatrix b, Span<float> yb,
        IWeightMatrix? c, Span<float> yc)
    {
        if (a is not RepackedMatrix ra || b is not RepackedMatrix rb || !ra.CanShareWith(rb)) return false;
        RepackedMatrix? rc = null;
        if (c is not null)
        {
            if (c is not RepackedMatrix m || !ra.CanShareWith(m)) return false;
            rc = m;
        }
        if (n <= 0) return true;
        ra.CheckShape(x, n, ya);
        rb.CheckShape(x, n, yb);
        rc?.CheckShape(x, n, yc);
        byte* pa = ra.EnsurePacked(), pb = rb.EnsurePacked(), pc = rc is null ? null : rc.EnsurePacked();
        var act = Q8Activations.ForCurrentThread();
        act.Quantize(x, n, ra.Cols, ra._format, ra._pool);
        fixed (float* ua = ya)
        fixed (float* ub = yb)
        fixed (float* uc = yc)
        fixed (sbyte* pq = act.Quants)
        fixed (float* pd = act.Scales)
        fixed (int* ps = act.BlockSums)
        fixed (short* ps16 = act.Sums16)
        {
            var view = new ActView(pq, pd, ps, ps16, ra.Cols, act.BlocksPerRow);
            var job = SharedJob.ForCurrentThread();
            job.Set(view, n);
            job.Add(ra, pa, ua);
            job.Add(rb, pb, ub);
            if (rc is not null) job.Add(rc, pc, uc);
            try { ra._pool.Run(job, job.Chunks); }
            finally { job.Clear(); }
        }
        return true;
    }

    private bool CanShareWith(RepackedMatrix other)
        => other.Cols == Cols && other._format == _format && other.Path == Path && ReferenceEquals(other._pool, _pool);

    private void CheckShape(ReadOnlySpan<float> x, int n, Span<float> y)
    {
        if (x.Length < (long)n * Cols || y.Length < (long)n * Rows)
            throw new ArgumentException($"matmul shape mismatch: x {x.Length}, y {y.Length}, W [{Rows}, {Cols}], n {n}");
    }

    /// <summary>Group chunk length of a product over <paramref name="n"/> tokens (as <see cref="Multiply(ReadOnlySpan{float}, int, Span{float})"/> splits it).</summary>
    private int ChunkGroups(int n) => _pool.ChunkSize(_groups, n == 1 ? 2 : 4, n == 1 ? 8 : 4);

    /// <summary>Per-calling-thread job over the row groups of up to three matrices (chunk indices concatenated).</summary>
    private sealed class SharedJob : IParallelJob
    {
        [ThreadStatic] private static SharedJob? _current;
        public static SharedJob ForCurrentThread() => _current ??= new SharedJob();

        private readonly RepackedMatrix?[] _m = new RepackedMatrix?[3];
        private readonly nint[] _packed = new nint[3], _y = new nint[3];
        private readonly int[] _chunkGroups = new int[3], _firstChunk = new int[4];
        private int _count, _n;
        private ActView _act;

        public int Chunks => _firstChunk[_count];

        public void Set(ActView act, int n) { _act = act; _n = n; _count = 0; _firstChunk[0] = 0; }

        public void Add(RepackedMatrix m, byte* packed, float* y)
        {
            int i = _count++;
            _m[i] = m;
            _packed[i] = (nint)packed;
            _y[i] = (nint)y;
            _chunkGroups[i] = m.ChunkGroups(_n);
            _firstChunk[i + 1] = _firstChunk[i] + (m._groups + _chunkGroups[i] - 1) / _chunkGroups[i];
        }

        public void Clear()
        {
            for (int i = 0; i < _m.Length; i++) { _m[i] = null; _packed[i] = 0; _y[i] = 0; }
            _count = 0;
            _act = default;
        }

        public void Execute(int index)
        {
            int i = 0;
            while (index >= _firstChunk[i + 1]) i++;
            var m = _m[i]!;
            int g0 = (index - _firstChunk[i]) * _chunkGroups[i];
            m.MultiplyGroups((byte*)_packed[i], _act, (float*)_y[i], _n, g0, Math.Min(m._groups, g0 + _chunkGroups[i]), m.Path);
        }
    }
}
