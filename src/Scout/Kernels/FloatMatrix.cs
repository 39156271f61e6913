using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using Scout.Tensors;

namespace Scout.Kernels;

/// <summary>
/// Row-major F32/F16/BF16 weights. Rows are taken four at a time (converted to float once per call into a per-thread
/// buffer), and a register-blocked micro-kernel computes 4 rows × 4 tokens per pass (16 vector accumulators, every
/// weight and activation load feeds four FMAs). Each (row, token) pair is summed in the same order whatever the
/// tile (8-lane chains over the columns, then the lanes, then the column tail), so a token's result does not depend
/// on its batch. Chunks of rows run across the shared pool without allocating.
/// </summary>
public sealed unsafe class FloatMatrix(TensorType type, byte* data, int rows, int cols, WorkerPool pool) : IWeightMatrix, IRangeProduct
{
    private readonly int _elemBytes = type == TensorType.F32 ? 4 : 2;
    public int Rows { get; } = rows;
    public int Cols { get; } = cols;
    public TensorType Type { get; } = type;
    public long ByteSize => (long)Rows * Cols * _elemBytes;

    public void Multiply(ReadOnlySpan<float> x, int n, Span<float> y)
    {
        if (n <= 0) return;
        if (x.Length < (long)n * Cols || y.Length < (long)n * Rows)
            throw new ArgumentException($"matmul shape mismatch: x {x.Length}, y {y.Length}, W [{Rows}, {Cols}], n {n}");
        fixed (float* px = x, py = y)
        {
            RangeProductJob.Run(pool, this, px, n, py, Rows, 4);
        }
    }

    void IRangeProduct.MultiplyRange(float* x, int n, float* y, int r0, int r1) => MultiplyRows(x, n, y, r0, r1);

