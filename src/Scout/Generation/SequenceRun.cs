using System.Diagnostics;
using Scout.Model;
using Scout.Tokenization;

namespace Scout.Generation;

/// <summary>
/// The per-sequence half of generation, shared by the single-sequence <see cref="Generator"/> and the batching
/// <see cref="BatchScheduler"/>: which tokens still have to go through the model, and what to make of each row of
/// logits (sample, check stops, stream text).
/// </summary>
internal sealed class SequenceRun
{
    private readonly GenerationRequest _request;
    private readonly ITokenizer _tokenizer;
    private readonly Sampler _sampler;
    private readonly OutputText _output;
    private readonly ITokenConstraint? _constraint;
    private readonly Action<Span<float>>? _mask;
    /// <summary>Tokens still to run start at <see cref="_pendingStart"/> of <see cref="_pending"/>: the prompt's copy,
    /// then <see cref="_next"/> (the sampled token) for every decode step, so that a step allocates no array.</summary>
    private int[] _pending;
    private int _pendingStart;
    private readonly int[] _next = new int[1];
    /// <summary>Input rows of <see cref="Forward"/> (grown to the largest piece, then reused) and its one segment.</summary>
    private float[] _rows = [];
    private readonly BatchSegment[] _segment = new BatchSegment[1];
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private TimeSpan _promptTime;
    private int _generated;

    public KvCache Cache { get; }
    /// <summary>Tokens whose keys and values are in <see cref="Cache"/>, in order.</summary>
    public List<int> CachedTokens { get; }
    /// <summary>Tokens still to run through the model before the next logits row is sampled.</summary>
    public ReadOnlySpan<int> Pending => _pending.AsSpan(_pendingStart);
    public int CachedPromptTokens { get; }
    public bool Prefilling { get; private set; } = true;
    public bool Finished { get; private set; }

    /// <param name="cache">The sequence's cache, already holding <paramref name="cachedTokens"/> (a reused prefix of the prompt).</param>
    public SequenceRun(GenerationRequest request, ITokenizer tokenizer, KvCache cache, List<int> cachedTokens)
    {
        _request = request;
        _tokenizer = tokenizer;
        _sampler = new Sampler(request.Sampling);
        _sampler.ObservePrompt(request.Prompt);
        _output = new OutputText(request.StopStrings, keepText: false);
        _constraint = request.Constraint?.Invoke();
        _mask = _constraint is null ? null : _constraint.Mask;
        Cache = cache;
        CachedTokens = cachedTokens;
        CachedPromptTokens = cachedTokens.Count;
        _pending = request.Prompt[cachedTokens.Count..];
        // Room for every token the run can cache, so that appending one per step never regrows the list.
        cachedTokens.EnsureCapacity((int)Math.Min(cache.MaxContext, (long)request.Prompt.Length + request.MaxTokens));
    }

    /// <summary>Takes up to <paramref name="max"/> pending tokens to run now; they count as cached once run.</summary>
    public ReadOnlySpan<int> TakePending(int max)
    {
        int n = Math.Min(max, Pending.Length);
        var now = _pending.AsSpan(_pendingStart, n);
        CachedTokens.AddRange(now);
        _pendingStart += n;
        return now;
    }

    public GenerationRequest Request => _request;

    /// <summary>
    /// Runs up to <paramref name="max"/> pending tokens through the model; true when the last row of logits was
    /// written (the prompt is complete, so the next step samples).
    /// </summary>
    public bool Forward(Llama4Model model, int max, Span<float> logits)
    {
        int n = Math.Min(max, Pending.Length);
        int floats = n * model.Config.HiddenSize;
        if (_rows.Length < floats) _rows = new float[floats];
        var segment = TakeInputs(model, max, _rows.AsSpan(0, floats));
        _segment[0] = segment;
        model.ForwardSegments(_rows, _segment, logits, segment.WantLogits ? LogitsMode.Last : LogitsMode.None);
        return segment.WantLogits;
    }

    /// <summary>
    /// Takes up to <paramref name="max"/> pending tokens and writes their input rows into <paramref name="h"/>
    /// (token embeddings, or the request's image-merged rows for prompt positions); returns this sequence's share of
    /// a batched forward.
    /// </summary>
    public BatchSegment TakeInputs(Llama4Model model, int max, Span<float> h)
    {
        int d = model.Config.HiddenSize;
        int first = CachedTokens.Count;
        bool last = NeedsLogits(max);
        var tokens = TakePending(max);
        for (int t = 0; t < tokens.Length; t++)
        {
            int pos = first + t;
            if (_request.PromptEmbeddings is { } rows && pos < _request.Prompt.Length)
            {
                if (rows.Length != _request.Prompt.Length * d)
                    throw new ArgumentException($"prompt embeddings have {rows.Length / _request.Prompt.Length} features per token; the model needs {d}");
                rows.AsSpan(pos * d, d).CopyTo(h.Slice(t * d, d));
            }
            else
            {
                model.Weights.Embed(tokens[t], h.Slice(t * d, d));
            }
        }
        return new BatchSegment(Cache, tokens.Length, last);
    }

    /// <summary>Whether the next forward of the pending tokens completes the prompt (so its last row must be sampled).</summary>
    public bool NeedsLogits(int taking) => taking >= Pending.Length;

    /// <summary>Samples from the logits of the last token run and returns what to stream.</summary>
    public GenerationUpdate Step(ReadOnlySpan<float> logits)
    {
        if (Prefilling)
        {
            Prefilling = false;
            _promptTime = _clock.Elapsed;
            _clock.Restart();
        }
        int bad = TensorScan.FirstNonFinite(logits);
        if (bad >= 0)
            throw new NonFiniteException($"the model produced a non-finite logit ({logits[bad]} for token id {bad}) at position {CachedTokens.Count - 1} " +
                $"(after {_generated} generated tokens): the weights or the model's metadata are corrupt (try --check-tensors)");
        var sampled = _sampler.Sample(logits, _request.Logprobs ? _request.TopLogprobs : 0, _mask);
        _generated++;
        int id = sampled.Id;

        if (!_request.IgnoreStopIds && _tokenizer.StopIds.Contains(id))
            return Finish(_output.Flush(), sampled, FinishReason.Stop, stopToken: id);

        _sampler.Accept(id);
        _constraint?.Accept(id);
        string text = _tokenizer.IsSpecial(id) && !_request.IgnoreStopIds ? "" : _output.Append(_tokenizer.TokenBytes(id));
        if (_output.MatchedStop is not null) return Finish(text, sampled, FinishReason.Stop);
        if (_generated >= _request.MaxTokens || CachedTokens.Count + 1 >= Cache.MaxContext)
            return Finish(text + _output.Flush(), sampled, FinishReason.Length);
        _next[0] = id;
        _pending = _next;
        _pendingStart = 0;
        return new GenerationUpdate(text, sampled);
    }

    private GenerationUpdate Finish(string text, SampledToken token, FinishReason reason, int? stopToken = null)
    {
        Finished = true;
        _pending = [];
        _pendingStart = 0;
        return new GenerationUpdate(text, token, reason, Stats(stopToken));
    }

    public GenerationStats Stats(int? stopToken = null) => new()
    {
        PromptTokens = _request.Prompt.Length,
        CachedPromptTokens = CachedPromptTokens,
        CompletionTokens = _generated,
        PromptTime = Prefilling ? _clock.Elapsed : _promptTime,
        GenerationTime = Prefilling ? TimeSpan.Zero : _clock.Elapsed,
        StopString = _output.MatchedStop,
        StopTokenId = stopToken,
    };
}
