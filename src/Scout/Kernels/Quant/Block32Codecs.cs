using System.Buffers.Binary;

namespace Scout.Kernels.Quant;

/// <summary>
/// The 32-weight block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) in ggml's layouts. Encoders follow ggml's reference
/// quantize_row_*_ref arithmetic step for step, so their output is bit-identical to llama.cpp's.
/// </summary>
public static class Block32Codecs
{
    public const int BlockSize = 32;

    private static float ReadHalf(ReadOnlySpan<byte> b, int offset) => (float)BinaryPrimitives.ReadHalfLittleEndian(b[offset..]);
    private static void WriteHalf(Span<byte> b, int offset, float v) => BinaryPrimitives.WriteHalfLittleEndian(b[offset..], (Half)v);

    private static int Blocks(int elements, int srcBytes, int blockBytes, string type)
    {
        if (elements % BlockSize != 0)
            throw new ArgumentException($"{type}: {elements} values is not a multiple of the block size {BlockSize}");
        int blocks = elements / BlockSize;
        if (srcBytes < (long)blocks * blockBytes)
            throw new ArgumentException($"{type}: {srcBytes} bytes cannot hold {blocks} blocks of {blockBytes} bytes");
        return blocks;
    }

    // ---------------- Q8_0: d (f16), qs[32] (i8) ----------------

    public static void DequantizeQ8_0(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = Blocks(dst.Length, src.Length, 34, "Q8_0");
        for (int b = 0; b < blocks; b++)
        {
            var blk = src.Slice(b * 34, 34);
            float d = ReadHalf(blk, 0);
            var y = dst.Slice(b * 32, 32);
            for (int j = 0; j < 32; j++) y[j] = d * (sbyte)blk[2 + j];
        }
    }

    public static void QuantizeQ8_0(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = Blocks(src.Length, dst.Length, 34, "Q8_0");
        for (int b = 0; b < blocks; b++)
        {
            var x = src.Slice(b * 32, 32);
            var blk = dst.Slice(b * 34, 34);
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = MathF.Max(amax, MathF.Abs(x[j]));
            float d = amax / 127;
            float id = d != 0 ? 1.0f / d : 0.0f;
            WriteHalf(blk, 0, d);
            for (int j = 0; j < 32; j++)
                blk[2 + j] = (byte)(sbyte)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
        }
    }

    // ---------------- Q4_0: d (f16), qs[16]: low nibble = weight j, high = weight j+16 ----------------

    public static void DequantizeQ4_0(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = Blocks(dst.Length, src.Length, 18, "Q4_0");
        for (int b = 0; b < blocks; b++)
        {
            var blk = src.Slice(b * 18, 18);
            float d = ReadHalf(blk, 0);
            var y = dst.Slice(b * 32, 32);
            for (int j = 0; j < 16; j++)
            {
                byte q = blk[2 + j];
                y[j] = d * ((q & 0x0F) - 8);
                y[j + 16] = d * ((q >> 4) - 8);
            }
        }
    }

    /// <summary>The signed value of largest magnitude (first one on ties), as ggml's 4/5-bit encoders pick it.</summary>
    private static float SignedAbsMax(ReadOnlySpan<float> x)
    {
        float amax = 0, max = 0;
        foreach (float v in x)
        {
            if (amax < MathF.Abs(v)) { amax = MathF.Abs(v); max = v; }
        }
        return max;
    }

    public static void QuantizeQ4_0(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = Blocks(src.Length, dst.Length, 18, "Q4_0");
        for (int b = 0; b < blocks; b++)
        {
            var x = src.Slice(b * 32, 32);
            var blk = dst.Slice(b * 18, 18);
            float d = SignedAbsMax(x) / -8;
            float id = d != 0 ? 1.0f / d : 0.0f;
            WriteHalf(blk, 0, d);
            for (int j = 0; j < 16; j++)
            {
                int q0 = Math.Min(15, (int)(x[j] * id + 8.5f));
                int q1 = Math.Min(15, (int)(x[j + 16] * id + 8.5f));
                blk[2 + j] = (byte)(q0 | (q1 << 4));
            }
        }
    }

    // ---------------- Q4_1: d (f16), m (f16), qs[16] ----------------

    public static void DequantizeQ4_1(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = Blocks(dst.Length, src.Length, 20, "Q4_1");
        for (int b = 0; b < blocks; b++)
        {
            var blk = src.Slice(b * 20, 20);
            float d = ReadHalf(blk, 0), m = ReadHalf(blk, 2);
            var y = dst.Slice(b * 32, 32);
            for (int j = 0; j < 16; j++)
            {
                byte q = blk[4 + j];
                y[j] = (q & 0x0F) * d + m;
                y[j + 16] = (q >> 4) * d + m;
            }
        }
    }

