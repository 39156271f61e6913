using Scout.Kernels;
using Scout.Kernels.Quant;
using Scout.Tensors;
using Xunit.Abstractions;

namespace Scout.Tests.Quant;

/// <summary>Encode → decode error bounds in the style of ggml's test-quantize-fns, plus edge cases.</summary>
public class RoundTripTests(ITestOutputHelper output)
{
    public static TheoryData<TensorType> AllTypes()
    {
        var d = new TheoryData<TensorType>();
        foreach (var t in Quantizer.BlockTypes) d.Add(t);
        d.Add(TensorType.F16);
        d.Add(TensorType.BF16);
        return d;
    }

    private static float[] RoundTrip(TensorType t, float[] x)
    {
        var bytes = new byte[t.ByteCount(x.Length)];
        Quantizer.Quantize(t, x, bytes);
        var y = new float[x.Length];
        Dequantize.ToFloat(t, bytes, y);
        return y;
    }

    /// <summary>ggml's metric: sqrt(Σ diff²) / n over 4096 values of 0.1 + 2·cos(i).</summary>
    private static double GgmlTotalError(float[] a, float[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++) sum += (double)(a[i] - b[i]) * (a[i] - b[i]);
        return Math.Sqrt(sum) / a.Length;
    }

    // ggml's thresholds (test-quantize-fns.cpp): 2-bit 0.0075, 3-bit 0.0040, everything else 0.002.
    private static double GgmlThreshold(TensorType t) => t switch { TensorType.Q2_K => 0.0075, TensorType.Q3_K => 0.0040, _ => 0.002 };

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void CosineDataWithinGgmlThreshold(TensorType t)
    {
        var x = new float[32 * 128];
        for (int i = 0; i < x.Length; i++) x[i] = 0.1f + 2 * MathF.Cos(i);
        var y = RoundTrip(t, x);
        double err = GgmlTotalError(x, y);
        output.WriteLine($"{t}: ggml total error {err:g4} (threshold {GgmlThreshold(t)})");
        Assert.True(err < GgmlThreshold(t), $"{t}: error {err} ≥ {GgmlThreshold(t)}");
    }

    // Bounds on Gaussian data (σ = 1): RMS error relative to σ and max error relative to the block's max |x|.
    // Q4_0/Q5_0 map the extreme to −8d/−16d, so the opposite extreme clips to 7/8 (15/16): max error amax/8 (amax/16).
    public static TheoryData<TensorType, double, double> GaussianBounds() => new()
    {
        { TensorType.Q8_0, 0.0065, 0.006 },
        { TensorType.Q6_K, 0.020, 0.05 },
        { TensorType.Q5_K, 0.040, 0.08 },
        { TensorType.Q5_0, 0.050, 0.0635 },
        { TensorType.Q5_1, 0.045, 0.04 },
        { TensorType.Q4_K, 0.080, 0.15 },
        { TensorType.Q4_0, 0.100, 0.1255 },
        { TensorType.Q4_1, 0.090, 0.08 },
        { TensorType.Q3_K, 0.200, 0.35 },
        { TensorType.Q2_K, 0.400, 0.60 },
        { TensorType.F16, 0.0003, 0.0005 },
        { TensorType.BF16, 0.003, 0.004 },
    };

    [Theory]
    [MemberData(nameof(GaussianBounds))]
    public void GaussianDataWithinBounds(TensorType t, double maxRms, double maxRel)
    {
        var rng = new Random(1234);
        var x = new float[256 * 64];
        for (int i = 0; i < x.Length; i++)
            x[i] = (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        var y = RoundTrip(t, x);
        double sq = 0, worst = 0;
        int be = Math.Max(32, t.BlockElements());
        for (int b = 0; b < x.Length / be; b++)
        {
            float amax = 0;
            for (int i = 0; i < be; i++) amax = Math.Max(amax, Math.Abs(x[b * be + i]));
            for (int i = 0; i < be; i++)
            {
                double d = x[b * be + i] - y[b * be + i];
                sq += d * d;
                worst = Math.Max(worst, Math.Abs(d) / amax);
            }
        }
        double rms = Math.Sqrt(sq / x.Length);
        output.WriteLine($"{t}: rms {rms:g4}, max |err|/block amax {worst:g4}");
        Assert.True(rms < maxRms, $"{t}: rms {rms} ≥ {maxRms}");
        Assert.True(worst < maxRel, $"{t}: max relative error {worst} ≥ {maxRel}");
    }

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void AllZeroBlockDecodesToZeros(TensorType t)
    {
        var x = new float[512];
        var y = RoundTrip(t, x);
        Assert.All(y, v => Assert.Equal(0f, v));
    }

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void ConstantBlocksStayClose(TensorType t)
    {
        foreach (float c in new[] { 1f, -3.5f, 0.01f })
        {
            var x = Enumerable.Repeat(c, 512).ToArray();
            var y = RoundTrip(t, x);
            // A constant is representable up to the f16 scale rounding (and 2-bit/3-bit level spacing).
            double tol = t is TensorType.Q2_K or TensorType.Q3_K ? 0.08 : 0.01;
            Assert.All(y, v => Assert.True(Math.Abs(v - c) <= tol * Math.Abs(c), $"{t}: {v} for constant {c}"));
        }
    }

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void HugeAndTinyMagnitudesStayFinite(TensorType t)
    {
        foreach (float scale in new[] { 1e-30f, 1e-6f, 1000f, 30000f })
        {
            var x = new float[512];
            for (int i = 0; i < x.Length; i++) x[i] = scale * MathF.Sin(i * 0.37f);
            var y = RoundTrip(t, x);
            Assert.All(y, v => Assert.True(float.IsFinite(v), $"{t}: non-finite output at scale {scale}"));
            float amax = x.Max(Math.Abs);
            double worst = x.Zip(y, (a, b) => Math.Abs(a - b)).Max();
            // f16 scales flush values below ~6e-8 to zero and overflow above 65504: within that range errors stay bounded.
            double tol = t switch
            {
                TensorType.Q2_K => 0.6, TensorType.Q3_K => 0.35, TensorType.Q4_0 or TensorType.Q4_1 or TensorType.Q4_K => 0.15,
                _ => 0.08,
            };
            if (scale >= 1e-3f)
                Assert.True(worst <= tol * amax, $"{t}: max error {worst} at scale {scale} (amax {amax})");
            else
                Assert.True(worst <= Math.Max(tol * amax, 1e-4), $"{t}: max error {worst} at tiny scale {scale}");
        }
    }

    [Fact]
    public void RowwiseParallelEncodingEqualsWholeSpan()
    {
        var rng = new Random(7);
        var x = new float[256 * 40];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        foreach (var t in new[] { TensorType.Q4_K, TensorType.Q8_0, TensorType.Q6_K })
        {
            var whole = new byte[t.ByteCount(x.Length)];
            Quantizer.Quantize(t, x, whole);
            var rows = new byte[whole.Length];
            Quantizer.QuantizeRows(t, x, 20, 512, rows);
            Assert.Equal(whole, rows);
        }
    }

    [Fact]
    public void WrongSizesAreRejected()
    {
        Assert.Throws<InvalidDataException>(() => Quantizer.Quantize(TensorType.Q4_K, new float[100], new byte[144]));
        Assert.Throws<ArgumentException>(() => Quantizer.Quantize(TensorType.Q8_0, new float[32], new byte[33]));
        Assert.Throws<ArgumentException>(() => Block32Codecs.DequantizeQ8_0(new byte[33], new float[32]));
    }
}
