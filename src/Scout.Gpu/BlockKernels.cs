using ILGPU;

namespace Scout.Gpu;

/// <summary>
/// Device kernels for y[t, r] = Σ_c W[r, c]·x[t, c] read straight from the stored GGUF blocks: one thread per
/// output element, dequantizing its row as it goes. The layouts are ggml's (block_q8_0, block_q4_0, block_q4_K,
/// block_q6_K; f16/bf16/f32 rows). Written for correctness first (one thread per output, no warp-level reduction).
/// </summary>
internal static class BlockKernels
{
    /// <summary>IEEE half → float (finite values and subnormals; inf/NaN keep their bits' sign and become large).</summary>
    private static float Half(int lo, int hi)
    {
        uint h = (uint)(lo | (hi << 8));
        uint sign = (h & 0x8000u) << 16;
        uint mag = (h & 0x7FFFu) << 13;
        float f = Interop.IntAsFloat(mag) * 5.192296858534828e33f;
        return Interop.IntAsFloat(Interop.FloatAsInt(f) | sign);
    }

    private static float BFloat(int lo, int hi) => Interop.IntAsFloat((uint)(lo | (hi << 8)) << 16);

    /// <summary>Where row r of the weights starts: in expert ids[t]'s matrix for a grouped product (MUL_MAT_ID), else in the one matrix.</summary>
    private static long RowStart(int t, int r, long rowBytes, ArrayView<int> ids, int useIds, long expertBytes)
        => (useIds != 0 ? ids[t] * expertBytes : 0) + r * rowBytes;

    public static void F32(Index1D i, ArrayView<float> w, ArrayView<float> x, ArrayView<float> y, int rows, int cols, ArrayView<int> ids, int useIds, long expertBytes)
    {
        int t = i / rows, r = i % rows;
        long wr = RowStart(t, r, (long)cols * 4, ids, useIds, expertBytes) / 4, xr = (long)t * cols;
        float acc = 0;
        for (int c = 0; c < cols; c++) acc += w[wr + c] * x[xr + c];
        y[i] = acc;
    }

    /// <param name="brain">1: bf16, 0: f16</param>
    public static void F16(Index1D i, ArrayView<byte> w, ArrayView<float> x, ArrayView<float> y, int rows, int cols, int brain, ArrayView<int> ids, int useIds, long expertBytes)
    {
        int t = i / rows, r = i % rows;
        long wr = RowStart(t, r, (long)cols * 2, ids, useIds, expertBytes), xr = (long)t * cols;
        float acc = 0;
        for (int c = 0; c < cols; c++)
        {
            int lo = w[wr + 2 * c], hi = w[wr + 2 * c + 1];
            acc += (brain != 0 ? BFloat(lo, hi) : Half(lo, hi)) * x[xr + c];
        }
        y[i] = acc;
    }

    public static void Q8_0(Index1D i, ArrayView<byte> w, ArrayView<float> x, ArrayView<float> y, int rows, int cols, ArrayView<int> ids, int useIds, long expertBytes)
    {
        int t = i / rows, r = i % rows;
        int blocks = cols / 32;
        long wr = RowStart(t, r, (long)blocks * 34, ids, useIds, expertBytes), xr = (long)t * cols;
        float acc = 0;
        for (int b = 0; b < blocks; b++)
        {
            long o = wr + b * 34;
            float d = Half(w[o], w[o + 1]);
            float s = 0;
            for (int j = 0; j < 32; j++) s += (sbyte)w[o + 2 + j] * x[xr + b * 32 + j];
            acc += d * s;
        }
        y[i] = acc;
    }

    public static void Q4_0(Index1D i, ArrayView<byte> w, ArrayView<float> x, ArrayView<float> y, int rows, int cols, ArrayView<int> ids, int useIds, long expertBytes)
    {
        int t = i / rows, r = i % rows;
        int blocks = cols / 32;
        long wr = RowStart(t, r, (long)blocks * 18, ids, useIds, expertBytes), xr = (long)t * cols;
        float acc = 0;
        for (int b = 0; b < blocks; b++)
        {
            long o = wr + b * 18;
            float d = Half(w[o], w[o + 1]);
            float s = 0;
            for (int j = 0; j < 16; j++)
            {
                int q = w[o + 2 + j];
                s += ((q & 0xF) - 8) * x[xr + b * 32 + j] + ((q >> 4) - 8) * x[xr + b * 32 + 16 + j];
            }
            acc += d * s;
        }
        y[i] = acc;
    }

