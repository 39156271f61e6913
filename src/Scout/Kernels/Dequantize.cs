using System.Runtime.Intrinsics;
using System.Runtime.InteropServices;
using System.Numerics.Tensors;
using Scout.Tensors;

namespace Scout.Kernels;

/// <summary>Converts stored weights to float32 (block types through the ggml codecs of <see cref="Quant.QuantRegistry"/>).</summary>
public static class Dequantize
{
    /// <summary>Decoders for block-quantized types: (blocks, destination) → floats. Built once, never changed.</summary>
    public static IReadOnlyDictionary<TensorType, Action<ReadOnlySpan<byte>, Span<float>>> BlockDecoders { get; } = Quant.QuantRegistry.Decoders();

    public static void ToFloat(TensorType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (type)
        {
            case TensorType.F32:
                MemoryMarshal.Cast<byte, float>(src)[..dst.Length].CopyTo(dst);
                break;
            case TensorType.F16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(src)[..dst.Length], dst);
                break;
            case TensorType.BF16:
                BFloat16ToSingle(MemoryMarshal.Cast<byte, ushort>(src)[..dst.Length], dst);
                break;
            default:
                if (!BlockDecoders.TryGetValue(type, out var decode))
                    throw new NotSupportedException($"no decoder for tensor type {type}");
                decode(src, dst);
                break;
        }
    }

    /// <summary>bf16 is the top half of a float32: widening is a 16-bit shift.</summary>
    public static void BFloat16ToSingle(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        var bits = MemoryMarshal.Cast<float, uint>(dst);
        int i = 0;
        if (System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= src.Length; i += 8)
            {
                var v = System.Runtime.Intrinsics.Vector128.LoadUnsafe(ref MemoryMarshal.GetReference(src), (nuint)i);
                var (lo, hi) = System.Runtime.Intrinsics.Vector128.Widen(v);
                var w = System.Runtime.Intrinsics.Vector256.Create(lo, hi) << 16;
                w.StoreUnsafe(ref bits[i]);
            }
        }
        for (; i < src.Length; i++) bits[i] = (uint)src[i] << 16;
    }

    /// <summary>Rounds float32 to bf16 (nearest, ties to even), as PyTorch does.</summary>
    public static ushort SingleToBFloat16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7F800000) == 0x7F800000 && (u & 0x007FFFFF) != 0) return (ushort)((u >> 16) | 0x40);
        uint rounding = 0x7FFF + ((u >> 16) & 1);
        return (ushort)((u + rounding) >> 16);
    }
}
