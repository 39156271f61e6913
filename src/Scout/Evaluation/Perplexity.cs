using System.Diagnostics;
using Scout.Model;

namespace Scout.Evaluation;

/// <summary>How <see cref="Perplexity"/> cuts and batches the tokens.</summary>
public sealed record PerplexityOptions
{
    /// <summary>Tokens per chunk (llama-perplexity's <c>-c</c>); each chunk is scored on its second half.</summary>
    public int Context { get; init; } = 512;

    /// <summary>Tokens per forward pass (llama-perplexity's <c>-b</c>): ⌊Batch / Context⌋ chunks run together, each its own sequence.</summary>
    public int Batch { get; init; } = 2048;

    /// <summary>At most this many chunks (llama-perplexity's <c>--chunks</c>); null = all.</summary>
    public int? MaxChunks { get; init; }

    /// <summary>
    /// The id put in each chunk's first position (llama.cpp does this when the vocabulary adds BOS, as Llama 4's does);
    /// null leaves the tokens as they are.
    /// </summary>
    public int? Bos { get; init; }
}

/// <summary>After each chunk: how far the run is and the values so far.</summary>
public sealed record PerplexityProgress(int Chunk, int Chunks, Estimate Ppl, KlSummary? Kl, TimeSpan Elapsed);

/// <summary>The result of a perplexity (and, against a base, KL-divergence) run.</summary>
public sealed record PerplexityResult(Estimate Ppl, long Scored, int Chunks, int Context, KlSummary? Kl, TimeSpan Elapsed);

/// <summary>
/// Perplexity as llama.cpp's <c>llama-perplexity</c> computes it: the tokens are cut into ⌊n / ctx⌋ chunks of ctx
/// tokens (the rest is dropped); each chunk runs from position 0 in a fresh cache with its first token replaced by BOS;
/// the logits at positions ctx/2 … ctx−2 are scored against the next token (ctx − 1 − ctx/2 tokens per chunk, so every
/// scored token has at least ctx/2 tokens of context). PPL = exp(mean NLL), ± = PPL · σ(NLL)/√(n−1).
///
/// Several chunks run at once as the segments of one forward pass (<see cref="Llama4Model.ForwardSegments"/>): the
/// unscored first halves without logits, then the scored second halves.
/// </summary>
public static class Perplexity
{
    /// <summary>Number of chunks a run over <paramref name="tokenCount"/> tokens uses.</summary>
    public static int ChunkCount(int tokenCount, PerplexityOptions o)
    {
        int n = tokenCount / o.Context;
        return o.MaxChunks is { } m ? Math.Min(n, m) : n;
    }

    /// <summary>Perplexity of <paramref name="tokens"/>; with <paramref name="saveBase"/>, also streams every scored row's log-probabilities to it.</summary>
    public static PerplexityResult Run(Llama4Model model, int[] tokens, PerplexityOptions o, KlBaseFormat? saveBaseFormat = null, string? saveBase = null,
        Action<PerplexityProgress>? progress = null, CancellationToken ct = default)
    {
        int chunks = Validate(model, tokens, o);
        int vocab = model.Config.VocabSize;
        var nll = new NllAccumulator();
        using var writer = saveBase is null ? null
            : new KlBaseWriter(saveBase, new KlBaseHeader(saveBaseFormat ?? KlBaseFormat.U16, o.Context, vocab, chunks, tokens[..(chunks * o.Context)]));
        var scratch = new float[vocab];
        var clock = Stopwatch.StartNew();
        RunChunks(model, tokens, chunks, o, (logits, target) =>
        {
            var stats = RowStats.Of(logits, scratch);
            nll.Add(stats.Nll(logits, target));
            writer?.Write(logits, stats);
        }, chunk => progress?.Invoke(new PerplexityProgress(chunk + 1, chunks, nll.Perplexity, null, clock.Elapsed)), ct);
        return new PerplexityResult(nll.Perplexity, nll.Count, chunks, o.Context, null, clock.Elapsed);
    }

    /// <summary>
    /// Compares <paramref name="model"/> with a base file: the tokens, context and chunk count come from the file (as
    /// llama-perplexity's <c>--kl-divergence</c>). Returns the model's perplexity and the full comparison.
    /// </summary>
    public static PerplexityResult CompareWithBase(Llama4Model model, KlBaseReader baseFile, PerplexityOptions o,
        Action<PerplexityProgress>? progress = null, CancellationToken ct = default)
    {
        var h = baseFile.Header;
        if (h.VocabSize != model.Config.VocabSize)
            throw new InvalidDataException($"{baseFile.Path}: the base has a {h.VocabSize}-entry vocabulary, the model {model.Config.VocabSize}");
        o = o with { Context = h.Context, MaxChunks = null };
        int chunks = Validate(model, h.Tokens, o);
        var kl = new KlAccumulator();
        var scratch = new float[h.VocabSize];
        var baseRow = new float[h.VocabSize];
        var clock = Stopwatch.StartNew();
        RunChunks(model, h.Tokens, chunks, o, (logits, target) =>
        {
            var stats = RowStats.Of(logits, scratch);
            float cut = baseFile.ReadRow(baseRow);
            kl.Add(KlAccumulator.Compare(logits, stats, baseRow, cut, target));
        }, chunk =>
        {
            if (progress is null) return;
            var s = kl.Summary();
            progress(new PerplexityProgress(chunk + 1, chunks, s.Ppl, s, clock.Elapsed));
        }, ct);
        var summary = kl.Summary();
        return new PerplexityResult(summary.Ppl, kl.Count, chunks, o.Context, summary, clock.Elapsed);
    }

