using System.Text.Json;
using Scout.Evaluation;
using Scout.Model;
using Scout.Tests.Generation;
using Scout.Tokenization;

namespace Scout.Tests.Evaluation;

/// <summary>`scout eval`: choices whose likelihoods Meta's golden logits decide, and the text forms against one forward each.</summary>
public class MultipleChoiceTests
{
    /// <summary>
    /// Choices that follow the golden sequence up to their last token, so the golden rows give their exact
    /// log-likelihood: ln p(c) = Σ_k ln softmax(row m−1+k)[c_k] for a context of m tokens.
    /// </summary>
    private sealed record GoldenItem(int[] Context, int[][] Choices, double[] LogLikelihood, double[] Tolerance, int Answer);

    private static List<GoldenItem> BuildItems(Golden g)
    {
        var items = new List<GoldenItem>();
        int[] contexts = [10, 17, 30];
        for (int n = 0; n < contexts.Length; n++)
        {
            int m = contexts[n];
            var t = g.Tokens;
            int Other(int row, int not)
            {
                var lp = g.LogSoftmax(g.Logits, row);
                return Enumerable.Range(0, g.Vocab).Where(i => i != not).OrderByDescending(i => lp[i]).First();
            }
            int[][] choices =
            [
                t[m..(m + 3)],                                 // the sequence's own next three tokens
                [.. t[m..(m + 2)], Other(m + 1, t[m + 2])],    // same two, then the likeliest other token
                [Other(m - 1, t[m])],                          // one token: the likeliest other than the sequence's
                [t[m], Other(m, t[m + 1])],
            ];
            var ll = new double[choices.Length];
            var tol = new double[choices.Length];
            for (int c = 0; c < choices.Length; c++)
                for (int k = 0; k < choices[c].Length; k++)
                {
                    int row = m - 1 + k;
                    ll[c] += g.LogSoftmax(g.Logits, row)[choices[c][k]];
                    // README tolerance |Δlogit| ≤ 1e-4 + 1e-4·|logit|: ln p moves by at most twice the row's largest.
                    double worst = 0;
                    foreach (float v in g.Row(g.Logits, row)) worst = Math.Max(worst, 1e-4 + 1e-4 * Math.Abs(v));
                    tol[c] += 2 * worst;
                }
            items.Add(new GoldenItem(t[..m], choices, ll, tol, Answer: n)); // answers 0, 1, 2: some right, some wrong
        }
        return items;
    }

    private static int ArgMax(double[] x) => Array.IndexOf(x, x.Max());

    [Fact]
    public void Cli_eval_scores_choices_as_the_golden_logits_do()
    {
        var g = new Golden("scout-tiny");
        var items = BuildItems(g);
        using var dir = new Fixtures.TempDir();
        string tasks = dir.File("tasks.jsonl");
        File.WriteAllLines(tasks, items.Select(i => JsonSerializer.Serialize(new { context_ids = i.Context, choice_ids = i.Choices, answer = i.Answer })));
        var (code, stdout, stderr) = ScoutCli.Run("eval", "--model", Fixtures.Text("scout-tiny", "model.safetensors"), "--tasks", tasks, "--json");
        Assert.True(code == 0, stderr);
        var root = JsonDocument.Parse(stdout).RootElement;
        var results = root.GetProperty("results").EnumerateArray().ToArray();
        Assert.Equal(items.Count, results.Length);
        int correct = 0, correctNorm = 0;
        for (int n = 0; n < items.Count; n++)
        {
            var item = items[n];
            var got = results[n].GetProperty("loglikelihoods").EnumerateArray().Select(e => e.GetDouble()).ToArray();
            for (int c = 0; c < got.Length; c++)
                Assert.True(Math.Abs(got[c] - item.LogLikelihood[c]) <= item.Tolerance[c], $"item {n} choice {c}: {got[c]} vs golden {item.LogLikelihood[c]}");
            var norm = item.LogLikelihood.Select((ll, c) => ll / item.Choices[c].Length).ToArray();
            int pick = ArgMax(item.LogLikelihood), pickNorm = ArgMax(norm);
            // The golden margins are far above the tolerance, so the picks are decided by the goldens.
            Assert.True(item.LogLikelihood.Where((_, c) => c != pick).All(x => item.LogLikelihood[pick] - x > 2 * item.Tolerance.Max()));
            Assert.Equal(pick, results[n].GetProperty("picked").GetInt32());
            Assert.Equal(pickNorm, results[n].GetProperty("picked_norm").GetInt32());
            correct += pick == item.Answer ? 1 : 0;
            correctNorm += pickNorm == item.Answer ? 1 : 0;
        }
        Assert.InRange(correct, 1, items.Count - 1); // neither all right nor all wrong: the accuracy is informative
        Assert.Equal((double)correct / items.Count, root.GetProperty("acc").GetDouble(), 12);
        Assert.Equal((double)correctNorm / items.Count, root.GetProperty("acc_norm").GetDouble(), 12);
        double p = (double)correct / items.Count;
        Assert.Equal(Math.Sqrt(p * (1 - p) / (items.Count - 1)), root.GetProperty("acc_stderr").GetDouble(), 12);

        var limited = ScoutCli.Run("eval", "--model", Fixtures.Text("scout-tiny", "model.safetensors"), "--tasks", tasks, "--limit", "2");
        Assert.True(limited.Code == 0, limited.Err);
        Assert.Contains("items      2", limited.Out);
        Assert.Matches(@"acc\s+[0-9.]+ ± [0-9.]+", limited.Out);
    }

