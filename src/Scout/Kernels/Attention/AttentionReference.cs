using Scout.Model;
using Scout.Planning;

namespace Scout.Kernels.Attention;

/// <summary>
/// The scalar reference the attention kernels are tested against: for each (row, head) every visible key is decoded
/// from the cache, scored, and softmax(scores)·values is summed in double, in two passes. Quantized keys are scored as
/// the kernels score them (the query quantized to 8-bit 32-blocks, integer block sums), so the reference pins the
/// arithmetic, not only the result.
/// </summary>
internal static unsafe class AttentionReference
{
    public static void Attend(int heads, int kvHeads, int headDim, ReadOnlySpan<float> q, Span<float> output, in AttentionRows rows)
    {
        int group = heads / kvHeads, hd = headDim;
        double scale = 1.0 / Math.Sqrt(hd);
        var key = new float[hd];
        var value = new float[hd];
        var qq = new sbyte[hd];
        var qd = new float[hd / 32 + 1];
        for (int r = 0; r < rows.Rows; r++)
        {
            var layer = rows.Layers[rows.RowSequence[r]];
            int first = rows.RowFirstKey[r], last = rows.RowPosition[r];
            for (int h = 0; h < heads; h++)
            {
                int kvHead = h / group;
                var qh = q.Slice((r * heads + h) * hd, hd);
                bool quantKeys = layer.KeyType.Kind is KvKind.Q8_0 or KvKind.Q4_0;
                if (quantKeys) QuantizeQuery(qh, qq, qd);
                var scores = new double[last - first + 1];
                double max = double.NegativeInfinity;
                for (int k = first; k <= last; k++)
                {
                    byte* krow = layer.KeyHead(k, kvHead);
                    double s;
                    if (quantKeys) s = QuantizedDot(layer.KeyType.Kind, krow, qq, qd, hd);
                    else
                    {
                        KvRowCodec.Decode(layer.KeyType, krow, key);
                        s = 0;
                        for (int e = 0; e < hd; e++) s += (double)qh[e] * key[e];
                    }
                    scores[k - first] = s * scale;
                    max = Math.Max(max, scores[k - first]);
                }
                double sum = 0;
                for (int i = 0; i < scores.Length; i++) sum += scores[i] = Math.Exp(scores[i] - max);
                var acc = new double[hd];
                for (int k = first; k <= last; k++)
                {
                    KvRowCodec.Decode(layer.ValueType, layer.ValueHead(k, kvHead), value);
                    for (int e = 0; e < hd; e++) acc[e] += scores[k - first] / sum * value[e];
                }
                for (int e = 0; e < hd; e++) output[(r * heads + h) * hd + e] = (float)acc[e];
            }
        }
    }

    /// <summary>8-bit symmetric 32-blocks: d = max|x|/127, q = round-to-even(x/d), as the weight kernels' activations.</summary>
    private static void QuantizeQuery(ReadOnlySpan<float> x, sbyte[] q, float[] d)
    {
        for (int b = 0; b < x.Length / 32; b++)
        {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = MathF.Max(amax, MathF.Abs(x[b * 32 + j]));
            float scale = amax / 127f, inv = scale != 0 ? 1f / scale : 0f;
            d[b] = scale;
            for (int j = 0; j < 32; j++) q[b * 32 + j] = (sbyte)(int)MathF.Round(x[b * 32 + j] * inv);
        }
    }

    private static double QuantizedDot(KvKind kind, byte* k, sbyte[] q, float[] d, int hd)
    {
        double sum = 0;
        for (int b = 0; b < hd / 32; b++)
        {
            int s = 0;
            if (kind == KvKind.Q8_0)
            {
                byte* blk = k + b * 34;
                for (int j = 0; j < 32; j++) s += ((sbyte*)(blk + 2))[j] * q[b * 32 + j];
                sum += (double)(float)BitConverter.UInt16BitsToHalf(*(ushort*)blk) * d[b] * s;
            }
            else
            {
                byte* blk = k + b * 18;
                for (int j = 0; j < 16; j++)
                    s += ((blk[2 + j] & 0x0F) - 8) * q[b * 32 + j] + ((blk[2 + j] >> 4) - 8) * q[b * 32 + j + 16];
                sum += (double)(float)BitConverter.UInt16BitsToHalf(*(ushort*)blk) * d[b] * s;
            }
        }
        return sum;
    }
}