    private static int Validate(Llama4Model model, int[] tokens, PerplexityOptions o)
    {
        if (o.Context < 4) throw new ArgumentException($"--ctx must be at least 4 (got {o.Context}): each chunk is scored on its second half");
        if (o.Batch < 1) throw new ArgumentException($"--batch must be positive (got {o.Batch})");
        if (o.MaxChunks is < 1) throw new ArgumentException($"--chunks must be positive (got {o.MaxChunks})");
        int vocab = model.Config.VocabSize;
        for (int i = 0; i < tokens.Length; i++)
            if ((uint)tokens[i] >= (uint)vocab) throw new ArgumentException($"token {i} = {tokens[i]} is outside the model's vocabulary (0..{vocab - 1})");
        if (o.Bos is { } b && (uint)b >= (uint)vocab) throw new ArgumentException($"BOS id {b} is outside the model's vocabulary");
        int chunks = ChunkCount(tokens.Length, o);
        if (chunks < 1)
            throw new ArgumentException($"{tokens.Length} tokens are fewer than one chunk of --ctx {o.Context}: give more text or a smaller --ctx");
        return chunks;
    }

    /// <summary>
    /// Runs the chunks, ⌊Batch/Context⌋ at a time, and hands every scored row (logits, next token) to
    /// <paramref name="row"/> in chunk order, then calls <paramref name="chunkDone"/> with the chunk's index.
    /// </summary>
    private static void RunChunks(Llama4Model model, int[] tokens, int chunks, PerplexityOptions o,
        RowSink row, Action<int> chunkDone, CancellationToken ct)
    {
        int seqs = Math.Max(1, Math.Min(o.Batch / o.Context, chunks));
        var caches = new KvCache[seqs];
        try
        {
            for (int s = 0; s < seqs; s++) caches[s] = model.CreateCache(o.Context);
            RunGroups(model, tokens, chunks, o, caches, row, chunkDone, ct);
        }
        finally
        {
            foreach (var cache in caches) cache?.Dispose();
        }
    }

    private static void RunGroups(Llama4Model model, int[] tokens, int chunks, PerplexityOptions o, KvCache[] caches,
        RowSink row, Action<int> chunkDone, CancellationToken ct)
    {
        int ctx = o.Context, first = ctx / 2, vocab = model.Config.VocabSize, seqs = caches.Length;
        // Tokens per sequence per pass: a whole half when several chunks share the pass, else pieces of --batch.
        int piece = seqs > 1 ? ctx : Math.Min(o.Batch, ctx);
        var logits = new float[checked(seqs * Math.Min(piece, ctx - first) * vocab)];
        var ids = new int[seqs * Math.Min(piece, Math.Max(first, ctx - first))];
        var segments = new BatchSegment[seqs];

        for (int c0 = 0; c0 < chunks; c0 += seqs)
        {
            int group = Math.Min(seqs, chunks - c0);
            foreach (var cache in caches) cache.Clear();
            // Unscored first half, then the scored second half; neither piece straddles position `first`.
            for (int pos = 0; pos < ctx;)
            {
                ct.ThrowIfCancellationRequested();
                int end = Math.Min(pos < first ? first : ctx, pos + piece);
                int len = end - pos;
                bool scored = pos >= first;
                for (int s = 0; s < group; s++)
                {
                    int start = (c0 + s) * ctx;
                    tokens.AsSpan(start + pos, len).CopyTo(ids.AsSpan(s * len, len));
                    if (pos == 0 && o.Bos is { } bos) ids[s * len] = bos;
                }
                var segs = new ArraySegment<BatchSegment>(segments, 0, group);
                for (int s = 0; s < group; s++) segments[s] = new BatchSegment(caches[s], len);
                var h = model.EmbedTokens(ids.AsSpan(0, group * len));
                model.ForwardSegments(h, segs, logits, scored ? LogitsMode.All : LogitsMode.None);
                if (scored)
                {
                    for (int s = 0; s < group; s++)
                    {
                        int start = (c0 + s) * ctx;
                        for (int k = 0; k < len && pos + k <= ctx - 2; k++)
                            row(logits.AsSpan(checked((s * len + k) * vocab), vocab), tokens[start + pos + k + 1]);
                        if (end == ctx) chunkDone(c0 + s);
                    }
                }
                pos = end;
            }
        }
    }

    private delegate void RowSink(ReadOnlySpan<float> logits, int target);
}
