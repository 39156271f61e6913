using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Scout.Kernels.Quant;

/// <summary>Instruction-set variants of the block dot products; each <see cref="QuantizedMatrix"/> is created with one (default <see cref="DotKernels.Best"/>).</summary>
internal enum KernelPath
{
    /// <summary>Plain C#, one weight at a time: the reference every other path is tested against.</summary>
    Scalar,
    /// <summary>Portable <see cref="Vector128"/> code (runs on ARM64 and x64).</summary>
    Vector128,
    /// <summary>AVX2: vpmaddubsw/vpmaddwd on 256-bit registers (u8×s8 pairs → i16 → i32).</summary>
    Avx2,
    /// <summary>AVX-512BW: the same on 512-bit registers, two 32-blocks or one 64-weight group per instruction.</summary>
    Avx512,
}

/// <summary>
/// Dot products of one quantized weight row with one 8-bit-quantized activation row (see <see cref="Q8Activations"/>).
/// Integer products are summed exactly per block and scaled by (weight scale × activation scale) in float.
/// Unsigned weight quants (Q4_0 nibbles, Q6_K 6-bit values) are dotted as-is and the offset is removed with the
/// activation block sums: Σ(q−8)·a = Σq·a − 8·Σa. .NET 10 exposes VNNI (vpdpbusd) only as the VEX AvxVnni / AVX10.2
/// forms, which these AMD Zen 4 machines do not report, so the x64 paths use vpmaddubsw + vpmaddwd.
/// </summary>
internal static unsafe partial class DotKernels
{
    /// <summary>
    /// The fastest path this CPU supports. AVX2 wins over the AVX-512BW variants on the Zen 4 machines measured
    /// (BENCHMARKS.md: 512-bit maddubs + cross-lane assembly cost more than they save), so it is preferred;
    /// SCOUT_KERNELS=Avx512|Avx2|Vector128|Scalar overrides the choice.
    /// </summary>
    public static KernelPath Best { get; } =
        Environment.GetEnvironmentVariable("SCOUT_KERNELS") is { } forced && Enum.TryParse<KernelPath>(forced, true, out var p) && IsAvailable(p) ? p
        : Avx2.IsSupported && Fma.IsSupported ? KernelPath.Avx2
        : System.Runtime.Intrinsics.Vector128.IsHardwareAccelerated ? KernelPath.Vector128
        : KernelPath.Scalar;

    public static bool IsAvailable(KernelPath path) => path switch
    {
        KernelPath.Scalar => true,
        KernelPath.Vector128 => true,   // portable: software-emulated where not accelerated
        KernelPath.Avx2 => Avx2.IsSupported && Fma.IsSupported,
        KernelPath.Avx512 => Avx512BW.IsSupported && Fma.IsSupported,
        _ => false,
    };

    public static IEnumerable<KernelPath> AvailablePaths() => Enum.GetValues<KernelPath>().Where(IsAvailable);

    /// <summary>f16 → f32 for finite values (zero and subnormals included): move exponent and mantissa into place,
    /// rescale by 2^112. Block scales in valid files are finite; an inf/NaN scale decodes to a large finite value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HalfToFloat(ushort h)
    {
        float magnitude = BitConverter.UInt32BitsToSingle((uint)(h & 0x7FFF) << 13) * 5.192296858534828e33f;
        return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(magnitude) | ((uint)(h & 0x8000) << 16));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Half(byte* p) => HalfToFloat(*(ushort*)p);

    // ---------------------------------------------------------------- dispatch

    /// <summary>Q4_0 row (blocks × 18 bytes) · activations in 32-blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotQ4_0(KernelPath path, byte* w, sbyte* q, float* d, int* sums, int blocks) => path switch
    {
        KernelPath.Avx512 => Q4_0Avx512(w, q, d, sums, blocks),
        KernelPath.Avx2 => Q4_0Avx2(w, q, d, sums, blocks),
        KernelPath.Vector128 => Q4_0Vector128(w, q, d, sums, blocks),
        _ => Q4_0Scalar(w, q, d, blocks),
    };

    /// <summary>Q8_0 row (blocks × 34 bytes) · activations in 32-blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotQ8_0(KernelPath path, byte* w, sbyte* q, float* d, int blocks) => path switch
    {
        KernelPath.Avx512 => Q8_0Avx512(w, q, d, blocks),
        KernelPath.Avx2 => Q8_0Avx2(w, q, d, blocks),
        KernelPath.Vector128 => Q8_0Vector128(w, q, d, blocks),
        _ => Q8_0Scalar(w, q, d, blocks),
    };

