using System.Runtime.InteropServices;
using Scout.Kernels.Attention;
using Scout.Planning;

namespace Scout.Model;

/// <summary>
/// Keys and values of one sequence, as a type whose storage the model never sees (in the spirit of gpt-fast's
/// <c>KVCache.update</c> and llama.cpp's <c>llama-memory.h</c>): the model hands rows in with <see cref="Store"/>
/// and the attention kernels read them back through <see cref="KvLayer"/>.
///
/// Storage: native memory in pages of <see cref="PagePositions"/> positions (K rows then V rows of one page in one
/// block), each row encoded in <see cref="KeyType"/> / <see cref="ValueType"/> (f32, f16, bf16, q8_0, q4_0). A
/// sequence grows page by page without copying; positions are addressed with 64-bit arithmetic, so no layer is
/// limited to 2^31 elements. Global (NoPE) layers keep every position; chunked (RoPE) layers only ever look back
/// within the current attention chunk, so they keep a ring of <c>attention_chunk_size</c> slots.
///
/// Sequence operations: <see cref="TruncateTo"/> (llama.cpp's seq_rm of a tail), <see cref="Reset"/> (empty, keeping
/// the pages it owns alone), <see cref="Fork"/> /
/// <see cref="ShareFrom"/> (seq_cp: the pages are shared by reference and copied only when one side writes into a
/// shared page), <see cref="Dispose"/> (frees this cache's references; a page is freed when no cache holds it).
/// </summary>
public sealed class KvCache : IDisposable
{
    /// <summary>Positions per page unless the constructor is told otherwise.</summary>
    public const int DefaultPagePositions = 256;

    internal readonly KvLayer[] Layers;
    private readonly Llama4Config _config;
    private readonly KvMemory _memory;
    private bool _disposed;

    private int _length;
    /// <summary>The longest the cache has been since it was last emptied: ring slots of positions before
    /// HighWater − chunk may have been overwritten even after a truncation.</summary>
    private int _highWater;

    /// <summary>Number of positions already in the cache (the next token's position).</summary>
    public int Length
    {
        get => _length;
        internal set
        {
            _length = value;
            _highWater = Math.Max(_highWater, value);
        }
    }
    public int MaxContext { get; }
    public int ChunkSize { get; }

    /// <summary>Changes whenever the stored rows are replaced other than by storing new positions (<see cref="Clear"/>,
    /// <see cref="ShareFrom"/>): a device copy of the cache (the GPU backend's) is valid only for the version it copied.</summary>
    public long ContentVersion { get; private set; }

    public bool IsDisposed => _disposed;
    public KvType KeyType { get; }
    public KvType ValueType { get; }
    public int PagePositions { get; }

    public KvCache(Llama4Config config, int maxContext, KvType? keyType = null, KvType? valueType = null, int pagePositions = DefaultPagePositions)
        : this(config, maxContext, keyType ?? KvType.F32, valueType ?? KvType.F32, pagePositions, new KvMemory())
    {
    }

    private KvCache(Llama4Config config, int maxContext, KvType keyType, KvType valueType, int pagePositions, KvMemory memory)
    {
        if (maxContext <= 0) throw new ArgumentException($"context length must be positive, got {maxContext}");
        if (pagePositions <= 0) throw new ArgumentException($"KV page size must be positive, got {pagePositions}");
        CheckType(config, keyType, "K");
        CheckType(config, valueType, "V");
        MaxContext = maxContext;
        _config = config;
        _memory = memory;
        KeyType = keyType;
        ValueType = valueType;
        PagePositions = pagePositions;
        ChunkSize = config.AttentionChunkSize;
        Layers = new KvLayer[config.NumLayers];
        int kRow = checked((int)keyType.RowBytes(config.KvDim)), vRow = checked((int)valueType.RowBytes(config.KvDim));
        for (int i = 0; i < Layers.Length; i++)
        {
            bool ring = config.UsesRope(i) && config.AttentionChunkSize < maxContext;
            Layers[i] = new KvLayer(ring, ring ? config.AttentionChunkSize : maxContext, pagePositions, keyType, valueType,
                kRow, vRow, config.HeadDim, memory);
        }
    }

