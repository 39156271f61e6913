using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Scout.Model;
using Scout.Tokenization;

namespace Scout.Evaluation;

/// <summary>
/// One multiple-choice item, as text (<see cref="Context"/> and <see cref="Choices"/>) or pre-tokenized
/// (<see cref="ContextIds"/> and <see cref="ChoiceIds"/>, used as given: no BOS is added).
/// </summary>
public sealed record MultipleChoiceItem
{
    public string? Context { get; init; }
    public IReadOnlyList<string>? Choices { get; init; }
    public int[]? ContextIds { get; init; }
    public IReadOnlyList<int[]>? ChoiceIds { get; init; }
    /// <summary>Index of the correct choice.</summary>
    public int Answer { get; init; }
    /// <summary>Line number in the tasks file (1-based), for messages.</summary>
    public int Line { get; init; }

    public int ChoiceCount => ChoiceIds?.Count ?? Choices?.Count ?? 0;
}

/// <summary>How prompts are built from text items (lm-evaluation-harness's two ways).</summary>
public enum PromptStyle
{
    /// <summary>BOS + context, each choice continues it after a space (lm-eval's default <c>target_delimiter</c> " ").</summary>
    Raw,
    /// <summary>The context as a user turn in the model's chat format with the assistant header; choices follow it directly.</summary>
    Chat,
}

/// <summary>The scores of one choice: summed log-likelihood of its tokens and that sum per token.</summary>
public sealed record ChoiceScore(double LogLikelihood, int Tokens)
{
    public double PerToken => LogLikelihood / Tokens;
}

/// <summary>One item's result: the scores of each choice and which choice each metric picked.</summary>
public sealed record ItemResult(int Index, int Answer, IReadOnlyList<ChoiceScore> Choices, int Picked, int PickedNormalized, int ContextTokens)
{
    public bool Correct => Picked == Answer;
    public bool CorrectNormalized => PickedNormalized == Answer;
}

/// <summary>Accuracy over the items, by summed (acc) and per-token (acc_norm) log-likelihood, with standard errors.</summary>
public sealed record MultipleChoiceResult(IReadOnlyList<ItemResult> Items, Estimate Accuracy, Estimate AccuracyNormalized, long ContextTokens, long ChoiceTokens, int ContextRecomputations, TimeSpan Elapsed);

