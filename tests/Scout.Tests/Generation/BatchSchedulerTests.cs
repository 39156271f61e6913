using Scout.Generation;

namespace Scout.Tests.Generation;

public class BatchSchedulerTests(TinyModel tiny) : IClassFixture<TinyModel>
{
    private GenerationRequest Request(int promptLength, int maxTokens, long? seed = null) => new()
    {
        Prompt = tiny.Tokens[..promptLength], MaxTokens = maxTokens, IgnoreStopIds = true,
        Sampling = seed is null ? SamplingOptions.Greedy : new SamplingOptions { Temperature = 0.9f, Seed = seed },
    };

    private static async Task<List<int>> Collect(IAsyncEnumerable<GenerationUpdate> updates)
    {
        var ids = new List<int>();
        await foreach (var u in updates) ids.Add(u.Token!.Id);
        return ids;
    }

    [Fact]
    public async Task BatchedSequencesProduceWhatTheyProduceAlone()
    {
        var generator = new Generator(tiny.Model, StandInTokenizer.Instance, 128);
        var requests = new[] { Request(3, 12), Request(9, 7), Request(17, 15, seed: 5), Request(4, 10, seed: 9), Request(30, 9) };
        var alone = requests.Select(r => generator.Generate(r).Select(u => u.Token!.Id).ToList()).ToList();

        using var scheduler = new BatchScheduler(tiny.Model, StandInTokenizer.Instance,
            new SchedulerOptions { Parallel = 3, QueueLimit = 8, MaxContext = 128, PrefillChunk = 5, PrefixCacheBytes = 0 });
        var together = await Task.WhenAll(requests.Select(r => Collect(scheduler.Submit(r))));
        for (int i = 0; i < requests.Length; i++) Assert.Equal(alone[i], together[i]);
        Assert.Equal(requests.Sum(r => r.MaxTokens), scheduler.Metrics.CompletionTokens);
        Assert.True(scheduler.Metrics.DecodeSteps < requests.Sum(r => r.MaxTokens), "decode steps were shared by sequences");
    }

    [Fact]
    public async Task FollowUpReusesTheFinishedSequenceCache()
    {
        using var scheduler = new BatchScheduler(tiny.Model, StandInTokenizer.Instance, new SchedulerOptions { Parallel = 2, MaxContext = 128 });
        var first = await Collect(scheduler.Submit(Request(10, 4)));
        // The follow-up prompt is the first prompt + its reply + more: only the new part should be computed.
        var followUp = tiny.Tokens[..10].Concat(first).Concat(tiny.Tokens[20..23]).ToArray();
        GenerationStats? stats = null;
        await foreach (var u in scheduler.Submit(Request(10, 2) with { Prompt = followUp })) stats = u.Stats ?? stats;
        Assert.Equal(13, stats!.CachedPromptTokens); // 10 prompt + 3 of the 4 reply tokens were fed (the last was only sampled)

        var generator = new Generator(tiny.Model, StandInTokenizer.Instance, 128);
        var fresh = generator.Generate(Request(10, 2) with { Prompt = followUp }).Select(u => u.Token!.Id).ToList();
        var reused = await Collect(scheduler.Submit(Request(10, 2) with { Prompt = followUp }));
        Assert.Equal(fresh, reused);
    }

    [Fact]
    public async Task FullQueueIsRefusedAndCancelledSequencesFreeTheirSlot()
    {
        using var scheduler = new BatchScheduler(tiny.Model, StandInTokenizer.Instance, new SchedulerOptions { Parallel = 1, QueueLimit = 1, MaxContext = 4000 });
        using var cts = new CancellationTokenSource();
        var longRun = scheduler.Submit(Request(5, 3900), cts.Token);
        await using var e = longRun.GetAsyncEnumerator();
        Assert.True(await e.MoveNextAsync()); // running
        var queued = scheduler.Submit(Request(5, 3));
        Assert.Throws<QueueFullException>(() => scheduler.Submit(Request(5, 3)));

        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => { while (await e.MoveNextAsync()) { } });
        // The queued request gets the freed slot and completes.
        Assert.Equal(3, (await Collect(queued)).Count);
        Assert.Equal(1, scheduler.Metrics.Rejected);
    }

    [Fact]
    public async Task ABadSequenceFailsAloneWhileOthersFinish()
    {
        using var scheduler = new BatchScheduler(tiny.Model, StandInTokenizer.Instance, new SchedulerOptions { Parallel = 4, MaxContext = 128 });
        // Input rows of the wrong width pass request validation but cannot be run: only that sequence fails.
        var bad = Request(6, 5) with { PromptEmbeddings = new float[6 * 3] };
        var good = Collect(scheduler.Submit(Request(6, 5)));
        var failing = Collect(scheduler.Submit(bad));
        Assert.Contains("features per token", (await Assert.ThrowsAsync<ArgumentException>(() => failing)).Message);
        Assert.Equal(5, (await good).Count);
    }
}
