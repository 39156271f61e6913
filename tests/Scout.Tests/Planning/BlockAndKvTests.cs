using System.Buffers;
using Scout.Model;
using Scout.Planning;

namespace Scout.Tests.Planning;

public class BlockSizeTests
{
    [Theory]
    [InlineData("Q4_0", 32, 18)]
    [InlineData("Q8_0", 32, 34)]
    [InlineData("Q5_0", 32, 22)]
    [InlineData("Q5_1", 32, 24)]
    [InlineData("IQ4_NL", 32, 18)]
    [InlineData("Q2_K", 256, 84)]
    [InlineData("Q3_K", 256, 110)]
    [InlineData("Q4_K", 256, 144)]
    [InlineData("Q5_K", 256, 176)]
    [InlineData("Q6_K", 256, 210)]
    [InlineData("INT4-g128", 128, 66)]
    [InlineData("BF16", 1, 2)]
    [InlineData("F32", 1, 4)]
    public void BlocksAreLlamaCppSized(string name, int elements, int bytes)
    {
        var all = new[]
        {
            StorageType.Q4_0, StorageType.Q8_0, StorageType.Q5_0, StorageType.Q5_1, StorageType.IQ4_NL, StorageType.Q2_K, StorageType.Q3_K,
            StorageType.Q4_K, StorageType.Q5_K, StorageType.Q6_K, StorageType.Int4G128, StorageType.BF16, StorageType.F32,
        };
        var t = all.Single(s => s.Name == name);
        Assert.Equal(elements, t.BlockElements);
        Assert.Equal(bytes, t.BlockBytes);
        // A 5120-wide row of 8192 rows, the shape of one Scout expert's gate matrix.
        Assert.Equal(8192L * (5120 / elements) * bytes, t.Bytes(5120, 8192));
    }

    [Fact]
    public void Fp8RowWiseAddsOneFloatScalePerRow()
        => Assert.Equal(8192L * (5120 + 4), StorageType.Fp8RowWise.Bytes(5120, 8192));

    [Fact]
    public void PartialBlocksAreRejected()
    {
        var e = Assert.Throws<InvalidDataException>(() => StorageType.Q4_K.Bytes(80, 4));
        Assert.Contains("80", e.Message);
    }

    [Fact]
    public void KvTypesUseGgmlBlocks()
    {
        Assert.Equal(1024 / 32 * 34, KvType.Q8_0.RowBytes(1024));
        Assert.Equal(1024 / 32 * 18, KvType.Q4_0.RowBytes(1024));
        Assert.Equal(2048, KvType.BF16.RowBytes(1024));
        Assert.Equal(4096, KvType.F32.RowBytes(1024));
        Assert.Throws<ArgumentException>(() => KvType.Q8_0.RowBytes(40));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(15)]
    [InlineData(17)]
    [InlineData(2_621_440)]
    [InlineData(524_288)]
    [InlineData(202_048)]
    public void PooledSizesAreWhatArrayPoolHandsOut(int floats)
    {
        var rented = ArrayPool<float>.Shared.Rent(floats);
        try { Assert.Equal(rented.Length, EngineBuffers.Pooled(floats)); }
        finally { ArrayPool<float>.Shared.Return(rented); }
    }
}

public class KvCachePlanTests
{
    private const double GiB = 1L << 30;
    private static Llama4Config Scout => ModelPresets.Scout.Text;

    [Theory]
    // context, chunk-aware GiB, naive GiB (bf16): 36 chunked layers × min(ctx, 8192) + 12 global layers × ctx, 4096 bytes per token per layer.
    [InlineData(1024, 0.1875, 0.1875)]
    [InlineData(8192, 1.5, 1.5)]
    [InlineData(131072, 7.125, 24)]
    [InlineData(1048576, 49.125, 192)]
    [InlineData(10485760, 481.125, 1920)]
    public void ScoutBf16IsChunkAware(long context, double chunkAwareGiB, double naiveGiB)
    {
        var kv = KvCachePlan.Size(Scout, context, KvType.BF16);
        Assert.Equal(chunkAwareGiB, kv.Bytes / GiB);
        Assert.Equal(naiveGiB, kv.NaiveBytes / GiB);
        Assert.Equal(36, kv.ChunkedLayers);
        Assert.Equal(12, kv.GlobalLayers);
    }

