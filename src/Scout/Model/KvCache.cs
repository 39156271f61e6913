namespace Scout.Model;

/// <summary>
/// Keys and values of one sequence. Global (NoPE) layers keep every position; chunked (RoPE) layers only ever look
/// back within the current attention chunk, so they keep a ring of <c>attention_chunk_size</c> slots and long
/// contexts cost memory only in the global layers.
/// </summary>
public sealed class KvCache
{
    internal sealed class LayerCache(bool ring, int capacity, int rowFloats)
    {
        public readonly bool Ring = ring;
        public readonly int Capacity = capacity;
        public readonly int RowFloats = rowFloats;
        public float[] K = [];
        public float[] V = [];

        public int Slot(int pos) => Ring ? pos % Capacity : pos;

        public void EnsureSlots(int slots)
        {
            slots = Math.Min(slots, Capacity);
            if (K.Length >= (long)slots * RowFloats) return;
            long grow = Math.Max((long)slots, Math.Min(Capacity, Math.Max(256, 2L * K.Length / RowFloats)));
            Array.Resize(ref K, checked((int)(grow * RowFloats)));
            Array.Resize(ref V, checked((int)(grow * RowFloats)));
        }
    }

    internal readonly LayerCache[] Layers;
    private readonly Llama4Config _config;

    /// <summary>Number of positions already in the cache (the next token's position).</summary>
    public int Length { get; internal set; }
    public int MaxContext { get; }
    public int ChunkSize { get; }

    public KvCache(Llama4Config config, int maxContext)
    {
        if (maxContext <= 0) throw new ArgumentException($"context length must be positive, got {maxContext}");
        MaxContext = maxContext;
        _config = config;
        ChunkSize = config.AttentionChunkSize;
        Layers = new LayerCache[config.NumLayers];
        for (int i = 0; i < Layers.Length; i++)
        {
            bool ring = config.UsesRope(i) && config.AttentionChunkSize < maxContext;
            Layers[i] = new LayerCache(ring, ring ? config.AttentionChunkSize : maxContext, config.KvDim);
        }
    }

    /// <summary>Bytes of K and V currently allocated.</summary>
    public long AllocatedBytes => Layers.Sum(l => (long)(l.K.Length + l.V.Length) * sizeof(float));

    /// <summary>Bytes the cache holds once it is full (max context).</summary>
    public long CapacityBytes => Layers.Sum(l => 2L * l.Capacity * l.RowFloats * sizeof(float));

    public void Clear() => Length = 0;

    /// <summary>Makes this cache a copy of <paramref name="source"/> (same model and context); copies only the slots in use.</summary>
    public void CopyFrom(KvCache source)
    {
        if (source.Layers.Length != Layers.Length || source.MaxContext != MaxContext || source.ChunkSize != ChunkSize)
            throw new ArgumentException("cannot copy a KV cache between different models or context lengths");
        for (int i = 0; i < Layers.Length; i++)
        {
            var (from, to) = (source.Layers[i], Layers[i]);
            int slots = Math.Min(source.Length, from.Capacity);
            to.EnsureSlots(slots);
            int floats = slots * from.RowFloats;
            from.K.AsSpan(0, floats).CopyTo(to.K);
            from.V.AsSpan(0, floats).CopyTo(to.V);
        }
        Length = source.Length;
    }

    /// <summary>A copy of this cache holding the same positions.</summary>
    public KvCache Clone()
    {
        var copy = new KvCache(_config, MaxContext);
        copy.CopyFrom(this);
        return copy;
    }

    /// <summary>
    /// The longest length ≤ <paramref name="length"/> this cache can be cut back to (see <see cref="CanTruncateTo"/>).
    /// The start of the chunk holding <paramref name="length"/> always qualifies, so at most one chunk is lost.
    /// </summary>
    public int UsablePrefix(int length)
    {
        length = Math.Clamp(length, 0, Length);
        if (CanTruncateTo(length)) return length;
        int boundary = AttentionMath.ChunkStart(length, ChunkSize);
        return CanTruncateTo(boundary) ? boundary : 0;
    }

    /// <summary>Whether the cache can be cut back to <paramref name="length"/> positions and still serve the next query.</summary>
    public bool CanTruncateTo(int length)
    {
        if (length < 0 || length > Length) return false;
        foreach (var l in Layers)
        {
            if (!l.Ring) continue;
            // Next query at `length` needs keys [chunkStart(length), length); the ring holds [Length - Capacity, Length).
            int needFrom = AttentionMath.ChunkStart(length, l.Capacity);
            if (needFrom < length && needFrom < Length - l.Capacity) return false;
        }
        return true;
    }

    public void TruncateTo(int length)
    {
        if (!CanTruncateTo(length))
            throw new InvalidOperationException($"cannot cut the cache back from {Length} to {length} positions: the chunked layers no longer hold that chunk");
        Length = length;
    }
}