    /// <summary>block_q4_K: d, dmin (f16), 12 bytes of packed 6-bit scales/mins for 8 sub-blocks of 32, 128 bytes of nibbles.</summary>
    public static void Q4_K(Index1D i, ArrayView<byte> w, ArrayView<float> x, ArrayView<float> y, int rows, int cols, ArrayView<int> ids, int useIds, long expertBytes)
    {
        int t = i / rows, r = i % rows;
        int blocks = cols / 256;
        long wr = RowStart(t, r, (long)blocks * 144, ids, useIds, expertBytes), xr = (long)t * cols;
        float acc = 0;
        for (int b = 0; b < blocks; b++)
        {
            long o = wr + b * 144;
            float d = Half(w[o], w[o + 1]), dmin = Half(w[o + 2], w[o + 3]);
            long sc = o + 4, qs = o + 16;
            long xb = xr + b * 256;
            for (int j = 0; j < 4; j++)   // 64 weights per pass: low nibbles (sub-block 2j), high nibbles (2j+1)
            {
                int s0 = 2 * j, s1 = 2 * j + 1;
                int scale0, min0, scale1, min1;
                if (s0 < 4) { scale0 = w[sc + s0] & 63; min0 = w[sc + s0 + 4] & 63; }
                else { scale0 = (w[sc + s0 + 4] & 0xF) | ((w[sc + s0 - 4] >> 6) << 4); min0 = (w[sc + s0 + 4] >> 4) | ((w[sc + s0] >> 6) << 4); }
                if (s1 < 4) { scale1 = w[sc + s1] & 63; min1 = w[sc + s1 + 4] & 63; }
                else { scale1 = (w[sc + s1 + 4] & 0xF) | ((w[sc + s1 - 4] >> 6) << 4); min1 = (w[sc + s1 + 4] >> 4) | ((w[sc + s1] >> 6) << 4); }
                float d0 = d * scale0, m0 = dmin * min0, d1 = d * scale1, m1 = dmin * min1;
                for (int l = 0; l < 32; l++)
                {
                    int q = w[qs + j * 32 + l];
                    acc += (d0 * (q & 0xF) - m0) * x[xb + j * 64 + l];
                    acc += (d1 * (q >> 4) - m1) * x[xb + j * 64 + 32 + l];
                }
            }
        }
        y[i] = acc;
    }

