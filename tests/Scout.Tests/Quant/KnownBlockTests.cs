using System.Buffers.Binary;
using Scout.Kernels;
using Scout.Kernels.Quant;
using Scout.Tensors;

namespace Scout.Tests.Quant;

/// <summary>Blocks built byte by byte from ggml's layouts, decoded through the public registry; expected values worked out by hand.</summary>
public class KnownBlockTests
{
    private static float[] Decode(TensorType type, byte[] block)
    {
        var y = new float[type.BlockElements() * (block.Length / type.BlockBytes())];
        Dequantize.ToFloat(type, block, y);
        return y;
    }

    private static void PutHalf(byte[] b, int offset, float v) => BinaryPrimitives.WriteHalfLittleEndian(b.AsSpan(offset), (Half)v);

    [Fact]
    public void Q8_0_DecodesScaleTimesSignedQuant()
    {
        var b = new byte[34];
        PutHalf(b, 0, 0.5f);
        for (int j = 0; j < 32; j++) b[2 + j] = (byte)(sbyte)(j * 8 - 128); // -128, -120, ..., 120
        var y = Decode(TensorType.Q8_0, b);
        for (int j = 0; j < 32; j++) Assert.Equal(0.5f * (j * 8 - 128), y[j]);
    }

    [Fact]
    public void Q4_0_LowNibbleIsFirstHalfHighNibbleSecondHalf()
    {
        var b = new byte[18];
        PutHalf(b, 0, 2f);
        for (int j = 0; j < 16; j++) b[2 + j] = (byte)(j | ((15 - j) << 4));
        var y = Decode(TensorType.Q4_0, b);
        for (int j = 0; j < 16; j++)
        {
            Assert.Equal(2f * (j - 8), y[j]);
            Assert.Equal(2f * (15 - j - 8), y[j + 16]);
        }
    }

