using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Scout.Kernels.Quant;

/// <summary>How activations are quantized for the integer dot products.</summary>
internal enum ActivationFormat
{
    /// <summary>32-value blocks: one float scale, 32 int8 and the int sum of the 32 quants (for Q4_0/Q8_0 weights).</summary>
    Blocks32,
    /// <summary>256-value blocks: one float scale, 256 int8 and 16 sums of 16 quants (llama.cpp's Q8_K, for K-quants).</summary>
    Blocks256,
}

/// <summary>
/// Activation rows x[n, cols] quantized to 8 bits once per product, so the weight blocks can be dotted with int8 SIMD.
/// Scale d = max|x| / 127 per block, q = round(x / d). Buffers grow and are reused: one instance per calling thread
/// (see <see cref="ForCurrentThread"/>), so a decode step allocates nothing once warm.
/// </summary>
internal sealed unsafe class Q8Activations
{
    [ThreadStatic] private static Q8Activations? _current;

    /// <summary>The reusable instance of the calling thread (matrix products quantize on the caller, then fan out).</summary>
    public static Q8Activations ForCurrentThread() => _current ??= new Q8Activations();

    private sbyte[] _quants = [];
    private float[] _scales = [];
    private int[] _sums = [];
    private short[] _sums16 = [];

    public int Rows { get; private set; }
    public int Cols { get; private set; }
    public ActivationFormat Format { get; private set; }
    public int BlocksPerRow { get; private set; }

    public sbyte[] Quants => _quants;
    public float[] Scales => _scales;
    /// <summary>Blocks32: sum of the 32 quants of each block.</summary>
    public int[] BlockSums => _sums;
    /// <summary>Blocks256: sum of each 16 quants (16 per block).</summary>
    public short[] Sums16 => _sums16;

    /// <summary>Values per parallel piece when a pool is given: smaller batches (decode) are quantized on the caller.</summary>
    internal const int ParallelValues = 1 << 16;

    /// <summary>
    /// Quantizes x[n, cols] into this instance's buffers. With a <paramref name="pool"/> of several threads and a large
    /// batch (prefill) the rows are split across it; every block is quantized by the same code either way, so the
    /// result does not depend on the split.
    /// </summary>
    public void Quantize(ReadOnlySpan<float> x, int n, int cols, ActivationFormat format, WorkerPool? pool = null)
    {
        int blockSize = format == ActivationFormat.Blocks32 ? 32 : 256;
        if (cols % blockSize != 0) throw new ArgumentException($"{cols} columns is not a multiple of the activation block size {blockSize}");
        if (x.Length < (long)n * cols) throw new ArgumentException($"activation buffer holds {x.Length} floats, needs {n}×{cols}");
        Rows = n;
        Cols = cols;
        Format = format;
        BlocksPerRow = cols / blockSize;
        int blocks = n * BlocksPerRow;
        Grow(ref _quants, n * cols);
        Grow(ref _scales, blocks);
        if (format == ActivationFormat.Blocks32) Grow(ref _sums, blocks);
        else Grow(ref _sums16, blocks * 16);

        fixed (float* px = x)
        fixed (sbyte* pq = _quants)
        fixed (float* pd = _scales)
        fixed (int* ps = _sums)
        fixed (short* ps16 = _sums16)
        {
            var view = new Target(px, pq, pd, ps, ps16, blockSize);
            long values = (long)n * cols;
            if (pool is null || pool.Threads == 1 || values < 2L * ParallelValues)
            {
                QuantizeBlocks(view, 0, blocks);
                return;
            }
            int blocksPerPiece = Math.Max(1, ParallelValues / blockSize);
            var job = _job ??= new QuantizeJob();
            job.Set(view, blocks, blocksPerPiece);
            try { pool.Run(job, (blocks + blocksPerPiece - 1) / blocksPerPiece); }
            finally { job.Clear(); }
        }
    }

    private QuantizeJob? _job;

    /// <summary>The pinned source and destination buffers of one <see cref="Quantize"/> call.</summary>
    private readonly struct Target(float* x, sbyte* q, float* d, int* sums, short* sums16, int blockSize)
    {
        public readonly float* X = x;
        public readonly sbyte* Q = q;
        public readonly float* D = d;
        public readonly int* Sums = sums;
        public readonly short* Sums16 = sums16;
        public readonly int BlockSize = blockSize;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuantizeBlocks(in Target t, int b0, int b1)
    {
        int blockSize = t.BlockSize;
        for (int b = b0; b < b1; b++)
        {
            float* src = t.X + (long)b * blockSize;
            sbyte* dst = t.Q + (long)b * blockSize;
            t.D[b] = QuantizeBlock(src, dst, blockSize);
            if (blockSize == 32) t.Sums[b] = SumQuants(dst, 32);
            else
                for (int g = 0; g < 16; g++) t.Sums16[b * 16 + g] = (short)SumQuants(dst + g * 16, 16);
        }
    }

    /// <summary>Pieces of blocks of one <see cref="Quantize"/> call across the pool (one job object per instance: no allocation per call).</summary>
    private sealed class QuantizeJob : IParallelJob
    {
        private Target _t;
        private int _blocks, _perPiece;

        public void Set(in Target t, int blocks, int perPiece) { _t = t; _blocks = blocks; _perPiece = perPiece; }
        public void Clear() => _t = default;

        public void Execute(int index)
        {
            int b0 = index * _perPiece;
            QuantizeBlocks(_t, b0, Math.Min(_blocks, b0 + _perPiece));
        }
    }

    private static void Grow<T>(ref T[] buffer, int length)
    {
        if (buffer.Length < length) buffer = new T[Math.Max(length, buffer.Length * 2)];
    }

    private static int SumQuants(sbyte* q, int count)
    {
        int s = 0;
        for (int i = 0; i < count; i++) s += q[i];
        return s;
    }

    /// <summary>Quantizes one block (32 or 256 floats) and returns its scale.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float QuantizeBlock(float* src, sbyte* dst, int count)
    {
        float amax = 0;
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var m = Vector256<float>.Zero;
            for (; i + 8 <= count; i += 8) m = Vector256.Max(m, Vector256.Abs(Vector256.Load(src + i)));
            var h = Vector128.Max(m.GetLower(), m.GetUpper());
            amax = MathF.Max(MathF.Max(h[0], h[1]), MathF.Max(h[2], h[3]));
        }
        for (; i < count; i++) amax = MathF.Max(amax, MathF.Abs(src[i]));

        float d = amax / 127f;
        float inv = d != 0 ? 1f / d : 0f;
        i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var vinv = Vector256.Create(inv);
            for (; i + 16 <= count; i += 16)
            {
                var a = Vector256.ConvertToInt32(Vector256.Round(Vector256.Load(src + i) * vinv));
                var b = Vector256.ConvertToInt32(Vector256.Round(Vector256.Load(src + i + 8) * vinv));
                var s16 = Vector256.Narrow(a, b);   // lanes 0..7 from a, 8..15 from b; values are within ±127
                var s8 = Vector128.Narrow(s16.GetLower(), s16.GetUpper());
                s8.Store(dst + i);
            }
        }
        for (; i < count; i++) dst[i] = (sbyte)(int)MathF.Round(src[i] * inv);
        return d;
    }
}