    private static void CheckType(Llama4Config c, KvType type, string which)
    {
        if (c.HeadDim % type.BlockElements != 0)
            throw new ArgumentException(
                $"{which} cache type {type.Name} stores blocks of {type.BlockElements} values, but head_dim is {c.HeadDim}: " +
                "each head's slice of a row must be whole blocks (use f32, f16 or bf16 for this model)");
    }

    /// <summary>Bytes of K and V pages this cache references (pages shared with another cache are counted in both).</summary>
    public long AllocatedBytes
    {
        get
        {
            long sum = 0;
            foreach (var l in Layers) sum += l.AllocatedBytes;
            return sum;
        }
    }

    /// <summary>Bytes of pages alive in this cache's family (the caches forked from one another), each page counted once.</summary>
    public long FamilyBytes => _memory.LiveBytes;

    /// <summary>Bytes the cache holds once it is full (max context).</summary>
    public long CapacityBytes
    {
        get
        {
            long sum = 0;
            foreach (var l in Layers) sum += l.Capacity * (long)(l.KeyRowBytes + l.ValueRowBytes);
            return sum;
        }
    }

    /// <summary>Empties the cache (its pages are released).</summary>
    public void Clear()
    {
        ThrowIfDisposed();
        foreach (var l in Layers) l.ReleaseAll();
        _length = _highWater = 0;
        ContentVersion++;
    }

    /// <summary>
    /// Empties the cache but keeps the pages it owns alone, so the next sequence writes into memory already mapped
    /// (llama-bench allocates its K/V once; a fresh cache's pages are zeroed by the OS on first touch). Pages shared
    /// with another cache (<see cref="Fork"/>, <see cref="ShareFrom"/>) are released instead: the other holders keep
    /// them as they are, and this cache gets new pages when it writes there. The kept rows are stale but never read:
    /// every position a query attends to is stored again first.
    /// </summary>
    public void Reset()
    {
        ThrowIfDisposed();
        foreach (var l in Layers) l.ReleaseShared();
        _length = _highWater = 0;
        ContentVersion++;
    }

    /// <summary>
    /// Allocates (and touches) the pages that will hold positions [0, <paramref name="positions"/>) in every layer,
    /// so that storing them later maps no memory (as llama.cpp, which allocates and clears its K/V buffer up front).
    /// Pages already held, shared or not, are left as they are; the rows' content is unchanged.
    /// </summary>
    public void Reserve(int positions)
    {
        ThrowIfDisposed();
        if (positions < 0 || positions > MaxContext)
            throw new ArgumentOutOfRangeException(nameof(positions), $"{positions} positions are outside the context of {MaxContext}");
        foreach (var l in Layers) l.Reserve(Math.Min(positions, l.Capacity));
    }

    /// <summary>
    /// Makes this cache hold what <paramref name="source"/> holds by sharing its pages (no copy; a page is copied
    /// only when one of the two writes into it). Both must be for the same model, context and K/V types.
    /// </summary>
    public void ShareFrom(KvCache source)
    {
        ThrowIfDisposed();
        source.ThrowIfDisposed();
        if (ReferenceEquals(source, this)) return;
        if (!CanShareWith(source))
            throw new ArgumentException("cannot share a KV cache between different models, context lengths or K/V types");
        for (int i = 0; i < Layers.Length; i++) Layers[i].ShareFrom(source.Layers[i]);
        ContentVersion++;
        _length = source._length;
        _highWater = source._highWater;
    }

    /// <summary>Whether <see cref="ShareFrom"/> accepts <paramref name="other"/>: same model shape, context, K/V types and page size.</summary>
    public bool CanShareWith(KvCache other)
        => other.Layers.Length == Layers.Length && other.MaxContext == MaxContext && other.ChunkSize == ChunkSize
           && other._config.KvDim == _config.KvDim && other.KeyType == KeyType && other.ValueType == ValueType
           && other.PagePositions == PagePositions && !other._disposed;

    /// <summary>A new cache holding the same positions, sharing this one's pages copy-on-write.</summary>
    public KvCache Fork()
    {
        ThrowIfDisposed();
        var copy = new KvCache(_config, MaxContext, KeyType, ValueType, PagePositions, _memory);
        copy.ShareFrom(this);
        return copy;
    }

