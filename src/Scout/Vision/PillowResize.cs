namespace Scout.Vision;

/// <summary>
/// Pillow's <c>Image.resize(size, BILINEAR)</c>, bit for bit: a separable antialiased triangle filter whose weights are
/// 22-bit fixed point. The horizontal pass runs first and rounds to uint8, then the vertical pass; a pass over an
/// axis whose length does not change is skipped. (Textbook bilinear or a float resampler differs by 1–51 levels.)
/// </summary>
public static class PillowResize
{
    private const int PrecisionBits = 32 - 8 - 2;

    /// <summary>Resizes to <paramref name="width"/>×<paramref name="height"/>; the same size returns a copy.</summary>
    public static RgbImage Resize(RgbImage src, int width, int height)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"resize target {width}x{height} must be positive");
        var cur = src;
        if (width != src.Width) cur = Horizontal(cur, width);
        if (height != src.Height) cur = Vertical(cur, height);
        return ReferenceEquals(cur, src) ? new RgbImage(src.Width, src.Height, (byte[])src.Pixels.Clone()) : cur;
    }

    /// <summary>Per output index: first input index and the fixed-point weights of the inputs it reads.</summary>
    internal static (int[] Start, int[][] Weights) Coefficients(int inSize, int outSize)
    {
        double scale = (double)inSize / outSize;
        double filterScale = Math.Max(scale, 1.0);
        double support = filterScale; // bilinear's support is 1
        double ss = 1.0 / filterScale;
        var starts = new int[outSize];
        var weights = new int[outSize][];
        var w = new double[(int)Math.Ceiling(support) * 2 + 1];
        for (int i = 0; i < outSize; i++)
        {
            double center = (i + 0.5) * scale;
            int lo = Math.Max(0, (int)(center - support + 0.5));
            int hi = Math.Min(inSize, (int)(center + support + 0.5));
            int count = hi - lo;
            double sum = 0;
            for (int j = 0; j < count; j++)
            {
                double x = Math.Abs(((j + lo) - center + 0.5) * ss);
                w[j] = x < 1.0 ? 1.0 - x : 0.0;
                sum += w[j];
            }
            var k = new int[Math.Max(count, 0)];
            for (int j = 0; j < count; j++)
            {
                double v = sum != 0.0 ? w[j] / sum : w[j];
                // Pillow rounds half away from zero; the weights here are never negative.
                k[j] = (int)(v < 0 ? -0.5 + v * (1 << PrecisionBits) : 0.5 + v * (1 << PrecisionBits));
            }
            starts[i] = lo;
            weights[i] = k;
        }
        return (starts, weights);
    }

    private static byte Clip8(int acc) => acc <= 0 ? (byte)0 : (byte)Math.Min(255, acc >> PrecisionBits);

    private static RgbImage Horizontal(RgbImage src, int outW)
    {
        var (starts, weights) = Coefficients(src.Width, outW);
        var dst = new RgbImage(outW, src.Height);
        var s = src.Pixels;
        var d = dst.Pixels;
        int inStride = src.Width * 3, outStride = outW * 3;
        Parallel.For(0, src.Height, y =>
        {
            int rowIn = y * inStride, rowOut = y * outStride;
            for (int x = 0; x < outW; x++)
            {
                var k = weights[x];
                int baseIn = rowIn + starts[x] * 3;
                int r = 1 << (PrecisionBits - 1), g = r, b = r;
                for (int j = 0; j < k.Length; j++)
                {
                    int p = baseIn + j * 3;
                    r += s[p] * k[j];
                    g += s[p + 1] * k[j];
                    b += s[p + 2] * k[j];
                }
                int o = rowOut + x * 3;
                d[o] = Clip8(r);
                d[o + 1] = Clip8(g);
                d[o + 2] = Clip8(b);
            }
        });
        return dst;
    }

    private static RgbImage Vertical(RgbImage src, int outH)
    {
        var (starts, weights) = Coefficients(src.Height, outH);
        var dst = new RgbImage(src.Width, outH);
        var s = src.Pixels;
        var d = dst.Pixels;
        int stride = src.Width * 3;
        Parallel.For(0, outH, y =>
        {
            var k = weights[y];
            int first = starts[y] * stride;
            int rowOut = y * stride;
            for (int c = 0; c < stride; c++)
            {
                int acc = 1 << (PrecisionBits - 1);
                for (int j = 0; j < k.Length; j++) acc += s[first + j * stride + c] * k[j];
                d[rowOut + c] = Clip8(acc);
            }
        });
        return dst;
    }
}