    [ThreadStatic] private static float[]? _rowBuffer;

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal void MultiplyRows(float* x, int n, float* y, int r0, int r1)
    {
        int cols = Cols;
        float[]? buffer = null;
        if (Type != TensorType.F32)
        {
            buffer = _rowBuffer;
            if (buffer == null || buffer.Length < 4 * cols) _rowBuffer = buffer = new float[4 * cols];
        }
        fixed (float* buf = buffer)
        {
            float** w = stackalloc float*[4];
            float* o = stackalloc float[16];
            for (int r = r0; r < r1; r += 4)
            {
                int rowCount = Math.Min(4, r1 - r);
                for (int i = 0; i < rowCount; i++)
                {
                    byte* src = data + (long)(r + i) * cols * _elemBytes;
                    if (buf == null) w[i] = (float*)src;
                    else
                    {
                        w[i] = buf + (long)i * cols;
                        Dequantize.ToFloat(Type, new ReadOnlySpan<byte>(src, cols * _elemBytes), new Span<float>(w[i], cols));
                    }
                }
                int t = 0;
                if (rowCount == 4)
                    for (; t + 4 <= n; t += 4)
                    {
                        Kernel4x4(w[0], w[1], w[2], w[3], x + (long)t * cols, cols, o);
                        for (int j = 0; j < 4; j++)
                            for (int i = 0; i < 4; i++) y[(long)(t + j) * Rows + r + i] = o[4 * j + i];
                    }
                for (; t < n; t++)
                    for (int i = 0; i < rowCount; i++)
                        y[(long)t * Rows + r + i] = Dot(w[i], x + (long)t * cols, cols);
            }
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fma8(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.MultiplyAddEstimate(a, b, c);

    /// <summary>One (row, token) pair in the canonical order (the reference the 4×4 kernel reproduces exactly).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal static float Dot(float* w, float* x, int cols)
    {
        var acc = Vector256<float>.Zero;
        int c = 0;
        for (; c + 8 <= cols; c += 8) acc = Fma8(Vector256.Load(w + c), Vector256.Load(x + c), acc);
        float sum = Vector256.Sum(acc);
        for (; c < cols; c++) sum = MathF.FusedMultiplyAdd(w[c], x[c], sum);
        return sum;
    }

    /// <summary>o[4·token + row] for 4 rows × 4 consecutive activation rows (<paramref name="x"/>, <paramref name="cols"/> apart).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void Kernel4x4(float* w0, float* w1, float* w2, float* w3, float* x, int cols, float* o)
    {
        float* x0 = x, x1 = x + cols, x2 = x + 2 * cols, x3 = x + 3 * cols;
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector256<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector256<float> a30 = default, a31 = default, a32 = default, a33 = default;
        int c = 0;
        for (; c + 8 <= cols; c += 8)
        {
            var v0 = Vector256.Load(w0 + c); var v1 = Vector256.Load(w1 + c);
            var v2 = Vector256.Load(w2 + c); var v3 = Vector256.Load(w3 + c);
            var t = Vector256.Load(x0 + c);
            a00 = Fma8(v0, t, a00); a01 = Fma8(v1, t, a01); a02 = Fma8(v2, t, a02); a03 = Fma8(v3, t, a03);
            t = Vector256.Load(x1 + c);
            a10 = Fma8(v0, t, a10); a11 = Fma8(v1, t, a11); a12 = Fma8(v2, t, a12); a13 = Fma8(v3, t, a13);
            t = Vector256.Load(x2 + c);
            a20 = Fma8(v0, t, a20); a21 = Fma8(v1, t, a21); a22 = Fma8(v2, t, a22); a23 = Fma8(v3, t, a23);
            t = Vector256.Load(x3 + c);
            a30 = Fma8(v0, t, a30); a31 = Fma8(v1, t, a31); a32 = Fma8(v2, t, a32); a33 = Fma8(v3, t, a33);
        }
        o[0] = Vector256.Sum(a00); o[1] = Vector256.Sum(a01); o[2] = Vector256.Sum(a02); o[3] = Vector256.Sum(a03);
        o[4] = Vector256.Sum(a10); o[5] = Vector256.Sum(a11); o[6] = Vector256.Sum(a12); o[7] = Vector256.Sum(a13);
        o[8] = Vector256.Sum(a20); o[9] = Vector256.Sum(a21); o[10] = Vector256.Sum(a22); o[11] = Vector256.Sum(a23);
        o[12] = Vector256.Sum(a30); o[13] = Vector256.Sum(a31); o[14] = Vector256.Sum(a32); o[15] = Vector256.Sum(a33);
        for (int j = 0; j < 4; j++)
        {
            float* xj = x + (long)j * cols;
            for (int cc = c; cc < cols; cc++)
            {
                o[4 * j + 0] = MathF.FusedMultiplyAdd(w0[cc], xj[cc], o[4 * j + 0]);
                o[4 * j + 1] = MathF.FusedMultiplyAdd(w1[cc], xj[cc], o[4 * j + 1]);
                o[4 * j + 2] = MathF.FusedMultiplyAdd(w2[cc], xj[cc], o[4 * j + 2]);
                o[4 * j + 3] = MathF.FusedMultiplyAdd(w3[cc], xj[cc], o[4 * j + 3]);
            }
        }
    }
}

/// <summary>
/// Weights stored input-major, W[in, ld] with y = x·W[:, offset..offset+out) — Hugging Face's Llama 4 expert
/// tensors (gate_up_proj [E, D, 2F], down_proj [E, F, D]). Read in place; no transposed copy is made.
/// </summary>
public sealed unsafe class InputMajorFloatMatrix(TensorType type, byte* data, int inputs, int outputs, int leadingDim, int columnOffset, WorkerPool pool) : IWeightMatrix, IRangeProduct
{
    private readonly int _elemBytes = type == TensorType.F32 ? 4 : 2;
    public int Rows { get; } = outputs;
    public int Cols { get; } = inputs;
    public TensorType Type { get; } = type;
    public long ByteSize => (long)Rows * Cols * _elemBytes;

    public void Multiply(ReadOnlySpan<float> x, int n, Span<float> y)
    {
        if (x.Length < n * Cols || y.Length < n * Rows)
            throw new ArgumentException($"matmul shape mismatch: x {x.Length}, y {y.Length}, W [{Rows}, {Cols}], n {n}");
        fixed (float* px = x, py = y)
        {
            RangeProductJob.Run(pool, this, px, n, py, Rows, 64);
        }
    }

    void IRangeProduct.MultiplyRange(float* x, int n, float* y, int r0, int r1) => MultiplyColumns(x, n, y, r0, r1);

    private void MultiplyColumns(float* x, int n, float* y, int o0, int o1)
    {
        int width = o1 - o0;
        // Per-thread scratch that only grows (not ArrayPool.Shared: its per-thread arrays are trimmed after a gen-2
        // GC, and the next rent would allocate inside a decode step).
        float[] acc = ThreadScratch.Floats(ref _columnAcc, n * width);
        float[]? seg = Type == TensorType.F32 ? null : ThreadScratch.Floats(ref _columnSeg, width);
        {
            Array.Clear(acc, 0, n * width);
            for (int i = 0; i < Cols; i++)
            {
                byte* p = data + ((long)i * leadingDim + columnOffset + o0) * _elemBytes;
                ReadOnlySpan<float> w;
                if (seg is null) w = new ReadOnlySpan<float>(p, width);
                else
                {
                    Dequantize.ToFloat(Type, new ReadOnlySpan<byte>(p, width * _elemBytes), seg.AsSpan(0, width));
                    w = seg.AsSpan(0, width);
                }
                for (int t = 0; t < n; t++)
                {
                    var a = acc.AsSpan(t * width, width);
                    TensorPrimitives.MultiplyAdd(w, x[(long)t * Cols + i], a, a);
                }
            }
            for (int t = 0; t < n; t++)
                acc.AsSpan(t * width, width).CopyTo(new Span<float>(y + (long)t * Rows + o0, width));
        }
    }

    [ThreadStatic] private static float[]? _columnAcc;
    [ThreadStatic] private static float[]? _columnSeg;
}

/// <summary>Fallback for block-quantized weights without a native kernel: dequantizes each row, then dots in float.</summary>
public sealed unsafe class DequantizingMatrix(TensorType type, byte* data, int rows, int cols, WorkerPool pool) : IWeightMatrix, IRangeProduct
{
    private readonly long _rowBytes = type.RowBytes(cols);
    public int Rows { get; } = rows;
    public int Cols { get; } = cols;
    public TensorType Type { get; } = type;
    public long ByteSize => Rows * _rowBytes;

    public void Multiply(ReadOnlySpan<float> x, int n, Span<float> y)
    {
        if (x.Length < n * Cols || y.Length < n * Rows)
            throw new ArgumentException($"matmul shape mismatch: x {x.Length}, y {y.Length}, W [{Rows}, {Cols}], n {n}");
        fixed (float* px = x, py = y)
            RangeProductJob.Run(pool, this, px, n, py, Rows, 16);
    }

    void IRangeProduct.MultiplyRange(float* xp, int n, float* yp, int r0, int r1)
    {
        float[] row = ThreadScratch.Floats(ref _row, Cols);
        {
            for (int r = r0; r < r1; r++)
            {
                Dequantize.ToFloat(Type, new ReadOnlySpan<byte>(data + r * _rowBytes, (int)_rowBytes), row.AsSpan(0, Cols));
                for (int t = 0; t < n; t++)
                    yp[(long)t * Rows + r] = TensorPrimitives.Dot(row.AsSpan(0, Cols), new ReadOnlySpan<float>(xp + (long)t * Cols, Cols));
            }
        }
    }

    [ThreadStatic] private static float[]? _row;
}

/// <summary>Grow-only per-thread scratch arrays for kernels (a thread's array is reused by every later call).</summary>
internal static class ThreadScratch
{
    /// <summary>The array in <paramref name="slot"/>, replaced by a larger one (at least 4,096 floats, doubling) when
    /// it holds fewer than <paramref name="length"/>.</summary>
    public static float[] Floats(ref float[]? slot, int length)
    {
        var a = slot;
        if (a == null || a.Length < length) slot = a = new float[Math.Max(Math.Max(length, 4096), 2 * (a?.Length ?? 0))];
        return a;
    }
}
