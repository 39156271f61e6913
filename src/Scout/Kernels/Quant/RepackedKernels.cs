using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Scout.Kernels.Quant;

/// <summary>Instruction-set variants of the repacked (8-row interleaved) kernels.</summary>
internal enum RepackPath
{
    /// <summary>Plain C#: the reference, in exactly the float order of the SIMD paths (so they agree bit for bit).</summary>
    Scalar,
    /// <summary>AVX2 + FMA: u8×s8 4-way dots as vpmaddubsw + vpmaddwd.</summary>
    Avx2,
    /// <summary>AVX-VNNI (VEX vpdpbusd on 256-bit registers) + FMA.</summary>
    AvxVnni,
}

/// <summary>Where the activations of a product are: <see cref="Q8Activations"/>' buffers, pinned.</summary>
internal readonly unsafe struct ActView(sbyte* q, float* d, int* sums, short* sums16, int cols, int blocksPerRow)
{
    public readonly sbyte* Q = q;
    public readonly float* D = d;
    public readonly int* Sums = sums;
    public readonly short* Sums16 = sums16;
    public readonly int Cols = cols;
    public readonly int BlocksPerRow = blocksPerRow;

    public sbyte* QOf(int t) => Q + (long)t * Cols;
    public float* DOf(int t) => D + (long)t * BlocksPerRow;
    public int* SumsOf(int t) => Sums + (long)t * BlocksPerRow;
    public short* Sums16Of(int t) => Sums16 + (long)t * BlocksPerRow * 16;
}

/// <summary>u8×s8 dot of 4-byte groups into 32-bit lanes: acc + Σ_{i&lt;4} u[4l+i]·s[4l+i].</summary>
internal interface IDot4
{
    static abstract Vector256<int> Dot(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> s);
}

/// <summary>vpdpbusd (AVX-VNNI). Exact for all operands.</summary>
internal struct VnniDot : IDot4
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> s) => AvxVnni.MultiplyWideningAndAdd(acc, u, s);
}

/// <summary>vpmaddubsw + vpmaddwd (AVX2). Exact while u·s pairs stay within ±32767 (u ≤ 128 with |s| ≤ 127).</summary>
internal struct MaddDot : IDot4
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> s)
        => acc + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, s), Vector256.Create((short)1));
}

/// <summary>
/// Products of one 8-row group (see <see cref="RepackLayouts"/>) with one token (<c>…x1</c>) or four tokens
/// (<c>…x4</c>, prefill: every weight load and unpack feeds four tokens). Each writes 8 floats per token
/// (out[8t + r] = row r). Integer sums are exact per block (any order), then every token runs the same float chain:
/// acc = fma(float(isum_b), rowScale_b × actScale_b, acc) over the blocks in order — the scalar reference does the
/// same, so every path and every batch composition gives bit-identical results.
/// </summary>
internal static unsafe partial class RepackedKernels
{
    /// <summary>f16 → f32 with the bit trick of <see cref="DotKernels.HalfToFloat"/>, for 8 consecutive halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Half8(byte* p)
    {
        var u = Avx2.ConvertToVector256Int32((ushort*)p).AsUInt32();
        var magnitude = Vector256.ShiftLeft(u & Vector256.Create(0x7FFFu), 13).AsSingle() * Vector256.Create(5.192296858534828e33f);
        return (magnitude.AsUInt32() | Vector256.ShiftLeft(u & Vector256.Create(0x8000u), 16)).AsSingle();
    }

    /// <summary>How far ahead (bytes) the one-token kernels prefetch their weights. In decode every weight is read once,
    /// from DRAM; the hardware prefetchers alone left the Q6_K and Q8_0 layouts at a third to a half of the read
    /// bandwidth on Zen 4 (three interleaved streams per Q6_K block).</summary>
    internal const int PrefetchDistance = 2048;

