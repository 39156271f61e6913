using System.Buffers.Binary;
using static Scout.Kernels.Quant.QuantMath;

namespace Scout.Kernels.Quant;

/// <summary>
/// The 256-weight "K" super-block types (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) in ggml's layouts. Encoders follow the
/// logic of ggml's reference encoders (per-sub-block least-squares scale search, then 6/8-bit scale packing),
/// so their error matches llama.cpp's.
/// </summary>
public static class KQuantCodecs
{
    public const int BlockSize = 256;

    private static float ReadHalf(ReadOnlySpan<byte> b, int offset) => (float)BinaryPrimitives.ReadHalfLittleEndian(b[offset..]);
    private static void WriteHalf(Span<byte> b, int offset, float v) => BinaryPrimitives.WriteHalfLittleEndian(b[offset..], (Half)v);

    private static int Blocks(int elements, int bytes, int blockBytes, string type)
    {
        if (elements % BlockSize != 0)
            throw new ArgumentException($"{type}: {elements} values is not a multiple of the block size {BlockSize}");
        int blocks = elements / BlockSize;
        if (bytes < (long)blocks * blockBytes)
            throw new ArgumentException($"{type}: {bytes} bytes cannot hold {blocks} blocks of {blockBytes} bytes");
        return blocks;
    }

    /// <summary>Sub-block j's 6-bit scale and min from the 12-byte packed array of Q4_K/Q5_K.</summary>
    public static void ScaleMinK4(int j, ReadOnlySpan<byte> q, out int scale, out int min)
    {
        if (j < 4)
        {
            scale = q[j] & 63;
            min = q[j + 4] & 63;
        }
        else
        {
            scale = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
            min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
    }

    private static void PackScaleMinK4(Span<byte> packed, ReadOnlySpan<byte> scales, ReadOnlySpan<byte> mins)
    {
        packed[..12].Clear();
        for (int j = 0; j < 8; j++)
        {
            int ls = scales[j], lm = mins[j];
            if (j < 4)
            {
                packed[j] = (byte)ls;
                packed[j + 4] = (byte)lm;
            }
            else
            {
                packed[j + 4] = (byte)((ls & 0x0F) | ((lm & 0x0F) << 4));
                packed[j - 4] |= (byte)((ls >> 4) << 6);
                packed[j] |= (byte)((lm >> 4) << 6);
            }
        }
    }

    // ================= Q4_K: d, dmin, scales[12], qs[128] (144 bytes) =================

    public static void DequantizeQ4_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = Blocks(dst.Length, src.Length, 144, "Q4_K");
        for (int b = 0; b < blocks; b++)
        {
            var blk = src.Slice(b * 144, 144);
            float d = ReadHalf(blk, 0), dmin = ReadHalf(blk, 2);
            var scales = blk.Slice(4, 12);
            var qs = blk.Slice(16, 128);
            var y = dst.Slice(b * 256, 256);
            for (int g = 0; g < 4; g++)
            {
                ScaleMinK4(2 * g, scales, out int s0, out int m0);
                ScaleMinK4(2 * g + 1, scales, out int s1, out int m1);
                float d0 = d * s0, dm0 = dmin * m0, d1 = d * s1, dm1 = dmin * m1;
                var q = qs.Slice(32 * g, 32);
                var y0 = y.Slice(64 * g, 32);
                var y1 = y.Slice(64 * g + 32, 32);
                for (int l = 0; l < 32; l++)
                {
                    y0[l] = d0 * (q[l] & 0x0F) - dm0;
                    y1[l] = d1 * (q[l] >> 4) - dm1;
                }
            }
        }
    }

