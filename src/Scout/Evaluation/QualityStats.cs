namespace Scout.Evaluation;

/// <summary>A mean and its standard error (the sample standard deviation over √count).</summary>
public readonly record struct Estimate(double Value, double Error)
{
    public override string ToString() => $"{Value:G6} ± {Error:G3}";

    /// <summary>Mean of values whose sum and sum of squares are given; the error is 0 for fewer than 2 values.</summary>
    public static Estimate Mean(double sum, double sum2, long count)
    {
        if (count < 1) return new(0, 0);
        double mean = sum / count;
        double var = sum2 / count - mean * mean;
        return new(mean, var > 0 && count > 1 ? Math.Sqrt(var / (count - 1)) : 0);
    }
}

/// <summary>Running negative log-likelihood of the scored tokens, giving the perplexity exp(mean NLL) and its ± error.</summary>
public sealed class NllAccumulator
{
    public double Sum { get; private set; }
    public double Sum2 { get; private set; }
    public long Count { get; private set; }

    public void Add(double nll)
    {
        Sum += nll;
        Sum2 += nll * nll;
        Count++;
    }

    public Estimate MeanNll => Estimate.Mean(Sum, Sum2, Count);

    /// <summary>exp(mean NLL), the error propagated as PPL · σ(mean NLL) (as llama-perplexity's "±").</summary>
    public Estimate Perplexity
    {
        get
        {
            var m = MeanNll;
            double ppl = Math.Exp(m.Value);
            return new(ppl, ppl * m.Error);
        }
    }
}

/// <summary>What one token position contributes to the comparison of a model with the base.</summary>
public readonly record struct KlRow(double Kld, double PDiff, double Nll, double NllBase, bool SameTop);

/// <summary>
/// The statistics llama-perplexity prints for <c>--kl-divergence</c>, accumulated row by row: PPL of both models and
/// their ratio, KL divergence (mean ± error, median, percentiles), Δp = p(token) − p_base(token), top-1 agreement.
/// </summary>
public sealed class KlAccumulator
{
    private readonly NllAccumulator _nll = new(), _nllBase = new();
    private double _nllCross, _kld, _kld2, _dp, _dp2, _dp4;
    private long _sameTop;
    private readonly List<float> _klds = [], _dps = [];

    public long Count => _nll.Count;

    /// <summary>
    /// Compares one row: <paramref name="logits"/> of the model under test (with their <see cref="RowStats"/>), the
    /// base's natural-log probabilities, and the cut below which base entries are not counted (see
    /// <see cref="KlBaseReader.ReadRow"/>). KL(base ‖ model) = Σ p_base (ln p_base − ln p).
    /// </summary>
    public static KlRow Compare(ReadOnlySpan<float> logits, RowStats stats, ReadOnlySpan<float> baseLogProbs, float cut, int token)
    {
        double lse = stats.LogSumExp;
        double kld = 0;
        int baseTop = 0;
        float baseMax = baseLogProbs[0];
        for (int i = 0; i < logits.Length; i++)
        {
            float lb = baseLogProbs[i];
            if (lb > baseMax) { baseMax = lb; baseTop = i; }
            if (lb > cut) kld += Math.Exp(lb) * (lb - (logits[i] - lse));
        }
        double nll = lse - logits[token];
        double nllBase = -baseLogProbs[token];
        return new KlRow(kld, Math.Exp(-nll) - Math.Exp(-nllBase), nll, nllBase, baseTop == stats.ArgMax);
    }

    public void Add(KlRow r)
    {
        _nll.Add(r.Nll);
        _nllBase.Add(r.NllBase);
        _nllCross += r.Nll * r.NllBase;
        _kld += r.Kld;
        _kld2 += r.Kld * r.Kld;
        _dp += r.PDiff;
        double d2 = r.PDiff * r.PDiff;
        _dp2 += d2;
        _dp4 += d2 * d2;
        if (r.SameTop) _sameTop++;
        _klds.Add((float)r.Kld);
        _dps.Add((float)r.PDiff);
    }

    public KlSummary Summary()
    {
        long n = Count;
        var lnQ = _nll.MeanNll;
        var lnB = _nllBase.MeanNll;
        double cov = n > 1 ? (_nllCross / n - lnQ.Value * lnB.Value) / (n - 1) : 0;
        double ratioErr = Math.Sqrt(Math.Max(0, lnQ.Error * lnQ.Error + lnB.Error * lnB.Error - 2 * cov));
        var mse = Estimate.Mean(_dp2, _dp4, n);
        double rms = Math.Sqrt(mse.Value);
        double top = n > 0 ? (double)_sameTop / n : 0;
        var klds = _klds.ToArray();
        var dps = _dps.ToArray();
        Array.Sort(klds);
        Array.Sort(dps);
        return new KlSummary
        {
            Count = n,
            Ppl = _nll.Perplexity,
            PplBase = _nllBase.Perplexity,
            LnPplRatio = new(lnQ.Value - lnB.Value, ratioErr),
            Kld = Estimate.Mean(_kld, _kld2, n),
            KldMedian = Percentile(klds, 0.5),
            Kld99 = Percentile(klds, 0.99),
            Kld999 = Percentile(klds, 0.999),
            KldMax = klds.Length > 0 ? klds[^1] : 0,
            DeltaP = Estimate.Mean(_dp, _dp2, n),
            RmsDeltaP = new(rms, rms > 0 ? 0.5 / rms * mse.Error : 0),
            DeltaPMedian = Percentile(dps, 0.5),
            SameTop = new(top, n > 1 ? Math.Sqrt(top * (1 - top) / (n - 1)) : 0),
        };
    }

    /// <summary>Linear interpolation between the two nearest ranks of sorted values (as llama-perplexity's percentiles).</summary>
    public static double Percentile(ReadOnlySpan<float> sorted, double fraction)
    {
        if (sorted.IsEmpty) return 0;
        if (fraction <= 0) return sorted[0];
        if (fraction >= 1) return sorted[^1];
        double p = fraction * (sorted.Length - 1);
        int i = (int)p;
        p -= i;
        return (1 - p) * sorted[i] + p * sorted[Math.Min(i + 1, sorted.Length - 1)];
    }
}

/// <summary>The comparison of a model with its base (see <see cref="KlAccumulator"/>).</summary>
public sealed record KlSummary
{
    public long Count { get; init; }
    public Estimate Ppl { get; init; }
    public Estimate PplBase { get; init; }
    public Estimate LnPplRatio { get; init; }
    public Estimate Kld { get; init; }
    public double KldMedian { get; init; }
    public double Kld99 { get; init; }
    public double Kld999 { get; init; }
    public double KldMax { get; init; }
    /// <summary>Mean of p(token) − p_base(token), as a fraction (llama.cpp prints it in %).</summary>
    public Estimate DeltaP { get; init; }
    public Estimate RmsDeltaP { get; init; }
    public double DeltaPMedian { get; init; }
    /// <summary>Fraction of rows whose argmax equals the base's.</summary>
    public Estimate SameTop { get; init; }
}
