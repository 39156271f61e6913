using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Scout.Tokenization;

/// <summary>
/// The BPE vocabulary as one contiguous byte blob with an open-addressing hash index, so a rank can be looked up
/// from any byte span without allocating. Rank = token id for the mergeable (non-special) tokens.
/// </summary>
internal sealed class TokenRankTable
{
    private readonly byte[] _blob;
    private readonly int[] _offsets; // _offsets[id].._offsets[id+1] is token id's bytes
    private readonly Slot[] _slots;  // Id = id + 1, 0 = empty; Head = first 8 bytes (zero-padded), so short tokens compare inline
    private readonly int _mask;
    private readonly int[] _byteRanks = new int[256];

    public int Count { get; }

    /// <summary>Builds the table from tokens indexed by rank. Throws <see cref="ArgumentException"/> on duplicates.</summary>
    public TokenRankTable(IReadOnlyList<byte[]> tokensByRank, string source)
    {
        Count = tokensByRank.Count;
        long total = 0;
        foreach (var t in tokensByRank) total += t.Length;
        _blob = new byte[total];
        _offsets = new int[Count + 1];
        int pos = 0;
        for (int i = 0; i < Count; i++)
        {
            var t = tokensByRank[i];
            if (t.Length == 0) throw new ArgumentException($"{source}: token with rank {i} is empty");
            t.CopyTo(_blob, pos);
            _offsets[i] = pos;
            pos += t.Length;
        }
        _offsets[Count] = pos;

        int size = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, Count * 2));
        _slots = new Slot[size];
        _mask = size - 1;
        for (int id = 0; id < Count; id++)
        {
            var bytes = TokenBytes(id);
            int slot = (int)(Hash(bytes) & (uint)_mask);
            while (_slots[slot].Id != 0)
            {
                if (TokenBytes(_slots[slot].Id - 1).SequenceEqual(bytes))
                    throw new ArgumentException($"{source}: token bytes {Convert.ToHexString(bytes)} appear twice (ranks {_slots[slot].Id - 1} and {id})");
                slot = (slot + 1) & _mask;
            }
            _slots[slot] = new Slot { Head = Head(bytes), Length = bytes.Length, Id = id + 1 };
        }

        for (int b = 0; b < 256; b++)
        {
            Span<byte> one = [(byte)b];
            _byteRanks[b] = Lookup(one);
            if (_byteRanks[b] < 0)
                throw new ArgumentException($"{source}: the single byte 0x{b:X2} has no rank (byte-level BPE needs all 256 bytes)");
        }
    }

    public ReadOnlySpan<byte> TokenBytes(int id) => _blob.AsSpan(_offsets[id], _offsets[id + 1] - _offsets[id]);

    public int ByteRank(byte b) => _byteRanks[b];

    /// <summary>The rank of exactly these bytes, or -1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Lookup(ReadOnlySpan<byte> bytes)
    {
        int slot = (int)(Hash(bytes) & (uint)_mask);
        ulong head = Head(bytes);
        int n = bytes.Length;
        while (true)
        {
            ref Slot e = ref _slots[slot];
            if (e.Id == 0) return -1;
            if (e.Head == head && e.Length == n)
            {
                int id = e.Id - 1;
                if (n <= 8) return id;
                if (_blob.AsSpan(_offsets[id] + 8, n - 8).SequenceEqual(bytes[8..])) return id;
            }
            slot = (slot + 1) & _mask;
        }
    }

    private struct Slot
    {
        public ulong Head;
        public int Length;
        public int Id;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Head(ReadOnlySpan<byte> s)
    {
        if (s.Length >= 8) return Unsafe.ReadUnaligned<ulong>(ref MemoryMarshal.GetReference(s));
        ulong h = 0;
        for (int k = 0; k < s.Length; k++) h |= (ulong)s[k] << (8 * k);
        return h;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Hash(ReadOnlySpan<byte> s)
    {
        ref byte p = ref MemoryMarshal.GetReference(s);
        int n = s.Length;
        ulong h = (ulong)n * 0x9E3779B97F4A7C15UL;
        int i = 0;
        for (; i + 8 <= n; i += 8)
            h = (h ^ Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, i))) * 0xBF58476D1CE4E5B9UL;
        if (i < n)
        {
            ulong tail = 0;
            for (int k = 0; i + k < n; k++) tail |= (ulong)Unsafe.Add(ref p, i + k) << (8 * k);
            h = (h ^ tail) * 0x94D049BB133111EBUL;
        }
        h ^= h >> 31;
        h *= 0xD6E8FEB86659FD93UL;
        return (uint)(h ^ (h >> 32));
    }
}