    /// <summary>block_q6_K: 128 bytes low 4 bits, 64 bytes high 2 bits, 16 int8 scales, d (f16).</summary>
    public static void Q6_K(Index1D i, ArrayView<byte> w, ArrayView<float> x, ArrayView<float> y, int rows, int cols, ArrayView<int> ids, int useIds, long expertBytes)
    {
        int t = i / rows, r = i % rows;
        int blocks = cols / 256;
        long wr = RowStart(t, r, (long)blocks * 210, ids, useIds, expertBytes), xr = (long)t * cols;
        float acc = 0;
        for (int b = 0; b < blocks; b++)
        {
            long o = wr + b * 210;
            float d = Half(w[o + 208], w[o + 209]);
            long xb = xr + b * 256;
            for (int half = 0; half < 2; half++)
            {
                long ql = o + half * 64, qh = o + 128 + half * 32, sc = o + 192 + half * 8;
                long xh = xb + half * 128;
                for (int l = 0; l < 32; l++)
                {
                    int isc = l / 16;
                    int h = w[qh + l];
                    int q1 = ((w[ql + l] & 0xF) | ((h & 3) << 4)) - 32;
                    int q2 = ((w[ql + l + 32] & 0xF) | (((h >> 2) & 3) << 4)) - 32;
                    int q3 = ((w[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
                    int q4 = ((w[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
                    acc += d * (sbyte)w[sc + isc] * q1 * x[xh + l];
                    acc += d * (sbyte)w[sc + isc + 2] * q2 * x[xh + l + 32];
                    acc += d * (sbyte)w[sc + isc + 4] * q3 * x[xh + l + 64];
                    acc += d * (sbyte)w[sc + isc + 6] * q4 * x[xh + l + 96];
                }
            }
        }
        y[i] = acc;
    }

    /// <summary>IEEE half bits → float.</summary>
    public static float HalfBits(ushort h) => Half(h & 0xFF, h >> 8);

    /// <summary>float → IEEE half bits, round to nearest even (as System.Half), overflow to infinity.</summary>
    public static ushort ToHalf(float f)
    {
        uint x = (uint)Interop.FloatAsInt(f);
        uint sign = (x >> 16) & 0x8000u;
        int biased = (int)((x >> 23) & 0xFF);
        uint mant = x & 0x7FFFFFu;
        if (biased == 0xFF) return (ushort)(sign | 0x7C00u | (mant != 0 ? 0x200u : 0u));
        int exp = biased - 127 + 15;
        if (exp >= 31) return (ushort)(sign | 0x7C00u);
        if (exp <= 0)
        {
            if (exp < -10) return (ushort)sign;
            mant |= 0x800000u;
            int shift = 14 - exp;
            uint hm = mant >> shift, rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
            if (rem > halfway || (rem == halfway && (hm & 1) != 0)) hm++;
            return (ushort)(sign | hm);
        }
        uint h = sign | ((uint)exp << 10) | (mant >> 13);
        uint low = mant & 0x1FFFu;
        if (low > 0x1000u || (low == 0x1000u && (h & 1) != 0)) h++;
        return (ushort)h;
    }

    /// <summary>float → bf16 bits, round to nearest even; a NaN stays a quiet NaN (as the host K/V codec).</summary>
    public static ushort ToBFloat(float f)
    {
        uint u = (uint)Interop.FloatAsInt(f);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (ushort)((u >> 16) | 0x40u);
        return (ushort)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    }

    /// <summary>Type codes the kernels switch on (uniform per launch).</summary>
    public const int TF32 = 0, TF16 = 1, TBF16 = 2, TQ8_0 = 3, TQ4_0 = 4, TQ4_K = 5, TQ6_K = 6;

    /// <summary>Element c of the row starting at byte <paramref name="row"/>, decoded from its block (embedding lookup).</summary>
    public static float Element(int type, ArrayView<byte> w, ArrayView<float> wf, long row, int c)
    {
        if (type == TF32) return wf[row / 4 + c];
        if (type == TF16) return Half(w[row + 2 * c], w[row + 2 * c + 1]);
        if (type == TBF16) return BFloat(w[row + 2 * c], w[row + 2 * c + 1]);
        if (type == TQ8_0)
        {
            long o = row + (c / 32) * 34;
            return Half(w[o], w[o + 1]) * (sbyte)w[o + 2 + c % 32];
        }
        if (type == TQ4_0)
        {
            long o = row + (c / 32) * 18;
            int j = c % 32;
            int q = j < 16 ? (w[o + 2 + j] & 0xF) : (w[o + 2 + j - 16] >> 4);
            return Half(w[o], w[o + 1]) * (q - 8);
        }
        if (type == TQ4_K)
        {
            long o = row + (c / 256) * 144;
            int u = c % 256, j = u / 64, hi = (u % 64) / 32, l = u % 32, sb = 2 * j + hi;
            long sc = o + 4;
            int scale, min;
            if (sb < 4) { scale = w[sc + sb] & 63; min = w[sc + sb + 4] & 63; }
            else { scale = (w[sc + sb + 4] & 0xF) | ((w[sc + sb - 4] >> 6) << 4); min = (w[sc + sb + 4] >> 4) | ((w[sc + sb] >> 6) << 4); }
            int q = w[o + 16 + j * 32 + l];
            int nib = hi == 0 ? q & 0xF : q >> 4;
            return Half(w[o], w[o + 1]) * scale * nib - Half(w[o + 2], w[o + 3]) * min;
        }
        {
            long o = row + (c / 256) * 210;
            int u = c % 256, half = u / 128, v = u % 128, quarter = v / 32, l = v % 32;
            long ql = o + half * 64, qh = o + 128 + half * 32, sc = o + 192 + half * 8;
            int h = w[qh + l], isc = l / 16;
            int q = quarter switch
            {
                0 => (w[ql + l] & 0xF) | ((h & 3) << 4),
                1 => (w[ql + l + 32] & 0xF) | (((h >> 2) & 3) << 4),
                2 => (w[ql + l] >> 4) | (((h >> 4) & 3) << 4),
                _ => (w[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4),
            };
            return Half(w[o + 208], w[o + 209]) * (sbyte)w[sc + isc + 2 * quarter] * (q - 32);
        }
    }
}
