using System.Runtime.CompilerServices;
using Scout.Model;
using Scout.Planning;
using Scout.Tokenization;

namespace Scout.Generation;

/// <summary>
/// Generates one sequence at a time on the calling thread (the CLI's path; the server batches with
/// <see cref="BatchScheduler"/>). Tokens stream as they are produced.
/// </summary>
/// <param name="keyType">element type of the cached keys (default f16, as llama.cpp)</param>
/// <param name="valueType">element type of the cached values (default f16)</param>
public sealed class Generator(Llama4Model model, ITokenizer tokenizer, int maxContext = 4096, KvType? keyType = null, KvType? valueType = null)
{
    public KvType KeyType { get; } = keyType ?? KvType.Default;
    public KvType ValueType { get; } = valueType ?? KvType.Default;

    /// <summary>Prompt tokens per forward pass while prefilling (bounds the activations' memory).</summary>
    public int PrefillChunk { get; init; } = 512;

    public Llama4Model Model => model;
    public ITokenizer Tokenizer => tokenizer;
    public int MaxContext => maxContext;

    /// <summary>Generates from a fresh cache.</summary>
    public IEnumerable<GenerationUpdate> Generate(GenerationRequest request, CancellationToken cancellation = default)
        => Generate(request, new Conversation(model, maxContext, KeyType, ValueType), cancellation);

    /// <summary>
    /// Generates continuing <paramref name="conversation"/>: the part of the prompt already in its cache (earlier
    /// turns) is not recomputed, and afterwards the cache holds the prompt and the reply for the next turn.
    /// </summary>
    public IEnumerable<GenerationUpdate> Generate(GenerationRequest request, Conversation conversation, CancellationToken cancellation = default)
    {
        request.Validate(model.Config.VocabSize, conversation.Cache.MaxContext);
        var run = conversation.Begin(request, tokenizer);
        var logits = new float[model.Config.VocabSize];
        try
        {
            while (!run.Finished)
            {
                cancellation.ThrowIfCancellationRequested();
                bool last = run.Forward(model, run.Pending.Length > 1 ? PrefillChunk : 1, logits);
                if (!last) continue;
                cancellation.ThrowIfCancellationRequested();
                yield return run.Step(logits);
            }
        }
        finally
        {
            conversation.End(run);
        }
    }

    /// <summary>The same as <see cref="Generate(GenerationRequest, CancellationToken)"/>, off the caller's thread.</summary>
    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(GenerationRequest request, Conversation? conversation = null,
        [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        conversation ??= new Conversation(model, maxContext, KeyType, ValueType);
        using var e = Generate(request, conversation, cancellation).GetEnumerator();
        Func<bool> next = e.MoveNext; // one delegate for the whole run (each step still hands a Task to the pool)
        while (await Task.Run(next, cancellation).ConfigureAwait(false))
            yield return e.Current;
    }
}

/// <summary>
/// One conversation's KV cache and the tokens in it. Each turn's prompt (the whole dialog re-rendered) shares a
/// prefix with what the cache holds; only the rest is computed.
/// </summary>
public sealed class Conversation(Llama4Model model, int maxContext, KvType? keyType = null, KvType? valueType = null)
{
    private readonly List<int> _tokens = new();
    private bool _busy;

    /// <summary>The conversation's cache (K/V in f16 unless told: <see cref="KvType.Default"/>).</summary>
    public KvCache Cache { get; } = model.CreateCache(maxContext, keyType ?? KvType.Default, valueType ?? KvType.Default);
    /// <summary>Tokens whose keys and values are cached.</summary>
    public IReadOnlyList<int> Tokens => _tokens;

    public void Reset()
    {
        _tokens.Clear();
        Cache.Clear();
    }

    internal SequenceRun Begin(GenerationRequest request, ITokenizer tokenizer)
    {
        if (_busy) throw new InvalidOperationException("this conversation is already generating");
        // Cached tokens not shared with the new prompt are cut off, as far as the chunked layers allow.
        int common = request.PromptEmbeddings is not null ? 0
            : PrefixCache.CommonPrefix(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_tokens), request.Prompt);
        int keep = Cache.UsablePrefix(Math.Min(common, request.Prompt.Length - 1));
        Cache.TruncateTo(keep);
        _tokens.RemoveRange(keep, _tokens.Count - keep);
        _busy = true;
        return new SequenceRun(request, tokenizer, Cache, _tokens);
    }

    internal void End(SequenceRun run)
    {
        _busy = false;
        // Image rows sit behind placeholder ids: a later prompt must not match them, so the cache is not kept.
        if (run.Request.PromptEmbeddings is not null) { Reset(); return; }
        // A forward interrupted mid-way leaves the cache shorter than the token list: keep them in step.
        if (_tokens.Count > Cache.Length) _tokens.RemoveRange(Cache.Length, _tokens.Count - Cache.Length);
    }
}
