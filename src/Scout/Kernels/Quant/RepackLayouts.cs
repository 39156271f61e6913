using System.Runtime.CompilerServices;
using Scout.Tensors;

namespace Scout.Kernels.Quant;

/// <summary>
/// Row-interleaved layouts of Q4_0, Q8_0, Q4_K and Q6_K: 8 consecutive rows form a group, and for every block
/// index the group's 8 blocks are stored together so that one 32-byte load holds 4 consecutive weights of each
/// of the 8 rows (32-bit lane r = row r). A u8×s8 dot into 32-bit lanes (vpdpbusd, or vpmaddubsw + vpmaddwd)
/// against 4 activation quants broadcast to every lane then accumulates 8 rows at once, with no horizontal sum.
///
/// Per group and block index (byte offsets, f16 = IEEE half, [a][b] = index a-major):
/// <list type="bullet">
/// <item>Q4_0 (144 B = 8 × 18): [0,16) scales f16 [r]; [16,144) quants, chunk c∈0..3 at 16+32c: row r's source
///   bytes qs[4c..4c+3] (low nibbles = weights 4c.., high nibbles = weights 16+4c..).</item>
/// <item>Q8_0 (272 B = 8 × 34): [0,16) scales f16 [r]; [16,272) chunk c∈0..7 at 16+32c: row r's q[4c..4c+3] XOR 0x80
///   (offset binary, so the weights are the unsigned operand; Σ(w+128)·a = Σw·a + 128·Σa).</item>
/// <item>Q4_K (1184 B = 8 × 144 + 32): [0,16) d f16 [r]; [16,32) dmin f16 [r]; [32,96) 6-bit scales u8 [j][r];
///   [96,160) 6-bit mins u8 [j/2][r][j%2] (pairs, for vpmaddwd); [160,1184) quants, pair i∈0..3, chunk c∈0..7 at 160+32(8i+c): row r's
///   qs[32i+4c..+3] (low nibbles = sub-block 2i, high = 2i+1).</item>
/// <item>Q6_K (1680 B = 8 × 210): [0,16) d f16 [r]; [16,144) scales s8 [s][r]; [144,1168) low planes, chunk c∈0..31 at
///   144+32c: row r byte i = lo4(v[4c+i]) | lo4(v[128+4c+i]) &lt;&lt; 4; [1168,1680) high planes, c∈0..15 at 1168+32c:
///   row r byte i = hi2(v[4c+i]) | hi2(v[64+4c+i]) &lt;&lt; 2 | hi2(v[128+4c+i]) &lt;&lt; 4 | hi2(v[192+4c+i]) &lt;&lt; 6,
///   where v is the unsigned 6-bit quant (weight = d·scale·(v − 32)).</item>
/// </list>
/// Rows past the end of the matrix (the last group of a matrix whose rows are not a multiple of 8) are zero.
/// </summary>
internal static unsafe class RepackLayouts
{
    public const int Group = 8;

    public static bool Supports(TensorType type) => type is TensorType.Q4_0 or TensorType.Q8_0 or TensorType.Q4_K or TensorType.Q6_K;

    /// <summary>Bytes of one group's blocks at one block index.</summary>
    public static int GroupBlockBytes(TensorType type) => type switch
    {
        TensorType.Q4_0 => 144,
        TensorType.Q8_0 => 272,
        TensorType.Q4_K => 1184,
        TensorType.Q6_K => 1680,
        _ => throw new NotSupportedException($"no repacked layout for {type}"),
    };