    /// <summary>A fresh, empty cache of the same shape and types.</summary>
    public KvCache CreateSibling() => new(_config, MaxContext, KeyType, ValueType, PagePositions, _memory);

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
            // Next query at `length` needs keys [chunkStart(length), length); the ring still holds positions from
            // HighWater - Capacity on (a truncation does not bring back slots that later positions overwrote).
            long needFrom = length / l.Capacity * l.Capacity;
            if (needFrom < length && needFrom < _highWater - l.Capacity) return false;
        }
        return true;
    }

    /// <summary>Cuts the cache back to its first <paramref name="length"/> positions; whole pages past them are released.</summary>
    public void TruncateTo(int length)
    {
        ThrowIfDisposed();
        if (!CanTruncateTo(length))
            throw new InvalidOperationException($"cannot cut the cache back from {Length} to {length} positions: the chunked layers no longer hold that chunk");
        _length = length;
        foreach (var l in Layers)
            if (!l.Ring) l.ReleaseFrom(length);
    }

    /// <summary>
    /// Writes the keys and values of positions [<paramref name="position"/>, position + count) of one layer
    /// (rows of kv_dim floats), encoded in the cache's types. Does not change <see cref="Length"/>: the forward pass
    /// advances it once every layer holds the new positions.
    /// </summary>
    public void Store(int layer, long position, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, int count)
    {
        ThrowIfDisposed();
        int kvDim = _config.KvDim;
        if (keys.Length < (long)count * kvDim || values.Length < (long)count * kvDim)
            throw new ArgumentException($"{count} rows of {kvDim} values do not fit in the {keys.Length}/{values.Length} given");
        if (position < 0 || position + count > MaxContext)
            throw new ArgumentOutOfRangeException(nameof(position), $"positions [{position}, {position + count}) are outside the context of {MaxContext}");
        var l = Layers[layer];
        // A ring keeps only its last Capacity positions: earlier rows of a longer batch would be overwritten anyway.
        int first = l.Ring ? (int)Math.Max(0, count - l.Capacity) : 0;
        for (int t = first; t < count; t++)
            l.Write(position + t, keys.Slice(t * kvDim, kvDim), values.Slice(t * kvDim, kvDim));
    }

    /// <summary>Decodes the key and value rows of one stored position (tests and tools; the kernels read in place).</summary>
    public void Read(int layer, long position, Span<float> key, Span<float> value) => Layers[layer].Read(position, key, value);

    /// <summary>Whether a page holds the given position of the layer (pages are allocated when first written).</summary>
    public bool IsAllocated(int layer, long position) => Layers[layer].IsAllocated(position);

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>Releases this cache's pages (pages shared with other caches stay alive for them).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        foreach (var l in Layers) l.ReleaseAll();
        _length = _highWater = 0;
        _disposed = true;
    }
}

/// <summary>Counts the bytes of live pages of one family of caches (a cache and those forked from it).</summary>
internal sealed class KvMemory
{
    private long _live;
    public long LiveBytes => Interlocked.Read(ref _live);
    public void Add(long bytes) => Interlocked.Add(ref _live, bytes);
}

/// <summary>
/// One block of native memory holding <see cref="Rows"/> positions: their K rows, then their V rows (each head-major,
/// see <see cref="KvLayer.KeyHead"/>). Shared between
/// caches by reference count; freed when the last reference is released, or by the finalizer when every cache that
/// held it was dropped without being disposed.
/// </summary>
internal sealed unsafe class KvPage
{
    public readonly byte* Data;
    public readonly long Bytes;
    public readonly int Rows;
    private readonly KvMemory _memory;
    private int _refs = 1;
    private int _freed;

    public KvPage(int rows, int kRowBytes, int vRowBytes, KvMemory memory)
    {
        Rows = rows;
        Bytes = (long)rows * (kRowBytes + vRowBytes);
        Data = (byte*)NativeMemory.AlignedAlloc((nuint)Bytes, 64);
        _memory = memory;
        memory.Add(Bytes);
        GC.AddMemoryPressure(Bytes);
    }

    public bool Shared => Volatile.Read(ref _refs) > 1;
    public void AddRef() => Interlocked.Increment(ref _refs);

    public void Release()
    {
        if (Interlocked.Decrement(ref _refs) == 0)
        {
            Free();
            GC.SuppressFinalize(this);
        }
    }

