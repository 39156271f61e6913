using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Scout.Kernels.Quant;

/// <summary>
/// Prefill variants of the AVX2 kernels: one weight row against four tokens at once. Each weight block is loaded,
/// unpacked and its scale converted once and then used for all four activation rows, which roughly halves the
/// instructions per (block, token) compared with four single-token dots.
/// </summary>
internal static unsafe partial class DotKernels
{
    /// <summary>
    /// Whether <see cref="Dot4"/> has a four-token kernel for this type on this path. Only the AVX2 path: its
    /// single-token kernels sum in the same order, so results do not depend on the batch (see DotKernels.Q4_0Avx2).
    /// </summary>
    public static bool HasFourTokenKernel(Scout.Tensors.TensorType type, KernelPath path)
        => path is KernelPath.Avx2 && Avx2.IsSupported && Fma.IsSupported
           && type is Scout.Tensors.TensorType.Q4_0 or Scout.Tensors.TensorType.Q8_0 or Scout.Tensors.TensorType.Q4_K;

    /// <summary>
    /// out[i] = row · activation row (token0 + i) for i in 0..3. Activation rows are <paramref name="cols"/> quants
    /// apart and have <paramref name="blocksPerRow"/> scale/sum entries each.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dot4(Scout.Tensors.TensorType type, byte* w, sbyte* q, float* d, int* sums, short* sums16, int cols, int blocksPerRow, float* out4)
    {
        switch (type)
        {
            case Scout.Tensors.TensorType.Q4_0: Q4_0Avx2x4(w, q, d, sums, cols, blocksPerRow, out4); break;
            case Scout.Tensors.TensorType.Q8_0: Q8_0Avx2x4(w, q, d, cols, blocksPerRow, out4); break;
            default: Q4_KAvx2x4(w, q, d, sums16, cols, blocksPerRow, out4); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q4_0Avx2x4(byte* w, sbyte* q, float* d, int* sums, int cols, int bpr, float* out4)
    {
        var mask = Vector256.Create((byte)0x0F);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        Vector256<float> cor0 = default, cor1 = default, cor2 = default, cor3 = default;
        float* s = stackalloc float[32];
        sbyte* q0 = q, q1 = q + cols, q2 = q + 2 * cols, q3 = q + 3 * cols;
        float* d0 = d, d1 = d + bpr, d2 = d + 2 * bpr, d3 = d + 3 * bpr;
        int* m0 = sums, m1 = sums + bpr, m2 = sums + 2 * bpr, m3 = sums + 3 * bpr;
        int b = 0;
        for (; b + 8 <= bpr; b += 8)
        {
            byte* blk = w + b * 18;
            var ws = HalfToFloat8(blk, 18);
            var s0 = ws * Vector256.Load(d0 + b); var s1 = ws * Vector256.Load(d1 + b);
            var s2 = ws * Vector256.Load(d2 + b); var s3 = ws * Vector256.Load(d3 + b);
            cor0 = Fma.MultiplyAdd(s0, Avx.ConvertToVector256Single(Vector256.Load(m0 + b)), cor0);
            cor1 = Fma.MultiplyAdd(s1, Avx.ConvertToVector256Single(Vector256.Load(m1 + b)), cor1);
            cor2 = Fma.MultiplyAdd(s2, Avx.ConvertToVector256Single(Vector256.Load(m2 + b)), cor2);
            cor3 = Fma.MultiplyAdd(s3, Avx.ConvertToVector256Single(Vector256.Load(m3 + b)), cor3);
            s0.Store(s); s1.Store(s + 8); s2.Store(s + 16); s3.Store(s + 24);
            for (int i = 0; i < 8; i++)
            {
                var wv = UnpackQ4_0(blk + 18 * i + 2, mask);
                int at = (b + i) * 32;
                acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(wv, Vector256.Load(q0 + at))), Vector256.Create(s[i]), acc0);
                acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(wv, Vector256.Load(q1 + at))), Vector256.Create(s[8 + i]), acc1);
                acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(wv, Vector256.Load(q2 + at))), Vector256.Create(s[16 + i]), acc2);
                acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(wv, Vector256.Load(q3 + at))), Vector256.Create(s[24 + i]), acc3);
            }
        }
        float c0 = 0, c1 = 0, c2 = 0, c3 = 0;
        for (; b < bpr; b++)
        {
            byte* blk = w + b * 18;
            float h = Half(blk);
            var wv = UnpackQ4_0(blk + 2, mask);
            int at = b * 32;
            float t0 = h * d0[b], t1 = h * d1[b], t2 = h * d2[b], t3 = h * d3[b];
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(wv, Vector256.Load(q0 + at))), Vector256.Create(t0), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(wv, Vector256.Load(q1 + at))), Vector256.Create(t1), acc1);
            acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(wv, Vector256.Load(q2 + at))), Vector256.Create(t2), acc2);
            acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(wv, Vector256.Load(q3 + at))), Vector256.Create(t3), acc3);
            c0 += t0 * m0[b]; c1 += t1 * m1[b]; c2 += t2 * m2[b]; c3 += t3 * m3[b];
        }
        out4[0] = Vector256.Sum(acc0) - 8 * (Vector256.Sum(cor0) + c0);
        out4[1] = Vector256.Sum(acc1) - 8 * (Vector256.Sum(cor1) + c1);
        out4[2] = Vector256.Sum(acc2) - 8 * (Vector256.Sum(cor2) + c2);
        out4[3] = Vector256.Sum(acc3) - 8 * (Vector256.Sum(cor3) + c3);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q8_0Avx2x4(byte* w, sbyte* q, float* d, int cols, int bpr, float* out4)
    {
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        float* s = stackalloc float[32];
        sbyte* q0 = q, q1 = q + cols, q2 = q + 2 * cols, q3 = q + 3 * cols;
        float* d0 = d, d1 = d + bpr, d2 = d + 2 * bpr, d3 = d + 3 * bpr;
        int b = 0;
        for (; b + 8 <= bpr; b += 8)
        {
            byte* blk = w + b * 34;
            var ws = HalfToFloat8(blk, 34);
            (ws * Vector256.Load(d0 + b)).Store(s);
            (ws * Vector256.Load(d1 + b)).Store(s + 8);
            (ws * Vector256.Load(d2 + b)).Store(s + 16);
            (ws * Vector256.Load(d3 + b)).Store(s + 24);
            for (int i = 0; i < 8; i++)
            {
                var wv = Vector256.Load((sbyte*)(blk + 34 * i + 2));
                var absW = Avx2.Sign(wv, wv).AsByte();
                int at = (b + i) * 32;
                acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(absW, Avx2.Sign(Vector256.Load(q0 + at), wv))), Vector256.Create(s[i]), acc0);
                acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(absW, Avx2.Sign(Vector256.Load(q1 + at), wv))), Vector256.Create(s[8 + i]), acc1);
                acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(absW, Avx2.Sign(Vector256.Load(q2 + at), wv))), Vector256.Create(s[16 + i]), acc2);
                acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(absW, Avx2.Sign(Vector256.Load(q3 + at), wv))), Vector256.Create(s[24 + i]), acc3);
            }
        }
        for (; b < bpr; b++)
        {
            byte* blk = w + b * 34;
            float h = Half(blk);
            var wv = Vector256.Load((sbyte*)(blk + 2));
            var absW = Avx2.Sign(wv, wv).AsByte();
            int at = b * 32;
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(absW, Avx2.Sign(Vector256.Load(q0 + at), wv))), Vector256.Create(h * d0[b]), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(absW, Avx2.Sign(Vector256.Load(q1 + at), wv))), Vector256.Create(h * d1[b]), acc1);
            acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(absW, Avx2.Sign(Vector256.Load(q2 + at), wv))), Vector256.Create(h * d2[b]), acc2);
            acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MulAdd8(absW, Avx2.Sign(Vector256.Load(q3 + at), wv))), Vector256.Create(h * d3[b]), acc3);
        }
        out4[0] = Vector256.Sum(acc0);
        out4[1] = Vector256.Sum(acc1);
        out4[2] = Vector256.Sum(acc2);
        out4[3] = Vector256.Sum(acc3);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q4_KAvx2x4(byte* w, sbyte* q, float* d, short* sums16, int cols, int bpr, float* out4)
    {
        var mask = Vector256.Create((byte)0x0F);
        var ones = Vector256.Create((short)1);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        Vector256<float> min0 = default, min1 = default, min2 = default, min3 = default;
        sbyte* q0 = q, q1 = q + cols, q2 = q + 2 * cols, q3 = q + 3 * cols;
        long s16 = (long)bpr * 16;
        for (int b = 0; b < bpr; b++)
        {
            byte* blk = w + b * 144;
            var packed = UnpackQ4KScales(blk + 4);
            var sc128 = Sse41.ConvertToVector128Int16(packed);
            var sc = Vector256.Create(sc128, sc128).AsByte();
            Vector256<int> i0 = default, i1 = default, i2 = default, i3 = default;
            int at = b * 256;
            for (int g = 0; g < 4; g++)
            {
                var raw = Vector256.Load(blk + 16 + 32 * g);
                var lo = raw & mask;
                var hi = Vector256.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & mask;
                var sLo = Avx2.Shuffle(sc, BroadcastWord[2 * g]).AsInt16();
                var sHi = Avx2.Shuffle(sc, BroadcastWord[2 * g + 1]).AsInt16();
                int o = at + 64 * g;
                i0 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(lo, Vector256.Load(q0 + o)), sLo) + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(hi, Vector256.Load(q0 + o + 32)), sHi);
                i1 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(lo, Vector256.Load(q1 + o)), sLo) + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(hi, Vector256.Load(q1 + o + 32)), sHi);
                i2 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(lo, Vector256.Load(q2 + o)), sLo) + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(hi, Vector256.Load(q2 + o + 32)), sHi);
                i3 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(lo, Vector256.Load(q3 + o)), sLo) + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(hi, Vector256.Load(q3 + o + 32)), sHi);
            }
            float dh = Half(blk), dm = Half(blk + 2);
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), Vector256.Create(dh * d[b]), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), Vector256.Create(dh * d[bpr + b]), acc1);
            acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), Vector256.Create(dh * d[2 * bpr + b]), acc2);
            acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), Vector256.Create(dh * d[3 * bpr + b]), acc3);
            var mins = Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(packed, 8));
            short* bs = sums16 + b * 16;
            min0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyLow(Avx2.MultiplyAddAdjacent(Vector256.Load(bs), ones), mins)), Vector256.Create(dm * d[b]), min0);
            min1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyLow(Avx2.MultiplyAddAdjacent(Vector256.Load(bs + s16), ones), mins)), Vector256.Create(dm * d[bpr + b]), min1);
            min2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyLow(Avx2.MultiplyAddAdjacent(Vector256.Load(bs + 2 * s16), ones), mins)), Vector256.Create(dm * d[2 * bpr + b]), min2);
            min3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyLow(Avx2.MultiplyAddAdjacent(Vector256.Load(bs + 3 * s16), ones), mins)), Vector256.Create(dm * d[3 * bpr + b]), min3);
        }
        out4[0] = Vector256.Sum(acc0) - Vector256.Sum(min0);
        out4[1] = Vector256.Sum(acc1) - Vector256.Sum(min1);
        out4[2] = Vector256.Sum(acc2) - Vector256.Sum(min2);
        out4[3] = Vector256.Sum(acc3) - Vector256.Sum(min3);
    }
}
