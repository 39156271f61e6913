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

    public static void F32(Index1D i, ArrayView<float> w, ArrayView<float> x, ArrayView<float> y, int rows, int cols)
    {
        int t = i / rows, r = i % rows;
        long wr = (long)r * cols, xr = (long)t * cols;
        float acc = 0;
        for (int c = 0; c < cols; c++) acc += w[wr + c] * x[xr + c];
        y[i] = acc;
    }

    /// <param name="brain">1: bf16, 0: f16</param>
    public static void F16(Index1D i, ArrayView<byte> w, ArrayView<float> x, ArrayView<float> y, int rows, int cols, int brain)
    {
        int t = i / rows, r = i % rows;
        long wr = (long)r * cols * 2, xr = (long)t * cols;
        float acc = 0;
        for (int c = 0; c < cols; c++)
        {
            int lo = w[wr + 2 * c], hi = w[wr + 2 * c + 1];
            acc += (brain != 0 ? BFloat(lo, hi) : Half(lo, hi)) * x[xr + c];
        }
        y[i] = acc;
    }

    public static void Q8_0(Index1D i, ArrayView<byte> w, ArrayView<float> x, ArrayView<float> y, int rows, int cols)
    {
        int t = i / rows, r = i % rows;
        int blocks = cols / 32;
        long wr = (long)r * blocks * 34, xr = (long)t * cols;
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

    public static void Q4_0(Index1D i, ArrayView<byte> w, ArrayView<float> x, ArrayView<float> y, int rows, int cols)
    {
        int t = i / rows, r = i % rows;
        int blocks = cols / 32;
        long wr = (long)r * blocks * 18, xr = (long)t * cols;
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
    public static void Q4_K(Index1D i, ArrayView<byte> w, ArrayView<float> x, ArrayView<float> y, int rows, int cols)
    {
        int t = i / rows, r = i % rows;
        int blocks = cols / 256;
        long wr = (long)r * blocks * 144, xr = (long)t * cols;
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
    public static void Q6_K(Index1D i, ArrayView<byte> w, ArrayView<float> x, ArrayView<float> y, int rows, int cols)
    {
        int t = i / rows, r = i % rows;
        int blocks = cols / 256;
        long wr = (long)r * blocks * 210, xr = (long)t * cols;
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
}
