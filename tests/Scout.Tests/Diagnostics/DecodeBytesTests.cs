using Scout.Diagnostics;
using Scout.Model;
using Scout.Planning;

namespace Scout.Tests.Diagnostics;

/// <summary>The byte arithmetic behind `scout bench`'s bandwidth bound at depth (numbers, not timings).</summary>
public class DecodeBytesTests
{
    // 4 layers: RoPE (chunked), RoPE, NoPE (global), RoPE; chunk of 64 positions; 2 KV heads of 128 (kv_dim 256).
    private static Llama4Config Config() => new()
    {
        VocabSize = 16, HiddenSize = 64, IntermediateSize = 64, IntermediateSizeMlp = 64,
        NumLayers = 4, NumHeads = 4, NumKvHeads = 2, HeadDim = 128,
        MoeLayers = [false, false, false, false], RopeLayers = [true, true, false, true], AttentionChunkSize = 64,
    };

    [Theory]
    // f16 K and V: 256 × 2 bytes each, 1024 bytes per position and layer.
    [InlineData("f16", "f16", 1, 4 * 1 * 1024L)]            // the first token: one key everywhere
    [InlineData("f16", "f16", 64, 4 * 64 * 1024L)]          // a full chunk: every layer sees 64
    [InlineData("f16", "f16", 65, (3 * 1 + 65) * 1024L)]    // position 64 starts a new chunk: the RoPE layers see 1, the global one 65
    [InlineData("f16", "f16", 100, (3 * 36 + 100) * 1024L)] // position 99: chunk [64, 99], 36 keys
    // q8_0 K (8 blocks of 34 bytes = 272) with f32 V (1024): 1296 bytes per position and layer.
    [InlineData("q8_0", "f32", 100, (3 * 36 + 100) * 1296L)]
    // q4_0 K and V: 8 blocks of 18 bytes = 144 each.
    [InlineData("q4_0", "q4_0", 4096, (3 * 64 + 4096) * 288L)]
    public void KvBytesCountTheKeysEachLayerSees(string k, string v, long context, long expected)
    {
        Assert.Equal(expected, ModelBenchmark.KvBytesPerToken(Config(), context, KvType.Parse(k), KvType.Parse(v)));
    }

    [Fact]
    public void KvBytesAtEmptyContextAreZero() => Assert.Equal(0, ModelBenchmark.KvBytesPerToken(Config(), 0, KvType.F16, KvType.F16));

    [Fact]
    public void KvBytesOfALongContextUse64BitArithmetic()
    {
        // 10M positions of the global layer alone exceed 2^31 bytes (10M × 1024).
        long context = 10_000_000;
        long position = context - 1, inChunk = position % 64 + 1;
        Assert.Equal((3 * inChunk + context) * 1024L, ModelBenchmark.KvBytesPerToken(Config(), context, KvType.F16, KvType.F16));
    }

    [Fact]
    public void BoundDividesBandwidthByWeightPlusKvBytes()
    {
        // 14 GB/s over 100 MB of weights and 40 MB of K/V: 100 tokens/s.
        Assert.Equal(100.0, ModelBenchmark.BoundTokensPerSecond(14e9, 100_000_000, 40_000_000), 9);
        // Without K/V (depth 0) the weights alone set it.
        Assert.Equal(140.0, ModelBenchmark.BoundTokensPerSecond(14e9, 100_000_000, 0), 9);
        Assert.Throws<ArgumentException>(() => ModelBenchmark.BoundTokensPerSecond(14e9, 0, 0));
    }
}
