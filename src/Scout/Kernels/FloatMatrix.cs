using System.Numerics.Tensors;
using Scout.Tensors;

namespace Scout.Kernels;

/// <summary>Row-major F32/F16/BF16 weights. Each row is read once per call and dotted with all n inputs.</summary>
public sealed unsafe class FloatMatrix(TensorType type, byte* data, int rows, int cols, WorkerPool pool) : IWeightMatrix, IRangeProduct
{
    private readonly int _elemBytes = type == TensorType.F32 ? 4 : 2;
    public int Rows { get; } = rows;
    public int Cols { get; } = cols;
    public TensorType Type { get; } = type;
    public long ByteSize => (long)Rows * Cols * _elemBytes;

    public void Multiply(ReadOnlySpan<float> x, int n, Span<float> y)
    {
        if (x.Length < n * Cols || y.Length < n * Rows)
            throw new ArgumentException($"matmul shape mismatch: x {x.Length}, y {y.Length}, W [{Rows}, {Cols}], n {n}");
        fixed (float* px = x, py = y)
        {
            RangeProductJob.Run(pool, this, px, n, py, Rows, 16);
        }
    }

    void IRangeProduct.MultiplyRange(float* x, int n, float* y, int r0, int r1) => MultiplyRows(x, n, y, r0, r1);

    private void MultiplyRows(float* x, int n, float* y, int r0, int r1)
    {
        float[]? buffer = Type == TensorType.F32 ? null : System.Buffers.ArrayPool<float>.Shared.Rent(Cols);
        try
        {
            for (int r = r0; r < r1; r++)
            {
                byte* rowPtr = data + (long)r * Cols * _elemBytes;
                ReadOnlySpan<float> row;
                if (buffer is null)
                {
                    row = new ReadOnlySpan<float>(rowPtr, Cols);
                }
                else
                {
                    Dequantize.ToFloat(Type, new ReadOnlySpan<byte>(rowPtr, Cols * _elemBytes), buffer.AsSpan(0, Cols));
                    row = buffer.AsSpan(0, Cols);
                }
                for (int t = 0; t < n; t++)
                    y[(long)t * Rows + r] = TensorPrimitives.Dot(row, new ReadOnlySpan<float>(x + (long)t * Cols, Cols));
            }
        }
        finally
        {
            if (buffer != null) System.Buffers.ArrayPool<float>.Shared.Return(buffer);
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
        var pool = System.Buffers.ArrayPool<float>.Shared;
        float[] acc = pool.Rent(n * width);
        float[]? seg = Type == TensorType.F32 ? null : pool.Rent(width);
        try
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
        finally
        {
            pool.Return(acc);
            if (seg != null) pool.Return(seg);
        }
    }
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
        float[] row = System.Buffers.ArrayPool<float>.Shared.Rent(Cols);
        try
        {
            for (int r = r0; r < r1; r++)
            {
                Dequantize.ToFloat(Type, new ReadOnlySpan<byte>(data + r * _rowBytes, (int)_rowBytes), row.AsSpan(0, Cols));
                for (int t = 0; t < n; t++)
                    yp[(long)t * Rows + r] = TensorPrimitives.Dot(row.AsSpan(0, Cols), new ReadOnlySpan<float>(xp + (long)t * Cols, Cols));
            }
        }
        finally { System.Buffers.ArrayPool<float>.Shared.Return(row); }
    }
}