    /// <summary>Q4_K row (blocks × 144 bytes) · activations in 256-blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotQ4_K(KernelPath path, byte* w, sbyte* q, float* d, short* sums16, int blocks) => path switch
    {
        KernelPath.Avx512 => Q4_KAvx512(w, q, d, sums16, blocks),
        KernelPath.Avx2 => Q4_KAvx2(w, q, d, sums16, blocks),
        KernelPath.Vector128 => Q4_KVector128(w, q, d, sums16, blocks),
        _ => Q4_KScalar(w, q, d, blocks),
    };

    /// <summary>Q6_K row (blocks × 210 bytes) · activations in 256-blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotQ6_K(KernelPath path, byte* w, sbyte* q, float* d, short* sums16, int blocks) => path switch
    {
        KernelPath.Avx512 => Q6_KAvx512(w, q, d, sums16, blocks),
        KernelPath.Avx2 => Q6_KAvx2(w, q, d, sums16, blocks),
        KernelPath.Vector128 => Q6_KVector128(w, q, d, sums16, blocks),
        _ => Q6_KScalar(w, q, d, blocks),
    };

    // ---------------------------------------------------------------- scalar references (layouts as in docs §5)

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Q4_0Scalar(byte* w, sbyte* q, float* d, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = w + b * 18;
            sbyte* a = q + b * 32;
            int s = 0;
            for (int j = 0; j < 16; j++)
            {
                s += ((blk[2 + j] & 0x0F) - 8) * a[j];
                s += ((blk[2 + j] >> 4) - 8) * a[j + 16];
            }
            sum += Half(blk) * d[b] * s;
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Q8_0Scalar(byte* w, sbyte* q, float* d, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = w + b * 34;
            sbyte* a = q + b * 32;
            int s = 0;
            for (int j = 0; j < 32; j++) s += ((sbyte*)(blk + 2))[j] * a[j];
            sum += Half(blk) * d[b] * s;
        }
        return sum;
    }

    /// <summary>Unpacks the 12 packed bytes of a Q4_K block into scales[0..7] and mins[0..7] (6 bits each).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void UnpackQ4KScales(byte* packed, byte* scalesAndMins)
    {
        const uint low6 = 0x3F3F3F3F, low4 = 0x0F0F0F0F, low2 = 0x03030303;
        uint a = *(uint*)packed, b = *(uint*)(packed + 4), c = *(uint*)(packed + 8);
        uint* o = (uint*)scalesAndMins;
        o[0] = a & low6;                                         // scales 0..3
        o[1] = (c & low4) | (((a >> 6) & low2) << 4);            // scales 4..7
        o[2] = b & low6;                                         // mins 0..3
        o[3] = ((c >> 4) & low4) | (((b >> 6) & low2) << 4);     // mins 4..7
    }

