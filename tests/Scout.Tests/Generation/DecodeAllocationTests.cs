using Scout.Generation;
using Scout.Tokenization;
using Xunit.Abstractions;

namespace Scout.Tests.Generation;

/// <summary>
/// Issue 11: a steady-state decode step of the user-facing generation paths (<see cref="Generator"/> and the batching
/// <see cref="BatchScheduler"/>, greedy and sampled, no grammar) allocates exactly what the public API hands back per
/// token: one <see cref="GenerationUpdate"/>, its <see cref="SampledToken"/> and the text piece (a new string
/// unless it is empty). Everything else (the input rows, the segment list, the pending token, sampling buffers,
/// stop-string scans, token bytes, gauges) is reused. Measured on the calling thread over steps after a warm-up and
/// a forced gen-2 GC (pools a GC trims must not matter), with the real Llama 4 tokenizer, whose token bytes are stored.
/// </summary>
public class DecodeAllocationTests(TinyModel tiny, ITestOutputHelper output) : IClassFixture<TinyModel>
{
    private static readonly Lazy<Llama4Tokenizer> Tokenizer = new(() => Llama4Tokenizer.Load(Fixtures.Tokenizer("llama4/tokenizer.model")));
    private const int Warm = 4, Steps = 12;

    public static TheoryData<string> Samplings => new() { "greedy", "sampled" };

    private static SamplingOptions Sampling(string name, long seed) => name == "greedy" ? SamplingOptions.Greedy : new SamplingOptions
    {
        Temperature = 0.9f, TopK = 40, TopP = 0.95f, MinP = 0.02f, RepetitionPenalty = 1.1f,
        LogitBias = new Dictionary<int, float> { [5] = 1f, [300] = -2f }, Seed = seed,
    };

    private GenerationRequest Request(int promptLength, string sampling, long seed = 7) => new()
    {
        Prompt = tiny.Tokens[..promptLength], MaxTokens = 100, IgnoreStopIds = true, Sampling = Sampling(sampling, seed),
    };

    /// <summary>Bytes one allocation made by <paramref name="make"/> takes on this thread.</summary>
    private static long Size(Func<object> make)
    {
        GC.KeepAlive(make());
        long before = GC.GetAllocatedBytesForCurrentThread();
        var o = make();
        long size = GC.GetAllocatedBytesForCurrentThread() - before;
        GC.KeepAlive(o);
        return size;
    }

    /// <summary>What the API hands back for these updates: each update and its token, and each non-empty text piece.</summary>
    private static long HandedBack(IEnumerable<GenerationUpdate> updates)
    {
        var token = new SampledToken(1, -1f, []);
        long perToken = Size(() => new GenerationUpdate("", token)) + Size(() => new SampledToken(1, -1f, []));
        long total = 0;
        foreach (var u in updates)
        {
            Assert.Null(u.Finish);
            Assert.Empty(u.Token!.Top);
            int length = u.Text.Length;
            total += perToken + (length == 0 ? 0 : Size(() => new string('x', length)));
        }
        return total;
    }

    [Theory]
    [MemberData(nameof(Samplings))]
    public void GeneratorDecodeStepAllocatesOnlyWhatItHandsBack(string sampling)
    {
        var generator = new Generator(tiny.Model, Tokenizer.Value, 128);
        using var e = generator.Generate(Request(9, sampling)).GetEnumerator();
        for (int i = 0; i < Warm; i++) Assert.True(e.MoveNext()); // prefill, first tokens, JIT
        GC.Collect(2, GCCollectionMode.Forced, true);

        var updates = new GenerationUpdate[Steps];
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Steps; i++)
        {
            e.MoveNext();
            updates[i] = e.Current;
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        long expected = HandedBack(updates);
        output.WriteLine($"{sampling}: {allocated} bytes over {Steps} decode steps; the updates, tokens and text pieces take {expected}");
        Assert.Equal(expected, allocated);
    }

    [Theory]
    [MemberData(nameof(Samplings))]
    public async Task BatchedDecodeStepAllocatesOnlyWhatItHandsBack(string sampling)
    {
        using var scheduler = new BatchScheduler(tiny.Model, Tokenizer.Value,
            new SchedulerOptions { Parallel = 3, MaxContext = 128, PrefillChunk = 64, PrefixCacheBytes = 1L << 20 }, startLoop: false);
        var streams = new[] { Request(9, sampling, 1), Request(4, sampling, 2), Request(13, sampling, 3) }
            .Select(r => scheduler.Submit(r).GetAsyncEnumerator()).ToArray();
        var received = new List<GenerationUpdate>(streams.Length * Steps);

        // Reads exactly the update each sequence got from the last step: it is there, so the read completes at once
        // (a reader left waiting would make the next write hand it over through the thread pool).
        async Task Drain(List<GenerationUpdate>? into)
        {
            foreach (var s in streams)
            {
                var next = s.MoveNextAsync();
                Assert.True(next.IsCompletedSuccessfully);
                Assert.True(await next);
                into?.Add(s.Current);
            }
        }

        for (int i = 0; i < Warm; i++)
        {
            Assert.True(scheduler.Iterate()); // the first step prefills all three prompts and samples their first tokens
            await Drain(null);
        }
        Assert.Equal(3, scheduler.Metrics.Active);
        GC.Collect(2, GCCollectionMode.Forced, true);

        long allocated = 0;
        for (int i = 0; i < Steps; i++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            scheduler.Iterate();
            allocated += GC.GetAllocatedBytesForCurrentThread() - before;
            await Drain(received);
        }

        long expected = HandedBack(received);
        output.WriteLine($"{sampling}: {allocated} bytes over {Steps} batch-3 decode steps; the updates, tokens and text pieces take {expected}");
        Assert.Equal(Steps * streams.Length, received.Count);
        Assert.Equal(expected, allocated);
        foreach (var s in streams) await s.DisposeAsync();
    }
}
