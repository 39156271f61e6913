namespace Scout.Kernels.Quant;

/// <summary>
/// Scale searches used by ggml's reference K-quant encoders, re-derived here: weighted least-squares fits of a
/// scale (and a min) to a group of values, trying a few candidate inverse scales around nmax / range.
/// </summary>
internal static class QuantMath
{
    /// <summary>Groups whose largest magnitude is below this are stored as zeros (ggml's GROUP_MAX_EPS).</summary>
    public const float GroupMaxEps = 1e-15f;

    /// <summary>Round to nearest, ties to even — what ggml's nearest_int float trick computes.</summary>
    public static int NearestInt(float v) => (int)MathF.Round(v, MidpointRounding.ToEven);

    public static float F16(float v) => (float)(Half)v;

    /// <summary>
    /// Asymmetric fit x ≈ scale·L + min with L in [0, nmax] and min ≤ 0 (make_qkx2_quants). Returns the scale and
    /// writes −min to <paramref name="negMin"/>; <paramref name="useMad"/> scores candidates by absolute error.
    /// </summary>
    public static float FitScaleMin(int n, int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> levels,
        out float negMin, Span<byte> scratch, float rmin, float rdelta, int nstep, bool useMad)
    {
        float min = x[0], max = x[0];
        float sumW = weights[0], sumX = sumW * x[0];
        for (int i = 1; i < n; i++)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0) min = 0;
        if (max == min)
        {
            levels[..n].Clear();
            negMin = -min;
            return 0;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
            levels[i] = (byte)l;
            float diff = scale * l + min - x[i];
            diff = useMad ? MathF.Abs(diff) : diff * diff;
            bestError += weights[i] * diff;
        }
        if (nstep < 1)
        {
            negMin = -min;
            return scale;
        }
        for (int step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
                scratch[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            float det = sumW * sumL2 - sumL * sumL;
            if (det > 0)
            {
                float thisScale = (sumW * sumXL - sumX * sumL) / det;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / det;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }
                float err = 0;
                for (int i = 0; i < n; i++)
                {
                    float diff = thisScale * scratch[i] + thisMin - x[i];
                    diff = useMad ? MathF.Abs(diff) : diff * diff;
                    err += weights[i] * diff;
                }
                if (err < bestError)
                {
                    scratch[..n].CopyTo(levels);
                    bestError = err;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        negMin = -min;
        return scale;
    }

    /// <summary>The element of largest magnitude, with its sign (the first one on ties); false for an all-but-zero group.</summary>
    private static bool SignedMax(int n, ReadOnlySpan<float> x, out float max)
    {
        float amax = 0;
        max = 0;
        for (int i = 0; i < n; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        return amax >= GroupMaxEps;
    }

    /// <summary>
    /// Symmetric fit x ≈ scale·(L − nmax) with L in [0, 2·nmax) (make_qx_quants, rmse type 1: weights x²), trying
    /// inverse scales −(nmax ± 0.1k)/max and keeping the one with the best weighted least-squares score.
    /// </summary>
    public static float FitSymmetric(int n, int nmax, ReadOnlySpan<float> x, Span<byte> levels)
    {
        if (!SignedMax(n, x, out float max))
        {
            levels[..n].Clear();
            return 0;
        }
        float iscale = -nmax / max;
        float sumLX = 0, sumL2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
            levels[i] = (byte)(l + nmax);
            float w = x[i] * x[i];
            sumLX += w * x[i] * l;
            sumL2 += w * l * l;
        }
        float scale = sumL2 != 0 ? sumLX / sumL2 : 0;
        float best = scale * sumLX;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0) continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumLX = sumL2 = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
                float w = x[i] * x[i];
                sumLX += w * x[i] * l;
                sumL2 += w * l * l;
            }
            if (sumL2 > 0 && sumLX * sumLX > best * sumL2)
            {
                for (int i = 0; i < n; i++)
                    levels[i] = (byte)(nmax + Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1));
                scale = sumLX / sumL2;
                best = scale * sumLX;
            }
        }
        return scale;
    }

    /// <summary>
    /// Symmetric fit for 3-bit groups (make_q3_quants with rmse): start from −nmax/max, then move single levels
    /// while that improves the x²-weighted least-squares score. Levels are stored offset by nmax.
    /// </summary>
    public static float FitSymmetricIterative(int n, int nmax, ReadOnlySpan<float> x, Span<byte> levels)
    {
        if (!SignedMax(n, x, out float max))
        {
            levels[..n].Clear();
            return 0;
        }
        float iscale = -nmax / max;
        Span<int> l = stackalloc int[n];
        float sumLX = 0, sumL2 = 0;
        for (int i = 0; i < n; i++)
        {
            l[i] = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sumLX += w * x[i] * l[i];
            sumL2 += w * l[i] * l[i];
        }
        for (int pass = 0; pass < 5; pass++)
        {
            int changed = 0;
            for (int i = 0; i < n; i++)
            {
                float w = x[i] * x[i];
                float slx = sumLX - w * x[i] * l[i];
                if (slx > 0)
                {
                    float sl2 = sumL2 - w * l[i] * l[i];
                    int newL = Math.Clamp(NearestInt(x[i] * sl2 / slx), -nmax, nmax - 1);
                    if (newL != l[i])
                    {
                        slx += w * x[i] * newL;
                        sl2 += w * newL * newL;
                        if (sl2 > 0 && slx * slx * sumL2 > sumLX * sumLX * sl2)
                        {
                            l[i] = newL;
                            sumLX = slx;
                            sumL2 = sl2;
                            changed++;
                        }
                    }
                }
            }
            if (changed == 0) break;
        }
        for (int i = 0; i < n; i++) levels[i] = (byte)(l[i] + nmax);
        // Values so small that x² underflows leave no weight: fall back to the plain scale.
        return sumL2 > 0 ? sumLX / sumL2 : 1 / iscale;
    }
}