    /// <summary>Packs rows [8g, 8g+8) ∩ [0, rows) of a row-major matrix into group <paramref name="dst"/>
    /// (<paramref name="blocks"/> × <see cref="GroupBlockBytes"/> bytes).</summary>
    public static void PackGroup(TensorType type, byte* src, long rowBytes, int rows, int g, int blocks, byte* dst)
    {
        int gbb = GroupBlockBytes(type), srcBlock = type.BlockBytes();
        new Span<byte>(dst, blocks * gbb).Clear();
        for (int r = 0; r < Group; r++)
        {
            int row = g * Group + r;
            if (row >= rows) break;
            byte* srcRow = src + row * rowBytes;
            for (int b = 0; b < blocks; b++)
            {
                byte* s = srcRow + (long)b * srcBlock;
                byte* d = dst + (long)b * gbb;
                switch (type)
                {
                    case TensorType.Q4_0: PackQ4_0(s, d, r); break;
                    case TensorType.Q8_0: PackQ8_0(s, d, r); break;
                    case TensorType.Q4_K: PackQ4_K(s, d, r); break;
                    default: PackQ6_K(s, d, r); break;
                }
            }
        }
    }

    private static void PackQ4_0(byte* s, byte* d, int r)
    {
        *(ushort*)(d + 2 * r) = *(ushort*)s;
        for (int c = 0; c < 4; c++)
            *(uint*)(d + 16 + 32 * c + 4 * r) = *(uint*)(s + 2 + 4 * c);
    }

    private static void PackQ8_0(byte* s, byte* d, int r)
    {
        *(ushort*)(d + 2 * r) = *(ushort*)s;
        for (int c = 0; c < 8; c++)
            *(uint*)(d + 16 + 32 * c + 4 * r) = *(uint*)(s + 2 + 4 * c) ^ 0x80808080u;
    }

    private static void PackQ4_K(byte* s, byte* d, int r)
    {
        *(ushort*)(d + 2 * r) = *(ushort*)s;
        *(ushort*)(d + 16 + 2 * r) = *(ushort*)(s + 2);
        byte* sm = stackalloc byte[16];
        DotKernels.UnpackQ4KScales(s + 4, sm);
        for (int j = 0; j < 8; j++)
        {
            d[32 + 8 * j + r] = sm[j];
            d[96 + 16 * (j >> 1) + 2 * r + (j & 1)] = sm[8 + j];
        }
        for (int i = 0; i < 4; i++)
            for (int c = 0; c < 8; c++)
                *(uint*)(d + 160 + 32 * (8 * i + c) + 4 * r) = *(uint*)(s + 16 + 32 * i + 4 * c);
    }

    /// <summary>The unsigned 6-bit quant k (0..255) of a Q6_K block, as in <see cref="DotKernels.Q6_KScalar"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int Q6KQuant(byte* blk, int k)
    {
        int h = k >> 7, within = k & 127, quarter = within >> 5, l = within & 31;
        byte* ql = blk + 64 * h, qh = blk + 128 + 32 * h;
        int low = quarter switch
        {
            0 => ql[l] & 0x0F,
            1 => ql[l + 32] & 0x0F,
            2 => ql[l] >> 4,
            _ => ql[l + 32] >> 4,
        };
        return low | (((qh[l] >> (2 * quarter)) & 3) << 4);
    }

    private static void PackQ6_K(byte* s, byte* d, int r)
    {
        *(ushort*)(d + 2 * r) = *(ushort*)(s + 208);
        for (int sb = 0; sb < 16; sb++) d[16 + 8 * sb + r] = s[192 + sb];
        int* v = stackalloc int[256];
        for (int k = 0; k < 256; k++) v[k] = Q6KQuant(s, k);
        for (int c = 0; c < 32; c++)
            for (int i = 0; i < 4; i++)
                d[144 + 32 * c + 4 * r + i] = (byte)((v[4 * c + i] & 0x0F) | ((v[128 + 4 * c + i] & 0x0F) << 4));
        for (int c = 0; c < 16; c++)
            for (int i = 0; i < 4; i++)
                d[1168 + 32 * c + 4 * r + i] = (byte)((v[4 * c + i] >> 4) | ((v[64 + 4 * c + i] >> 4) << 2)
                                                      | ((v[128 + 4 * c + i] >> 4) << 4) | ((v[192 + 4 * c + i] >> 4) << 6));
    }
}
