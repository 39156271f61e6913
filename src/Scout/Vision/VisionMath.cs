using System.Numerics.Tensors;

namespace Scout.Vision;

/// <summary>The elementwise pieces of the vision path: LayerNorm with bias and the exact (erf) GELU.</summary>
public static class VisionMath
{
    /// <summary>y = (x − mean)/sqrt(var + eps)·w + b over one row.</summary>
    public static void LayerNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float eps, Span<float> y)
    {
        float mean = TensorPrimitives.Sum(x) / x.Length;
        TensorPrimitives.Subtract(x, mean, y);
        float variance = TensorPrimitives.SumOfSquares(y) / x.Length;
        TensorPrimitives.Multiply(y, 1f / MathF.Sqrt(variance + eps), y);
        TensorPrimitives.FusedMultiplyAdd(y, weight, bias, y);
    }

    /// <summary>GELU x·Φ(x) with the erf form (PyTorch's nn.GELU default), in place.</summary>
    public static void Gelu(Span<float> x)
    {
        for (int i = 0; i < x.Length; i++)
        {
            double v = x[i];
            x[i] = (float)(0.5 * v * (1.0 + Erf(v * 0.70710678118654752440)));
        }
    }

    /// <summary>erf(x) to about 1e-15 absolute: Taylor series near 0, a continued fraction for erfc further out.</summary>
    public static double Erf(double x)
    {
        double ax = Math.Abs(x);
        if (ax < 2.5)
        {
            // erf(x) = 2/√π · Σ (−1)ⁿ x^(2n+1) / (n!(2n+1))
            double term = ax, sum = ax, x2 = ax * ax;
            for (int n = 1; n < 60; n++)
            {
                term *= -x2 / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17 * Math.Abs(sum)) break;
            }
            double r = sum * 1.1283791670955125739;
            return x < 0 ? -r : r;
        }
        if (ax > 6) return x < 0 ? -1.0 : 1.0;
        // erfc(x) = exp(−x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + 2/(x + ...))))) evaluated bottom-up (Lentz not needed at x ≥ 2.5).
        double f = ax;
        for (int k = 60; k >= 1; k--) f = ax + (k / 2.0) / f;
        double erfc = Math.Exp(-ax * ax) / (f * 1.7724538509055160273);
        return x < 0 ? erfc - 1.0 : 1.0 - erfc;
    }
}
