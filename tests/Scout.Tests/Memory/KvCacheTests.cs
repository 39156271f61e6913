using Scout.Model;
using Scout.Planning;

namespace Scout.Tests.Memory;

/// <summary>The KV cache as a type: typed rows, pages, 64-bit addressing, copy-on-write sharing, release.</summary>
public class KvCacheTests
{
    /// <summary>Layers 0,1,2 chunked (RoPE), layer 3 global, as Llama 4's 3:1 interleave.</summary>
    internal static Llama4Config Config(int kvHeads = 2, int headDim = 64, int chunk = 512, int heads = 4, int layers = 4) => new()
    {
        VocabSize = 16, HiddenSize = 64, IntermediateSize = 64, IntermediateSizeMlp = 64, NumLayers = layers,
        NumHeads = heads, NumKvHeads = kvHeads, HeadDim = headDim, MoeLayers = new bool[layers],
        RopeLayers = Enumerable.Range(0, layers).Select(i => (i + 1) % 4 != 0).ToArray(), AttentionChunkSize = chunk,
    };

    private static float[] Row(int width, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, width).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray();
    }

    private static void Fill(KvCache cache, int from, int to, int seedBase = 0)
    {
        int kvDim = 2 * 64;
        for (int layer = 0; layer < 4; layer++)
            for (int p = from; p < to; p++)
                cache.Store(layer, p, Row(kvDim, seedBase + p * 7 + layer), Row(kvDim, seedBase + p * 7 + layer + 100_000), 1);
        cache.Length = to;
    }

    [Theory]
    [InlineData("f32", 0.0)]
    [InlineData("f16", 1e-3)]   // half: 11-bit significand, |x| < 1
    [InlineData("bf16", 4e-3)]  // 8-bit significand
    [InlineData("q8_0", 5e-3)]  // max/127 steps, half-rounded to the nearest: ≤ 1/254 of the block max
    [InlineData("q4_0", 0.15)]  // 16 levels of max/8 (the far end of a block rounds to max/8 · 8)
    public void RowsComeBackInTheirType(string type, double tolerance)
    {
        var t = KvType.Parse(type);
        using var cache = new KvCache(Config(), 1024, t, t);
        var k = Row(128, 1);
        var v = Row(128, 2);
        cache.Store(3, 700, k, v, 1);
        var (k2, v2) = (new float[128], new float[128]);
        cache.Read(3, 700, k2, v2);
        for (int i = 0; i < 128; i++)
        {
            Assert.True(Math.Abs(k[i] - k2[i]) <= tolerance, $"{type} K[{i}]: {k[i]} vs {k2[i]}");
            Assert.True(Math.Abs(v[i] - v2[i]) <= tolerance, $"{type} V[{i}]: {v[i]} vs {v2[i]}");
        }
        Assert.Equal(t.RowBytes(128) * 2 * KvCache.DefaultPagePositions, cache.AllocatedBytes); // one page, K and V
    }

    [Fact]
    public void QuantizedTypesNeedWholeBlocksPerHead()
    {
        var e = Assert.Throws<ArgumentException>(() => new KvCache(Config(headDim: 16), 64, KvType.Q8_0, KvType.F16));
        Assert.Contains("head_dim is 16", e.Message);
    }

    [Fact]
    public void PagesGrowWithTheSequenceAndFillToThePlannedBytes()
    {
        var c = Config();
        using var cache = new KvCache(c, 1000, KvType.F16, KvType.Q8_0);
        Assert.Equal(0, cache.AllocatedBytes);
        Fill(cache, 0, 1);
        long perPos = KvType.F16.RowBytes(128) + KvType.Q8_0.RowBytes(128);
        Assert.Equal(4 * 256 * perPos, cache.AllocatedBytes);
        Fill(cache, 1, 1000);
        // Rings of 512 slots in the three chunked layers, 1000 positions in the global one: the planner's figure.
        Assert.Equal((3 * 512 + 1000) * perPos, cache.AllocatedBytes);
        Assert.Equal(KvCachePlan.EngineBytes(c, 1000, 1, KvType.F16, KvType.Q8_0), cache.AllocatedBytes);
        Assert.Equal(cache.CapacityBytes, cache.AllocatedBytes);
    }

    [Fact]
    public void AddressesPositionsPast2To31OverKvDim()
    {
        // kv_dim 1024 (8 heads × 128): 2^31 floats are 2,097,152 positions, the old per-layer array limit.
        var c = Config(kvHeads: 8, headDim: 128, heads: 8);
        int beyond = (int)((1L << 31) / c.KvDim) + 12_345;
        using var cache = new KvCache(c, beyond + 1000, KvType.F32, KvType.F32);
        var k = Row(c.KvDim, 5);
        var v = Row(c.KvDim, 6);
        cache.Store(3, beyond, k, v, 1);
        var (k2, v2) = (new float[c.KvDim], new float[c.KvDim]);
        cache.Read(3, beyond, k2, v2);
        Assert.Equal(k, k2);
        Assert.Equal(v, v2);
        Assert.False(cache.IsAllocated(3, 0));
        Assert.True(cache.IsAllocated(3, beyond));
        Assert.Equal(2L * 4 * c.KvDim * 256, cache.AllocatedBytes); // only the one page was allocated
        Assert.True(cache.CapacityBytes > (1L << 31) * sizeof(float) * 2); // K and V of the global layer alone exceed 2^31 floats each
    }

    [Fact]
    public void SharedPrefixIsNotCopiedAndWritesCopyOnlyTheirPage()
    {
        var c = Config();
        using var a = new KvCache(c, 2048, KvType.F16, KvType.F16);
        Fill(a, 0, 1000);
        long family = a.FamilyBytes;
        Assert.Equal(a.AllocatedBytes, family);

        using var b = a.Fork();
        Assert.Equal(1000, b.Length);
        Assert.Equal(family, a.FamilyBytes); // nothing copied
        Assert.Equal(a.AllocatedBytes, b.AllocatedBytes);

        // b cuts back to 999 and writes another position 999: one page per layer is copied (slot 999 of the global
        // layer is in page 3, ring slot 999 mod 512 = 487 in page 1), a's row stays as it was.
        var (before, bv) = (new float[128], new float[128]);
        a.Read(3, 999, before, bv);
        b.TruncateTo(999);
        Fill(b, 999, 1000, seedBase: 555);
        long page = 256 * 2 * KvType.F16.RowBytes(128);
        Assert.Equal(family + 4 * page, a.FamilyBytes);
        var (after, av) = (new float[128], new float[128]);
        a.Read(3, 999, after, av);
        Assert.Equal(before, after);
        b.Read(3, 999, after, av);
        Assert.NotEqual(before, after);

        // ShareFrom swaps b's pages for a's: the copies are freed.
        b.ShareFrom(a);
        Assert.Equal(family, a.FamilyBytes);
        b.Dispose();
        Assert.Equal(family, a.FamilyBytes);
        a.Dispose();
        Assert.Equal(0, a.FamilyBytes);
    }

    [Fact]
    public void TruncateReleasesWholePagesOfGlobalLayers()
    {
        using var cache = new KvCache(Config(), 2048, KvType.F32, KvType.F32);
        Fill(cache, 0, 1500);
        long before = cache.AllocatedBytes;
        cache.TruncateTo(1024);
        long page = 256 * 2 * 4 * 128;
        // The global layer keeps pages 0..3 (positions < 1024) and drops 4..5; the rings keep their slots.
        Assert.Equal(before - 2 * page, cache.AllocatedBytes);
        Assert.False(cache.CanTruncateTo(600)); // the rings no longer hold chunk 1's start
        Assert.Throws<ObjectDisposedException>(() => { cache.Dispose(); cache.Store(0, 0, new float[128], new float[128], 1); });
    }
}
