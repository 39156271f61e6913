using Scout.Generation;
using Scout.Model;
using Xunit.Abstractions;

namespace Scout.Tests.Generation;

public class GeneratorTests(TinyModel tiny, ITestOutputHelper output) : IClassFixture<TinyModel>
{
    private Generator NewGenerator(int context = 256) => new(tiny.Model, StandInTokenizer.Instance, context);

    [Fact]
    public void GreedyPicksArgmaxOfGoldenRowsAndLogprobsMatch()
    {
        // Teacher forcing through one conversation: each turn's prompt is the fixture tokens up to t, so the cache
        // is reused and only one new token runs per turn.
        var generator = NewGenerator();
        // f32 K/V: Meta's golden logprobs are matched at the fixture tolerance only with the exact cache (f16 moves them ~1e-4..1e-3).
        var conversation = new Conversation(tiny.Model, 256, Scout.Planning.KvType.F32, Scout.Planning.KvType.F32);
        for (int t = 0; t < tiny.Tokens.Length; t++)
        {
            var request = new GenerationRequest
            {
                Prompt = tiny.Tokens[..(t + 1)], MaxTokens = 1, Sampling = SamplingOptions.Greedy, Logprobs = true, TopLogprobs = 3,
                IgnoreStopIds = true,
            };
            var updates = generator.Generate(request, conversation).ToList();
            var final = Assert.Single(updates);
            var row = tiny.GoldenRow(t);
            int expected = LogitAssert.ArgMax(row);
            Assert.Equal(expected, final.Token!.Id);
            Assert.Equal(FinishReason.Length, final.Finish);
            Assert.Equal(t, final.Stats!.CachedPromptTokens);

            double max = row[expected], sum = 0;
            foreach (float v in row) sum += Math.Exp(v - max);
            Assert.InRange(final.Token.Logprob, -Math.Log(sum) - 1e-3, -Math.Log(sum) + 1e-3);
            Assert.Equal(3, final.Token.Top.Count);
            Assert.Equal(expected, final.Token.Top[0].Id);
            Assert.True(final.Token.Top[0].Logprob >= final.Token.Top[1].Logprob && final.Token.Top[1].Logprob >= final.Token.Top[2].Logprob);
        }
    }

    [Theory]
    [InlineData(3, 11)]
    [InlineData(8, 11)]
    [InlineData(13, 2)]
    [InlineData(13, 11)]
    [InlineData(16, 11)]
    [InlineData(21, 1)]
    [InlineData(21, 11)]
    [InlineData(33, 5)]
    public void ReusedPrefixGivesTheLogitsOfAFreshRun(int shared, int extra)
    {
        // An earlier request shared the first `shared` fixture tokens, then went on with other tokens (crossing
        // chunk boundaries of the chunk-8 ring). The new request reuses what it can and must match Meta's logits.
        var prefixes = new PrefixCache(1L << 30);
        int vocab = tiny.Vocab;
        var earlier = tiny.Tokens[..shared].Concat(Enumerable.Range(1, extra).Select(i => (tiny.Tokens[i] + 7) % 500)).ToArray();
        var other = tiny.Model.CreateCache(64);
        tiny.Model.Forward(earlier, other, new float[vocab], LogitsMode.Last);
        prefixes.Add(earlier, other);

        var cache = tiny.Model.CreateCache(64);
        var reused = prefixes.Restore(tiny.Tokens, cache);
        int n = reused.Count;
        Assert.Equal(tiny.Tokens[..n], reused);
        Assert.Equal(n, cache.Length);
        // Everything shared is reusable unless the ring moved past its chunk; then the chunk start is.
        int expected = other.CanTruncateTo(shared) ? shared : AttentionMath.ChunkStart(shared, 8);
        Assert.Equal(expected, n);

        var logits = new float[(tiny.Tokens.Length - n) * vocab];
        tiny.Model.Forward(tiny.Tokens.AsSpan(n), cache, logits, LogitsMode.All);
        double diff = LogitAssert.Close(logits, tiny.Golden[(n * vocab)..], vocab);
        output.WriteLine($"shared {shared} then {extra} others: reused {n}, max |Δ| vs Meta {diff:g3}");
    }