    private void Free()
    {
        if (Interlocked.Exchange(ref _freed, 1) != 0) return;
        NativeMemory.AlignedFree(Data);
        _memory.Add(-Bytes);
        GC.RemoveMemoryPressure(Bytes);
    }

    ~KvPage() => Free();
}

/// <summary>
/// One layer of a <see cref="KvCache"/>: a page table over its slots (slot = position, or position mod chunk in a
/// ring). The attention kernels read rows in place through <see cref="KeyHead"/> / <see cref="ValueHead"/>.
/// </summary>
internal sealed unsafe class KvLayer
{
    public readonly bool Ring;
    /// <summary>Slots: the context length, or the chunk size for a ring.</summary>
    public readonly long Capacity;
    public readonly int PagePositions;
    public readonly KvType KeyType, ValueType;
    public readonly int KeyRowBytes, ValueRowBytes;
    /// <summary>Bytes of one head's slice of a K / V row.</summary>
    public readonly int KeyHeadBytes, ValueHeadBytes;
    public readonly int HeadDim, KvHeads;
    private readonly KvPage?[] _pages;
    private readonly KvMemory _memory;
    private volatile bool _nonFiniteHalves;

    public KvLayer(bool ring, long capacity, int pagePositions, KvType keyType, KvType valueType, int kRowBytes, int vRowBytes, int headDim, KvMemory memory)
    {
        Ring = ring;
        Capacity = capacity;
        PagePositions = pagePositions;
        KeyType = keyType;
        ValueType = valueType;
        KeyRowBytes = kRowBytes;
        ValueRowBytes = vRowBytes;
        HeadDim = headDim;
        KeyHeadBytes = checked((int)keyType.RowBytes(headDim));
        ValueHeadBytes = checked((int)valueType.RowBytes(headDim));
        KvHeads = kRowBytes / KeyHeadBytes;
        _memory = memory;
        _pages = new KvPage?[checked((int)((capacity + pagePositions - 1) / pagePositions))];
    }

    /// <summary>
    /// Whether an f16 row written here (or in a page shared from another cache) holds an infinity or NaN. The
    /// kernels' fast half decoding assumes finite values and falls back to the exact decoding when this is set.
    /// </summary>
    public bool MayHoldNonFiniteHalves => _nonFiniteHalves;

    public long Slot(long pos) => Ring ? pos % Capacity : pos;

    public long AllocatedBytes
    {
        get
        {
            long sum = 0;
            foreach (var p in _pages) if (p is not null) sum += p.Bytes;
            return sum;
        }
    }

    private int RowsOfPage(int page) => (int)Math.Min(PagePositions, Capacity - (long)page * PagePositions);

    public bool IsAllocated(long pos) => _pages[Slot(pos) / PagePositions] is not null;

    // Page layout, head-major: K of head 0 for the page's rows, K of head 1, …, then V the same way. One head's rows
    // are contiguous, so a kernel walking one KV head's keys reads memory in order.

    /// <summary>The stored K slice of one head at <paramref name="pos"/> (its page must exist).</summary>
    public byte* KeyHead(long pos, int head)
    {
        long slot = Slot(pos);
        var page = _pages[slot / PagePositions]!;
        return page.Data + ((long)head * page.Rows + slot % PagePositions) * KeyHeadBytes;
    }

    /// <summary>The stored V slice of one head at <paramref name="pos"/> (its page must exist).</summary>
    public byte* ValueHead(long pos, int head)
    {
        long slot = Slot(pos);
        var page = _pages[slot / PagePositions]!;
        return page.Data + (long)page.Rows * KeyRowBytes + ((long)head * page.Rows + slot % PagePositions) * ValueHeadBytes;
    }

