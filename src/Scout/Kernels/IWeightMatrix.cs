using Scout.Tensors;

namespace Scout.Kernels;

/// <summary>
/// A weight matrix used as y = W·x: <see cref="Rows"/> output features, <see cref="Cols"/> input features.
/// Implementations read the weights in place (mapped file) in whatever layout and type they are stored.
/// </summary>
public interface IWeightMatrix
{
    int Rows { get; }
    int Cols { get; }
    TensorType Type { get; }
    /// <summary>Bytes of weight data this matrix reads per product.</summary>
    long ByteSize { get; }

    /// <summary>y[n, Rows] = x[n, Cols] · Wᵀ (overwrites y). Parallel over the pool the matrix was created with.</summary>
    void Multiply(ReadOnlySpan<float> x, int n, Span<float> y);
}

/// <summary>Builds the right matrix implementation for a stored tensor slice.</summary>
public static unsafe class WeightMatrix
{
    /// <summary>
    /// A row-major matrix: row r (one output feature) is <paramref name="cols"/> consecutive weights. Float types
    /// get <see cref="FloatMatrix"/>, block types with an integer kernel <see cref="Quant.RepackedMatrix"/> (AVX2/AVX-VNNI) or <see cref="Quant.QuantizedMatrix"/>, the
    /// rest <see cref="DequantizingMatrix"/>; products run on <paramref name="pool"/>.
    /// </summary>
    public static IWeightMatrix RowMajor(TensorType type, byte* data, int rows, int cols, WorkerPool pool)
    {
        if (type.IsFloat()) return new FloatMatrix(type, data, rows, cols, pool);
        // The repacked 8-row groups replace the row-major kernels on the default AVX2 path (AVX-VNNI where present);
        // forcing another path (SCOUT_KERNELS=Avx512|Vector128|Scalar) keeps the row-major kernels of that path.
        if (Quant.RepackedMatrix.Supports(type) && Quant.DotKernels.Best == Quant.KernelPath.Avx2 && Quant.RepackedMatrix.BestPath is { } repack)
        {
            // Repacked now rather than in the first forward (which a benchmark would time); the source pages are handed
            // back matrix by matrix, so the peak stays at one copy of the weights plus one matrix.
            var m = new Quant.RepackedMatrix(type, data, rows, cols, pool, repack, releaseSource: true);
            m.Pack();
            return m;
        }
        return Quant.QuantizedMatrix.Supports(type)
            ? new Quant.QuantizedMatrix(type, data, rows, cols, pool)
            : new DequantizingMatrix(type, data, rows, cols, pool);
    }

    /// <summary>
    /// ya = x·Aᵀ and yb = x·Bᵀ (and yc = x·Cᵀ when <paramref name="c"/> is given) for matrices that read the same
    /// input, such as a SwiGLU block's gate and up or attention's q, k and v. Repacked matrices quantize x once and run
    /// as one parallel product; any other mix runs the products one after the other. Results are the same either way.
    /// </summary>
    public static void MultiplyShared(ReadOnlySpan<float> x, int n, IWeightMatrix a, Span<float> ya, IWeightMatrix b, Span<float> yb,
        IWeightMatrix? c = null, Span<float> yc = default)
    {
        if (Quant.RepackedMatrix.TryMultiplyShared(x, n, a, ya, b, yb, c, yc)) return;
        a.Multiply(x, n, ya);
        b.Multiply(x, n, yb);
        c?.Multiply(x, n, yc);
    }
}