    [Fact]
    public void Q5_0_HighBitsComeFromQh()
    {
        var b = new byte[22];
        PutHalf(b, 0, 1f);
        // qh: bit 0 set (weight 0 gets +16), bit 16 set (weight 16 gets +16), bit 31 set (weight 31).
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(2), (1u << 0) | (1u << 16) | (1u << 31));
        b[6 + 0] = 0x21;  // weight 0 low = 1, weight 16 low = 2
        b[6 + 15] = 0xF3; // weight 15 low = 3, weight 31 low = 15
        var y = Decode(TensorType.Q5_0, b);
        Assert.Equal(1 + 16 - 16, y[0]);
        Assert.Equal(2 + 16 - 16, y[16]);
        Assert.Equal(3 - 16, y[15]);
        Assert.Equal(15 + 16 - 16, y[31]);
        Assert.Equal(-16, y[1]);
    }

    [Fact]
    public void Q4_1_And_Q5_1_AddTheMin()
    {
        var b = new byte[20];
        PutHalf(b, 0, 0.25f);
        PutHalf(b, 2, -1f);
        b[4] = 0x4F; // weight 0 = 15, weight 16 = 4
        var y = Decode(TensorType.Q4_1, b);
        Assert.Equal(15 * 0.25f - 1, y[0]);
        Assert.Equal(4 * 0.25f - 1, y[16]);
        Assert.Equal(-1f, y[1]);

        var c = new byte[24];
        PutHalf(c, 0, 0.5f);
        PutHalf(c, 2, 3f);
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(4), 1u << 17); // weight 17 gets +16
        c[8 + 1] = 0x72; // weight 1 = 2, weight 17 = 7 + 16
        var z = Decode(TensorType.Q5_1, c);
        Assert.Equal(2 * 0.5f + 3, z[1]);
        Assert.Equal(23 * 0.5f + 3, z[17]);
    }

    [Fact]
    public void Q4_K_UnpacksSixBitScalesAndMins()
    {
        var b = new byte[144];
        PutHalf(b, 0, 0.5f);  // d
        PutHalf(b, 2, 0.25f); // dmin
        // Sub-block 1: scale 5, min 7 (j < 4: scales[1] low 6 bits, scales[5] low 6 bits).
        b[4 + 1] = 5;
        b[4 + 5] = 7;
        // Sub-block 6: scale 0b110011 = 51, min 0b100101 = 37.
        // scale: low 4 bits in scales[10] low nibble (3), high 2 bits in scales[2] top bits (3).
        // min: low 4 bits in scales[10] high nibble (5), high 2 bits in scales[6] top bits (2).
        b[4 + 10] = 0x53;
        b[4 + 2] |= 3 << 6;
        b[4 + 6] |= 2 << 6;
        // Weight 32 + 3 (sub-block 1 = high nibble of qs[3]) = 9; weight 192 + 4 (sub-block 6 = low nibble of qs[96+4]) = 11.
        b[16 + 3] = 0x90;
        b[16 + 96 + 4] = 0x0B;
        var y = Decode(TensorType.Q4_K, b);
        Assert.Equal(0.5f * 5 * 9 - 0.25f * 7, y[35]);
        Assert.Equal(0.5f * 5 * 0 - 0.25f * 7, y[36]);
        Assert.Equal(0.5f * 51 * 11 - 0.25f * 37, y[196]);
        // Sub-block 2's scale byte holds only the high bits of sub-block 6: its own 6-bit scale is 0.
        Assert.Equal(0f, y[64]);
    }

    [Fact]
    public void Q5_K_AddsSixteenFromQh()
    {
        var b = new byte[176];
        PutHalf(b, 0, 1f);
        PutHalf(b, 2, 1f);
        b[4 + 0] = 2;  // sub-block 0 scale 2
        b[4 + 4] = 3;  // sub-block 0 min 3
        b[4 + 3] = 1;  // sub-block 3 scale 1, min 0
        // Weight 5 (group 0, low): q = 4 + 16 (qh bit 0). Weight 96 + 5 (group 1, high = sub-block 3): q = 2 + 16 (qh bit 3).
        b[48 + 5] = 0x04;
        b[48 + 32 + 5] = 0x20;
        b[16 + 5] = (1 << 0) | (1 << 3);
        var y = Decode(TensorType.Q5_K, b);
        Assert.Equal(2f * 20 - 3, y[5]);
        Assert.Equal(1f * 18, y[101]);
        Assert.Equal(-3f, y[6]);
    }

    [Fact]
    public void Q6_K_FollowsTheHalfAndQuarterLayout()
    {
        var b = new byte[210];
        PutHalf(b, 208, 0.5f);
        for (int s = 0; s < 16; s++) b[192 + s] = (byte)(sbyte)(s - 8);
        // Half 1, l = 20 (s = 1): weight 128 + 20 + 64 uses ql[64+20] high nibble, qh[32+20] bits 4-5, scale[8 + 1 + 4].
        b[64 + 20] = 0x70;          // high nibble 7
        b[128 + 32 + 20] = 2 << 4;  // high bits 2 → q = 7 | 32 = 39 → 39 - 32 = 7
        // Half 0, l = 3: weight 3 uses ql[3] low nibble and qh[3] bits 0-1, scale[0].
        b[3] = 0x01;
        b[128 + 3] = 0;             // q = 1 - 32 = -31
        var y = Decode(TensorType.Q6_K, b);
        Assert.Equal(0.5f * (13 - 8) * 7, y[128 + 84]);
        Assert.Equal(0.5f * (0 - 8) * -31, y[3]);
        Assert.Equal(0.5f * (2 - 8) * -32, y[32]); // weight 32: scale[2], all-zero bits → -32
    }

    [Fact]
    public void Q3_K_SignedScalesAndHighMask()
    {
        var b = new byte[110];
        PutHalf(b, 108, 0.5f);
        // Sub-block 9 scale: low 4 bits = scales[1] high nibble, high 2 bits = scales[8 + 1] bits 4-5 (j/4 = 2).
        // Stored 6-bit value 0b10_0101 = 37 → scale 37 - 32 = 5.
        b[96 + 1] = 0x50;
        b[96 + 9] = 2 << 4;
        // Weight 9*16 + 3 = 147: half 1, within 19 → shift group 0, l = 19 → qs[32 + 19] bits 0-1; hmask[147 % 32 = 19] bit 4.
        b[32 + 32 + 19] = 0x02;
        b[19] = 1 << 4; // high bit set: q = 2 (no -4)
        // Weight 148 (l = 20), high bit clear: q = 3 - 4 = -1.
        b[32 + 32 + 20] = 0x03;
        var y = Decode(TensorType.Q3_K, b);
        Assert.Equal(0.5f * 5 * 2, y[147]);
        Assert.Equal(0.5f * 5 * -1, y[148]);
        // Sub-block 0 has stored value 0 → scale -32; its weights with q=0 and no high bit are -4.
        Assert.Equal(0.5f * -32 * -4, y[0]);
    }

    [Fact]
    public void Q2_K_FourBitScaleAndMin()
    {
        var b = new byte[84];
        PutHalf(b, 80, 0.5f);
        PutHalf(b, 82, 0.25f);
        b[5] = 0x3A; // sub-block 5: scale 10, min 3
        // Weight 5*16 + 1 = 81: half 0, within 81 → shift group 2, l = 17 → qs[17] bits 4-5.
        b[16 + 17] = 3 << 4;
        var y = Decode(TensorType.Q2_K, b);
        Assert.Equal(0.5f * 10 * 3 - 0.25f * 3, y[81]);
        Assert.Equal(-0.25f * 3, y[80]);
    }

    [Fact]
    public void Q8_0_EncoderMatchesHandComputedBlock()
    {
        // amax = 127 → d = 1 exactly; halves round away from zero as ggml's roundf does.
        var x = new float[32];
        for (int j = 0; j < 31; j++) x[j] = j - 15.5f;
        x[31] = 127;
        var b = new byte[34];
        Quantizer.Quantize(TensorType.Q8_0, x, b);
        Assert.Equal((Half)1f, BinaryPrimitives.ReadHalfLittleEndian(b));
        Assert.Equal(-16, (sbyte)b[2]);      // -15.5 → -16
        Assert.Equal(1, (sbyte)b[2 + 16]);   // 0.5 → 1
        Assert.Equal(-1, (sbyte)b[2 + 15]);  // -0.5 → -1
        Assert.Equal(15, (sbyte)b[2 + 30]);  // 14.5 → 15
        Assert.Equal(127, (sbyte)b[33]);
    }

    [Fact]
    public void Q4_0_EncoderMatchesHandComputedBlock()
    {
        // Largest magnitude is -8 → d = -8 / -8 = 1; q = min(15, trunc(x + 8.5)).
        var x = new float[32];
        for (int j = 0; j < 16; j++) x[j] = j - 8;
        x[16] = 7.4f;   // trunc(15.9) = 15
        x[17] = -7.6f;  // trunc(0.9) = 0
        x[18] = 0.49f;  // trunc(8.99) = 8
        var b = new byte[18];
        Quantizer.Quantize(TensorType.Q4_0, x, b);
        Assert.Equal((Half)1f, BinaryPrimitives.ReadHalfLittleEndian(b));
        for (int j = 0; j < 16; j++) Assert.Equal(j, b[2 + j] & 0x0F);
        Assert.Equal(15, b[2] >> 4);
        Assert.Equal(0, b[3] >> 4);
        Assert.Equal(8, b[4] >> 4);
        Assert.Equal(8, b[5] >> 4); // zeros map to 8

        // Positive extreme: the scale is negative and the extreme maps to level 0; -8 would be 16, clamped to 15.
        var z = new float[32];
        z[0] = 8; z[1] = -8;
        Quantizer.Quantize(TensorType.Q4_0, z, b);
        Assert.Equal((Half)(-1f), BinaryPrimitives.ReadHalfLittleEndian(b));
        Assert.Equal(0, b[2] & 0x0F);
        Assert.Equal(15, b[3] & 0x0F);
    }

    [Fact]
    public void Q5_0_EncoderMatchesHandComputedBlock()
    {
        // Largest magnitude -16 → d = 1; q = min(31, trunc(x + 16.5)), 5th bit into qh.
        var x = new float[32];
        x[0] = -16; x[1] = 15; x[17] = 3.2f;
        var b = new byte[22];
        Quantizer.Quantize(TensorType.Q5_0, x, b);
        Assert.Equal((Half)1f, BinaryPrimitives.ReadHalfLittleEndian(b));
        uint qh = BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(2));
        Assert.Equal(0, b[6] & 0x0F); Assert.Equal(0u, qh & 1);             // -16 → 0
        Assert.Equal(31 & 0x0F, b[7] & 0x0F); Assert.Equal(1u, (qh >> 1) & 1); // 15 → 31
        Assert.Equal(19 & 0x0F, b[7] >> 4); Assert.Equal(1u, (qh >> 17) & 1);  // 3.2 → 19
    }
}
