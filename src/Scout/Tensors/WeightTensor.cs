namespace Scout.Tensors;

/// <summary>
/// A zero-copy view of one tensor inside a mapped checkpoint. <see cref="Shape"/> is in NumPy/PyTorch order
/// (outermost first, last dimension contiguous), whatever the file format.
/// </summary>
public sealed unsafe class WeightTensor(string name, TensorType type, long[] shape, byte* data, long byteLength, string source)
{
    public string Name { get; } = name;
    public TensorType Type { get; } = type;
    public long[] Shape { get; } = shape;
    public byte* Data { get; } = data;
    public long ByteLength { get; } = byteLength;
    /// <summary>The file the tensor lives in (for error messages).</summary>
    public string Source { get; } = source;

    public long ElementCount
    {
        get { long n = 1; foreach (var d in Shape) n *= d; return n; }
    }

    public int Rank => Shape.Length;

    public string ShapeText => "[" + string.Join(", ", Shape) + "]";

    /// <summary>Reads the whole tensor as float32 (small tensors only: norms, routers, rope factors).</summary>
    public float[] ToFloatArray()
    {
        var result = new float[ElementCount];
        Kernels.Dequantize.ToFloat(Type, new ReadOnlySpan<byte>(Data, checked((int)ByteLength)), result);
        return result;
    }

    public override string ToString() => $"{Name} {Type} {ShapeText}";
}