    [Fact]
    public void Text_items_reuse_the_context_and_equal_one_forward_per_choice()
    {
        using var dir = new Fixtures.TempDir();
        string tasks = dir.File("tasks.jsonl");
        File.WriteAllLines(tasks,
        [
            JsonSerializer.Serialize(new { question = "The capital of France is", choices = new[] { "Paris", "a big city by the sea", "Rome" }, answer = "B" }),
            "",
            JsonSerializer.Serialize(new { ctx = "A man is sitting on a roof. He", endings = new[] { "starts pulling up roofing.", "is holding a rubik's cube.", "gets up.", "falls." }, label = "2" }),
            JsonSerializer.Serialize(new { question = "2 + 2 =", choices = new[] { "4", "5" }, answer = "4" }),
        ]);
        var items = MultipleChoice.Load(tasks);
        Assert.Equal([1, 2, 0], items.Select(i => i.Answer));
        Assert.Equal([1, 3, 4], items.Select(i => i.Line));
        using var model = Llama4Model.Load(Fixtures.Text("scout-tiny", "model.safetensors"));
        var tok = StandInTokenizer.Instance;
        var r = MultipleChoice.Evaluate(model, items, tok, null, PromptStyle.Raw);
        int vocab = model.Config.VocabSize;
        for (int n = 0; n < items.Count; n++)
        {
            var (context, choices) = MultipleChoice.Tokenize(items[n], tok, null, PromptStyle.Raw);
            Assert.Equal(StandInTokenizer.Bos, context[0]);
            for (int c = 0; c < choices.Length; c++)
            {
                // lm-eval's split: the continuation is what encoding "context choice" adds after the context's own ids.
                Assert.Equal(tok.Encode(items[n].Context + " " + items[n].Choices![c])[(context.Length - 1)..], choices[c]);
                int[] all = [.. context, .. choices[c]];
                var logits = new float[all.Length * vocab];
                using var cache = model.CreateCache(all.Length);
                model.Forward(all, cache, logits);
                double ll = 0;
                for (int k = 0; k < choices[c].Length; k++)
                {
                    var row = logits.AsSpan((context.Length - 1 + k) * vocab, vocab);
                    double max = double.NegativeInfinity, sum = 0;
                    foreach (float v in row) max = Math.Max(max, v);
                    foreach (float v in row) sum += Math.Exp(v - max);
                    ll += row[choices[c][k]] - max - Math.Log(sum);
                }
                Assert.True(Math.Abs(r.Items[n].Choices[c].LogLikelihood - ll) <= 1e-4, $"item {n} choice {c}: {r.Items[n].Choices[c].LogLikelihood} vs one forward {ll}");
                Assert.Equal(choices[c].Length, r.Items[n].Choices[c].Tokens);
            }
        }
        // Contexts longer than the 8-token attention chunk: the cache could not always be cut back, so some were rerun.
        Assert.True(r.ContextRecomputations > 0);
        Assert.Equal(items.Sum(i => MultipleChoice.Tokenize(i, tok, null, PromptStyle.Raw).Context.Length), r.ContextTokens);

        // Chat style: the context is the chat format's dialog, the choices follow it without a space.
        var chat = new RecordingChat();
        var (chatContext, chatChoices) = MultipleChoice.Tokenize(items[0], tok, chat, PromptStyle.Chat);
        Assert.Equal(RecordingChat.Ids, chatContext);
        Assert.Equal("The capital of France is", chat.LastUser);
        Assert.Equal(tok.Encode("Paris"), chatChoices[0]);
    }

    private sealed class RecordingChat : IChatFormat
    {
        public static readonly int[] Ids = [StandInTokenizer.Bos, StandInTokenizer.HeaderStart, 117, StandInTokenizer.HeaderEnd];
        public string? LastUser { get; private set; }

        public int[] EncodeDialog(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, IReadOnlyList<ToolDefinition>? tools = null)
        {
            LastUser = messages.Single(m => m.Role == "user").Content;
            Assert.True(addGenerationPrompt);
            return Ids;
        }

        public AssistantReply ParseAssistant(string text) => new(text, []);
    }

    [Fact]
    public void Bad_tasks_files_name_the_line_and_field()
    {
        using var dir = new Fixtures.TempDir();
        string model = Fixtures.Text("scout-tiny", "model.safetensors");
        (string Line, string Expect)[] cases =
        [
            ("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 2}", "'answer' = 2 is not a choice index"),
            ("{\"question\": \"q\", \"choices\": [\"a\"], \"answer\": 0}", "at least 2 choices"),
            ("{\"ctx\": \"q\", \"endings\": [\"a\", \"b\"]}", "missing field 'label'"),
            ("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": ", "malformed JSON"),
            ("{\"context_ids\": [1], \"choice_ids\": [[1], []], \"answer\": 0}", "a choice has no tokens"),
        ];
        foreach (var (line, expect) in cases)
        {
            string path = dir.File("bad.jsonl");
            File.WriteAllLines(path, ["{\"question\": \"ok\", \"choices\": [\"a\", \"b\"], \"answer\": 0}", line]);
            var (code, _, err) = ScoutCli.Run("eval", "--model", model, "--tasks", path);
            Assert.Equal(1, code);
            Assert.Contains("bad.jsonl:2", err);
            Assert.Contains(expect, err);
        }
        File.WriteAllText(dir.File("ids.jsonl"), "{\"context_ids\": [508], \"choice_ids\": [[1], [900]], \"answer\": 0}\n");
        var outside = ScoutCli.Run("eval", "--model", model, "--tasks", dir.File("ids.jsonl"));
        Assert.Equal(1, outside.Code);
        Assert.Contains("outside the model's vocabulary", outside.Err);
    }
}
