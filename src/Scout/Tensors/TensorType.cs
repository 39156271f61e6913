namespace Scout.Tensors;

/// <summary>Element types of weight tensors. Values are ggml's type ids, so GGUF files map directly.</summary>
public enum TensorType
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    BF16 = 30,
}

public static class TensorTypeInfo
{
    /// <summary>Number of weights in one block (1 for plain float types).</summary>
    public static int BlockElements(this TensorType t) => t switch
    {
        TensorType.F32 or TensorType.F16 or TensorType.BF16 => 1,
        TensorType.Q4_0 or TensorType.Q4_1 or TensorType.Q5_0 or TensorType.Q5_1 or TensorType.Q8_0 or TensorType.Q8_1 => 32,
        TensorType.Q2_K or TensorType.Q3_K or TensorType.Q4_K or TensorType.Q5_K or TensorType.Q6_K or TensorType.Q8_K => 256,
        _ => throw new NotSupportedException($"unknown tensor type {(int)t}"),
    };

    /// <summary>Bytes of one block, exactly as ggml lays it out.</summary>
    public static int BlockBytes(this TensorType t) => t switch
    {
        TensorType.F32 => 4,
        TensorType.F16 or TensorType.BF16 => 2,
        TensorType.Q4_0 => 18,
        TensorType.Q4_1 => 20,
        TensorType.Q5_0 => 22,
        TensorType.Q5_1 => 24,
        TensorType.Q8_0 => 34,
        TensorType.Q8_1 => 36,
        TensorType.Q2_K => 84,
        TensorType.Q3_K => 110,
        TensorType.Q4_K => 144,
        TensorType.Q5_K => 176,
        TensorType.Q6_K => 210,
        TensorType.Q8_K => 292,
        _ => throw new NotSupportedException($"unknown tensor type {(int)t}"),
    };

    public static bool IsKnown(int id) => Enum.IsDefined(typeof(TensorType), id);

    public static bool IsFloat(this TensorType t) => t is TensorType.F32 or TensorType.F16 or TensorType.BF16;

    /// <summary>Bytes needed for <paramref name="elements"/> weights; throws if not a whole number of blocks.</summary>
    public static long ByteCount(this TensorType t, long elements)
    {
        int be = t.BlockElements();
        if (elements % be != 0)
            throw new InvalidDataException($"{elements} elements is not a multiple of the {t} block size {be}");
        return elements / be * t.BlockBytes();
    }

    /// <summary>Row size in bytes of a row of <paramref name="columns"/> weights.</summary>
    public static long RowBytes(this TensorType t, long columns) => t.ByteCount(columns);

    public static double BitsPerWeight(this TensorType t) => 8.0 * t.BlockBytes() / t.BlockElements();
}
