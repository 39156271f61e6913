using System.Collections.Frozen;
using System.Runtime.InteropServices;
using Scout.Tensors;

namespace Scout.Kernels.Quant;

/// <summary>Float → stored bytes for every type Scout can write (float types and ggml block types).</summary>
public static class Quantizer
{
    /// <summary>Block types with an encoder here.</summary>
    public static readonly IReadOnlyList<TensorType> BlockTypes =
    [
        TensorType.Q4_0, TensorType.Q4_1, TensorType.Q5_0, TensorType.Q5_1, TensorType.Q8_0,
        TensorType.Q2_K, TensorType.Q3_K, TensorType.Q4_K, TensorType.Q5_K, TensorType.Q6_K,
    ];

    public static bool CanEncode(TensorType type) => type.IsFloat() || BlockTypes.Contains(type);

    /// <summary>
    /// Encodes <paramref name="src"/> (a whole number of blocks) as <paramref name="type"/> into <paramref name="dst"/>,
    /// which must hold exactly <c>type.ByteCount(src.Length)</c> bytes.
    /// </summary>
    public static void Quantize(TensorType type, ReadOnlySpan<float> src, Span<byte> dst)
    {
        long need = type.ByteCount(src.Length);
        if (dst.Length != need)
            throw new ArgumentException($"{type}: {src.Length} values need {need} bytes, destination has {dst.Length}");
        switch (type)
        {
            case TensorType.F32: MemoryMarshal.AsBytes(src).CopyTo(dst); break;
            case TensorType.F16: FloatConversions.ToHalf(src, MemoryMarshal.Cast<byte, Half>(dst)); break;
            case TensorType.BF16: FloatConversions.ToBFloat16(src, MemoryMarshal.Cast<byte, ushort>(dst)); break;
            case TensorType.Q4_0: Block32Codecs.QuantizeQ4_0(src, dst); break;
            case TensorType.Q4_1: Block32Codecs.QuantizeQ4_1(src, dst); break;
            case TensorType.Q5_0: Block32Codecs.QuantizeQ5_0(src, dst); break;
            case TensorType.Q5_1: Block32Codecs.QuantizeQ5_1(src, dst); break;
            case TensorType.Q8_0: Block32Codecs.QuantizeQ8_0(src, dst); break;
            case TensorType.Q2_K: KQuantCodecs.QuantizeQ2_K(src, dst); break;
            case TensorType.Q3_K: KQuantCodecs.QuantizeQ3_K(src, dst); break;
            case TensorType.Q4_K: KQuantCodecs.QuantizeQ4_K(src, dst); break;
            case TensorType.Q5_K: KQuantCodecs.QuantizeQ5_K(src, dst); break;
            case TensorType.Q6_K: KQuantCodecs.QuantizeQ6_K(src, dst); break;
            default: throw new NotSupportedException($"Scout cannot encode tensor type {type}");
        }
    }

    /// <summary>
    /// Encodes a [rows, cols] row-major float matrix row by row, in parallel on <paramref name="pool"/> when one is
    /// given. Each row is encoded independently, so the result equals encoding the whole span at once.
    /// </summary>
    public static unsafe void QuantizeRows(TensorType type, ReadOnlySpan<float> src, int rows, int cols, Span<byte> dst, WorkerPool? pool = null)
    {
        if ((long)rows * cols != src.Length)
            throw new ArgumentException($"{src.Length} values is not a [{rows}, {cols}] matrix");
        long rowBytes = type.RowBytes(cols);
        if (dst.Length != rowBytes * rows)
            throw new ArgumentException($"{type}: [{rows}, {cols}] needs {rowBytes * rows} bytes, destination has {dst.Length}");
        fixed (float* ps = src)
        fixed (byte* pd = dst)
        {
            float* s = ps;
            byte* d = pd;
            int grain = Math.Max(1, 16384 / Math.Max(1, cols));
            if (pool is null)
            {
                for (int r = 0; r < rows; r++)
                    Quantize(type, new ReadOnlySpan<float>(s + (long)r * cols, cols), new Span<byte>(d + r * rowBytes, (int)rowBytes));
                return;
            }
            pool.ForRange(rows, grain, (r0, r1) =>
            {
                for (int r = r0; r < r1; r++)
                    Quantize(type, new ReadOnlySpan<float>(s + (long)r * cols, cols), new Span<byte>(d + r * rowBytes, (int)rowBytes));
            });
        }
    }
}

/// <summary>float32 ↔ f16/bf16 with round-to-nearest-even, as ggml and PyTorch convert.</summary>
public static class FloatConversions
{
    public static void ToHalf(ReadOnlySpan<float> src, Span<Half> dst)
        => System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(src, dst);

    public static void ToBFloat16(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        for (int i = 0; i < src.Length; i++) dst[i] = Dequantize.SingleToBFloat16(src[i]);
    }
}

/// <summary>The block decoders of this namespace, as one immutable table (read by <see cref="Dequantize"/>).</summary>
public static class QuantRegistry
{
    public static FrozenDictionary<TensorType, Action<ReadOnlySpan<byte>, Span<float>>> Decoders()
        => new Dictionary<TensorType, Action<ReadOnlySpan<byte>, Span<float>>>
        {
            [TensorType.Q4_0] = Block32Codecs.DequantizeQ4_0,
            [TensorType.Q4_1] = Block32Codecs.DequantizeQ4_1,
            [TensorType.Q5_0] = Block32Codecs.DequantizeQ5_0,
            [TensorType.Q5_1] = Block32Codecs.DequantizeQ5_1,
            [TensorType.Q8_0] = Block32Codecs.DequantizeQ8_0,
            [TensorType.Q2_K] = KQuantCodecs.DequantizeQ2_K,
            [TensorType.Q3_K] = KQuantCodecs.DequantizeQ3_K,
            [TensorType.Q4_K] = KQuantCodecs.DequantizeQ4_K,
            [TensorType.Q5_K] = KQuantCodecs.DequantizeQ5_K,
            [TensorType.Q6_K] = KQuantCodecs.DequantizeQ6_K,
        }.ToFrozenDictionary();
}
