using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Scout.Kernels.Quant;
using Scout.Planning;

namespace Scout.Kernels.Attention;

/// <summary>
/// Encodes and decodes one K/V row (or one head's slice of it) in a cache element type. f16 is IEEE half (round to
/// nearest even, as llama.cpp's f16 cache); bf16 keeps the top 16 bits of the float after round-to-nearest-even;
/// q8_0 and q4_0 use ggml's block layouts and reference rounding (<see cref="Block32Codecs"/>).
/// </summary>
internal static unsafe class KvRowCodec
{
    public static void Encode(KvType type, ReadOnlySpan<float> src, byte* dst)
    {
        int n = src.Length;
        switch (type.Kind)
        {
            case KvKind.F32:
                src.CopyTo(new Span<float>(dst, n));
                break;
            case KvKind.F16:
                TensorPrimitives.ConvertToHalf(src, new Span<Half>(dst, n));
                break;
            case KvKind.BF16:
                var o = (ushort*)dst;
                for (int i = 0; i < n; i++) o[i] = FloatToBf16(src[i]);
                break;
            case KvKind.Q8_0:
                Block32Codecs.QuantizeQ8_0(src, new Span<byte>(dst, n / 32 * 34));
                break;
            case KvKind.Q4_0:
                Block32Codecs.QuantizeQ4_0(src, new Span<byte>(dst, n / 32 * 18));
                break;
            default:
                throw new NotSupportedException($"KV cache type {type.Name}");
        }
    }

    /// <summary>Decodes <c>dst.Length</c> values (a whole number of blocks for the quantized types).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Decode(KvType type, byte* src, Span<float> dst)
    {
        int n = dst.Length;
        switch (type.Kind)
        {
            case KvKind.F32:
                new ReadOnlySpan<float>(src, n).CopyTo(dst);
                break;
            case KvKind.F16:
                TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(src, n), dst);
                break;
            case KvKind.BF16:
                fixed (float* d = dst) Bf16ToFloat((ushort*)src, d, n);
                break;
            case KvKind.Q8_0:
                fixed (float* d = dst) DecodeQ8_0(src, d, n / 32);
                break;
            case KvKind.Q4_0:
                fixed (float* d = dst) DecodeQ4_0(src, d, n / 32);
                break;
            default:
                throw new NotSupportedException($"KV cache type {type.Name}");
        }
    }

    /// <summary>Whether any of the <paramref name="n"/> halves at <paramref name="p"/> is an infinity or NaN (all-ones exponent).</summary>
    public static bool HasNonFiniteHalf(ushort* p, int n)
    {
        int i = 0;
        var mask = Vector128.Create((ushort)0x7C00);
        var any = Vector128<ushort>.Zero;
        for (; i + 8 <= n; i += 8)
        {
            var e = Vector128.Load(p + i) & mask;
            any |= Vector128.Equals(e, mask);
        }
        bool found = any != Vector128<ushort>.Zero;
        for (; i < n; i++) found |= (p[i] & 0x7C00) == 0x7C00;
        return found;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FloatToBf16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7FFFFFFF) > 0x7F800000) return (ushort)((u >> 16) | 0x40); // NaN stays a (quiet) NaN
        return (ushort)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
    }

    public static void Bf16ToFloat(ushort* src, float* dst, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= n; i += 8)
                (Vector256.WidenLower(Vector256.Create(Vector128.Load(src + i), Vector128<ushort>.Zero)).AsUInt32() << 16)
                    .AsSingle().Store(dst + i);
        for (; i < n; i++) dst[i] = BitConverter.UInt32BitsToSingle((uint)src[i] << 16);
    }

    private static void DecodeQ8_0(byte* src, float* dst, int blocks)
    {
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = src + b * 34;
            float d = DotKernels.HalfToFloat(*(ushort*)blk);
            sbyte* q = (sbyte*)(blk + 2);
            float* y = dst + b * 32;
            if (Vector256.IsHardwareAccelerated)
            {
                var vd = Vector256.Create(d);
                for (int j = 0; j < 32; j += 8)
                {
                    var w = Vector256.WidenLower(Vector256.WidenLower(Vector256.Create(Vector128.Create(*(long*)(q + j), 0).AsSByte(), Vector128<sbyte>.Zero)));
                    (Vector256.ConvertToSingle(w) * vd).Store(y + j);
                }
            }
            else
                for (int j = 0; j < 32; j++) y[j] = d * q[j];
        }
    }

    private static void DecodeQ4_0(byte* src, float* dst, int blocks)
    {
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = src + b * 18;
            float d = DotKernels.HalfToFloat(*(ushort*)blk);
            float* y = dst + b * 32;
            for (int j = 0; j < 16; j++)
            {
                y[j] = d * ((blk[2 + j] & 0x0F) - 8);
                y[j + 16] = d * ((blk[2 + j] >> 4) - 8);
            }
        }
    }
}