    public static void QuantizeQ4_1(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = Blocks(src.Length, dst.Length, 20, "Q4_1");
        for (int b = 0; b < blocks; b++)
        {
            var x = src.Slice(b * 32, 32);
            var blk = dst.Slice(b * 20, 20);
            float min = float.MaxValue, max = -float.MaxValue;
            foreach (float v in x) { if (v < min) min = v; if (v > max) max = v; }
            float d = (max - min) / 15;
            float id = d != 0 ? 1.0f / d : 0.0f;
            WriteHalf(blk, 0, d);
            WriteHalf(blk, 2, min);
            for (int j = 0; j < 16; j++)
            {
                int q0 = Math.Min(15, (int)((x[j] - min) * id + 0.5f));
                int q1 = Math.Min(15, (int)((x[j + 16] - min) * id + 0.5f));
                blk[4 + j] = (byte)(q0 | (q1 << 4));
            }
        }
    }

    // ---------------- Q5_0: d (f16), qh (u32: bit j = 5th bit of weight j), qs[16] ----------------

    public static void DequantizeQ5_0(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = Blocks(dst.Length, src.Length, 22, "Q5_0");
        for (int b = 0; b < blocks; b++)
        {
            var blk = src.Slice(b * 22, 22);
            float d = ReadHalf(blk, 0);
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(blk[2..]);
            var y = dst.Slice(b * 32, 32);
            for (int j = 0; j < 16; j++)
            {
                byte q = blk[6 + j];
                int h0 = (int)((qh >> j) << 4) & 0x10;
                int h1 = (int)(qh >> (j + 12)) & 0x10;
                y[j] = d * (((q & 0x0F) | h0) - 16);
                y[j + 16] = d * (((q >> 4) | h1) - 16);
            }
        }
    }

    public static void QuantizeQ5_0(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = Blocks(src.Length, dst.Length, 22, "Q5_0");
        for (int b = 0; b < blocks; b++)
        {
            var x = src.Slice(b * 32, 32);
            var blk = dst.Slice(b * 22, 22);
            float d = SignedAbsMax(x) / -16;
            float id = d != 0 ? 1.0f / d : 0.0f;
            WriteHalf(blk, 0, d);
            uint qh = 0;
            for (int j = 0; j < 16; j++)
            {
                int q0 = Math.Min(31, (int)(x[j] * id + 16.5f));
                int q1 = Math.Min(31, (int)(x[j + 16] * id + 16.5f));
                blk[6 + j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
                qh |= (uint)((q0 & 0x10) >> 4) << j;
                qh |= (uint)((q1 & 0x10) >> 4) << (j + 16);
            }
            BinaryPrimitives.WriteUInt32LittleEndian(blk[2..], qh);
        }
    }

    // ---------------- Q5_1: d (f16), m (f16), qh (u32), qs[16] ----------------

    public static void DequantizeQ5_1(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = Blocks(dst.Length, src.Length, 24, "Q5_1");
        for (int b = 0; b < blocks; b++)
        {
            var blk = src.Slice(b * 24, 24);
            float d = ReadHalf(blk, 0), m = ReadHalf(blk, 2);
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(blk[4..]);
            var y = dst.Slice(b * 32, 32);
            for (int j = 0; j < 16; j++)
            {
                byte q = blk[8 + j];
                int h0 = (int)((qh >> j) << 4) & 0x10;
                int h1 = (int)(qh >> (j + 12)) & 0x10;
                y[j] = ((q & 0x0F) | h0) * d + m;
                y[j + 16] = ((q >> 4) | h1) * d + m;
            }
        }
    }

    public static void QuantizeQ5_1(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = Blocks(src.Length, dst.Length, 24, "Q5_1");
        for (int b = 0; b < blocks; b++)
        {
            var x = src.Slice(b * 32, 32);
            var blk = dst.Slice(b * 24, 24);
            float min = float.MaxValue, max = -float.MaxValue;
            foreach (float v in x) { if (v < min) min = v; if (v > max) max = v; }
            float d = (max - min) / 31;
            float id = d != 0 ? 1.0f / d : 0.0f;
            WriteHalf(blk, 0, d);
            WriteHalf(blk, 2, min);
            uint qh = 0;
            for (int j = 0; j < 16; j++)
            {
                int q0 = (byte)((x[j] - min) * id + 0.5f);
                int q1 = (byte)((x[j + 16] - min) * id + 0.5f);
                blk[8 + j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
                qh |= (uint)((q0 & 0x10) >> 4) << j;
                qh |= (uint)((q1 & 0x10) >> 4) << (j + 16);
            }
            BinaryPrimitives.WriteUInt32LittleEndian(blk[4..], qh);
        }
    }
}