    [Fact]
    public void QuantizedKvAndParallelSequencesScale()
    {
        var bf16 = KvCachePlan.Size(Scout, 1 << 20, KvType.BF16);
        var q8 = KvCachePlan.Size(Scout, 1 << 20, KvType.Q8_0);
        var q4 = KvCachePlan.Size(Scout, 1 << 20, KvType.Q4_0, sequences: 4);
        Assert.Equal(bf16.Bytes * 34 / 64, q8.Bytes);       // 34 bytes per 32 values vs 64
        Assert.Equal(4 * bf16.Bytes * 18 / 64, q4.Bytes);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(1000)]
    [InlineData(8192)]
    [InlineData(8193)]
    [InlineData(200_000)]
    public void EngineFigureIsKvCacheCapacity(int context)
    {
        foreach (var c in new[] { Scout, ModelPresets.Maverick.Text })
            foreach (var k in KvType.All)
                foreach (var v in KvType.All)
                {
                    using var cache = new KvCache(c, context, k, v);
                    Assert.Equal(cache.CapacityBytes, KvCachePlan.EngineBytes(c, context, 1, k, v));
                }
    }

    [Theory]
    [InlineData(100)]
    [InlineData(8192)]
    [InlineData(50_000)]
    [InlineData(1 << 20)]
    public void MaxContextInvertsTheSize(long context)
    {
        long bytes = KvCachePlan.Size(Scout, context, KvType.BF16, 2).Bytes;
        Assert.Equal(context, KvCachePlan.MaxContext(Scout, bytes, KvType.BF16, 2, long.MaxValue));
        Assert.Equal(context - 1, KvCachePlan.MaxContext(Scout, bytes - 1, KvType.BF16, 2, long.MaxValue));
        Assert.Equal(Math.Min(context, 1000), KvCachePlan.MaxContext(Scout, bytes, KvType.BF16, 2, 1000));
    }

    [Theory]
    [InlineData("1024", 1024)]
    [InlineData("8k", 8192)]
    [InlineData("128K", 131072)]
    [InlineData("1M", 1048576)]
    [InlineData("10M", 10485760)]
    [InlineData("1,048,576", 1048576)]
    [InlineData("1.5k", 1536)]
    public void ContextsParse(string text, long tokens) => Assert.Equal(tokens, SizeParsing.ParseContext(text));

    [Theory]
    [InlineData("-5", "positive")]
    [InlineData("0", "positive")]
    [InlineData("abc", "not a number")]
    [InlineData("5G", "absurd")]
    [InlineData("99999999999", "absurd")]
    [InlineData("0.001k", "whole number")]
    public void BadContextsAreRejected(string text, string reason)
        => Assert.Contains(reason, Assert.Throws<ArgumentException>(() => SizeParsing.ParseContext(text)).Message);

    [Theory]
    [InlineData("80GiB", 80L << 30)]
    [InlineData("24 GiB", 24L << 30)]
    [InlineData("192GB", 192_000_000_000L)]
    [InlineData("81559MiB", 81559L << 20)]
    public void MemoryParses(string text, long bytes) => Assert.Equal(bytes, SizeParsing.ParseMemory(text));

    [Theory]
    [InlineData("80", "unit")]
    [InlineData("80 parsecs", "unknown unit")]
    [InlineData("-1GiB", "positive")]
    public void BadMemoryIsRejected(string text, string reason)
        => Assert.Contains(reason, Assert.Throws<ArgumentException>(() => SizeParsing.ParseMemory(text)).Message);
}
