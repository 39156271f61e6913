using Scout.Tensors;

namespace Scout.Planning;

/// <summary>
/// How one tensor's weights are laid out in memory: blocks of <see cref="BlockElements"/> weights taking
/// <see cref="BlockBytes"/> bytes along each row, plus <see cref="RowExtraBytes"/> per row (a row-wise scale).
/// Covers ggml's types (exact block sizes, including IQ4_NL, which llama.cpp's quantizer uses as a fallback but
/// <see cref="TensorType"/> does not list) and the FP8/INT4 layouts of Meta's quantized checkpoints.
/// </summary>
public sealed record StorageType(string Name, int BlockElements, int BlockBytes, int RowExtraBytes = 0, int? GgmlId = null)
{
    public static readonly StorageType F32 = From(TensorType.F32);
    public static readonly StorageType F16 = From(TensorType.F16);
    public static readonly StorageType BF16 = From(TensorType.BF16);
    public static readonly StorageType Q4_0 = From(TensorType.Q4_0);
    public static readonly StorageType Q4_1 = From(TensorType.Q4_1);
    public static readonly StorageType Q5_0 = From(TensorType.Q5_0);
    public static readonly StorageType Q5_1 = From(TensorType.Q5_1);
    public static readonly StorageType Q8_0 = From(TensorType.Q8_0);
    public static readonly StorageType Q2_K = From(TensorType.Q2_K);
    public static readonly StorageType Q3_K = From(TensorType.Q3_K);
    public static readonly StorageType Q4_K = From(TensorType.Q4_K);
    public static readonly StorageType Q5_K = From(TensorType.Q5_K);
    public static readonly StorageType Q6_K = From(TensorType.Q6_K);
    /// <summary>ggml IQ4_NL (id 20): f16 scale + 16 bytes of 4-bit indices per 32 weights.</summary>
    public static readonly StorageType IQ4_NL = new("IQ4_NL", 32, 18, 0, 20);
    /// <summary>float8 e4m3 weights with one float32 scale per output row (fbgemm quantize_fp8_per_row, as Meta's loader).</summary>
    public static readonly StorageType Fp8RowWise = new("FP8-rowwise", 1, 1, RowExtraBytes: 4);
    /// <summary>Signed int4, two per byte, one bf16 scale per 128 weights along the row (66 bytes per 128).</summary>
    public static readonly StorageType Int4G128 = new("INT4-g128", 128, 64 + 2);

    public static StorageType From(TensorType t) => new(t.ToString(), t.BlockElements(), t.BlockBytes(), 0, (int)t);

    public double BitsPerWeight => 8.0 * BlockBytes / BlockElements;
    public bool IsQuantized => BlockElements > 1 || RowExtraBytes > 0;
    public bool FitsRow(long rowLength) => rowLength % BlockElements == 0;

    /// <summary>Bytes of <paramref name="rows"/> rows of <paramref name="rowLength"/> weights; throws when a row is not whole blocks.</summary>
    public long Bytes(long rowLength, long rows)
    {
        if (!FitsRow(rowLength))
            throw new InvalidDataException($"a row of {rowLength} weights is not a whole number of {Name} blocks ({BlockElements})");
        return rows * (rowLength / BlockElements * BlockBytes + RowExtraBytes);
    }

    public override string ToString() => Name;
}