    /// <summary><see cref="UnpackQ4KScales(byte*, byte*)"/> into a register: bytes 0..7 scales, 8..15 mins.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<byte> UnpackQ4KScales(byte* packed)
    {
        const uint low6 = 0x3F3F3F3F, low4 = 0x0F0F0F0F, low2 = 0x03030303;
        uint a = *(uint*)packed, b = *(uint*)(packed + 4), c = *(uint*)(packed + 8);
        return System.Runtime.Intrinsics.Vector128.Create(a & low6, (c & low4) | (((a >> 6) & low2) << 4),
            b & low6, ((c >> 4) & low4) | (((b >> 6) & low2) << 4)).AsByte();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Q4_KScalar(byte* w, sbyte* q, float* d, int blocks)
    {
        float sum = 0;
        byte* sm = stackalloc byte[16];
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = w + b * 144;
            sbyte* a = q + b * 256;
            UnpackQ4KScales(blk + 4, sm);
            byte* qs = blk + 16;
            int dotScaled = 0, minScaled = 0;
            for (int j = 0; j < 8; j++)
            {
                int dot = 0, asum = 0;
                for (int l = 0; l < 32; l++)
                {
                    int byteIndex = 32 * (j / 2) + l;
                    int qv = (j & 1) == 0 ? qs[byteIndex] & 0x0F : qs[byteIndex] >> 4;
                    int av = a[32 * j + l];
                    dot += qv * av;
                    asum += av;
                }
                dotScaled += sm[j] * dot;
                minScaled += sm[8 + j] * asum;
            }
            sum += d[b] * (Half(blk) * dotScaled - Half(blk + 2) * minScaled);
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Q6_KScalar(byte* w, sbyte* q, float* d, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = w + b * 210;
            sbyte* a = q + b * 256;
            sbyte* scales = (sbyte*)(blk + 192);
            int total = 0;
            for (int h = 0; h < 2; h++)
            {
                byte* ql = blk + 64 * h, qh = blk + 128 + 32 * h;
                sbyte* sc = scales + 8 * h;
                sbyte* ah = a + 128 * h;
                for (int l = 0; l < 32; l++)
                {
                    int s = l / 16;
                    int q0 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32;
                    int q1 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    int q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    total += sc[s] * q0 * ah[l] + sc[s + 2] * q1 * ah[l + 32] + sc[s + 4] * q2 * ah[l + 64] + sc[s + 6] * q3 * ah[l + 96];
                }
            }
            sum += Half(blk + 208) * d[b] * total;
        }
        return sum;
    }

    // ---------------------------------------------------------------- portable Vector128

    /// <summary>Σ w·a over 16 int8 pairs, as 4 int lanes (products widened so nothing overflows).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Dot16(Vector128<sbyte> w, Vector128<sbyte> a)
    {
        var (w0, w1) = System.Runtime.Intrinsics.Vector128.Widen(w);
        var (a0, a1) = System.Runtime.Intrinsics.Vector128.Widen(a);
        var (p0, p1) = System.Runtime.Intrinsics.Vector128.Widen(w0 * a0);
        var (p2, p3) = System.Runtime.Intrinsics.Vector128.Widen(w1 * a1);
        return (p0 + p1) + (p2 + p3);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4_0Vector128(byte* w, sbyte* q, float* d, int* sums, int blocks)
    {
        var mask = System.Runtime.Intrinsics.Vector128.Create((byte)0x0F);
        float sum = 0, correction = 0;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = w + b * 18;
            var raw = System.Runtime.Intrinsics.Vector128.Load(blk + 2);
            var lo = (raw & mask).AsSByte();
            var hi = System.Runtime.Intrinsics.Vector128.ShiftRightLogical(raw, 4).AsSByte();
            var acc = Dot16(lo, System.Runtime.Intrinsics.Vector128.Load(q + b * 32)) + Dot16(hi, System.Runtime.Intrinsics.Vector128.Load(q + b * 32 + 16));
            float s = Half(blk) * d[b];
            sum += s * System.Runtime.Intrinsics.Vector128.Sum(acc);
            correction += s * sums[b];
        }
        return sum - 8 * correction;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q8_0Vector128(byte* w, sbyte* q, float* d, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = w + b * 34;
            sbyte* wq = (sbyte*)(blk + 2);
            var acc = Dot16(System.Runtime.Intrinsics.Vector128.Load(wq), System.Runtime.Intrinsics.Vector128.Load(q + b * 32))
                    + Dot16(System.Runtime.Intrinsics.Vector128.Load(wq + 16), System.Runtime.Intrinsics.Vector128.Load(q + b * 32 + 16));
            sum += Half(blk) * d[b] * System.Runtime.Intrinsics.Vector128.Sum(acc);
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4_KVector128(byte* w, sbyte* q, float* d, short* sums16, int blocks)
    {
        var mask = System.Runtime.Intrinsics.Vector128.Create((byte)0x0F);
        byte* sm = stackalloc byte[16];
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = w + b * 144;
            sbyte* a = q + b * 256;
            short* bs = sums16 + b * 16;
            UnpackQ4KScales(blk + 4, sm);
            var acc = Vector128<int>.Zero;
            for (int g = 0; g < 4; g++)
            {
                var r0 = System.Runtime.Intrinsics.Vector128.Load(blk + 16 + 32 * g);
                var r1 = System.Runtime.Intrinsics.Vector128.Load(blk + 16 + 32 * g + 16);
                sbyte* ag = a + 64 * g;
                var dotLo = Dot16((r0 & mask).AsSByte(), System.Runtime.Intrinsics.Vector128.Load(ag))
                          + Dot16((r1 & mask).AsSByte(), System.Runtime.Intrinsics.Vector128.Load(ag + 16));
                var dotHi = Dot16(System.Runtime.Intrinsics.Vector128.ShiftRightLogical(r0, 4).AsSByte(), System.Runtime.Intrinsics.Vector128.Load(ag + 32))
                          + Dot16(System.Runtime.Intrinsics.Vector128.ShiftRightLogical(r1, 4).AsSByte(), System.Runtime.Intrinsics.Vector128.Load(ag + 48));
                acc += dotLo * sm[2 * g] + dotHi * sm[2 * g + 1];
            }
            int mins = 0;
            for (int j = 0; j < 8; j++) mins += sm[8 + j] * (bs[2 * j] + bs[2 * j + 1]);
            sum += d[b] * (Half(blk) * System.Runtime.Intrinsics.Vector128.Sum(acc) - Half(blk + 2) * mins);
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q6_KVector128(byte* w, sbyte* q, float* d, short* sums16, int blocks)
    {
        var low4 = System.Runtime.Intrinsics.Vector128.Create((byte)0x0F);
        var bits45 = System.Runtime.Intrinsics.Vector128.Create((byte)0x30);
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = w + b * 210;
            sbyte* sc = (sbyte*)(blk + 192);
            var acc = Vector128<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                byte* ql = blk + 64 * h, qh = blk + 128 + 32 * h;
                sbyte* ah = q + b * 256 + 128 * h;
                sbyte* sh = sc + 8 * h;
                for (int s = 0; s < 2; s++)   // l in [16s, 16s+16)
                {
                    var l0 = System.Runtime.Intrinsics.Vector128.Load(ql + 16 * s);
                    var l1 = System.Runtime.Intrinsics.Vector128.Load(ql + 32 + 16 * s);
                    var hb = System.Runtime.Intrinsics.Vector128.Load(qh + 16 * s);
                    var q0 = (l0 & low4) | (System.Runtime.Intrinsics.Vector128.ShiftLeft(hb, 4) & bits45);
                    var q1 = (l1 & low4) | (System.Runtime.Intrinsics.Vector128.ShiftLeft(hb, 2) & bits45);
                    var q2 = System.Runtime.Intrinsics.Vector128.ShiftRightLogical(l0, 4) | (hb & bits45);
                    var q3 = System.Runtime.Intrinsics.Vector128.ShiftRightLogical(l1, 4) | (System.Runtime.Intrinsics.Vector128.ShiftRightLogical(hb, 2) & bits45);
                    acc += Dot16(q0.AsSByte(), System.Runtime.Intrinsics.Vector128.Load(ah + 16 * s)) * sh[s]
                         + Dot16(q1.AsSByte(), System.Runtime.Intrinsics.Vector128.Load(ah + 32 + 16 * s)) * sh[s + 2]
                         + Dot16(q2.AsSByte(), System.Runtime.Intrinsics.Vector128.Load(ah + 64 + 16 * s)) * sh[s + 4]
                         + Dot16(q3.AsSByte(), System.Runtime.Intrinsics.Vector128.Load(ah + 96 + 16 * s)) * sh[s + 6];
                }
            }
            sum += Half(blk + 208) * d[b] * (System.Runtime.Intrinsics.Vector128.Sum(acc) - 32 * Q6KOffset(sc, sums16 + b * 16));
        }
        return sum;
    }

    /// <summary>Σ scale_s · (Σ of the 16 activation quants of sub-block s): removes the −32 offset of Q6_K quants.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Q6KOffset(sbyte* scales, short* sums16)
    {
        // Sub-block s of the block covers weights 16s..16s+15 (halves of 128, four 32-runs each split in two).
        int total = 0;
        for (int s = 0; s < 16; s++) total += scales[s] * sums16[s];
        return total;
    }

    // ---------------------------------------------------------------- AVX2

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> MulAdd8(Vector256<byte> unsignedW, Vector256<sbyte> a)
        => Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(unsignedW, a), Vector256.Create((short)1));

    /// <summary>Eight f16 scales at <paramref name="p"/>, p+stride, … → float, with the bit trick of <see cref="HalfToFloat"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> HalfToFloat8(byte* p, int stride)
    {
        var h = System.Runtime.Intrinsics.Vector128.Create(*(ushort*)p, *(ushort*)(p + stride), *(ushort*)(p + 2 * stride), *(ushort*)(p + 3 * stride),
            *(ushort*)(p + 4 * stride), *(ushort*)(p + 5 * stride), *(ushort*)(p + 6 * stride), *(ushort*)(p + 7 * stride));
        var u = Avx2.ConvertToVector256Int32(h).AsUInt32();
        var magnitude = Vector256.ShiftLeft(u & Vector256.Create(0x7FFFu), 13).AsSingle() * Vector256.Create(5.192296858534828e33f);
        return (magnitude.AsUInt32() | Vector256.ShiftLeft(u & Vector256.Create(0x8000u), 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> UnpackQ4_0(byte* qs, Vector256<byte> mask)
    {
        var raw = System.Runtime.Intrinsics.Vector128.Load(qs);
        return Vector256.Create(raw, System.Runtime.Intrinsics.Vector128.ShiftRightLogical(raw.AsUInt16(), 4).AsByte()) & mask;
    }

    // Batch invariance: the single-token AVX2 kernels accumulate in exactly the order of their four-token prefill
    // twins (DotKernelsMultiToken.cs): one FMA chain per token, blocks in order, the offset correction per 8-block
    // batch. A token's result then does not depend on how many tokens share the call, so prefill, decode and
    // continuous batching give bit-identical logits (8-bit activation rounding turns 1-ulp differences into ~1e-3).

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4_0Avx2(byte* w, sbyte* q, float* d, int* sums, int blocks)
    {
        var mask = Vector256.Create((byte)0x0F);
        var acc = Vector256<float>.Zero;
        var correction = Vector256<float>.Zero;
        float* s = stackalloc float[8];
        int b = 0;
        // Eight blocks at a time: their scales are converted and combined with the activation scales in one vector.
        for (; b + 8 <= blocks; b += 8)
        {
            byte* blk = w + b * 18;
            var scales = HalfToFloat8(blk, 18) * Vector256.Load(d + b);
            correction = Fma.MultiplyAdd(scales, Avx.ConvertToVector256Single(Vector256.Load(sums + b)), correction);
            scales.Store(s);
            for (int i = 0; i < 8; i++)
                acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(UnpackQ4_0(blk + 18 * i + 2, mask), Vector256.Load(q + (b + i) * 32))), Vector256.Create(s[i]), acc);
        }
        float tailCorrection = 0;
        for (; b < blocks; b++)
        {
            byte* blk = w + b * 18;
            float sc = Half(blk) * d[b];
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(UnpackQ4_0(blk + 2, mask), Vector256.Load(q + b * 32))), Vector256.Create(sc), acc);
            tailCorrection += sc * sums[b];
        }
        return Vector256.Sum(acc) - 8 * (Vector256.Sum(correction) + tailCorrection);
    }

