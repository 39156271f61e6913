using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using Scout.Kernels;
using Scout.Tensors;

namespace Scout.Vision;

/// <summary>
/// Row-major F32/F16/BF16 weights multiplied by many inputs at once (the 577 tokens of a tile). The general
/// <see cref="FloatMatrix"/> streams every input row once per weight row; with hundreds of inputs that is gigabytes of
/// cache traffic per product. Here each job converts a block of 16 weight rows to float32 once, then walks all inputs
/// against it with a 4-row × 2-input register tile, so the inputs are streamed once per 16 rows.
/// </summary>
public sealed unsafe class TiledFloatMatrix : IWeightMatrix
{
    private const int RowBlock = 16;
    private readonly byte* _data;
    private readonly int _elemBytes;

    public int Rows { get; }
    public int Cols { get; }
    public TensorType Type { get; }
    public long ByteSize => (long)Rows * Cols * _elemBytes;

    private readonly WorkerPool _pool;

    private TiledFloatMatrix(TensorType type, byte* data, int rows, int cols, WorkerPool pool)
    {
        _pool = pool;
        Type = type;
        _data = data;
        Rows = rows;
        Cols = cols;
        _elemBytes = type == TensorType.F32 ? 4 : 2;
    }

    /// <summary>This layout for float weights; <see cref="WeightMatrix.RowMajor"/> for anything else.</summary>
    public static IWeightMatrix Create(TensorType type, byte* data, int rows, int cols, WorkerPool pool)
        => type is TensorType.F32 or TensorType.F16 or TensorType.BF16 && Vector256.IsHardwareAccelerated
            ? new TiledFloatMatrix(type, data, rows, cols, pool)
            : WeightMatrix.RowMajor(type, data, rows, cols, pool);

    public void Multiply(ReadOnlySpan<float> x, int n, Span<float> y)
    {
        if (x.Length < n * Cols || y.Length < n * Rows)
            throw new ArgumentException($"matmul shape mismatch: x {x.Length}, y {y.Length}, W [{Rows}, {Cols}], n {n}");
        int blocks = (Rows + RowBlock - 1) / RowBlock;
        fixed (float* px = x, py = y)
        {
            float* xp = px, yp = py;
            _pool.For(blocks, b => MultiplyBlock(xp, n, yp, b * RowBlock, Math.Min(Rows, (b + 1) * RowBlock)));
        }
    }

    private void MultiplyBlock(float* x, int n, float* y, int r0, int r1)
    {
        int cols = Cols, rows = r1 - r0;
        float[] buffer = ArrayPool<float>.Shared.Rent(rows * cols);
        try
        {
            Dequantize.ToFloat(Type, new ReadOnlySpan<byte>(_data + (long)r0 * cols * _elemBytes, rows * cols * _elemBytes), buffer.AsSpan(0, rows * cols));
            fixed (float* w = buffer)
            {
                int t = 0;
                for (; t + 2 <= n; t += 2)
                {
                    float* x0 = x + (long)t * cols, x1 = x0 + cols;
                    int r = 0;
                    for (; r + 4 <= rows; r += 4)
                        Kernel4x2(w + (long)r * cols, cols, x0, x1, y + (long)t * Rows + r0 + r, y + (long)(t + 1) * Rows + r0 + r);
                    for (; r < rows; r++)
                    {
                        var wr = new ReadOnlySpan<float>(w + (long)r * cols, cols);
                        y[(long)t * Rows + r0 + r] = TensorPrimitives.Dot(wr, new ReadOnlySpan<float>(x0, cols));
                        y[(long)(t + 1) * Rows + r0 + r] = TensorPrimitives.Dot(wr, new ReadOnlySpan<float>(x1, cols));
                    }
                }
                for (; t < n; t++)
                    for (int r = 0; r < rows; r++)
                        y[(long)t * Rows + r0 + r] = TensorPrimitives.Dot(new ReadOnlySpan<float>(w + (long)r * cols, cols), new ReadOnlySpan<float>(x + (long)t * cols, cols));
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
    }

    /// <summary>Four consecutive weight rows against two inputs: 8 accumulators, each input load shared by 4 rows.</summary>
    private static void Kernel4x2(float* w, int cols, float* x0, float* x1, float* y0, float* y1)
    {
        var a00 = Vector256<float>.Zero; var a01 = a00; var a02 = a00; var a03 = a00;
        var a10 = a00; var a11 = a00; var a12 = a00; var a13 = a00;
        float* w0 = w, w1 = w + cols, w2 = w + 2 * cols, w3 = w + 3 * cols;
        int i = 0;
        for (; i + 8 <= cols; i += 8)
        {
            var v0 = Vector256.Load(x0 + i);
            var v1 = Vector256.Load(x1 + i);
            var b0 = Vector256.Load(w0 + i);
            var b1 = Vector256.Load(w1 + i);
            var b2 = Vector256.Load(w2 + i);
            var b3 = Vector256.Load(w3 + i);
            a00 = Vector256.MultiplyAddEstimate(b0, v0, a00);
            a01 = Vector256.MultiplyAddEstimate(b1, v0, a01);
            a02 = Vector256.MultiplyAddEstimate(b2, v0, a02);
            a03 = Vector256.MultiplyAddEstimate(b3, v0, a03);
            a10 = Vector256.MultiplyAddEstimate(b0, v1, a10);
            a11 = Vector256.MultiplyAddEstimate(b1, v1, a11);
            a12 = Vector256.MultiplyAddEstimate(b2, v1, a12);
            a13 = Vector256.MultiplyAddEstimate(b3, v1, a13);
        }
        float s00 = Vector256.Sum(a00), s01 = Vector256.Sum(a01), s02 = Vector256.Sum(a02), s03 = Vector256.Sum(a03);
        float s10 = Vector256.Sum(a10), s11 = Vector256.Sum(a11), s12 = Vector256.Sum(a12), s13 = Vector256.Sum(a13);
        for (; i < cols; i++)
        {
            float v0 = x0[i], v1 = x1[i];
            s00 += w0[i] * v0; s01 += w1[i] * v0; s02 += w2[i] * v0; s03 += w3[i] * v0;
            s10 += w0[i] * v1; s11 += w1[i] * v1; s12 += w2[i] * v1; s13 += w3[i] * v1;
        }
        y0[0] = s00; y0[1] = s01; y0[2] = s02; y0[3] = s03;
        y1[0] = s10; y1[1] = s11; y1[2] = s12; y1[3] = s13;
    }
}
