using System.Numerics.Tensors;

namespace Scout.Evaluation;

/// <summary>
/// Log-softmax of one logits row, as the quality measures need it: the log-sum-exp (max + ln Σ exp(x − max), the sum
/// in double), the argmax, and the negative log-likelihood of a target token.
/// </summary>
public readonly record struct RowStats(float Max, int ArgMax, double LogSumExp)
{
    /// <summary>−ln p(token) = lse − logit[token].</summary>
    public double Nll(ReadOnlySpan<float> logits, int token) => LogSumExp - logits[token];

    /// <summary>Computes the row's statistics; <paramref name="scratch"/> (at least the row's length) receives exp(x − max).</summary>
    public static RowStats Of(ReadOnlySpan<float> logits, Span<float> scratch)
    {
        if (logits.IsEmpty) throw new ArgumentException("empty logits row");
        int argMax = TensorPrimitives.IndexOfMax(logits);
        float max = logits[argMax];
        if (!float.IsFinite(max)) throw new InvalidDataException($"logits row holds a non-finite maximum ({max})");
        var e = scratch[..logits.Length];
        TensorPrimitives.Subtract(logits, max, e);
        TensorPrimitives.Exp(e, e);
        double sum = 0;
        foreach (float v in e) sum += v;
        return new RowStats(max, argMax, max + Math.Log(sum));
    }
}