    /// <summary>Shared first half of the Q4_K/Q5_K encoders: fit, pack scales/mins, requantize levels into L.</summary>
    private static void EncodeScaleMin256(ReadOnlySpan<float> x, Span<byte> blk, int nmax, float rmin, int nstep, Span<byte> levels)
    {
        Span<float> weights = stackalloc float[32];
        Span<float> scales = stackalloc float[8];
        Span<float> mins = stackalloc float[8];
        Span<byte> scratch = stackalloc byte[32];
        float maxScale = 0, maxMin = 0;
        for (int j = 0; j < 8; j++)
        {
            var xs = x.Slice(32 * j, 32);
            float sumX2 = 0;
            for (int l = 0; l < 32; l++) sumX2 += xs[l] * xs[l];
            float avX = MathF.Sqrt(sumX2 / 32);
            for (int l = 0; l < 32; l++) weights[l] = avX + MathF.Abs(xs[l]);
            scales[j] = FitScaleMin(32, nmax, xs, weights, levels.Slice(32 * j, 32), out mins[j], scratch, rmin, 0.1f, nstep, false);
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }
        float invScale = maxScale > 0 ? 63f / maxScale : 0;
        float invMin = maxMin > 0 ? 63f / maxMin : 0;
        Span<byte> ls = stackalloc byte[8];
        Span<byte> lm = stackalloc byte[8];
        for (int j = 0; j < 8; j++)
        {
            ls[j] = (byte)Math.Min(63, NearestInt(invScale * scales[j]));
            lm[j] = (byte)Math.Min(63, NearestInt(invMin * mins[j]));
        }
        WriteHalf(blk, 0, maxScale / 63);
        WriteHalf(blk, 2, maxMin / 63);
        PackScaleMinK4(blk.Slice(4, 12), ls, lm);
        float d = ReadHalf(blk, 0), dmin = ReadHalf(blk, 2);
        for (int j = 0; j < 8; j++)
        {
            ScaleMinK4(j, blk.Slice(4, 12), out int sc, out int m);
            float dj = d * sc;
            if (dj == 0) continue;
            float dm = dmin * m;
            for (int l = 0; l < 32; l++)
                levels[32 * j + l] = (byte)Math.Clamp(NearestInt((x[32 * j + l] + dm) / dj), 0, nmax);
        }
    }

    public static void QuantizeQ4_K(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = Blocks(src.Length, dst.Length, 144, "Q4_K");
        Span<byte> levels = stackalloc byte[256];
        for (int b = 0; b < blocks; b++)
        {
            var x = src.Slice(b * 256, 256);
            var blk = dst.Slice(b * 144, 144);
            EncodeScaleMin256(x, blk, 15, -1f, 20, levels);
            var qs = blk.Slice(16, 128);
            for (int g = 0; g < 4; g++)
                for (int l = 0; l < 32; l++)
                    qs[32 * g + l] = (byte)(levels[64 * g + l] | (levels[64 * g + 32 + l] << 4));
        }
    }

    // ================= Q5_K: d, dmin, scales[12], qh[32], qs[128] (176 bytes) =================

