using Scout.Model;
using Scout.Planning;
using Scout.Tests.Generation;

namespace Scout.Tests.Memory;

/// <summary>
/// <see cref="KvCache.Reset"/> on scout-tiny (layers 0-2 chunked with a ring of 8 slots, layer 3 global NoPE): a reset
/// cache keeps its own pages, computes the logits of a fresh cache, and never writes a page it shares.
/// </summary>
public class KvCacheResetTests(TinyModel tiny) : IClassFixture<TinyModel>
{
    private const int Context = 64;

    /// <summary>Prompt of 13 tokens (crosses the chunk boundary at 8), then 6 single-token steps (crosses 16).</summary>
    private float[] Run(KvCache cache)
    {
        int vocab = tiny.Vocab;
        var prompt = tiny.Tokens[..13];
        var logits = new float[(prompt.Length + 6) * vocab];
        tiny.Model.Forward(prompt, cache, logits.AsSpan(0, prompt.Length * vocab), LogitsMode.All);
        for (int i = 0; i < 6; i++)
            tiny.Model.Forward([tiny.Tokens[13 + i]], cache, logits.AsSpan((prompt.Length + i) * vocab, vocab), LogitsMode.Last);
        return logits;
    }

    /// <summary>Different tokens, longer than the prompt: every kept page ends up holding other rows than <see cref="Run"/> writes.</summary>
    private void Scribble(KvCache cache, int count = 27)
    {
        var other = Enumerable.Range(0, count).Select(i => (tiny.Tokens[i % tiny.Tokens.Length] * 7 + 3) % 500).ToArray();
        tiny.Model.Forward(other, cache, [], LogitsMode.None);
    }

    private static float[] Rows(KvCache cache, int layer, int from, int to, int kvDim)
    {
        var all = new float[(to - from) * 2 * kvDim];
        for (int p = from; p < to; p++)
            cache.Read(layer, p, all.AsSpan((p - from) * 2 * kvDim, kvDim), all.AsSpan(((p - from) * 2 + 1) * kvDim, kvDim));
        return all;
    }

    [Theory]
    [InlineData("f32")]
    [InlineData("f16")]
    [InlineData("bf16")]
    public void ResetCacheGivesTheLogitsOfAFreshCache(string type)
    {
        var kv = KvType.Parse(type);
        using var fresh = tiny.Model.CreateCache(Context, kv, kv);
        var expected = Run(fresh);

        using var reused = tiny.Model.CreateCache(Context, kv, kv);
        Scribble(reused);
        long pages = reused.AllocatedBytes;
        Assert.True(pages > 0);
        reused.Reset();
        Assert.Equal(0, reused.Length);
        Assert.Equal(pages, reused.AllocatedBytes); // its own pages are kept
        for (int layer = 0; layer < tiny.Model.Config.NumLayers; layer++) Assert.True(reused.IsAllocated(layer, 0));
        Assert.Equal(expected, Run(reused));

        // Twice, and after a run that stopped inside a chunk.
        reused.Reset();
        Scribble(reused, 5);
        reused.Reset();
        Assert.Equal(expected, Run(reused));
        Assert.Equal(pages, reused.AllocatedBytes);
    }

    [Fact]
    public void ResetCacheCanBeCutBackOnlyWithinWhatItHoldsNow()
    {
        using var cache = tiny.Model.CreateCache(Context);
        Scribble(cache);
        cache.Reset();
        tiny.Model.Forward(tiny.Tokens[..3], cache, [], LogitsMode.None);
        // The high-water mark starts again: a cut to 1 is allowed (the ring holds chunk 0 of this sequence only).
        Assert.True(cache.CanTruncateTo(1));
        Assert.False(cache.CanTruncateTo(4));
    }

    [Fact]
    public void ResetReleasesSharedPagesAndNeverWritesThem()
    {
        int kvDim = tiny.Model.Config.KvDim;
        using var fresh = tiny.Model.CreateCache(Context);
        var expected = Run(fresh);

        using var source = tiny.Model.CreateCache(Context);
        Scribble(source);
        int layers = tiny.Model.Config.NumLayers;
        // Ring layers hold positions 24..26 (the current chunk), the global layer every position.
        var before = Enumerable.Range(0, layers).Select(l => Rows(source, l, tiny.Model.Config.UsesRope(l) ? 24 : 0, 27, kvDim)).ToArray();
        long family = source.FamilyBytes;

        using var fork = source.Fork();
        Assert.Equal(family, source.FamilyBytes);
        fork.Reset();
        Assert.Equal(0, fork.AllocatedBytes); // every page was shared: all released, none written
        Assert.Equal(family, source.FamilyBytes);
        Assert.Equal(27, source.Length);
        Assert.Equal(expected, Run(fork));

        for (int l = 0; l < layers; l++)
            Assert.Equal(before[l], Rows(source, l, tiny.Model.Config.UsesRope(l) ? 24 : 0, 27, kvDim));

        // The source still continues as a cache that never shared anything.
        using var alone = tiny.Model.CreateCache(Context);
        Scribble(alone);
        var a = new float[tiny.Vocab];
        var b = new float[tiny.Vocab];
        tiny.Model.Forward([tiny.Tokens[0]], source, a, LogitsMode.Last);
        tiny.Model.Forward([tiny.Tokens[0]], alone, b, LogitsMode.Last);
        Assert.Equal(b, a);
    }

    [Fact]
    public void PartlySharedCacheKeepsOnlyItsOwnPages()
    {
        // Global layer pages of 16 positions: positions 0..15 in page 0, 16..31 in page 1.
        using var source = new KvCache(tiny.Model.Config, Context, KvType.F32, KvType.F32, pagePositions: 16);
        Scribble(source, 20);
        using var fork = source.Fork();
        fork.TruncateTo(16); // keeps chunk 2's start (16) for the ring layers: allowed
        tiny.Model.Forward(tiny.Tokens[..4], fork, [], LogitsMode.None); // writes page 1 of the global layer: copied
        int global = 3;
        Assert.False(tiny.Model.Config.UsesRope(global));
        var sourceRows = Rows(source, global, 0, 20, tiny.Model.Config.KvDim);

        fork.Reset();
        Assert.False(fork.IsAllocated(global, 0));  // page 0 was shared: released
        Assert.True(fork.IsAllocated(global, 16));  // page 1 is its own copy: kept
        Assert.Equal(sourceRows, Rows(source, global, 0, 20, tiny.Model.Config.KvDim));

        using var fresh = new KvCache(tiny.Model.Config, Context, KvType.F32, KvType.F32, pagePositions: 16);
        Assert.Equal(Run(fresh), Run(fork));
        Assert.Equal(sourceRows, Rows(source, global, 0, 20, tiny.Model.Config.KvDim));
    }

    [Fact]
    public void ReserveAllocatesThePagesUpFrontWithoutChangingResults()
    {
        using var fresh = tiny.Model.CreateCache(Context);
        var expected = Run(fresh);
        using var reserved = tiny.Model.CreateCache(Context);
        reserved.Reserve(Context);
        long bytes = reserved.AllocatedBytes;
        Assert.Equal(reserved.CapacityBytes, bytes);
        Assert.Equal(0, reserved.Length);
        Assert.Equal(expected, Run(reserved));
        Assert.Equal(bytes, reserved.AllocatedBytes);
        Assert.Throws<ArgumentOutOfRangeException>(() => reserved.Reserve(Context + 1));
    }
}