    [Fact]
    public void BatchedDecodeStepMatchesSeparateRuns()
    {
        int vocab = tiny.Vocab;
        int[] starts = [5, 11, 24];
        var caches = starts.Select(s =>
        {
            var c = tiny.Model.CreateCache(64);
            tiny.Model.Forward(tiny.Tokens.AsSpan(0, s), c, new float[vocab], LogitsMode.Last);
            return c;
        }).ToArray();
        var logits = new float[starts.Length * vocab];
        for (int step = 0; step < 10; step++)
        {
            var tokens = starts.Select(s => tiny.Tokens[s + step]).ToArray();
            tiny.Model.ForwardBatch(tokens, caches, logits);
            for (int i = 0; i < starts.Length; i++)
                LogitAssert.Close(logits[(i * vocab)..((i + 1) * vocab)], tiny.Golden[((starts[i] + step) * vocab)..((starts[i] + step + 1) * vocab)], vocab);
        }
    }

    [Fact]
    public void MixedPrefillAndDecodeSegmentsMatchMeta()
    {
        int vocab = tiny.Vocab;
        KvCache Filled(int n)
        {
            var c = tiny.Model.CreateCache(64);
            if (n > 0) tiny.Model.Forward(tiny.Tokens.AsSpan(0, n), c, new float[vocab], LogitsMode.None);
            return c;
        }
        var (a, b, c) = (Filled(10), Filled(0), Filled(20));
        float[] Rows(params (KvCache Cache, int From, int Count, bool Want)[] parts)
        {
            int d = tiny.Model.Config.HiddenSize;
            var h = new float[parts.Sum(p => p.Count) * d];
            int row = 0;
            foreach (var p in parts)
                for (int t = 0; t < p.Count; t++) tiny.Model.Weights.Embed(tiny.Tokens[p.From + t], h.AsSpan(row++ * d, d));
            var logits = new float[parts.Count(p => p.Want) * vocab];
            tiny.Model.ForwardSegments(h, parts.Select(p => new BatchSegment(p.Cache, p.Count, p.Want)).ToList(), logits, LogitsMode.Last);
            return logits;
        }
        // a decodes one token, b prefills a piece that does not finish its prompt, c prefills a piece that does.
        var first = Rows((a, 10, 1, true), (b, 0, 7, false), (c, 20, 5, true));
        LogitAssert.Close(first[..vocab], tiny.Golden[(10 * vocab)..(11 * vocab)], vocab);
        LogitAssert.Close(first[vocab..], tiny.Golden[(24 * vocab)..(25 * vocab)], vocab);
        var second = Rows((b, 7, 5, true), (a, 11, 1, true));
        LogitAssert.Close(second[..vocab], tiny.Golden[(11 * vocab)..(12 * vocab)], vocab);
        LogitAssert.Close(second[vocab..], tiny.Golden[(11 * vocab)..(12 * vocab)], vocab);
    }

    [Fact]
    public void BatchRejectsTheSameCacheTwice()
    {
        var c = tiny.Model.CreateCache(16);
        var e = Assert.Throws<ArgumentException>(() => tiny.Model.ForwardBatch([1, 2], [c, c], new float[2 * tiny.Vocab]));
        Assert.Contains("twice", e.Message);
    }

    [Fact]
    public void SeedReproducesAndDifferentSeedsDiffer()
    {
        var g = NewGenerator();
        string Run(long seed) => string.Concat(g.Generate(new GenerationRequest
        {
            Prompt = tiny.Tokens[..6], MaxTokens = 24, IgnoreStopIds = true,
            Sampling = new SamplingOptions { Temperature = 1.5f, TopK = 50, TopP = 0.95f, MinP = 0.01f, Seed = seed },
        }).Select(u => u.Token!.Id + ","));
        Assert.Equal(Run(42), Run(42));
        Assert.NotEqual(Run(42), Run(43));
    }