    public static void DequantizeQ5_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = Blocks(dst.Length, src.Length, 176, "Q5_K");
        for (int b = 0; b < blocks; b++)
        {
            var blk = src.Slice(b * 176, 176);
            float d = ReadHalf(blk, 0), dmin = ReadHalf(blk, 2);
            var scales = blk.Slice(4, 12);
            var qh = blk.Slice(16, 32);
            var qs = blk.Slice(48, 128);
            var y = dst.Slice(b * 256, 256);
            for (int g = 0; g < 4; g++)
            {
                ScaleMinK4(2 * g, scales, out int s0, out int m0);
                ScaleMinK4(2 * g + 1, scales, out int s1, out int m1);
                float d0 = d * s0, dm0 = dmin * m0, d1 = d * s1, dm1 = dmin * m1;
                int u0 = 1 << (2 * g), u1 = 2 << (2 * g);
                var q = qs.Slice(32 * g, 32);
                for (int l = 0; l < 32; l++)
                {
                    y[64 * g + l] = d0 * ((q[l] & 0x0F) + ((qh[l] & u0) != 0 ? 16 : 0)) - dm0;
                    y[64 * g + 32 + l] = d1 * ((q[l] >> 4) + ((qh[l] & u1) != 0 ? 16 : 0)) - dm1;
                }
            }
        }
    }

    public static void QuantizeQ5_K(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = Blocks(src.Length, dst.Length, 176, "Q5_K");
        Span<byte> levels = stackalloc byte[256];
        for (int b = 0; b < blocks; b++)
        {
            var x = src.Slice(b * 256, 256);
            var blk = dst.Slice(b * 176, 176);
            EncodeScaleMin256(x, blk, 31, -0.5f, 15, levels);
            var qh = blk.Slice(16, 32);
            var qs = blk.Slice(48, 128);
            qh.Clear();
            for (int g = 0; g < 4; g++)
            {
                for (int l = 0; l < 32; l++)
                {
                    int l0 = levels[64 * g + l], l1 = levels[64 * g + 32 + l];
                    if (l0 > 15) { l0 -= 16; qh[l] |= (byte)(1 << (2 * g)); }
                    if (l1 > 15) { l1 -= 16; qh[l] |= (byte)(2 << (2 * g)); }
                    qs[32 * g + l] = (byte)(l0 | (l1 << 4));
                }
            }
        }
    }

    // ================= Q6_K: ql[128], qh[64], scales[16] (i8), d (210 bytes) =================

    public static void DequantizeQ6_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = Blocks(dst.Length, src.Length, 210, "Q6_K");
        for (int b = 0; b < blocks; b++)
        {
            var blk = src.Slice(b * 210, 210);
            float d = ReadHalf(blk, 208);
            var y = dst.Slice(b * 256, 256);
            for (int h = 0; h < 2; h++)
            {
                var ql = blk.Slice(64 * h, 64);
                var qh = blk.Slice(128 + 32 * h, 32);
                var sc = blk.Slice(192 + 8 * h, 8);
                var yh = y.Slice(128 * h, 128);
                for (int l = 0; l < 32; l++)
                {
                    int s = l / 16;
                    int q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32;
                    int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    yh[l] = d * (sbyte)sc[s] * q1;
                    yh[l + 32] = d * (sbyte)sc[s + 2] * q2;
                    yh[l + 64] = d * (sbyte)sc[s + 4] * q3;
                    yh[l + 96] = d * (sbyte)sc[s + 6] * q4;
                }
            }
        }
    }

    public static void QuantizeQ6_K(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = Blocks(src.Length, dst.Length, 210, "Q6_K");
        Span<byte> levels = stackalloc byte[256];
        Span<float> scales = stackalloc float[16];
        for (int b = 0; b < blocks; b++)
        {
            var x = src.Slice(b * 256, 256);
            var blk = dst.Slice(b * 210, 210);
            float maxScale = 0, maxAbsScale = 0;
            for (int s = 0; s < 16; s++)
            {
                scales[s] = FitSymmetric(16, 32, x.Slice(16 * s, 16), levels.Slice(16 * s, 16));
                float a = MathF.Abs(scales[s]);
                if (a > maxAbsScale) { maxAbsScale = a; maxScale = scales[s]; }
            }
            if (maxAbsScale < GroupMaxEps)
            {
                blk.Clear();
                continue;
            }
            float iscale = -128f / maxScale;
            WriteHalf(blk, 208, 1 / iscale);
            for (int s = 0; s < 16; s++)
                blk[192 + s] = (byte)(sbyte)Math.Min(127, NearestInt(iscale * scales[s]));
            float d = ReadHalf(blk, 208);
            for (int s = 0; s < 16; s++)
            {
                float ds = d * (sbyte)blk[192 + s];
                if (ds == 0) continue;
                for (int i = 0; i < 16; i++)
                    levels[16 * s + i] = (byte)(Math.Clamp(NearestInt(x[16 * s + i] / ds), -32, 31) + 32);
            }
            for (int h = 0; h < 2; h++)
            {
                var ql = blk.Slice(64 * h, 64);
                var qh = blk.Slice(128 + 32 * h, 32);
                var L = levels.Slice(128 * h, 128);
                for (int l = 0; l < 32; l++)
                {
                    ql[l] = (byte)((L[l] & 0x0F) | ((L[l + 64] & 0x0F) << 4));
                    ql[l + 32] = (byte)((L[l + 32] & 0x0F) | ((L[l + 96] & 0x0F) << 4));
                    qh[l] = (byte)((L[l] >> 4) | ((L[l + 32] >> 4) << 2) | ((L[l + 64] >> 4) << 4) | ((L[l + 96] >> 4) << 6));
                }
            }
        }
    }

    // ================= Q3_K: hmask[32], qs[64], scales[12], d (110 bytes) =================

    /// <summary>Sub-block j's signed 6-bit scale (−32..31) from Q3_K's 12-byte packed array.</summary>
    public static int ScaleQ3K(int j, ReadOnlySpan<byte> packed)
    {
        int low = j < 8 ? packed[j] & 0x0F : packed[j - 8] >> 4;
        int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        return (low | (high << 4)) - 32;
    }

    public static void DequantizeQ3_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = Blocks(dst.Length, src.Length, 110, "Q3_K");
        for (int b = 0; b < blocks; b++)
        {
            var blk = src.Slice(b * 110, 110);
            var hmask = blk[..32];
            var qs = blk.Slice(32, 64);
            var packed = blk.Slice(96, 12);
            float d = ReadHalf(blk, 108);
            var y = dst.Slice(b * 256, 256);
            for (int i = 0; i < 256; i++)
            {
                int half = i / 128, within = i % 128, shiftGroup = within / 32, l = within % 32;
                int q = (qs[32 * half + l] >> (2 * shiftGroup)) & 3;
                bool high = (hmask[i % 32] & (1 << (i / 32))) != 0;
                y[i] = d * ScaleQ3K(i / 16, packed) * (q - (high ? 0 : 4));
            }
        }
    }

    public static void QuantizeQ3_K(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = Blocks(src.Length, dst.Length, 110, "Q3_K");
        Span<byte> levels = stackalloc byte[256];
        Span<float> scales = stackalloc float[16];
        for (int b = 0; b < blocks; b++)
        {
            var x = src.Slice(b * 256, 256);
            var blk = dst.Slice(b * 110, 110);
            blk.Clear();
            float maxScale = 0, amax = 0;
            for (int s = 0; s < 16; s++)
            {
                scales[s] = FitSymmetricIterative(16, 4, x.Slice(16 * s, 16), levels.Slice(16 * s, 16));
                float a = MathF.Abs(scales[s]);
                if (a > amax) { amax = a; maxScale = scales[s]; }
            }
            var packed = blk.Slice(96, 12);
            if (maxScale != 0)
            {
                float iscale = -32f / maxScale;
                for (int s = 0; s < 16; s++)
                {
                    int l = Math.Clamp(NearestInt(iscale * scales[s]), -32, 31) + 32;
                    if (s < 8) packed[s] = (byte)(l & 0x0F);
                    else packed[s - 8] |= (byte)((l & 0x0F) << 4);
                    packed[8 + s % 4] |= (byte)((l >> 4) << (2 * (s / 4)));
                }
                WriteHalf(blk, 108, 1 / iscale);
            }
            float d = ReadHalf(blk, 108);
            for (int s = 0; s < 16; s++)
            {
                float ds = d * ScaleQ3K(s, packed);
                if (ds == 0) continue;
                for (int i = 0; i < 16; i++)
                    levels[16 * s + i] = (byte)(Math.Clamp(NearestInt(x[16 * s + i] / ds), -4, 3) + 4);
            }
            var hmask = blk[..32];
            for (int i = 0; i < 256; i++)
            {
                if (levels[i] > 3)
                {
                    hmask[i % 32] |= (byte)(1 << (i / 32));
                    levels[i] -= 4;
                }
            }
            var qs = blk.Slice(32, 64);
            for (int half = 0; half < 2; half++)
                for (int l = 0; l < 32; l++)
                {
                    int o = 128 * half + l;
                    qs[32 * half + l] = (byte)(levels[o] | (levels[o + 32] << 2) | (levels[o + 64] << 4) | (levels[o + 96] << 6));
                }
        }
    }

    // ================= Q2_K: scales[16] (4-bit scale | 4-bit min), qs[64], d, dmin (84 bytes) =================

    public static void DequantizeQ2_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = Blocks(dst.Length, src.Length, 84, "Q2_K");
        for (int b = 0; b < blocks; b++)
        {
            var blk = src.Slice(b * 84, 84);
            var sc = blk[..16];
            var qs = blk.Slice(16, 64);
            float d = ReadHalf(blk, 80), dmin = ReadHalf(blk, 82);
            var y = dst.Slice(b * 256, 256);
            for (int i = 0; i < 256; i++)
            {
                int half = i / 128, within = i % 128, shiftGroup = within / 32, l = within % 32;
                int q = (qs[32 * half + l] >> (2 * shiftGroup)) & 3;
                int s = sc[i / 16];
                y[i] = d * (s & 0x0F) * q - dmin * (s >> 4);
            }
        }
    }

    public static void QuantizeQ2_K(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = Blocks(src.Length, dst.Length, 84, "Q2_K");
        Span<byte> levels = stackalloc byte[256];
        Span<byte> scratch = stackalloc byte[16];
        Span<float> weights = stackalloc float[16];
        Span<float> scales = stackalloc float[16];
        Span<float> mins = stackalloc float[16];
        const float q4scale = 15;
        for (int b = 0; b < blocks; b++)
        {
            var x = src.Slice(b * 256, 256);
            var blk = dst.Slice(b * 84, 84);
            blk.Clear();
            float maxScale = 0, maxMin = 0;
            for (int s = 0; s < 16; s++)
            {
                var xs = x.Slice(16 * s, 16);
                for (int l = 0; l < 16; l++) weights[l] = MathF.Abs(xs[l]);
                scales[s] = FitScaleMin(16, 3, xs, weights, levels.Slice(16 * s, 16), out mins[s], scratch, -0.5f, 0.1f, 15, true);
                if (scales[s] > maxScale) maxScale = scales[s];
                if (mins[s] > maxMin) maxMin = mins[s];
            }
            var sc = blk[..16];
            if (maxScale > 0)
            {
                float iscale = q4scale / maxScale;
                for (int s = 0; s < 16; s++) sc[s] = (byte)NearestInt(iscale * scales[s]);
                WriteHalf(blk, 80, maxScale / q4scale);
            }
            if (maxMin > 0)
            {
                float iscale = q4scale / maxMin;
                for (int s = 0; s < 16; s++) sc[s] |= (byte)(NearestInt(iscale * mins[s]) << 4);
                WriteHalf(blk, 82, maxMin / q4scale);
            }
            float d = ReadHalf(blk, 80), dmin = ReadHalf(blk, 82);
            for (int s = 0; s < 16; s++)
            {
                float ds = d * (sc[s] & 0x0F);
                if (ds == 0) continue;
                float dm = dmin * (sc[s] >> 4);
                for (int i = 0; i < 16; i++)
                    levels[16 * s + i] = (byte)Math.Clamp(NearestInt((x[16 * s + i] + dm) / ds), 0, 3);
            }
            var qs = blk.Slice(16, 64);
            for (int half = 0; half < 2; half++)
                for (int l = 0; l < 32; l++)
                {
                    int o = 128 * half + l;
                    qs[32 * half + l] = (byte)(levels[o] | (levels[o + 32] << 2) | (levels[o + 64] << 4) | (levels[o + 96] << 6));
                }
        }
    }
}