    /// <summary>Prefetches [p, p + bytes) into L1, one request per cache line.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch(byte* p, int bytes)
    {
        for (int i = 0; i < bytes; i += 64) Sse.Prefetch0(p + i);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Bcast(sbyte* p) => Vector256.Create(*(int*)p).AsSByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float H(byte* p) => DotKernels.HalfToFloat(*(ushort*)p);

    public static void Run(Scout.Tensors.TensorType type, RepackPath path, byte* grp, int blocks, in ActView a, int t, int count, float* o)
    {
        switch (path)
        {
            case RepackPath.AvxVnni: RunSimd<VnniDot>(type, grp, blocks, a, t, count, o); break;
            case RepackPath.Avx2: RunAvx2(type, grp, blocks, a, t, count, o); break;
            default:
                for (int i = 0; i < count; i++) Scalar(type, grp, blocks, a, t + i, o + 8 * i);
                break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RunSimd<TDot>(Scout.Tensors.TensorType type, byte* grp, int blocks, in ActView a, int t, int count, float* o)
        where TDot : struct, IDot4
    {
        int i = 0;
        switch (type)
        {
            case Scout.Tensors.TensorType.Q4_0:
                for (; i + 4 <= count; i += 4) Q4_0x4<TDot>(grp, blocks, a, t + i, o + 8 * i);
                for (; i < count; i++) Q4_0x1<TDot>(grp, blocks, a, t + i, o + 8 * i);
                break;
            case Scout.Tensors.TensorType.Q8_0:
                for (; i + 4 <= count; i += 4) Q8_0x4<TDot>(grp, blocks, a, t + i, o + 8 * i);
                for (; i < count; i++) Q8_0x1<TDot>(grp, blocks, a, t + i, o + 8 * i);
                break;
            case Scout.Tensors.TensorType.Q4_K:
                for (; i + 4 <= count; i += 4) Q4_Kx4<TDot>(grp, blocks, a, t + i, o + 8 * i);
                for (; i < count; i++) Q4_Kx1<TDot>(grp, blocks, a, t + i, o + 8 * i);
                break;
            default:
                for (; i + 4 <= count; i += 4) Q6_Kx4<TDot>(grp, blocks, a, t + i, o + 8 * i);
                for (; i < count; i++) Q6_Kx1<TDot>(grp, blocks, a, t + i, o + 8 * i);
                break;
        }
    }

    /// <summary>AVX2 without VNNI: the 4-bit and 6-bit kernels add vpmaddubsw's int16 pair sums in int16 before one
    /// vpmaddwd (see <see cref="Q4_0x4W16"/>; the one-token Q6_K kernel too, <see cref="Q6_Kx1W16"/>); Q8_0 (pairs up to
    /// 2·128·127) keeps the per-chunk widening.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RunAvx2(Scout.Tensors.TensorType type, byte* grp, int blocks, in ActView a, int t, int count, float* o)
    {
        int i = 0;
        switch (type)
        {
            case Scout.Tensors.TensorType.Q4_0:
                for (; i + 4 <= count; i += 4) Q4_0x4W16(grp, blocks, a, t + i, o + 8 * i);
                for (; i < count; i++) Q4_0x1W16(grp, blocks, a, t + i, o + 8 * i);
                break;
            case Scout.Tensors.TensorType.Q8_0:
                for (; i + 4 <= count; i += 4) Q8_0x4<MaddDot>(grp, blocks, a, t + i, o + 8 * i);
                for (; i < count; i++) Q8_0x1<MaddDot>(grp, blocks, a, t + i, o + 8 * i);
                break;
            case Scout.Tensors.TensorType.Q4_K:
                for (; i + 4 <= count; i += 4) Q4_Kx4W16(grp, blocks, a, t + i, o + 8 * i);
                for (; i < count; i++) Q4_Kx1W16(grp, blocks, a, t + i, o + 8 * i);
                break;
            default:
                for (; i + 4 <= count; i += 4) Q6_Kx4W16(grp, blocks, a, t + i, o + 8 * i);
                for (; i < count; i++) Q6_Kx1W16(grp, blocks, a, t + i, o + 8 * i);
                break;
        }
    }

    // ---------------------------------------------------------------- scalar reference

    /// <summary>One token, one group, straight from the layout (independent of the source block decoders).</summary>
    internal static void Scalar(Scout.Tensors.TensorType type, byte* grp, int blocks, in ActView a, int t, float* o)
    {
        sbyte* q = a.QOf(t);
        float* d = a.DOf(t);
        int gbb = RepackLayouts.GroupBlockBytes(type);
        for (int r = 0; r < 8; r++)
        {
            float acc = 0;
            for (int b = 0; b < blocks; b++)
            {
                byte* blk = grp + (long)b * gbb;
                switch (type)
                {
                    case Scout.Tensors.TensorType.Q4_0:
                    {
                        sbyte* x = q + 32 * b;
                        int isum = 0;
                        for (int c = 0; c < 4; c++)
                            for (int i = 0; i < 4; i++)
                            {
                                byte v = blk[16 + 32 * c + 4 * r + i];
                                isum += (v & 0x0F) * x[4 * c + i] + (v >> 4) * x[16 + 4 * c + i];
                            }
                        isum -= 8 * a.SumsOf(t)[b];
                        acc = MathF.FusedMultiplyAdd(isum, H(blk + 2 * r) * d[b], acc);
                        break;
                    }
                    case Scout.Tensors.TensorType.Q8_0:
                    {
                        sbyte* x = q + 32 * b;
                        int isum = 0;
                        for (int c = 0; c < 8; c++)
                            for (int i = 0; i < 4; i++)
                                isum += (sbyte)(blk[16 + 32 * c + 4 * r + i] ^ 0x80) * x[4 * c + i];
                        acc = MathF.FusedMultiplyAdd(isum, H(blk + 2 * r) * d[b], acc);
                        break;
                    }
                    case Scout.Tensors.TensorType.Q4_K:
                    {
                        sbyte* x = q + 256 * b;
                        short* s16 = a.Sums16Of(t) + 16 * b;
                        int isum = 0, msum = 0;
                        for (int j = 0; j < 8; j++)
                        {
                            int dot = 0;
                            for (int c = 0; c < 8; c++)
                                for (int i = 0; i < 4; i++)
                                {
                                    byte v = blk[160 + 32 * (8 * (j >> 1) + c) + 4 * r + i];
                                    dot += ((j & 1) == 0 ? v & 0x0F : v >> 4) * x[32 * j + 4 * c + i];
                                }
                            isum += blk[32 + 8 * j + r] * dot;
                            msum += blk[96 + 16 * (j >> 1) + 2 * r + (j & 1)] * (s16[2 * j] + s16[2 * j + 1]);
                        }
                        acc = MathF.FusedMultiplyAdd(isum, H(blk + 2 * r) * d[b], acc);
                        acc = MathF.FusedMultiplyAdd(-(float)msum, H(blk + 16 + 2 * r) * d[b], acc);
                        break;
                    }
                    default:
                    {
                        sbyte* x = q + 256 * b;
                        short* s16 = a.Sums16Of(t) + 16 * b;
                        int isum = 0;
                        for (int s = 0; s < 16; s++)
                        {
                            int dot = 0;
                            for (int k = 16 * s; k < 16 * s + 16; k++)
                            {
                                int c = k >> 2, i = k & 3, plane = c >> 4, cc = c & 15;
                                int lowChunk = (plane & 1) == 0 ? cc : cc + 16;           // planes 0,2: chunk cc; 1,3: cc+16
                                byte lo = blk[144 + 32 * lowChunk + 4 * r + i];
                                int low = plane < 2 ? lo & 0x0F : lo >> 4;
                                int high = (blk[1168 + 32 * cc + 4 * r + i] >> (2 * plane)) & 3;
                                dot += (low | (high << 4)) * x[k];
                            }
                            isum += (sbyte)blk[16 + 8 * s + r] * (dot - 32 * s16[s]);
                        }
                        acc = MathF.FusedMultiplyAdd(isum, H(blk + 2 * r) * d[b], acc);
                        break;
                    }
                }
            }
            o[r] = acc;
        }
    }

    // ---------------------------------------------------------------- Q4_0

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q4_0x1<TDot>(byte* grp, int blocks, in ActView a, int t, float* o) where TDot : struct, IDot4
    {
        var m = Vector256.Create((byte)0x0F);
        sbyte* q = a.QOf(t);
        float* d = a.DOf(t);
        int* s = a.SumsOf(t);
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = grp + b * 144;
            sbyte* x = q + 32 * b;
            Prefetch(blk + PrefetchDistance, 144);
            var r0 = Vector256.Load(blk + 16); var r1 = Vector256.Load(blk + 48);
            var r2 = Vector256.Load(blk + 80); var r3 = Vector256.Load(blk + 112);
            var lo = TDot.Dot(Vector256<int>.Zero, r0 & m, Bcast(x));
            var hi = TDot.Dot(Vector256<int>.Zero, Vector256.ShiftRightLogical(r0.AsUInt16(), 4).AsByte() & m, Bcast(x + 16));
            lo = TDot.Dot(lo, r1 & m, Bcast(x + 4));
            hi = TDot.Dot(hi, Vector256.ShiftRightLogical(r1.AsUInt16(), 4).AsByte() & m, Bcast(x + 20));
            lo = TDot.Dot(lo, r2 & m, Bcast(x + 8));
            hi = TDot.Dot(hi, Vector256.ShiftRightLogical(r2.AsUInt16(), 4).AsByte() & m, Bcast(x + 24));
            lo = TDot.Dot(lo, r3 & m, Bcast(x + 12));
            hi = TDot.Dot(hi, Vector256.ShiftRightLogical(r3.AsUInt16(), 4).AsByte() & m, Bcast(x + 28));
            var isum = lo + hi - Vector256.Create(8 * s[b]);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Half8(blk) * Vector256.Create(d[b]), acc);
        }
        acc.Store(o);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q4_0x4<TDot>(byte* grp, int blocks, in ActView a, int t, float* o) where TDot : struct, IDot4
    {
        var m = Vector256.Create((byte)0x0F);
        sbyte* q0 = a.QOf(t), q1 = a.QOf(t + 1), q2 = a.QOf(t + 2), q3 = a.QOf(t + 3);
        float* d0 = a.DOf(t), d1 = a.DOf(t + 1), d2 = a.DOf(t + 2), d3 = a.DOf(t + 3);
        int* s0 = a.SumsOf(t), s1 = a.SumsOf(t + 1), s2 = a.SumsOf(t + 2), s3 = a.SumsOf(t + 3);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = grp + b * 144;
            Vector256<int> i0 = default, i1 = default, i2 = default, i3 = default;
            for (int c = 0; c < 4; c++)
            {
                var raw = Vector256.Load(blk + 16 + 32 * c);
                var lo = raw & m;
                var hi = Vector256.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & m;
                int off = 32 * b + 4 * c;
                i0 = TDot.Dot(TDot.Dot(i0, lo, Bcast(q0 + off)), hi, Bcast(q0 + off + 16));
                i1 = TDot.Dot(TDot.Dot(i1, lo, Bcast(q1 + off)), hi, Bcast(q1 + off + 16));
                i2 = TDot.Dot(TDot.Dot(i2, lo, Bcast(q2 + off)), hi, Bcast(q2 + off + 16));
                i3 = TDot.Dot(TDot.Dot(i3, lo, Bcast(q3 + off)), hi, Bcast(q3 + off + 16));
            }
            var ws = Half8(blk);
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0 - Vector256.Create(8 * s0[b])), ws * Vector256.Create(d0[b]), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1 - Vector256.Create(8 * s1[b])), ws * Vector256.Create(d1[b]), acc1);
            acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2 - Vector256.Create(8 * s2[b])), ws * Vector256.Create(d2[b]), acc2);
            acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3 - Vector256.Create(8 * s3[b])), ws * Vector256.Create(d3[b]), acc3);
        }
        acc0.Store(o); acc1.Store(o + 8); acc2.Store(o + 16); acc3.Store(o + 24);
    }

    // ---------------------------------------------------------------- Q8_0

    /// <summary>One chunk: VNNI takes the offset-binary weights as they are (the 128·Σa offset is removed per block);
    /// without VNNI the sign trick keeps vpmaddubsw's unsigned operand ≤ 128 and gives Σw·a directly.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q8Chunk<TDot>(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> w, Vector256<byte> absW, Vector256<sbyte> x, bool vnni)
        where TDot : struct, IDot4
        => vnni ? TDot.Dot(acc, u, x) : TDot.Dot(acc, absW, Avx2.Sign(x, w));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q8_0x1<TDot>(byte* grp, int blocks, in ActView a, int t, float* o) where TDot : struct, IDot4
    {
        bool vnni = typeof(TDot) == typeof(VnniDot);
        var flip = Vector256.Create((byte)0x80);
        sbyte* q = a.QOf(t);
        float* d = a.DOf(t);
        int* s = a.SumsOf(t);
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = grp + b * 272;
            sbyte* x = q + 32 * b;
            Vector256<int> i0 = default, i1 = default;
            Prefetch(blk + PrefetchDistance, 272);
            for (int c = 0; c < 8; c += 2)
            {
                var u0 = Vector256.Load(blk + 16 + 32 * c);
                var u1 = Vector256.Load(blk + 48 + 32 * c);
                var w0 = (u0 ^ flip).AsSByte(); var w1 = (u1 ^ flip).AsSByte();
                i0 = Q8Chunk<TDot>(i0, u0, w0, vnni ? default : Avx2.Abs(w0), Bcast(x + 4 * c), vnni);
                i1 = Q8Chunk<TDot>(i1, u1, w1, vnni ? default : Avx2.Abs(w1), Bcast(x + 4 * c + 4), vnni);
            }
            var isum = i0 + i1;
            if (vnni) isum -= Vector256.Create(128 * s[b]);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Half8(blk) * Vector256.Create(d[b]), acc);
        }
        acc.Store(o);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q8_0x4<TDot>(byte* grp, int blocks, in ActView a, int t, float* o) where TDot : struct, IDot4
    {
        bool vnni = typeof(TDot) == typeof(VnniDot);
        var flip = Vector256.Create((byte)0x80);
        sbyte* q0 = a.QOf(t), q1 = a.QOf(t + 1), q2 = a.QOf(t + 2), q3 = a.QOf(t + 3);
        float* d0 = a.DOf(t), d1 = a.DOf(t + 1), d2 = a.DOf(t + 2), d3 = a.DOf(t + 3);
        int* s0 = a.SumsOf(t), s1 = a.SumsOf(t + 1), s2 = a.SumsOf(t + 2), s3 = a.SumsOf(t + 3);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = grp + b * 272;
            Vector256<int> i0 = default, i1 = default, i2 = default, i3 = default;
            for (int c = 0; c < 8; c++)
            {
                var u = Vector256.Load(blk + 16 + 32 * c);
                var w = (u ^ flip).AsSByte();
                var absW = vnni ? default : Avx2.Abs(w);
                int off = 32 * b + 4 * c;
                i0 = Q8Chunk<TDot>(i0, u, w, absW, Bcast(q0 + off), vnni);
                i1 = Q8Chunk<TDot>(i1, u, w, absW, Bcast(q1 + off), vnni);
                i2 = Q8Chunk<TDot>(i2, u, w, absW, Bcast(q2 + off), vnni);
                i3 = Q8Chunk<TDot>(i3, u, w, absW, Bcast(q3 + off), vnni);
            }
            if (vnni)
            {
                i0 -= Vector256.Create(128 * s0[b]); i1 -= Vector256.Create(128 * s1[b]);
                i2 -= Vector256.Create(128 * s2[b]); i3 -= Vector256.Create(128 * s3[b]);
            }
            var ws = Half8(blk);
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), ws * Vector256.Create(d0[b]), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), ws * Vector256.Create(d1[b]), acc1);
            acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), ws * Vector256.Create(d2[b]), acc2);
            acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), ws * Vector256.Create(d3[b]), acc3);
        }
        acc0.Store(o); acc1.Store(o + 8); acc2.Store(o + 16); acc3.Store(o + 24);
    }

    // ---------------------------------------------------------------- Q4_K

    /// <summary>Σ_j min_j[r] · (Σ of the 32 activations of sub-block j), lanes = rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q4KMins(byte* blk, short* s16)
    {
        var sums = Avx2.MultiplyAddAdjacent(Vector256.Load(s16), Vector256.Create((short)1));   // asum_j (≤ 32·127), j = 0..7
        // as int16 pairs: int32 lanes 0,1 = (a0,a1),(a2,a3); lanes 4,5 = (a4,a5),(a6,a7)
        var packed = Avx2.PackSignedSaturate(sums, sums).AsInt32();
        var total = Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(blk + 96), Avx2.PermuteVar8x32(packed, Vector256.Create(0)).AsInt16());
        total += Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(blk + 112), Avx2.PermuteVar8x32(packed, Vector256.Create(1)).AsInt16());
        total += Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(blk + 128), Avx2.PermuteVar8x32(packed, Vector256.Create(4)).AsInt16());
        total += Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(blk + 144), Avx2.PermuteVar8x32(packed, Vector256.Create(5)).AsInt16());
        return total;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q4_Kx1<TDot>(byte* grp, int blocks, in ActView a, int t, float* o) where TDot : struct, IDot4
    {
        var m = Vector256.Create((byte)0x0F);
        sbyte* q = a.QOf(t);
        float* d = a.DOf(t);
        short* s16 = a.Sums16Of(t);
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = grp + b * 1184;
            sbyte* x = q + 256 * b;
            Prefetch(blk + PrefetchDistance, 1184);
            var isum = Vector256<int>.Zero;
            for (int i = 0; i < 4; i++)
            {
                byte* qs = blk + 160 + 256 * i;
                sbyte* xi = x + 64 * i;
                Vector256<int> lo = default, hi = default;
                for (int c = 0; c < 8; c++)
                {
                    var raw = Vector256.Load(qs + 32 * c);
                    lo = TDot.Dot(lo, raw & m, Bcast(xi + 4 * c));
                    hi = TDot.Dot(hi, Vector256.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & m, Bcast(xi + 32 + 4 * c));
                }
                isum += Avx2.MultiplyLow(lo, Avx2.ConvertToVector256Int32(blk + 32 + 16 * i))
                      + Avx2.MultiplyLow(hi, Avx2.ConvertToVector256Int32(blk + 40 + 16 * i));
            }
            var mins = Q4KMins(blk, s16 + 16 * b);
            var da = Vector256.Create(d[b]);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Half8(blk) * da, acc);
            acc = Fma.MultiplyAddNegated(Avx.ConvertToVector256Single(mins), Half8(blk + 16) * da, acc);
        }
        acc.Store(o);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q4_Kx4<TDot>(byte* grp, int blocks, in ActView a, int t, float* o) where TDot : struct, IDot4
    {
        var m = Vector256.Create((byte)0x0F);
        sbyte* q0 = a.QOf(t), q1 = a.QOf(t + 1), q2 = a.QOf(t + 2), q3 = a.QOf(t + 3);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = grp + b * 1184;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int j = 0; j < 8; j++)
            {
                // sub-block j: chunks of pair j/2, low nibbles for even j, high for odd j
                byte* qs = blk + 160 + 256 * (j >> 1);
                int shift = 4 * (j & 1);
                Vector256<int> i0 = default, i1 = default, i2 = default, i3 = default;
                for (int c = 0; c < 8; c++)
                {
                    var w = Vector256.ShiftRightLogical(Vector256.Load(qs + 32 * c).AsUInt16(), shift).AsByte() & m;
                    int off = 256 * b + 32 * j + 4 * c;
                    i0 = TDot.Dot(i0, w, Bcast(q0 + off));
                    i1 = TDot.Dot(i1, w, Bcast(q1 + off));
                    i2 = TDot.Dot(i2, w, Bcast(q2 + off));
                    i3 = TDot.Dot(i3, w, Bcast(q3 + off));
                }
                var sc = Avx2.ConvertToVector256Int32(blk + 32 + 8 * j);
                s0 += Avx2.MultiplyLow(i0, sc); s1 += Avx2.MultiplyLow(i1, sc);
                s2 += Avx2.MultiplyLow(i2, sc); s3 += Avx2.MultiplyLow(i3, sc);
            }
            var dw = Half8(blk);
            var dm = Half8(blk + 16);
            acc0 = Q4KFinish(acc0, s0, blk, a.Sums16Of(t) + 16 * b, dw, dm, a.DOf(t)[b]);
            acc1 = Q4KFinish(acc1, s1, blk, a.Sums16Of(t + 1) + 16 * b, dw, dm, a.DOf(t + 1)[b]);
            acc2 = Q4KFinish(acc2, s2, blk, a.Sums16Of(t + 2) + 16 * b, dw, dm, a.DOf(t + 2)[b]);
            acc3 = Q4KFinish(acc3, s3, blk, a.Sums16Of(t + 3) + 16 * b, dw, dm, a.DOf(t + 3)[b]);
        }
        acc0.Store(o); acc1.Store(o + 8); acc2.Store(o + 16); acc3.Store(o + 24);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q4KFinish(Vector256<float> acc, Vector256<int> isum, byte* blk, short* s16, Vector256<float> dw, Vector256<float> dm, float d)
    {
        var da = Vector256.Create(d);
        acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), dw * da, acc);
        return Fma.MultiplyAddNegated(Avx.ConvertToVector256Single(Q4KMins(blk, s16)), dm * da, acc);
    }

    // ---------------------------------------------------------------- Q6_K

    /// <summary>The 6-bit quants of global chunk 16·plane + cc (4 weights per row lane), unsigned 0..63.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Q6Chunk(byte* blk, int plane, int cc)
    {
        var low4 = Vector256.Create((byte)0x0F);
        var bits45 = Vector256.Create((byte)0x30);
        var lo = Vector256.Load(blk + 144 + 32 * ((plane & 1) == 0 ? cc : cc + 16));
        if (plane >= 2) lo = Vector256.ShiftRightLogical(lo.AsUInt16(), 4).AsByte();
        var hb = Vector256.Load(blk + 1168 + 32 * cc).AsUInt16();
        var high = plane switch
        {
            0 => Vector256.ShiftLeft(hb, 4),
            1 => Vector256.ShiftLeft(hb, 2),
            2 => hb,
            _ => Vector256.ShiftRightLogical(hb, 2),
        };
        return (lo & low4) | (high.AsByte() & bits45);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q6_Kx1<TDot>(byte* grp, int blocks, in ActView a, int t, float* o) where TDot : struct, IDot4
    {
        var low4 = Vector256.Create((byte)0x0F);
        var bits45 = Vector256.Create((byte)0x30);
        sbyte* q = a.QOf(t);
        float* d = a.DOf(t);
        short* s16 = a.Sums16Of(t);
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = grp + b * 1680;
            sbyte* x = q + 256 * b;
            short* bs = s16 + 16 * b;
            Prefetch(blk + PrefetchDistance, 1680);
            var isum = Vector256<int>.Zero;
            // quad qd: chunks 4qd..4qd+3 of each plane, i.e. sub-blocks qd, 4+qd, 8+qd, 12+qd
            for (int qd = 0; qd < 4; qd++)
            {
                Vector256<int> p0 = default, p1 = default, p2 = default, p3 = default;
                for (int k = 0; k < 4; k++)
                {
                    int cc = 4 * qd + k;
                    var l0 = Vector256.Load(blk + 144 + 32 * cc);
                    var l1 = Vector256.Load(blk + 144 + 32 * (cc + 16));
                    var hb = Vector256.Load(blk + 1168 + 32 * cc).AsUInt16();
                    var v0 = (l0 & low4) | (Vector256.ShiftLeft(hb, 4).AsByte() & bits45);
                    var v1 = (l1 & low4) | (Vector256.ShiftLeft(hb, 2).AsByte() & bits45);
                    var v2 = (Vector256.ShiftRightLogical(l0.AsUInt16(), 4).AsByte() & low4) | (hb.AsByte() & bits45);
                    var v3 = (Vector256.ShiftRightLogical(l1.AsUInt16(), 4).AsByte() & low4) | (Vector256.ShiftRightLogical(hb, 2).AsByte() & bits45);
                    p0 = TDot.Dot(p0, v0, Bcast(x + 4 * cc));
                    p1 = TDot.Dot(p1, v1, Bcast(x + 64 + 4 * cc));
                    p2 = TDot.Dot(p2, v2, Bcast(x + 128 + 4 * cc));
                    p3 = TDot.Dot(p3, v3, Bcast(x + 192 + 4 * cc));
                }
                isum += Q6Scale(p0, blk, bs, qd) + Q6Scale(p1, blk, bs, 4 + qd) + Q6Scale(p2, blk, bs, 8 + qd) + Q6Scale(p3, blk, bs, 12 + qd);
            }
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Half8(blk) * Vector256.Create(d[b]), acc);
        }
        acc.Store(o);
    }

    /// <summary>scale_s[r] · (Σ v·a − 32 · Σ a) for sub-block s.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q6Scale(Vector256<int> dot, byte* blk, short* bs, int s)
        => Avx2.MultiplyLow(dot - Vector256.Create(32 * bs[s]), Avx2.ConvertToVector256Int32((sbyte*)blk + 16 + 8 * s));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q6_Kx4<TDot>(byte* grp, int blocks, in ActView a, int t, float* o) where TDot : struct, IDot4
    {
        sbyte* q0 = a.QOf(t), q1 = a.QOf(t + 1), q2 = a.QOf(t + 2), q3 = a.QOf(t + 3);
        short* b0 = a.Sums16Of(t), b1 = a.Sums16Of(t + 1), b2 = a.Sums16Of(t + 2), b3 = a.Sums16Of(t + 3);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = grp + b * 1680;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int sb = 0; sb < 16; sb++)
            {
                Vector256<int> i0 = default, i1 = default, i2 = default, i3 = default;
                for (int k = 0; k < 4; k++)
                {
                    int chunk = 4 * sb + k;
                    var w = Q6Chunk(blk, chunk >> 4, chunk & 15);
                    int off = 256 * b + 4 * chunk;
                    i0 = TDot.Dot(i0, w, Bcast(q0 + off));
                    i1 = TDot.Dot(i1, w, Bcast(q1 + off));
                    i2 = TDot.Dot(i2, w, Bcast(q2 + off));
                    i3 = TDot.Dot(i3, w, Bcast(q3 + off));
                }
                s0 += Q6Scale(i0, blk, b0 + 16 * b, sb); s1 += Q6Scale(i1, blk, b1 + 16 * b, sb);
                s2 += Q6Scale(i2, blk, b2 + 16 * b, sb); s3 += Q6Scale(i3, blk, b3 + 16 * b, sb);
            }
            var ws = Half8(blk);
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s0), ws * Vector256.Create(a.DOf(t)[b]), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s1), ws * Vector256.Create(a.DOf(t + 1)[b]), acc1);
            acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s2), ws * Vector256.Create(a.DOf(t + 2)[b]), acc2);
            acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s3), ws * Vector256.Create(a.DOf(t + 3)[b]), acc3);
        }
        acc0.Store(o); acc1.Store(o + 8); acc2.Store(o + 16); acc3.Store(o + 24);
    }
}

