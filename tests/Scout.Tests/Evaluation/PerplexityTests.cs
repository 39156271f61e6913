using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Scout.Evaluation;
using Scout.Model;

namespace Scout.Tests.Evaluation;

/// <summary>`scout perplexity` against Meta's golden logits, and its chunking/batching against one forward per chunk.</summary>
public class PerplexityTests
{
    private static double Parse(string s) => double.Parse(s, CultureInfo.InvariantCulture);

    /// <summary>PPL and its ± from golden rows, llama-perplexity's formulas, over <paramref name="chunks"/> copies of the sequence.</summary>
    private static (double Ppl, double Error) Expected(Golden g, int chunks)
    {
        var nll = Enumerable.Repeat(g.ScoredRows.Select(t => g.Nll(g.Logits, t)).ToArray(), chunks).SelectMany(x => x).ToArray();
        double mean = nll.Average(), mean2 = nll.Average(x => x * x);
        double ppl = Math.Exp(mean);
        return (ppl, ppl * Math.Sqrt((mean2 - mean * mean) / (nll.Length - 1)));
    }

    [Theory]
    [InlineData("scout-tiny", "model.safetensors", 2)]     // two chunks per pass, then one
    [InlineData("scout-tiny", "model.gguf", 1)]            // one chunk per pass, halves in one piece each
    [InlineData("maverick-tiny", "model.safetensors", 0)]  // --batch below --ctx: each chunk in pieces
    public void Cli_perplexity_over_fixture_tokens_equals_the_golden_logits(string fixture, string weights, int chunksPerPass)
    {
        var g = new Golden(fixture);
        using var dir = new Fixtures.TempDir();
        string tokens = g.WriteRepeated(dir.File("tokens.json"), 3);
        int ctx = g.Rows, batch = chunksPerPass > 0 ? chunksPerPass * ctx : ctx / 4;
        var (code, stdout, stderr) = ScoutCli.Run("perplexity", "--model", Fixtures.Text(fixture, weights), "--config", Fixtures.Text(fixture, "config.json"),
            "--tokens", tokens, "--ctx", ctx.ToString(), "--batch", batch.ToString());
        Assert.True(code == 0, stderr);
        var (ppl, err) = Expected(g, 3);
        var m = Regex.Match(stdout, @"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)");
        Assert.True(m.Success, stdout);
        double got = Parse(m.Groups[1].Value);
        Assert.True(Math.Abs(got - ppl) <= 1e-4 * ppl, $"PPL {got} vs golden {ppl}");
        Assert.True(Math.Abs(Parse(m.Groups[2].Value) - err) <= 1e-3 * err + 1e-5, $"± {m.Groups[2].Value} vs golden {err}");
        // The running value after each chunk (every chunk is the golden sequence, so each equals the final value).
        var running = Regex.Matches(stdout, @"\[(\d+)\]([0-9.]+),").Select(x => (int.Parse(x.Groups[1].Value), Parse(x.Groups[2].Value))).ToList();
        Assert.Equal([1, 2, 3], running.Select(r => r.Item1));
        Assert.All(running, r => Assert.True(Math.Abs(r.Item2 - ppl) <= 1e-4 * ppl, $"running {r.Item2} vs {ppl}"));
    }

    [Fact]
    public void Batched_chunks_equal_one_forward_per_chunk_with_bos_first()
    {
        using var model = Llama4Model.Load(Fixtures.Text("scout-tiny", "model.safetensors"));
        int vocab = model.Config.VocabSize, ctx = 16, bos = model.Config.BosTokenId!.Value;
        var rng = new Random(15);
        var tokens = Enumerable.Range(0, 5 * ctx + 7).Select(_ => rng.Next(vocab)).ToArray(); // 5 chunks, 7 tokens dropped
        // Reference: each chunk alone, from position 0 with BOS in front, its rows ctx/2 .. ctx-2 scored, NLL in double.
        var nll = new List<double>();
        for (int c = 0; c < 5; c++)
        {
            var ids = tokens[(c * ctx)..((c + 1) * ctx)];
            ids[0] = bos;
            var logits = new float[ctx * vocab];
            using var cache = model.CreateCache(ctx);
            model.Forward(ids, cache, logits);
            for (int t = ctx / 2; t <= ctx - 2; t++)
            {
                var row = logits.AsSpan(t * vocab, vocab);
                double max = double.NegativeInfinity, sum = 0;
                foreach (float v in row) max = Math.Max(max, v);
                foreach (float v in row) sum += Math.Exp(v - max);
                nll.Add(max + Math.Log(sum) - row[tokens[c * ctx + t + 1]]);
            }
        }
        double expected = Math.Exp(nll.Average());
        foreach (int batch in new[] { 3 * ctx, ctx, 5 })
        {
            var progress = new List<int>();
            var r = Perplexity.Run(model, tokens, new PerplexityOptions { Context = ctx, Batch = batch, Bos = bos }, progress: e => progress.Add(e.Chunk));
            Assert.Equal(5, r.Chunks);
            Assert.Equal(5 * (ctx - 1 - ctx / 2), r.Scored);
            Assert.Equal([1, 2, 3, 4, 5], progress);
            Assert.True(Math.Abs(r.Ppl.Value - expected) <= 1e-5 * expected, $"batch {batch}: {r.Ppl.Value} vs {expected}");
        }
        var limited = Perplexity.Run(model, tokens, new PerplexityOptions { Context = ctx, Batch = 64, Bos = bos, MaxChunks = 2 });
        Assert.Equal(2, limited.Chunks);
        Assert.True(Math.Abs(limited.Ppl.Value - Math.Exp(nll.Take(2 * 7).Average())) <= 1e-5 * limited.Ppl.Value);
    }

    [Fact]
    public void Bad_input_is_a_clear_error()
    {
        using var dir = new Fixtures.TempDir();
        string model = Fixtures.Text("scout-tiny", "model.safetensors");
        var few = ScoutCli.Run("perplexity", "--model", model, "--tokens", Fixtures.Text("scout-tiny", "tokens.json"), "--ctx", "64");
        Assert.Equal(1, few.Code);
        Assert.Contains("fewer than one chunk", few.Err);
        File.WriteAllText(dir.File("bad.json"), JsonSerializer.Serialize(new { input_ids = Enumerable.Repeat(600, 40) }));
        var outside = ScoutCli.Run("perplexity", "--model", model, "--tokens", dir.File("bad.json"), "--ctx", "20");
        Assert.Equal(1, outside.Code);
        Assert.Contains("outside the model's vocabulary", outside.Err);
        var neither = ScoutCli.Run("perplexity", "--model", model);
        Assert.Equal(1, neither.Code);
        Assert.Contains("--tokens", neither.Err);
        File.WriteAllBytes(dir.File("junk.kld"), "not a base file at all"u8.ToArray());
        var junk = ScoutCli.Run("perplexity", "--model", model, "--kl-divergence", dir.File("junk.kld"));
        Assert.Equal(1, junk.Code);
        Assert.Contains("junk.kld", junk.Err);
        Assert.Contains("not a KL-divergence base file", junk.Err);
    }
}