/// <summary>
/// Multiple-choice scoring by log-likelihood (lm-evaluation-harness's <c>loglikelihood</c> requests): each choice's
/// tokens are scored after the item's context; the context is run once per item and every choice continues its KV
/// cache (the cache is cut back to the context after each choice, so the context's keys and values are reused).
/// </summary>
public static class MultipleChoice
{
    /// <summary>
    /// Reads a JSON-lines tasks file: <c>{"question", "choices": [...], "answer"}</c> (answer: the text of a choice,
    /// else an index, else a letter A–Z), HellaSwag's <c>{"ctx", "endings", "label"}</c>, or pre-tokenized
    /// <c>{"context_ids": [...], "choice_ids": [[...], ...], "answer"}</c>. Blank lines are skipped.
    /// </summary>
    public static List<MultipleChoiceItem> Load(string path, int? limit = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"tasks file not found: {path}");
        var items = new List<MultipleChoiceItem>();
        int line = 0;
        foreach (var text in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            if (limit is { } l && items.Count >= l) break;
            try
            {
                using var doc = JsonDocument.Parse(text);
                items.Add(ParseItem(doc.RootElement, line));
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path}:{line}: malformed JSON: {e.Message}");
            }
            catch (FormatException e)
            {
                throw new InvalidDataException($"{path}:{line}: {e.Message}");
            }
        }
        if (items.Count == 0) throw new InvalidDataException($"{path}: no items");
        return items;
    }

    private static MultipleChoiceItem ParseItem(JsonElement e, int line)
    {
        if (e.ValueKind != JsonValueKind.Object) throw new FormatException("each line must be a JSON object");
        if (e.TryGetProperty("context_ids", out var cids))
        {
            var ctx = Ints(cids, "context_ids");
            var choices = Array(e, "choice_ids").Select((c, i) => Ints(c, $"choice_ids[{i}]")).ToArray();
            if (choices.Any(c => c.Length == 0)) throw new FormatException("field 'choice_ids': a choice has no tokens");
            return Finish(new MultipleChoiceItem { ContextIds = ctx, ChoiceIds = choices, Line = line }, e, "answer", choices.Length, null);
        }
        bool hellaswag = e.TryGetProperty("endings", out _);
        string ctxField = hellaswag ? "ctx" : "question", choiceField = hellaswag ? "endings" : "choices", answerField = hellaswag ? "label" : "answer";
        string context = Str(e, ctxField);
        var texts = Array(e, choiceField).Select((c, i) => c.ValueKind == JsonValueKind.String ? c.GetString()! : throw new FormatException($"field '{choiceField}[{i}]' must be a string")).ToArray();
        // HellaSwag's label is always an index; a question's answer may also be a choice's text (checked first).
        return Finish(new MultipleChoiceItem { Context = context, Choices = texts, Line = line }, e, answerField, texts.Length, hellaswag ? null : texts);
    }

    private static MultipleChoiceItem Finish(MultipleChoiceItem item, JsonElement e, string field, int count, string[]? texts)
    {
        if (count < 2) throw new FormatException($"an item needs at least 2 choices, this one has {count}");
        if (!e.TryGetProperty(field, out var a)) throw new FormatException($"missing field '{field}'");
        int answer = a.ValueKind switch
        {
            JsonValueKind.Number when a.TryGetInt32(out int i) => i,
            JsonValueKind.String when texts is not null && System.Array.IndexOf(texts, a.GetString()) is >= 0 and var i => i,
            JsonValueKind.String when int.TryParse(a.GetString(), NumberStyles.None, CultureInfo.InvariantCulture, out int i) => i,
            JsonValueKind.String when a.GetString() is { Length: 1 } s && char.IsAsciiLetterUpper(s[0]) => s[0] - 'A',
            _ => throw new FormatException($"field '{field}' must be a choice index, a letter A-Z or a choice's text (got {a.GetRawText()})"),
        };
        if (answer < 0 || answer >= count) throw new FormatException($"field '{field}' = {answer} is not a choice index (0..{count - 1})");
        return item with { Answer = answer };
    }

    private static string Str(JsonElement e, string field)
        => e.TryGetProperty(field, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : throw new FormatException($"missing or non-string field '{field}'");

    private static JsonElement[] Array(JsonElement e, string field)
        => e.TryGetProperty(field, out var v) && v.ValueKind == JsonValueKind.Array ? v.EnumerateArray().ToArray() : throw new FormatException($"missing or non-array field '{field}'");

    private static int[] Ints(JsonElement v, string field)
    {
        if (v.ValueKind != JsonValueKind.Array) throw new FormatException($"field '{field}' must be an array of token ids");
        return v.EnumerateArray().Select(x => x.TryGetInt32(out int i) ? i : throw new FormatException($"field '{field}': {x.GetRawText()} is not a token id")).ToArray();
    }

    /// <summary>
    /// The token ids of an item: the shared context and each choice's continuation. Text items are tokenized as
    /// lm-evaluation-harness does: the continuation is what encoding context + delimiter + choice adds after the
    /// context's own encoding.
    /// </summary>
    public static (int[] Context, int[][] Choices) Tokenize(MultipleChoiceItem item, ITokenizer? tokenizer, IChatFormat? chat, PromptStyle style)
    {
        if (item.ContextIds is { } ids) return (ids, item.ChoiceIds!.ToArray());
        if (tokenizer is null) throw new ArgumentException($"line {item.Line}: a text item needs a tokenizer");
        var choices = item.Choices!;
        if (style == PromptStyle.Chat)
        {
            if (chat is null) throw new ArgumentException("chat prompts need the model's chat format");
            var ctx = chat.EncodeDialog([new ChatMessage("user", item.Context!)], addGenerationPrompt: true);
            return (ctx, choices.Select(c => NonEmpty(tokenizer.Encode(c), item, c)).ToArray());
        }
        var plain = tokenizer.Encode(item.Context!);
        int[] context = tokenizer.BosId is { } bos ? [bos, .. plain] : plain;
        var conts = choices.Select(c =>
        {
            var whole = tokenizer.Encode(item.Context + " " + c);
            return NonEmpty(whole.Length > plain.Length ? whole[plain.Length..] : tokenizer.Encode(" " + c), item, c);
        }).ToArray();
        return (context, conts);
    }

    private static int[] NonEmpty(int[] ids, MultipleChoiceItem item, string choice)
        => ids.Length > 0 ? ids : throw new ArgumentException($"line {item.Line}: choice \"{choice}\" encodes to no tokens");

    /// <summary>Scores every item (see the class summary); <paramref name="progress"/> gets (done, total) after each item.</summary>
    public static MultipleChoiceResult Evaluate(Llama4Model model, IReadOnlyList<MultipleChoiceItem> items, ITokenizer? tokenizer, IChatFormat? chat,
        PromptStyle style, Action<int, int, ItemResult>? progress = null, CancellationToken ct = default)
    {
        int vocab = model.Config.VocabSize;
        var clock = Stopwatch.StartNew();
        var results = new List<ItemResult>(items.Count);
        var scratch = new float[vocab];
        var last = new float[vocab];
        float[] logits = [];
        long ctxTokens = 0, choiceTokens = 0;
        int recomputed = 0;
        KvCache? cache = null;
        try
        {
        for (int n = 0; n < items.Count; n++)
        {
            ct.ThrowIfCancellationRequested();
            var item = items[n];
            var (context, choices) = Tokenize(item, tokenizer, chat, style);
            if (context.Length == 0) throw new ArgumentException($"line {item.Line}: the context has no tokens (a pre-tokenized item must carry at least BOS)");
            foreach (var t in context.Concat(choices.SelectMany(c => c)))
                if ((uint)t >= (uint)vocab) throw new ArgumentException($"line {item.Line}: token id {t} is outside the model's vocabulary (0..{vocab - 1})");
            int longest = choices.Max(c => c.Length);
            int need = context.Length + longest;
            if (cache is null || cache.MaxContext < need)
            {
                int size = Math.Max(need, cache?.MaxContext ?? 0);
                cache?.Dispose();
                cache = model.CreateCache(size);
            }
            cache.Clear();
            model.Forward(context, cache, last, LogitsMode.Last);
            ctxTokens += context.Length;
            var stats0 = RowStats.Of(last, scratch);

            var scores = new ChoiceScore[choices.Length];
            for (int c = 0; c < choices.Length; c++)
            {
                var cont = choices[c];
                double ll = -stats0.Nll(last, cont[0]);
                if (cont.Length > 1)
                {
                    if (cache.Length != context.Length)
                    {
                        if (cache.CanTruncateTo(context.Length)) cache.TruncateTo(context.Length);
                        else
                        {
                            cache.Clear();
                            model.Forward(context, cache, [], LogitsMode.None);
                            recomputed++;
                        }
                    }
                    int rows = cont.Length - 1;
                    if (logits.Length < rows * vocab) logits = new float[rows * vocab];
                    model.Forward(cont.AsSpan(0, rows), cache, logits, LogitsMode.All);
                    for (int k = 0; k < rows; k++)
                    {
                        var row = logits.AsSpan(k * vocab, vocab);
                        ll -= RowStats.Of(row, scratch).Nll(row, cont[k + 1]);
                    }
                }
                choiceTokens += cont.Length;
                scores[c] = new ChoiceScore(ll, cont.Length);
            }
            int picked = ArgMax(scores, s => s.LogLikelihood), pickedNorm = ArgMax(scores, s => s.PerToken);
            var r = new ItemResult(n, item.Answer, scores, picked, pickedNorm, context.Length);
            results.Add(r);
            progress?.Invoke(n + 1, items.Count, r);
        }
        }
        finally
        {
            cache?.Dispose();
        }
        return new MultipleChoiceResult(results, Accuracy(results.Select(r => r.Correct)), Accuracy(results.Select(r => r.CorrectNormalized)),
            ctxTokens, choiceTokens, recomputed, clock.Elapsed);
    }

    private static int ArgMax(ChoiceScore[] s, Func<ChoiceScore, double> key)
    {
        int best = 0;
        for (int i = 1; i < s.Length; i++) if (key(s[i]) > key(s[best])) best = i;
        return best;
    }

    /// <summary>Fraction correct and its standard error √(p(1−p)/(n−1)) (lm-evaluation-harness's mean_stderr).</summary>
    public static Estimate Accuracy(IEnumerable<bool> correct)
    {
        long n = 0, k = 0;
        foreach (bool c in correct) { n++; if (c) k++; }
        if (n == 0) return new(0, 0);
        double p = (double)k / n;
        return new(p, n > 1 ? Math.Sqrt(p * (1 - p) / (n - 1)) : 0);
    }
}
