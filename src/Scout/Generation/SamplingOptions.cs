namespace Scout.Generation;

/// <summary>
/// How the next token is chosen. Temperature 0 is greedy (argmax). Filters apply in llama.cpp's order:
/// penalties and bias → temperature → top-k → top-p → min-p → draw.
/// </summary>
public sealed record SamplingOptions
{
    /// <summary>0 = greedy. OpenAI's default is 1.</summary>
    public float Temperature { get; init; } = 1f;
    /// <summary>Keep the k most likely tokens; 0 = off.</summary>
    public int TopK { get; init; }
    /// <summary>Keep the smallest set whose probability reaches p; 1 = off.</summary>
    public float TopP { get; init; } = 1f;
    /// <summary>Drop tokens less likely than min_p × the most likely one; 0 = off.</summary>
    public float MinP { get; init; }
    /// <summary>Divides positive logits (multiplies negative ones) of tokens seen in the last <see cref="RepeatLastN"/>; 1 = off.</summary>
    public float RepetitionPenalty { get; init; } = 1f;
    public int RepeatLastN { get; init; } = 64;
    /// <summary>OpenAI presence penalty: subtracted once from every token already generated.</summary>
    public float PresencePenalty { get; init; }
    /// <summary>OpenAI frequency penalty: subtracted per occurrence in the generated text.</summary>
    public float FrequencyPenalty { get; init; }
    /// <summary>Added to the logits of the given ids (-100 bans, +100 forces in practice).</summary>
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }
    /// <summary>Seed for the random draw; null = a fresh random seed.</summary>
    public long? Seed { get; init; }

    public static SamplingOptions Greedy { get; } = new() { Temperature = 0 };

    public void Validate()
    {
        if (!(Temperature >= 0) || Temperature > 100) throw new ArgumentException($"temperature must be between 0 and 100, got {Temperature}");
        if (TopK < 0) throw new ArgumentException($"top_k must be ≥ 0, got {TopK}");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException($"top_p must be in (0, 1], got {TopP}");
        if (!(MinP >= 0 && MinP <= 1)) throw new ArgumentException($"min_p must be in [0, 1], got {MinP}");
        if (!(RepetitionPenalty > 0) || RepetitionPenalty > 100) throw new ArgumentException($"repetition penalty must be in (0, 100], got {RepetitionPenalty}");
        if (RepeatLastN < 0) throw new ArgumentException($"repeat_last_n must be ≥ 0, got {RepeatLastN}");
        if (!(PresencePenalty >= -2 && PresencePenalty <= 2)) throw new ArgumentException($"presence_penalty must be between -2 and 2, got {PresencePenalty}");
        if (!(FrequencyPenalty >= -2 && FrequencyPenalty <= 2)) throw new ArgumentException($"frequency_penalty must be between -2 and 2, got {FrequencyPenalty}");
        if (LogitBias is not null)
            foreach (var (id, bias) in LogitBias)
                if (!(bias >= -100 && bias <= 100)) throw new ArgumentException($"logit_bias for token {id} must be between -100 and 100, got {bias}");
    }
}