    /// <summary>
    /// Pointers to one head's K and V slices of positions [pos, pos + count), walking the page table once: one
    /// division per call, not one per row.
    /// </summary>
    public void RowPointers(long pos, int count, byte** keys, byte** values, int head)
    {
        long slot = Slot(pos);
        int page = (int)(slot / PagePositions), row = (int)(slot % PagePositions);
        int i = 0;
        while (i < count)
        {
            var pg = _pages[page]!;
            byte* kb = pg.Data + (long)head * pg.Rows * KeyHeadBytes;
            byte* vb = pg.Data + (long)pg.Rows * KeyRowBytes + (long)head * pg.Rows * ValueHeadBytes;
            for (; i < count && row < pg.Rows; i++, row++)
            {
                keys[i] = kb + (long)row * KeyHeadBytes;
                values[i] = vb + (long)row * ValueHeadBytes;
            }
            row = 0;
            if (++page == _pages.Length) page = 0; // a ring wraps to its first slot (a full context ends here)
        }
    }

    public void Write(long pos, ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        long slot = Slot(pos);
        int index = (int)(slot / PagePositions);
        var page = _pages[index];
        if (page is null) _pages[index] = new KvPage(RowsOfPage(index), KeyRowBytes, ValueRowBytes, _memory);
        else if (page.Shared)
        {
            // Copy on write: this cache gets its own copy of the page; the other holders keep the original.
            var own = new KvPage(page.Rows, KeyRowBytes, ValueRowBytes, _memory);
            Buffer.MemoryCopy(page.Data, own.Data, own.Bytes, page.Bytes);
            page.Release();
            _pages[index] = own;
        }
        bool nonFinite = false;
        for (int h = 0; h < KvHeads; h++)
        {
            byte* k = KeyHead(pos, h), v = ValueHead(pos, h);
            KvRowCodec.Encode(KeyType, key.Slice(h * HeadDim, HeadDim), k);
            KvRowCodec.Encode(ValueType, value.Slice(h * HeadDim, HeadDim), v);
            if (KeyType.Kind == KvKind.F16) nonFinite |= KvRowCodec.HasNonFiniteHalf((ushort*)k, HeadDim);
            if (ValueType.Kind == KvKind.F16) nonFinite |= KvRowCodec.HasNonFiniteHalf((ushort*)v, HeadDim);
        }
        if (nonFinite) _nonFiniteHalves = true;
    }

    public void Read(long pos, Span<float> key, Span<float> value)
    {
        if (!IsAllocated(pos)) throw new InvalidOperationException($"position {pos} was never stored");
        for (int h = 0; h < KvHeads; h++)
        {
            KvRowCodec.Decode(KeyType, KeyHead(pos, h), key.Slice(h * HeadDim, HeadDim));
            KvRowCodec.Decode(ValueType, ValueHead(pos, h), value.Slice(h * HeadDim, HeadDim));
        }
    }

    public void ShareFrom(KvLayer source)
    {
        if (source._nonFiniteHalves) _nonFiniteHalves = true;
        for (int i = 0; i < _pages.Length; i++)
        {
            var p = source._pages[i];
            if (ReferenceEquals(p, _pages[i])) continue;
            p?.AddRef();
            _pages[i]?.Release();
            _pages[i] = p;
        }
    }

    /// <summary>Releases the pages that hold only positions ≥ <paramref name="length"/> (not for rings).</summary>
    public void ReleaseFrom(long length)
    {
        for (long i = (length + PagePositions - 1) / PagePositions; i < _pages.Length; i++)
        {
            _pages[i]?.Release();
            _pages[i] = null;
        }
    }

    /// <summary>Drops the references to pages another cache also holds (a reset: this layer's own pages stay).</summary>
    public void ReleaseShared()
    {
        _nonFiniteHalves = false;
        for (int i = 0; i < _pages.Length; i++)
        {
            if (_pages[i] is not { Shared: true } p) continue;
            p.Release();
            _pages[i] = null;
        }
    }

    /// <summary>Allocates the missing pages holding slots [0, <paramref name="slots"/>) and zeroes them (touching their memory).</summary>
    public void Reserve(long slots)
    {
        for (int i = 0; (long)i * PagePositions < slots; i++)
        {
            if (_pages[i] is not null) continue;
            var page = new KvPage(RowsOfPage(i), KeyRowBytes, ValueRowBytes, _memory);
            NativeMemory.Clear(page.Data, (nuint)page.Bytes);
            _pages[i] = page;
        }
    }

    public void ReleaseAll()
    {
        _nonFiniteHalves = false;
        for (int i = 0; i < _pages.Length; i++)
        {
            _pages[i]?.Release();
            _pages[i] = null;
        }
    }
}
