using System.Runtime.CompilerServices;
using Scout.Tensors;

namespace Scout.Kernels.Quant;

/// <summary>
/// Row-major Q4_0 / Q8_0 / Q4_K / Q6_K weights multiplied directly on their blocks: the activations are quantized
/// to 8 bits once per call (<see cref="Q8Activations"/>), then every row is dotted with int8 SIMD
/// (<see cref="DotKernels"/>). Rows are split across the shared pool; with several tokens (prefill) each row is
/// dotted with a tile of tokens while it is hot in L1, so the weights stream from memory once per tile.
/// </summary>
public sealed unsafe class QuantizedMatrix : IWeightMatrix
{
    /// <summary>Tokens processed per pass over a row range during prefill (weights are re-read once per tile).</summary>
    internal const int TokenTile = 32;

    private readonly byte* _data;
    private readonly long _rowBytes;
    private readonly int _blocksPerRow;
    private readonly ActivationFormat _format;
    private readonly WorkerPool _pool;
    private readonly KernelPath _path;

    public int Rows { get; }
    public int Cols { get; }
    public TensorType Type { get; }
    public long ByteSize => Rows * _rowBytes;

    /// <summary>Name of the instruction-set path the products use on this machine by default.</summary>
    public static string KernelPathName => DotKernels.Best == KernelPath.Avx2 && RepackedMatrix.BestPath is { } repack
        ? $"{DotKernels.Best} (repacked 8-row groups: {repack})" : DotKernels.Best.ToString();

    public static bool Supports(TensorType type) => type is TensorType.Q4_0 or TensorType.Q8_0 or TensorType.Q4_K or TensorType.Q6_K;

    public QuantizedMatrix(TensorType type, byte* data, int rows, int cols, WorkerPool pool)
        : this(type, data, rows, cols, pool, DotKernels.Best) { }

    /// <summary>A matrix whose products use kernel <paramref name="path"/> (tests and benchmarks force each one).</summary>
    internal QuantizedMatrix(TensorType type, byte* data, int rows, int cols, WorkerPool pool, KernelPath path)
    {
        if (!Supports(type)) throw new NotSupportedException($"no integer kernel for tensor type {type}");
        if (rows <= 0 || cols <= 0) throw new ArgumentException($"matrix shape [{rows}, {cols}] must be positive");
        int blockElements = type.BlockElements();
        if (cols % blockElements != 0)
            throw new ArgumentException($"a {type} row needs a multiple of {blockElements} columns, got {cols}");
        _data = data;
        Type = type;
        Rows = rows;
        Cols = cols;
        _rowBytes = type.RowBytes(cols);
        _blocksPerRow = cols / blockElements;
        _format = blockElements == 32 ? ActivationFormat.Blocks32 : ActivationFormat.Blocks256;
        _pool = pool;
        _path = path;
    }

    public void Multiply(ReadOnlySpan<float> x, int n, Span<float> y) => Multiply(x, n, y, _path);

    /// <summary>As <see cref="Multiply(ReadOnlySpan{float}, int, Span{float})"/> on a chosen kernel path (tests, benchmarks).</summary>
    internal void Multiply(ReadOnlySpan<float> x, int n, Span<float> y, KernelPath path)
    {
        if (n <= 0) return;
        if (!DotKernels.IsAvailable(path)) throw new PlatformNotSupportedException($"kernel path {path} is not supported on this CPU");
        if (x.Length < (long)n * Cols || y.Length < (long)n * Rows)
            throw new ArgumentException($"matmul shape mismatch: x {x.Length}, y {y.Length}, W [{Rows}, {Cols}], n {n}");
        var act = Q8Activations.ForCurrentThread();
        act.Quantize(x, n, Cols, _format, _pool);
        fixed (float* py = y)
        {
            var job = MatmulJob.ForCurrentThread();
            var pool = _pool;
            // Decode: small row chunks balance the two-to-few cores; prefill: bigger chunks amortise the tile loop.
            int chunkRows = pool.ChunkSize(Rows, n == 1 ? 16 : 32, n == 1 ? 8 : 4);
            job.Set(this, act, py, n, chunkRows, path);
            try { pool.Run(job, (Rows + chunkRows - 1) / chunkRows); }
            finally { job.Clear(); }
        }
    }

    /// <summary>y[t, r] for r in [r0, r1) and every token t.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void MultiplyRows(Q8Activations act, float* y, int n, int r0, int r1, KernelPath path)
    {
        fixed (sbyte* pq = act.Quants)
        fixed (float* pd = act.Scales)
        fixed (int* ps = act.BlockSums)
        fixed (short* ps16 = act.Sums16)
        {
            bool four = n >= 4 && DotKernels.HasFourTokenKernel(Type, path);
            float* out4 = stackalloc float[4];
            for (int t0 = 0; t0 < n; t0 += TokenTile)
            {
                int t1 = Math.Min(n, t0 + TokenTile);
                for (int r = r0; r < r1; r++)
                {
                    byte* row = _data + r * _rowBytes;
                    int t = t0;
                    if (four)
                    {
                        for (; t + 4 <= t1; t += 4)
                        {
                            int bOffset = t * _blocksPerRow;
                            DotKernels.Dot4(Type, row, pq + (long)t * Cols, pd + bOffset, ps + bOffset, ps16 + (long)bOffset * 16, Cols, _blocksPerRow, out4);
                            for (int i = 0; i < 4; i++) y[(long)(t + i) * Rows + r] = out4[i];
                        }
                    }
                    for (; t < t1; t++)
                        y[(long)t * Rows + r] = DotRow(path, row, pq, pd, ps, ps16, t);
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private float DotRow(KernelPath path, byte* row, sbyte* q, float* d, int* sums, short* sums16, int token)
    {
        long qOffset = (long)token * Cols;
        int bOffset = token * _blocksPerRow;
        return Type switch
        {
            TensorType.Q4_0 => DotKernels.DotQ4_0(path, row, q + qOffset, d + bOffset, sums + bOffset, _blocksPerRow),
            TensorType.Q8_0 => DotKernels.DotQ8_0(path, row, q + qOffset, d + bOffset, _blocksPerRow),
            TensorType.Q4_K => DotKernels.DotQ4_K(path, row, q + qOffset, d + bOffset, sums16 + (long)bOffset * 16, _blocksPerRow),
            _ => DotKernels.DotQ6_K(path, row, q + qOffset, d + bOffset, sums16 + (long)bOffset * 16, _blocksPerRow),
        };
    }

    /// <summary>Per-calling-thread job object, so a product allocates no closure.</summary>
    private sealed class MatmulJob : IParallelJob
    {
        [ThreadStatic] private static MatmulJob? _current;
        public static MatmulJob ForCurrentThread() => _current ??= new MatmulJob();

        private QuantizedMatrix? _matrix;
        private Q8Activations? _act;
        private float* _y;
        private int _n, _chunkRows;
        private KernelPath _path;

        public void Set(QuantizedMatrix m, Q8Activations act, float* y, int n, int chunkRows, KernelPath path)
        {
            _matrix = m; _act = act; _y = y; _n = n; _chunkRows = chunkRows; _path = path;
        }

        public void Clear() { _matrix = null; _act = null; _y = null; }

        public void Execute(int index)
        {
            var m = _matrix!;
            int r0 = index * _chunkRows;
            m.MultiplyRows(_act!, _y, _n, r0, Math.Min(m.Rows, r0 + _chunkRows), _path);
        }
    }
}
