using Scout.Model;

namespace Scout.Planning;

/// <summary>The element encodings a <see cref="KvCache"/> can store.</summary>
public enum KvKind { F32, F16, BF16, Q8_0, Q4_0 }

/// <summary>Element type of a KV cache, with ggml's exact block sizes for the quantized ones.</summary>
public sealed record KvType(string Name, int BlockElements, int BlockBytes, KvKind Kind)
{
    public static readonly KvType F32 = new("f32", 1, 4, KvKind.F32);
    public static readonly KvType BF16 = new("bf16", 1, 2, KvKind.BF16);
    public static readonly KvType F16 = new("f16", 1, 2, KvKind.F16);
    public static readonly KvType Q8_0 = new("q8_0", 32, 34, KvKind.Q8_0);
    public static readonly KvType Q4_0 = new("q4_0", 32, 18, KvKind.Q4_0);
    public static IReadOnlyList<KvType> All { get; } = [F32, BF16, F16, Q8_0, Q4_0];

    /// <summary>The engine's default K/V type (llama.cpp's default too): half the memory of f32, logits within the bound the tests state.</summary>
    public static KvType Default => F16;

    public static KvType Parse(string name)
        => All.FirstOrDefault(k => string.Equals(k.Name, name.Trim(), StringComparison.OrdinalIgnoreCase))
           ?? throw new ArgumentException($"unknown KV cache type '{name}' (known: {string.Join(", ", All.Select(k => k.Name))})");

    /// <summary>Bytes of one cached row of <paramref name="width"/> values (ggml quantizes along the whole K/V row).</summary>
    public long RowBytes(long width)
    {
        if (width % BlockElements != 0)
            throw new ArgumentException($"a KV row of {width} values is not a whole number of {Name} blocks ({BlockElements})");
        return width / BlockElements * BlockBytes;
    }
}

/// <summary>KV-cache bytes for one context length, chunk-aware and naive.</summary>
public sealed record KvCacheSize(
    long Context, int Sequences, string Type, int ChunkedLayers, int GlobalLayers, long TokensPerChunkedLayer,
    long BytesPerTokenPerLayer, long ChunkedBytes, long GlobalBytes, long NaiveBytes)
{
    /// <summary>Chunked layers hold min(context, chunk) tokens, global (NoPE) layers the whole context.</summary>
    public long Bytes => ChunkedBytes + GlobalBytes;
}

/// <summary>
/// KV-cache sizing. Llama 4's RoPE layers use chunked attention: a query only sees keys of its own
/// attention_chunk_size chunk, so those layers never need more than one chunk of keys per sequence. Only the NoPE
/// layers (every 4th) attend globally and need the whole context.
/// </summary>
public static class KvCachePlan
{
    public static KvCacheSize Size(Llama4Config c, long context, KvType type, int sequences = 1)
    {
        if (context <= 0) throw new ArgumentException($"context must be positive, got {context}");
        if (sequences <= 0) throw new ArgumentException($"parallel sequences must be positive, got {sequences}");
        int global = c.RopeLayers.Count(r => !r);
        int chunked = c.NumLayers - global;
        long perTokenLayer = 2 * type.RowBytes(c.KvDim); // K and V
        long chunkTokens = Math.Min(context, c.AttentionChunkSize);
        long chunkedBytes = checked(sequences * chunked * chunkTokens * perTokenLayer);
        long globalBytes = checked(sequences * global * context * perTokenLayer);
        long naive = checked(sequences * (long)c.NumLayers * context * perTokenLayer);
        return new KvCacheSize(context, sequences, type.Name, chunked, global, chunkTokens, perTokenLayer, chunkedBytes, globalBytes, naive);
    }

    /// <summary>
    /// Bytes Scout's engine allocates for a full cache of <paramref name="context"/> positions per sequence with
    /// K stored as <paramref name="keyType"/> and V as <paramref name="valueType"/> (f32 when not given), a ring of
    /// attention_chunk_size slots in RoPE layers when the context is longer than a chunk (the sum of the pages of a
    /// full <see cref="KvCache"/>, <see cref="KvCache.CapacityBytes"/>).
    /// </summary>
    public static long EngineBytes(Llama4Config c, long context, int sequences = 1, KvType? keyType = null, KvType? valueType = null)
    {
        var (k, v) = (keyType ?? KvType.F32, valueType ?? KvType.F32);
        long half = Size(c, context, k, sequences).Bytes / 2 + Size(c, context, v, sequences).Bytes / 2;
        return half;
    }

    /// <summary>
    /// The largest context whose chunk-aware KV fits in <paramref name="budget"/> bytes (0 when not even one token
    /// fits), capped at <paramref name="cap"/>.
    /// </summary>
    public static long MaxContext(Llama4Config c, long budget, KvType type, int sequences, long cap)
    {
        if (budget <= 0 || cap <= 0) return 0;
        int global = c.RopeLayers.Count(r => !r);
        long perTokenAll = (long)sequences * c.NumLayers * 2 * type.RowBytes(c.KvDim);
        long perTokenGlobal = (long)sequences * global * 2 * type.RowBytes(c.KvDim);
        long chunk = c.AttentionChunkSize;
        // Up to one chunk, every layer grows with the context.
        long withinChunk = budget / perTokenAll;
        if (withinChunk < chunk) return Math.Min(withinChunk, cap);
        if (perTokenGlobal == 0) return cap; // no global layer: the cache stops growing after one chunk
        long rest = budget - chunk * perTokenAll;
        return Math.Min(chunk + rest / perTokenGlobal, cap);
    }
}
