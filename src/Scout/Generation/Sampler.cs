using System.Numerics.Tensors;

namespace Scout.Generation;

/// <summary>A token and its log-probability.</summary>
public readonly record struct TokenLogprob(int Id, float Logprob);

/// <summary>The chosen token, its log-probability and the most likely alternatives (when asked for).</summary>
public sealed record SampledToken(int Id, float Logprob, IReadOnlyList<TokenLogprob> Top);

/// <summary>
/// Picks the next token from one row of logits. Stateful per sequence: it counts generated tokens for the
/// penalties and owns the seeded random generator, so the same seed and prompt give the same tokens.
/// </summary>
public sealed class Sampler
{
    private readonly SamplingOptions _options;
    private readonly Random _random;
    private readonly Dictionary<int, int> _generatedCounts = new();
    private readonly List<int> _recent;
    private float[] _work = [];
    private int[] _order = [];
    // Reused across steps, so that sampling allocates only the SampledToken it returns (and its top-k list when asked).
    private float[] _keys = [];
    private double[] _probs = [];
    private int[] _topIds = [];
    private readonly HashSet<int> _distinct;
    private readonly int[] _biasIds;
    private readonly float[] _biasValues;

    public Sampler(SamplingOptions options)
    {
        options.Validate();
        _options = options;
        // The window's whole capacity up front: it fills one token per step and must not regrow while it does.
        int window = options.RepeatLastN == 0 ? 0 : Math.Min(options.RepeatLastN, 1 << 16) + 1;
        _recent = new List<int>(window);
        _distinct = new HashSet<int>(options.RepetitionPenalty != 1f ? window : 0);
        _random = options.Seed is { } seed ? new Random(unchecked((int)(seed ^ (seed >> 32)))) : new Random();
        // The bias as two arrays: enumerating the IReadOnlyDictionary every step would allocate an enumerator.
        int biases = options.LogitBias?.Count ?? 0;
        _biasIds = new int[biases];
        _biasValues = new float[biases];
        if (options.LogitBias is { } bias)
        {
            int i = 0;
            foreach (var (t, b) in bias) { _biasIds[i] = t; _biasValues[i] = b; i++; }
        }
    }

    public SamplingOptions Options => _options;

    /// <summary>Remembers prompt tokens for the repetition penalty window (they do not count for presence/frequency).</summary>
    public void ObservePrompt(ReadOnlySpan<int> tokens)
    {
        foreach (int t in tokens) Remember(t);
    }

    /// <summary>Records a generated token.</summary>
    public void Accept(int token)
    {
        // The counts are read only by the presence and frequency penalties.
        if (_options.PresencePenalty != 0 || _options.FrequencyPenalty != 0)
            _generatedCounts[token] = _generatedCounts.GetValueOrDefault(token) + 1;
        Remember(token);
    }

    private void Remember(int token)
    {
        if (_options.RepeatLastN == 0) return;
        _recent.Add(token);
        if (_recent.Count > _options.RepeatLastN) _recent.RemoveAt(0);
    }

    /// <summary>
    /// Chooses a token. <paramref name="mask"/> (optional) removes tokens a grammar forbids by setting them to -∞.
    /// Log-probabilities are those of the model's distribution after penalties, bias and mask, before temperature.
    /// </summary>
    public SampledToken Sample(ReadOnlySpan<float> logits, int topLogprobs = 0, Action<Span<float>>? mask = null)
    {
        int vocab = logits.Length;
        if (_work.Length != vocab) { _work = new float[vocab]; _order = new int[vocab]; }
        var x = _work.AsSpan();
        logits.CopyTo(x);
        ApplyPenalties(x);
        mask?.Invoke(x);

        int best = TensorPrimitives.IndexOfMax(x);
        if (float.IsNegativeInfinity(x[best]))
            throw new InvalidOperationException("every token is masked out: the output constraint allows no continuation");
        float logSumExp = LogSumExp(x, x[best]);

        int chosen = _options.Temperature <= 0 ? best : Draw(x, best);
        var top = topLogprobs > 0 ? TopLogprobs(x, topLogprobs, logSumExp) : (IReadOnlyList<TokenLogprob>)[];
        return new SampledToken(chosen, x[chosen] - logSumExp, top);
    }

    private void ApplyPenalties(Span<float> x)
    {
        var o = _options;
        if (o.RepetitionPenalty != 1f)
        {
            _distinct.Clear();
            foreach (int t in _recent)
                if (_distinct.Add(t) && (uint)t < (uint)x.Length) x[t] = x[t] > 0 ? x[t] / o.RepetitionPenalty : x[t] * o.RepetitionPenalty;
        }
        if (o.PresencePenalty != 0 || o.FrequencyPenalty != 0)
            foreach (var (t, count) in _generatedCounts)
                if ((uint)t < (uint)x.Length) x[t] -= o.PresencePenalty + o.FrequencyPenalty * count;
        for (int i = 0; i < _biasIds.Length; i++)
        {
            int t = _biasIds[i];
            if ((uint)t < (uint)x.Length) x[t] += _biasValues[i];
        }
    }

    private static float LogSumExp(ReadOnlySpan<float> x, float max)
    {
        double sum = 0;
        foreach (float v in x) if (!float.IsNegativeInfinity(v)) sum += Math.Exp(v - max);
        return max + (float)Math.Log(sum);
    }

    /// <summary>Temperature, top-k, top-p, min-p over candidates sorted by logit, then one draw.</summary>
    private int Draw(ReadOnlySpan<float> x, int best)
    {
        var o = _options;
        float invT = 1f / o.Temperature;
        float max = x[best];

        // Candidates: every token whose tempered probability is not negligible (exp(-30) of the best), sorted.
        int n = 0;
        for (int i = 0; i < x.Length; i++)
            if ((x[i] - max) * invT > -30f) _order[n++] = i;
        var cand = _order.AsSpan(0, n);
        if (_keys.Length < n) { _keys = new float[x.Length]; _probs = new double[x.Length]; }
        var keys = _keys.AsSpan(0, n);
        for (int i = 0; i < n; i++) keys[i] = -x[cand[i]];
        keys.Sort(cand);
        if (o.TopK > 0 && o.TopK < n) n = o.TopK;

        var probs = _probs.AsSpan(0, n);
        double sum = 0;
        for (int i = 0; i < n; i++) sum += probs[i] = Math.Exp((x[cand[i]] - max) * invT);
        for (int i = 0; i < n; i++) probs[i] /= sum;

        if (o.TopP < 1f)
        {
            double acc = 0;
            for (int i = 0; i < n; i++)
            {
                acc += probs[i];
                if (acc >= o.TopP) { n = i + 1; break; }
            }
        }
        if (o.MinP > 0f)
        {
            double floor = o.MinP * probs[0];
            int keep = 1;
            while (keep < n && probs[keep] >= floor) keep++;
            n = keep;
        }

        double total = 0;
        for (int i = 0; i < n; i++) total += probs[i];
        double r = _random.NextDouble() * total;
        for (int i = 0; i < n; i++)
        {
            r -= probs[i];
            if (r < 0) return cand[i];
        }
        return cand[n - 1];
    }

    private TokenLogprob[] TopLogprobs(ReadOnlySpan<float> x, int k, float logSumExp)
    {
        k = Math.Min(k, x.Length);
        if (_topIds.Length < k) _topIds = new int[k];
        var ids = _topIds.AsSpan(0, k);
        Model.Llama4Model.TopK(x, ids);
        var result = new TokenLogprob[k];
        for (int i = 0; i < k; i++) result[i] = new TokenLogprob(ids[i], x[ids[i]] - logSumExp);
        return result;
    }
}