    /// <summary>|w| · (a with w's sign) keeps vpmaddubsw's unsigned operand in 0..128.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q8_0Block(byte* blk, sbyte* a)
    {
        var wv = Vector256.Load((sbyte*)blk);
        return Avx.ConvertToVector256Single(MulAdd8(Avx2.Sign(wv, wv).AsByte(), Avx2.Sign(Vector256.Load(a), wv)));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q8_0Avx2(byte* w, sbyte* q, float* d, int blocks)
    {
        var acc = Vector256<float>.Zero;
        float* s = stackalloc float[8];
        int b = 0;
        for (; b + 8 <= blocks; b += 8)
        {
            byte* blk = w + b * 34;
            (HalfToFloat8(blk, 34) * Vector256.Load(d + b)).Store(s);
            for (int i = 0; i < 8; i++)
                acc = Fma.MultiplyAdd(Q8_0Block(blk + 34 * i + 2, q + (b + i) * 32), Vector256.Create(s[i]), acc);
        }
        for (; b < blocks; b++)
        {
            byte* blk = w + b * 34;
            acc = Fma.MultiplyAdd(Q8_0Block(blk + 2, q + b * 32), Vector256.Create(Half(blk) * d[b]), acc);
        }
        return Vector256.Sum(acc);
    }

    // vpshufb masks broadcasting 16-bit lane k of each 128-bit half to the whole half.
    private static readonly Vector256<byte>[] BroadcastWord = Enumerable.Range(0, 8)
        .Select(k => Vector256.Create(System.Runtime.Intrinsics.Vector128.Create((ushort)(2 * k | (2 * k + 1) << 8)).AsByte(),
                                      System.Runtime.Intrinsics.Vector128.Create((ushort)(2 * k | (2 * k + 1) << 8)).AsByte()))
        .ToArray();

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4_KAvx2(byte* w, sbyte* q, float* d, short* sums16, int blocks)
    {
        var mask = Vector256.Create((byte)0x0F);
        var acc = Vector256<float>.Zero;
        var minAcc = Vector256<float>.Zero;
        Vector256<byte> b0 = BroadcastWord[0], b1 = BroadcastWord[1], b2 = BroadcastWord[2], b3 = BroadcastWord[3],
                        b4 = BroadcastWord[4], b5 = BroadcastWord[5], b6 = BroadcastWord[6], b7 = BroadcastWord[7];
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = w + b * 144;
            sbyte* a = q + b * 256;
            // unpack the 6-bit scales and mins in registers (a round trip through memory stalls store forwarding)
            var packed = UnpackQ4KScales(blk + 4);
            // the 8 sub-block scales as int16 in both halves; vpshufb broadcasts one of them per product
            var sc128 = Sse41.ConvertToVector128Int16(packed);
            var sc = Vector256.Create(sc128, sc128).AsByte();
            var isum = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Vector256.Load(blk + 16) & mask, Vector256.Load(a)), Avx2.Shuffle(sc, b0).AsInt16())
                     + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(Vector256.Load(blk + 16).AsUInt16(), 4).AsByte() & mask, Vector256.Load(a + 32)), Avx2.Shuffle(sc, b1).AsInt16())
                     + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Vector256.Load(blk + 48) & mask, Vector256.Load(a + 64)), Avx2.Shuffle(sc, b2).AsInt16())
                     + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(Vector256.Load(blk + 48).AsUInt16(), 4).AsByte() & mask, Vector256.Load(a + 96)), Avx2.Shuffle(sc, b3).AsInt16())
                     + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Vector256.Load(blk + 80) & mask, Vector256.Load(a + 128)), Avx2.Shuffle(sc, b4).AsInt16())
                     + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(Vector256.Load(blk + 80).AsUInt16(), 4).AsByte() & mask, Vector256.Load(a + 160)), Avx2.Shuffle(sc, b5).AsInt16())
                     + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Vector256.Load(blk + 112) & mask, Vector256.Load(a + 192)), Avx2.Shuffle(sc, b6).AsInt16())
                     + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(Vector256.Load(blk + 112).AsUInt16(), 4).AsByte() & mask, Vector256.Load(a + 224)), Avx2.Shuffle(sc, b7).AsInt16());
            float da = d[b];
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Vector256.Create(Half(blk) * da), acc);
            // mins: Σ_j m_j · (sum of the 32 activations of sub-block j) = pairwise sums of the 16-sums, times m_j
            var pairSums = Avx2.MultiplyAddAdjacent(Vector256.Load(sums16 + b * 16), Vector256.Create((short)1));
            var mins = Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(packed, 8));
            minAcc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyLow(pairSums, mins)), Vector256.Create(Half(blk + 2) * da), minAcc);
        }
        return Vector256.Sum(acc) - Vector256.Sum(minAcc);
    }

    // vpshufb mask gathering the even bytes then the odd bytes of 16 (Q6_K scales → [s0 s2 … s14 | s1 s3 … s15]).
    private static readonly Vector128<byte> EvenThenOdd = System.Runtime.Intrinsics.Vector128.Create((byte)0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q6_KAvx2(byte* w, sbyte* q, float* d, short* sums16, int blocks)
    {
        var low4 = Vector256.Create((byte)0x0F);
        var bits45 = Vector256.Create((byte)0x30);
        var acc = Vector256<float>.Zero;
        Vector256<byte> b0 = BroadcastWord[0], b1 = BroadcastWord[1], b2 = BroadcastWord[2], b3 = BroadcastWord[3],
                        b4 = BroadcastWord[4], b5 = BroadcastWord[5], b6 = BroadcastWord[6], b7 = BroadcastWord[7];
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = w + b * 210;
            sbyte* a = q + b * 256;
            // scales as int16 laid out [even | odd]: broadcasting word k gives [s_2k ×8 | s_2k+1 ×8], matching a 32-run
            var raw = System.Runtime.Intrinsics.Vector128.Load(blk + 192);
            var scales = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(raw, EvenThenOdd).AsSByte());
            var sc = scales.AsByte();
            // the −32 offset of every quant: Σ_s scale_s · (sum of its 16 activations), removed in integer units
            var isum = Vector256<int>.Zero - Vector256.ShiftLeft(Avx2.MultiplyAddAdjacent(Vector256.Load(sums16 + b * 16), Avx2.ConvertToVector256Int16(raw.AsSByte())), 5);
            for (int h = 0; h < 2; h++)
            {
                byte* ql = blk + 64 * h, qh = blk + 128 + 32 * h;
                sbyte* ah = a + 128 * h;
                var l0 = Vector256.Load(ql);
                var l1 = Vector256.Load(ql + 32);
                var hb = Vector256.Load(qh).AsUInt16();
                var q0 = (l0 & low4) | (Vector256.ShiftLeft(hb, 4).AsByte() & bits45);
                var q1 = (l1 & low4) | (Vector256.ShiftLeft(hb, 2).AsByte() & bits45);
                var q2 = (Vector256.ShiftRightLogical(l0.AsUInt16(), 4).AsByte() & low4) | (hb.AsByte() & bits45);
                var q3 = (Vector256.ShiftRightLogical(l1.AsUInt16(), 4).AsByte() & low4) | (Vector256.ShiftRightLogical(hb, 2).AsByte() & bits45);
                var (s0, s1, s2, s3) = h == 0 ? (b0, b1, b2, b3) : (b4, b5, b6, b7);
                isum += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q0, Vector256.Load(ah)), Avx2.Shuffle(sc, s0).AsInt16())
                      + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q1, Vector256.Load(ah + 32)), Avx2.Shuffle(sc, s1).AsInt16())
                      + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q2, Vector256.Load(ah + 64)), Avx2.Shuffle(sc, s2).AsInt16())
                      + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q3, Vector256.Load(ah + 96)), Avx2.Shuffle(sc, s3).AsInt16());
            }
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Vector256.Create(Half(blk + 208) * d[b]), acc);
        }
        return Vector256.Sum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> ScalePair(sbyte first, sbyte second)
        => Vector256.Create(System.Runtime.Intrinsics.Vector128.Create((short)first), System.Runtime.Intrinsics.Vector128.Create((short)second));

    // ---------------------------------------------------------------- AVX-512BW

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> MulAdd16(Vector512<byte> unsignedW, Vector512<sbyte> a)
        => Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(unsignedW, a), Vector512.Create((short)1));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4_0Avx512(byte* w, sbyte* q, float* d, int* sums, int blocks)
    {
        var mask = Vector512.Create((byte)0x0F);
        var acc = Vector512<float>.Zero;
        float correction = 0;
        int b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            byte* blk = w + b * 18;
            var raw0 = System.Runtime.Intrinsics.Vector128.Load(blk + 2);
            var raw1 = System.Runtime.Intrinsics.Vector128.Load(blk + 20);
            var both = Vector256.Create(raw0, raw1);
            var shifted = Vector256.ShiftRightLogical(both.AsUInt16(), 4).AsByte();
            // lanes: [b0 low nibbles | b0 high | b1 low | b1 high] = weights of b0 then b1, matching the activations.
            var wv = Vector512.Create(Vector256.Create(both.GetLower(), shifted.GetLower()), Vector256.Create(both.GetUpper(), shifted.GetUpper())) & mask;
            float s0 = Half(blk) * d[b], s1 = Half(blk + 18) * d[b + 1];
            var scale = Vector512.Create(Vector256.Create(s0), Vector256.Create(s1));
            acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(MulAdd16(wv, Vector512.Load(q + b * 32))), scale, acc);
            correction += s0 * sums[b] + s1 * sums[b + 1];
        }
        float tail = b < blocks ? Q4_0Avx2(w + b * 18, q + b * 32, d + b, sums + b, blocks - b) : 0;
        return Vector512.Sum(acc) - 8 * correction + tail;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q8_0Avx512(byte* w, sbyte* q, float* d, int blocks)
    {
        var acc = Vector512<float>.Zero;
        int b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            byte* blk = w + b * 34;
            var wv = Vector512.Create(Vector256.Load((sbyte*)(blk + 2)), Vector256.Load((sbyte*)(blk + 36)));
            var av = Vector512.Load(q + b * 32);
            // |w| · (a with w's sign): AVX-512BW has no vpsignb, so negate a where w < 0 via a mask blend.
            var negative = Vector512.LessThan(wv, Vector512<sbyte>.Zero);
            var absW = Vector512.Abs(wv).AsByte();   // |−128| wraps to 0x80 = 128 as unsigned: still correct
            var signedA = Vector512.ConditionalSelect(negative, -av, av);
            var p = MulAdd16(absW, signedA);
            var scale = Vector512.Create(Vector256.Create(Half(blk) * d[b]), Vector256.Create(Half(blk + 34) * d[b + 1]));
            acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(p), scale, acc);
        }
        float tail = b < blocks ? Q8_0Avx2(w + b * 34, q + b * 32, d + b, blocks - b) : 0;
        return Vector512.Sum(acc) + tail;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4_KAvx512(byte* w, sbyte* q, float* d, short* sums16, int blocks)
    {
        var mask = Vector512.Create((byte)0x0F);
        byte* sm = stackalloc byte[16];
        var acc = Vector512<float>.Zero;
        float minTotal = 0;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = w + b * 144;
            sbyte* a = q + b * 256;
            UnpackQ4KScales(blk + 4, sm);
            var isum = Vector512<int>.Zero;
            for (int g = 0; g < 4; g++)
            {
                var raw = Vector256.Load(blk + 16 + 32 * g);
                // one group of 64 weights: low nibbles (sub-block 2g) then high nibbles (2g+1), like the activations
                var wv = Vector512.Create(raw, Vector256.ShiftRightLogical(raw.AsUInt16(), 4).AsByte()) & mask;
                var p16 = Avx512BW.MultiplyAddAdjacent(wv, Vector512.Load(a + 64 * g));
                var scales = Vector512.Create(Vector256.Create((short)sm[2 * g]), Vector256.Create((short)sm[2 * g + 1]));
                isum += Avx512BW.MultiplyAddAdjacent(p16, scales);
            }
            acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), Vector512.Create(Half(blk) * d[b]), acc);
            short* bs = sums16 + b * 16;
            int mins = 0;
            for (int j = 0; j < 8; j++) mins += sm[8 + j] * (bs[2 * j] + bs[2 * j + 1]);
            minTotal += Half(blk + 2) * d[b] * mins;
        }
        return Vector512.Sum(acc) - minTotal;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q6_KAvx512(byte* w, sbyte* q, float* d, short* sums16, int blocks)
    {
        var low4 = Vector512.Create((byte)0x0F);
        var bits45 = Vector512.Create((byte)0x30);
        var acc = Vector512<float>.Zero;
        float offsetTotal = 0;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = w + b * 210;
            sbyte* sc = (sbyte*)(blk + 192);
            var isum = Vector512<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                byte* ql = blk + 64 * h, qh = blk + 128 + 32 * h;
                sbyte* ah = q + b * 256 + 128 * h;
                sbyte* sh = sc + 8 * h;
                var low = Vector512.Load(ql);                         // ql[0..63]: low nibbles → weights 0..63, high → 64..127
                var hb256 = Vector256.Load(qh);
                // weights 0..31 take qh bits 0-1, 32..63 bits 2-3 (second half of the register), 64..95 bits 4-5, 96..127 bits 6-7
                var highA = Vector512.Create(Vector256.ShiftLeft(hb256.AsUInt16(), 4).AsByte(), Vector256.ShiftLeft(hb256.AsUInt16(), 2).AsByte()) & bits45;
                var highB = Vector512.Create(hb256, Vector256.ShiftRightLogical(hb256.AsUInt16(), 2).AsByte()) & bits45;
                var q01 = (low & low4) | highA;
                var q23 = (Vector512.ShiftRightLogical(low.AsUInt16(), 4).AsByte() & low4) | highB;
                var s01 = Vector512.Create(ScalePair(sh[0], sh[1]), ScalePair(sh[2], sh[3]));
                var s23 = Vector512.Create(ScalePair(sh[4], sh[5]), ScalePair(sh[6], sh[7]));
                isum += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(q01, Vector512.Load(ah)), s01)
                      + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(q23, Vector512.Load(ah + 64)), s23);
            }
            float s = Half(blk + 208) * d[b];
            acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(isum), Vector512.Create(s), acc);
            offsetTotal += s * Q6KOffset(sc, sums16 + b * 16);
        }
        return Vector512.Sum(acc) - 32 * offsetTotal;
    }
}
