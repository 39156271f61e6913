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

    /// <summary>y[n, Rows] = x[n, Cols] · Wᵀ (overwrites y). Parallel over the shared pool.</summary>
    void Multiply(ReadOnlySpan<float> x, int n, Span<float> y);
}

/// <summary>Builds the right matrix implementation for a stored tensor slice.</summary>
public static unsafe class WeightMatrix
{
    /// <summary>Factory for block-quantized row-major matrices; defaults to the integer kernels
    /// (<see cref="Quant.QuantizedMatrix"/>, with <see cref="DequantizingMatrix"/> for types without one).</summary>
    public static Func<TensorType, nint, int, int, IWeightMatrix>? QuantizedFactory { get; set; }

    static WeightMatrix() => QuantizedFactory = Quant.QuantizedKernelsRegistration.Create;

    /// <summary>A row-major matrix: row r (one output feature) is <paramref name="cols"/> consecutive weights.</summary>
    public static IWeightMatrix RowMajor(TensorType type, byte* data, int rows, int cols)
    {
        if (type.IsFloat()) return new FloatMatrix(type, data, rows, cols);
        var factory = QuantizedFactory ?? ((t, p, r, c) => new DequantizingMatrix(t, (byte*)p, r, c));
        return factory(type, (nint)data, rows, cols);
    }
}
