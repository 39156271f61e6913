using Scout.Tokenization;

namespace Scout.Generation;

/// <summary>Why generation ended.</summary>
public enum FinishReason
{
    /// <summary>A stop token (end of turn/message/text) or a stop string.</summary>
    Stop,
    /// <summary>The token limit or the end of the context.</summary>
    Length,
}

/// <summary>What to generate: a prompt and how to continue it.</summary>
public sealed record GenerationRequest
{
    /// <summary>Token ids of the prompt (BOS first where the model expects it).</summary>
    public required int[] Prompt { get; init; }
    public int MaxTokens { get; init; } = 256;
    public SamplingOptions Sampling { get; init; } = new();
    /// <summary>Strings that end generation; they never appear in the output, even when they span several tokens.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>Return the chosen token's log-probability (and <see cref="TopLogprobs"/> alternatives).</summary>
    public bool Logprobs { get; init; }
    public int TopLogprobs { get; init; }
    /// <summary>A grammar the output must follow (JSON, a schema, a tool call), or null.</summary>
    public Func<ITokenConstraint>? Constraint { get; init; }
    /// <summary>Keep generating past the tokenizer's stop ids (for benchmarks).</summary>
    public bool IgnoreStopIds { get; init; }
    /// <summary>
    /// Input rows [Prompt.Length × hidden] to run instead of the prompt tokens' embeddings (image features merged in
    /// at the &lt;|patch|&gt; positions). Such prompts are never reused from or stored in a cache: different images
    /// share the same placeholder ids.
    /// </summary>
    public float[]? PromptEmbeddings { get; init; }

    public void Validate(int vocabSize, int maxContext)
    {
        if (Prompt.Length == 0) throw new ArgumentException("the prompt is empty");
        foreach (int id in Prompt)
            if ((uint)id >= (uint)vocabSize) throw new ArgumentException($"prompt token id {id} is outside the vocabulary (0..{vocabSize - 1})");
        if (Prompt.Length >= maxContext)
            throw new ArgumentException($"the prompt has {Prompt.Length} tokens; the context holds {maxContext} (the prompt plus at least one new token must fit)");
        if (MaxTokens < 1) throw new ArgumentException($"max tokens must be at least 1, got {MaxTokens}");
        if (TopLogprobs < 0 || TopLogprobs > 20) throw new ArgumentException($"top_logprobs must be between 0 and 20, got {TopLogprobs}");
        if (StopStrings.Any(string.IsNullOrEmpty)) throw new ArgumentException("stop strings must not be empty");
        if (PromptEmbeddings is not null && PromptEmbeddings.Length % Prompt.Length != 0)
            throw new ArgumentException($"prompt embeddings hold {PromptEmbeddings.Length} floats, not a whole row per prompt token ({Prompt.Length})");
        Sampling.Validate();
    }
}

/// <summary>Counts and timings of one generation.</summary>
public sealed record GenerationStats
{
    public int PromptTokens { get; init; }
    /// <summary>Prompt tokens taken from a cache instead of recomputed.</summary>
    public int CachedPromptTokens { get; init; }
    public int CompletionTokens { get; init; }
    public TimeSpan PromptTime { get; init; }
    public TimeSpan GenerationTime { get; init; }
    /// <summary>The stop string that ended generation, if one did.</summary>
    public string? StopString { get; init; }
    /// <summary>The stop token that ended generation, if one did.</summary>
    public int? StopTokenId { get; init; }

    public double PromptTokensPerSecond => PromptTime.TotalSeconds > 0 ? (PromptTokens - CachedPromptTokens) / PromptTime.TotalSeconds : 0;
    /// <summary>Tokens per second after the first token (decode speed).</summary>
    public double TokensPerSecond => GenerationTime.TotalSeconds > 0 ? CompletionTokens / GenerationTime.TotalSeconds : 0;
}

/// <summary>
/// One step of a streamed generation: new text (possibly empty while bytes of a character or a possible stop
/// string are held back), the token produced, and on the last update the finish reason and statistics.
/// </summary>
public sealed record GenerationUpdate(string Text, SampledToken? Token, FinishReason? Finish = null, GenerationStats? Stats = null)
{
    public bool IsFinal => Finish is not null;
}

/// <summary>A grammar over output bytes, checked token by token (see <see cref="JsonConstraint"/>).</summary>
public interface ITokenConstraint
{
    /// <summary>Sets the logits of tokens that cannot continue the output to -∞ (stop ids only once the output is complete).</summary>
    void Mask(Span<float> logits);
    /// <summary>Advances over a chosen token.</summary>
    void Accept(int token);
    /// <summary>Whether the output so far is a complete document.</summary>
    bool IsComplete { get; }
}

/// <summary>The bounded request queue is full; the server answers 429.</summary>
public sealed class QueueFullException(string message) : Exception(message);