    [Fact]
    public void StopStringSpanningTokensEndsTheOutputBeforeIt()
    {
        var g = NewGenerator();
        var baseRequest = new GenerationRequest { Prompt = tiny.Tokens[..6], MaxTokens = 40, Sampling = SamplingOptions.Greedy, IgnoreStopIds = true };
        var full = g.Generate(baseRequest).ToList();
        string text = string.Concat(full.Select(u => u.Text));
        // A stop string of 3 characters from the middle of the greedy output spans several byte tokens.
        int at = Enumerable.Range(4, text.Length - 8).First(i => text.Substring(i, 3).All(c => c != '\uFFFD'));
        string stop = text.Substring(at, 3);
        int first = text.IndexOf(stop, StringComparison.Ordinal);
        var stopped = g.Generate(baseRequest with { StopStrings = ["\u0001never", stop] }).ToList();
        Assert.Equal(text[..first], string.Concat(stopped.Select(u => u.Text)));
        Assert.Equal(FinishReason.Stop, stopped[^1].Finish);
        Assert.Equal(stop, stopped[^1].Stats!.StopString);
        Assert.DoesNotContain(stop, string.Concat(stopped.Select(u => u.Text)));
    }

    [Fact]
    public void StopTokenEndsGenerationWithStop()
    {
        // A large bias on end-of-turn makes the model choose it first.
        var g = NewGenerator();
        var updates = g.Generate(new GenerationRequest
        {
            Prompt = tiny.Tokens[..4], MaxTokens = 10,
            Sampling = SamplingOptions.Greedy with { LogitBias = new Dictionary<int, float> { [StandInTokenizer.Eot] = 100 } },
        }).ToList();
        var only = Assert.Single(updates);
        Assert.Equal(FinishReason.Stop, only.Finish);
        Assert.Equal(StandInTokenizer.Eot, only.Stats!.StopTokenId);
        Assert.Equal("", only.Text);
    }

    [Fact]
    public void CancellationStopsAndLeavesTheConversationConsistent()
    {
        var g = NewGenerator();
        var conversation = new Conversation(tiny.Model, 128);
        using var cts = new CancellationTokenSource();
        int seen = 0;
        Assert.Throws<OperationCanceledException>(() =>
        {
            foreach (var u in g.Generate(new GenerationRequest { Prompt = tiny.Tokens[..6], MaxTokens = 50, Sampling = SamplingOptions.Greedy, IgnoreStopIds = true }, conversation, cts.Token))
                if (++seen == 3) cts.Cancel();
        });
        Assert.Equal(3, seen);
        Assert.Equal(conversation.Cache.Length, conversation.Tokens.Count);
        // The conversation is usable afterwards, and its cache still matches the golden logits.
        var next = g.Generate(new GenerationRequest { Prompt = tiny.Tokens[..12], MaxTokens = 1, Sampling = SamplingOptions.Greedy, IgnoreStopIds = true }, conversation).Single();
        Assert.Equal(LogitAssert.ArgMax(tiny.GoldenRow(11)), next.Token!.Id);
    }

    [Fact]
    public void BadRequestsAreRefusedWithClearMessages()
    {
        var g = NewGenerator(16);
        Assert.Contains("empty", Assert.Throws<ArgumentException>(() => g.Generate(new GenerationRequest { Prompt = [] }).ToList()).Message);
        Assert.Contains("context", Assert.Throws<ArgumentException>(() => g.Generate(new GenerationRequest { Prompt = new int[16] }).ToList()).Message);
        Assert.Contains("vocabulary", Assert.Throws<ArgumentException>(() => g.Generate(new GenerationRequest { Prompt = [600] }).ToList()).Message);
        Assert.Contains("top_p", Assert.Throws<ArgumentException>(() => g.Generate(new GenerationRequest { Prompt = [1], Sampling = new() { TopP = 0 } }).ToList()).Message);
    }
}
