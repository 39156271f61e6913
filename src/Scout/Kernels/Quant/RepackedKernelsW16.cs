using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Scout.Kernels.Quant;

/// <summary>
/// The AVX2 (no VNNI) kernels of the 4- and 6-bit layouts. vpmaddubsw yields int16 sums of two u8×s8 products; the
/// activations are within ±127 (<see cref="Q8Activations"/>), so a Q4 pair is at most 2·15·127 = 3810 and eight of
/// them (30480) still fit int16; a Q6 pair is at most 2·63·127 = 16002, two fit. Those int16 sums are added with
/// vpaddw and widened once by a vpmaddwd that also applies the sub-block scale (both int16 halves of a row's lane
/// carry the row's scale), instead of one vpmaddwd per 32-byte chunk and a vpmulld per sub-block: about half the
/// multiply-port work, which bounds prefill on CPUs without VNNI. Integer sums are exact, so the results are the
/// scalar reference's bit for bit.
/// </summary>
internal static unsafe partial class RepackedKernels
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Mub(Vector256<byte> u, Vector256<sbyte> s) => Avx2.MultiplyAddAdjacent(u, s);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Widen(Vector256<short> p) => Avx2.MultiplyAddAdjacent(p, Vector256.Create((short)1));

    /// <summary>8 unsigned bytes (one per row) as int16 pairs (s, s) in the rows' 32-bit lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> PairsU8(byte* p)
    {
        var x = Avx2.ConvertToVector256Int32(p);
        return (x | Vector256.ShiftLeft(x, 16)).AsInt16();
    }

    /// <summary>8 signed bytes (one per row) as int16 pairs (s, s) in the rows' 32-bit lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> PairsS8(sbyte* p)
    {
        var x = Avx2.ConvertToVector256Int32(p);
        return ((x & Vector256.Create(0xFFFF)) | Vector256.ShiftLeft(x, 16)).AsInt16();
    }

    // ---------------------------------------------------------------- Q4_0

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q4_0x1W16(byte* grp, int blocks, in ActView a, int t, float* o)
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
            var p = Mub(r0 & m, Bcast(x)) + Mub(Vector256.ShiftRightLogical(r0.AsUInt16(), 4).AsByte() & m, Bcast(x + 16));
            var p1 = Mub(r1 & m, Bcast(x + 4)) + Mub(Vector256.ShiftRightLogical(r1.AsUInt16(), 4).AsByte() & m, Bcast(x + 20));
            p += Mub(r2 & m, Bcast(x + 8)) + Mub(Vector256.ShiftRightLogical(r2.AsUInt16(), 4).AsByte() & m, Bcast(x + 24));
            p1 += Mub(r3 & m, Bcast(x + 12)) + Mub(Vector256.ShiftRightLogical(r3.AsUInt16(), 4).AsByte() & m, Bcast(x + 28));
            var isum = Widen(p + p1) - Vector256.Create(8 * s[b]);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Half8(blk) * Vector256.Create(d[b]), acc);
        }
        acc.Store(o);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q4_0x4W16(byte* grp, int blocks, in ActView a, int t, float* o)
    {
        var m = Vector256.Create((byte)0x0F);
        sbyte* q0 = a.QOf(t), q1 = a.QOf(t + 1), q2 = a.QOf(t + 2), q3 = a.QOf(t + 3);
        float* d0 = a.DOf(t), d1 = a.DOf(t + 1), d2 = a.DOf(t + 2), d3 = a.DOf(t + 3);
        int* s0 = a.SumsOf(t), s1 = a.SumsOf(t + 1), s2 = a.SumsOf(t + 2), s3 = a.SumsOf(t + 3);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = grp + b * 144;
            Vector256<short> p0 = default, p1 = default, p2 = default, p3 = default;
            for (int c = 0; c < 4; c++)
            {
                var raw = Vector256.Load(blk + 16 + 32 * c);
                var lo = raw & m;
                var hi = Vector256.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & m;
                int off = 32 * b + 4 * c;
                p0 += Mub(lo, Bcast(q0 + off)) + Mub(hi, Bcast(q0 + off + 16));
                p1 += Mub(lo, Bcast(q1 + off)) + Mub(hi, Bcast(q1 + off + 16));
                p2 += Mub(lo, Bcast(q2 + off)) + Mub(hi, Bcast(q2 + off + 16));
                p3 += Mub(lo, Bcast(q3 + off)) + Mub(hi, Bcast(q3 + off + 16));
            }
            var ws = Half8(blk);
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Widen(p0) - Vector256.Create(8 * s0[b])), ws * Vector256.Create(d0[b]), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Widen(p1) - Vector256.Create(8 * s1[b])), ws * Vector256.Create(d1[b]), acc1);
            acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Widen(p2) - Vector256.Create(8 * s2[b])), ws * Vector256.Create(d2[b]), acc2);
            acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Widen(p3) - Vector256.Create(8 * s3[b])), ws * Vector256.Create(d3[b]), acc3);
        }
        acc0.Store(o); acc1.Store(o + 8); acc2.Store(o + 16); acc3.Store(o + 24);
    }

    // ---------------------------------------------------------------- Q4_K

    /// <summary>Two chunks of a Q4_K nibble pair: low nibbles (sub-block 2i) into lo, high (2i+1) into hi.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q4Pair(byte* qs, sbyte* x, Vector256<byte> m, ref Vector256<short> lo, ref Vector256<short> hi)
    {
        var r0 = Vector256.Load(qs);
        var r1 = Vector256.Load(qs + 32);
        lo += Mub(r0 & m, Bcast(x)) + Mub(r1 & m, Bcast(x + 4));
        hi += Mub(Vector256.ShiftRightLogical(r0.AsUInt16(), 4).AsByte() & m, Bcast(x + 32))
            + Mub(Vector256.ShiftRightLogical(r1.AsUInt16(), 4).AsByte() & m, Bcast(x + 36));
    }

    /// <summary>One token of Q4_K: int16 pair sums over a sub-block's 8 chunks (≤ 8·2·15·127), widened by one vpmaddwd that
    /// applies the 6-bit scale; the chunks are unrolled two at a time (constant offsets, the mask kept in a register).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q4_Kx1W16(byte* grp, int blocks, in ActView a, int t, float* o)
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
                Vector256<short> lo = default, hi = default;
                Q4Pair(qs, xi, m, ref lo, ref hi);
                Q4Pair(qs + 64, xi + 8, m, ref lo, ref hi);
                Q4Pair(qs + 128, xi + 16, m, ref lo, ref hi);
                Q4Pair(qs + 192, xi + 24, m, ref lo, ref hi);
                isum += Avx2.MultiplyAddAdjacent(lo, PairsU8(blk + 32 + 16 * i))
                      + Avx2.MultiplyAddAdjacent(hi, PairsU8(blk + 40 + 16 * i));
            }
            var mins = Q4KMins(blk, s16 + 16 * b);
            var da = Vector256.Create(d[b]);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Half8(blk) * da, acc);
            acc = Fma.MultiplyAddNegated(Avx.ConvertToVector256Single(mins), Half8(blk + 16) * da, acc);
        }
        acc.Store(o);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q4_Kx4W16(byte* grp, int blocks, in ActView a, int t, float* o)
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
                byte* qs = blk + 160 + 256 * (j >> 1);
                int shift = 4 * (j & 1);
                Vector256<short> p0 = default, p1 = default, p2 = default, p3 = default;
                for (int c = 0; c < 8; c++)
                {
                    var w = Vector256.ShiftRightLogical(Vector256.Load(qs + 32 * c).AsUInt16(), shift).AsByte() & m;
                    int off = 256 * b + 32 * j + 4 * c;
                    p0 += Mub(w, Bcast(q0 + off));
                    p1 += Mub(w, Bcast(q1 + off));
                    p2 += Mub(w, Bcast(q2 + off));
                    p3 += Mub(w, Bcast(q3 + off));
                }
                var sc = PairsU8(blk + 32 + 8 * j);
                s0 += Avx2.MultiplyAddAdjacent(p0, sc); s1 += Avx2.MultiplyAddAdjacent(p1, sc);
                s2 += Avx2.MultiplyAddAdjacent(p2, sc); s3 += Avx2.MultiplyAddAdjacent(p3, sc);
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

    // ---------------------------------------------------------------- Q6_K

    /// <summary>Bytes (0,8,1,9,…,7,15): the scales of sub-blocks 2k and 2k+1 interleaved per row.</summary>
    private static readonly Vector128<byte> InterleaveHalves = Vector128.Create((byte)0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);

    /// <summary>32 · Σ_s scale_s[r] · Σa_s for the four tokens (the −32 offset of the unsigned 6-bit quants), subtracted from s0..s3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q6Offsets4(byte* blk, short* b0, short* b1, short* b2, short* b3,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
    {
        var shuffle = InterleaveHalves;
        for (int k = 0; k < 8; k++)
        {
            // int16 pairs (scale_2k[r], scale_2k+1[r]) × 32 (|·| ≤ 4096)
            var sc = Vector256.ShiftLeft(Avx2.ConvertToVector256Int16(Ssse3.Shuffle(Vector128.Load(blk + 16 + 16 * k), shuffle).AsSByte()), 5);
            s0 -= Avx2.MultiplyAddAdjacent(sc, Vector256.Create(*(int*)(b0 + 2 * k)).AsInt16());
            s1 -= Avx2.MultiplyAddAdjacent(sc, Vector256.Create(*(int*)(b1 + 2 * k)).AsInt16());
            s2 -= Avx2.MultiplyAddAdjacent(sc, Vector256.Create(*(int*)(b2 + 2 * k)).AsInt16());
            s3 -= Avx2.MultiplyAddAdjacent(sc, Vector256.Create(*(int*)(b3 + 2 * k)).AsInt16());
        }
    }

    /// <summary>−32 · Σ_s scale_s[r] · Σa_s for one token (the offset of the unsigned 6-bit quants), lanes = rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q6Offsets1(byte* blk, short* bs)
    {
        var shuffle = InterleaveHalves;
        var total = Vector256<int>.Zero;
        for (int k = 0; k < 8; k++)
        {
            var sc = Vector256.ShiftLeft(Avx2.ConvertToVector256Int16(Ssse3.Shuffle(Vector128.Load(blk + 16 + 16 * k), shuffle).AsSByte()), 5);
            total -= Avx2.MultiplyAddAdjacent(sc, Vector256.Create(*(int*)(bs + 2 * k)).AsInt16());
        }
        return total;
    }

    /// <summary>The four 6-bit chunks (one per plane) at low-plane chunk <paramref name="l"/> and high-bit chunk
    /// <paramref name="h"/>, each multiplied by its 4 activations into int16 pair sums added to p0..p3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q6Planes(byte* l, byte* h, sbyte* x, ref Vector256<short> p0, ref Vector256<short> p1, ref Vector256<short> p2, ref Vector256<short> p3)
    {
        var low4 = Vector256.Create((byte)0x0F);
        var bits45 = Vector256.Create((byte)0x30);
        var l0 = Vector256.Load(l);
        var l1 = Vector256.Load(l + 512);
        var hb = Vector256.Load(h).AsUInt16();
        p0 += Mub((l0 & low4) | (Vector256.ShiftLeft(hb, 4).AsByte() & bits45), Bcast(x));
        p1 += Mub((l1 & low4) | (Vector256.ShiftLeft(hb, 2).AsByte() & bits45), Bcast(x + 64));
        p2 += Mub((Vector256.ShiftRightLogical(l0.AsUInt16(), 4).AsByte() & low4) | (hb.AsByte() & bits45), Bcast(x + 128));
        p3 += Mub((Vector256.ShiftRightLogical(l1.AsUInt16(), 4).AsByte() & low4) | (Vector256.ShiftRightLogical(hb, 2).AsByte() & bits45), Bcast(x + 192));
    }

    /// <summary>
    /// One token of Q6_K: the int16 pair sums of two chunks of a sub-block (≤ 2·2·63·127) are widened by one vpmaddwd
    /// that also applies the sub-block scale, instead of a vpmaddwd per chunk and a vpmulld per sub-block; the −32
    /// offset is one pass over the block's scales (<see cref="Q6Offsets1"/>). Quad qd holds chunks 4qd..4qd+3 of each
    /// plane p, i.e. sub-block 4p + qd.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q6_Kx1W16(byte* grp, int blocks, in ActView a, int t, float* o)
    {
        sbyte* q = a.QOf(t);
        float* d = a.DOf(t);
        short* s16 = a.Sums16Of(t);
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = grp + b * 1680;
            sbyte* x = q + 256 * b;
            Prefetch(blk + PrefetchDistance, 1680);
            var isum = Q6Offsets1(blk, s16 + 16 * b);
            for (int qd = 0; qd < 4; qd++)
            {
                byte* l = blk + 144 + 128 * qd, h = blk + 1168 + 128 * qd;
                sbyte* xq = x + 16 * qd;
                var s0 = PairsS8((sbyte*)blk + 16 + 8 * qd);
                var s1 = PairsS8((sbyte*)blk + 16 + 8 * (4 + qd));
                var s2 = PairsS8((sbyte*)blk + 16 + 8 * (8 + qd));
                var s3 = PairsS8((sbyte*)blk + 16 + 8 * (12 + qd));
                Vector256<short> p0 = default, p1 = default, p2 = default, p3 = default;
                Q6Planes(l, h, xq, ref p0, ref p1, ref p2, ref p3);
                Q6Planes(l + 32, h + 32, xq + 4, ref p0, ref p1, ref p2, ref p3);
                isum += Avx2.MultiplyAddAdjacent(p0, s0) + Avx2.MultiplyAddAdjacent(p1, s1)
                      + Avx2.MultiplyAddAdjacent(p2, s2) + Avx2.MultiplyAddAdjacent(p3, s3);
                p0 = default; p1 = default; p2 = default; p3 = default;
                Q6Planes(l + 64, h + 64, xq + 8, ref p0, ref p1, ref p2, ref p3);
                Q6Planes(l + 96, h + 96, xq + 12, ref p0, ref p1, ref p2, ref p3);
                isum += Avx2.MultiplyAddAdjacent(p0, s0) + Avx2.MultiplyAddAdjacent(p1, s1)
                      + Avx2.MultiplyAddAdjacent(p2, s2) + Avx2.MultiplyAddAdjacent(p3, s3);
            }
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(isum), Half8(blk) * Vector256.Create(d[b]), acc);
        }
        acc.Store(o);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q6_Kx4W16(byte* grp, int blocks, in ActView a, int t, float* o)
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
                var sc = PairsS8((sbyte*)blk + 16 + 8 * sb);
                int chunk = 4 * sb, off = 256 * b + 4 * chunk;
                var w0 = Q6Chunk(blk, chunk >> 4, chunk & 15);
                var w1 = Q6Chunk(blk, (chunk + 1) >> 4, (chunk + 1) & 15);
                var p0 = Mub(w0, Bcast(q0 + off)) + Mub(w1, Bcast(q0 + off + 4));
                var p1 = Mub(w0, Bcast(q1 + off)) + Mub(w1, Bcast(q1 + off + 4));
                var p2 = Mub(w0, Bcast(q2 + off)) + Mub(w1, Bcast(q2 + off + 4));
                var p3 = Mub(w0, Bcast(q3 + off)) + Mub(w1, Bcast(q3 + off + 4));
                s0 += Avx2.MultiplyAddAdjacent(p0, sc); s1 += Avx2.MultiplyAddAdjacent(p1, sc);
                s2 += Avx2.MultiplyAddAdjacent(p2, sc); s3 += Avx2.MultiplyAddAdjacent(p3, sc);
                var w2 = Q6Chunk(blk, (chunk + 2) >> 4, (chunk + 2) & 15);
                var w3 = Q6Chunk(blk, (chunk + 3) >> 4, (chunk + 3) & 15);
                p0 = Mub(w2, Bcast(q0 + off + 8)) + Mub(w3, Bcast(q0 + off + 12));
                p1 = Mub(w2, Bcast(q1 + off + 8)) + Mub(w3, Bcast(q1 + off + 12));
                p2 = Mub(w2, Bcast(q2 + off + 8)) + Mub(w3, Bcast(q2 + off + 12));
                p3 = Mub(w2, Bcast(q3 + off + 8)) + Mub(w3, Bcast(q3 + off + 12));
                s0 += Avx2.MultiplyAddAdjacent(p0, sc); s1 += Avx2.MultiplyAddAdjacent(p1, sc);
                s2 += Avx2.MultiplyAddAdjacent(p2, sc); s3 += Avx2.MultiplyAddAdjacent(p3, sc);
            }
            Q6Offsets4(blk, b0 + 16 * b, b1 + 16 * b, b2 + 16 * b, b3 + 16 * b, ref s0, ref s1, ref s2, ref s3);
            var ws = Half8(blk);
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s0), ws * Vector256.Create(a.DOf(t)[b]), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s1), ws * Vector256.Create(a.DOf(t + 1)[b]), acc1);
            acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s2), ws * Vector256.Create(a.DOf(t + 2)[b]), acc2);
            acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s3), ws * Vector256.Create(a.DOf(t + 3)[b]), acc3);
        }
        acc0.Store(o); acc1.Store(o + 8); acc2.Store(o + 16); acc3.Store(o + 24);
    }
}
