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

    /// <summary>
    /// GELU x·Φ(x) in the erf form (PyTorch's nn.GELU default), in place. Φ comes from erfc by the Chebyshev fit of
    /// Numerical Recipes (relative error below 1.2e-7 everywhere), so the negative tail keeps its relative accuracy.
    /// </summary>
    public static void Gelu(Span<float> x)
    {
        for (int i = 0; i < x.Length; i++)
        {
            double v = x[i];
            double half = 0.5 * Erfc(Math.Abs(v) * 0.70710678118654752440);
            x[i] = (float)(v * (v < 0 ? half : 1.0 - half));
        }
    }

    /// <summary>erfc(z) for z ≥ 0, relative error &lt; 1.2e-7 (Numerical Recipes' erfcc).</summary>
    public static double Erfc(double z)
    {
        double t = 1.0 / (1.0 + 0.5 * z);
        return t * Math.Exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
            + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
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
