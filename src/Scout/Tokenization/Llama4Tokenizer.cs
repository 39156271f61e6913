using System.Buffers;
using System.Runtime.CompilerServices;
using System.Text;

namespace Scout.Tokenization;

/// <summary>
/// Llama 4's tokenizer: tiktoken-style byte-level BPE (200,000 ranks) with the o200k pre-tokenizer regex and
/// 2,048 special tokens, encoding exactly like Meta's <c>llama4/tokenizer.py</c> on top of tiktoken.
/// Thread-safe: encoding keeps its scratch buffers and piece cache per thread.
/// </summary>
public sealed partial class Llama4Tokenizer : ITokenizer
{
    /// <summary>Meta's pre-tokenizer pattern (the o200k pattern), verbatim.</summary>
    public const string Llama4Pattern =
        @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Meta cuts the input into slices of this many code points before encoding.</summary>
    public const int MaxEncodeChars = 400_000;
    /// <summary>Meta also cuts inside runs of whitespace or non-whitespace code points longer than this.</summary>
    public const int MaxNoWhitespaceChars = 25_000;

    private const int LongPieceBytes = 128;      // above this the merge loop switches to a heap (O(n log n))
    private const int CacheMaxPieceChars = 64;
    private const int CacheMaxEntries = 1 << 16;

    private readonly TokenRankTable _ranks;
    private readonly PreTokenizer _pre;
    private readonly Dictionary<string, int> _specialIds;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _specialLookup;
    private readonly string?[] _specialById;      // index id - NumBaseTokens
    private readonly byte[]?[] _specialBytes;
    private readonly SearchValues<char> _specialFirstChars;
    private readonly Dictionary<char, string[]> _specialsByFirstChar;
    private readonly ThreadLocal<Scratch> _scratch;
    private readonly HashSet<int> _stopIds;

    /// <summary>Number of mergeable (BPE) tokens; their ids are their ranks 0..NumBaseTokens-1.</summary>
    public int NumBaseTokens => _ranks.Count;
    public int VocabSize { get; }
    public string Pattern => _pre.Pattern;
    public int? BosId { get; }
    public int? EosId { get; }
    public int? EotId { get; }
    public int? EomId { get; }
    public int? PadId { get; }
    public IReadOnlySet<int> StopIds => _stopIds;
    /// <summary>Special tokens by text.</summary>
    public IReadOnlyDictionary<string, int> SpecialTokens => _specialIds;

    /// <summary>Builds a tokenizer from tokens indexed by rank, the special tokens (ids ≥ the rank count) and the pre-tokenizer pattern.</summary>
    public Llama4Tokenizer(IReadOnlyList<byte[]> tokensByRank, IReadOnlyDictionary<string, int> specialTokens,
                           string pattern = Llama4Pattern, string source = "tokenizer")
    {
        _ranks = new TokenRankTable(tokensByRank, source);
        _pre = new PreTokenizer(pattern);
        _specialIds = new Dictionary<string, int>(StringComparer.Ordinal);
        int maxId = _ranks.Count - 1;
        foreach (var (text, id) in specialTokens)
        {
            if (text.Length == 0) throw new ArgumentException($"{source}: a special token has empty text (id {id})");
            if (id < _ranks.Count)
                throw new ArgumentException($"{source}: special token {text} has id {id}, inside the {_ranks.Count} BPE ranks");
            _specialIds.Add(text, id);
            maxId = Math.Max(maxId, id);
        }
        VocabSize = maxId + 1;
        _specialById = new string?[VocabSize - _ranks.Count];
        _specialBytes = new byte[]?[_specialById.Length];
        foreach (var (text, id) in _specialIds)
        {
            if (_specialById[id - _ranks.Count] is { } other)
                throw new ArgumentException($"{source}: special tokens {other} and {text} share id {id}");
            _specialById[id - _ranks.Count] = text;
            _specialBytes[id - _ranks.Count] = Encoding.UTF8.GetBytes(text);
        }
        _specialLookup = _specialIds.GetAlternateLookup<ReadOnlySpan<char>>();
        _specialsByFirstChar = _specialIds.Keys.GroupBy(k => k[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(k => k.Length).ThenBy(k => k, StringComparer.Ordinal).ToArray());
        _specialFirstChars = SearchValues.Create(_specialsByFirstChar.Keys.ToArray());
        _scratch = new ThreadLocal<Scratch>(() => new Scratch());

        BosId = SpecialTokenId("<|begin_of_text|>");
        EosId = SpecialTokenId("<|end_of_text|>");
        EotId = SpecialTokenId("<|eot|>");
        EomId = SpecialTokenId("<|eom|>");
        PadId = SpecialTokenId("<|finetune_right_pad|>");
        _stopIds = new HashSet<int>(new[] { EosId, EomId, EotId }.Where(i => i.HasValue).Select(i => i!.Value));
    }

    public bool IsSpecial(int id) => id >= _ranks.Count && id < VocabSize && _specialById[id - _ranks.Count] != null;

    public int? SpecialTokenId(string text) => _specialIds.TryGetValue(text, out int id) ? id : null;

    /// <summary>The text of a special token id, or null.</summary>
    public string? SpecialTokenText(int id) => IsSpecial(id) ? _specialById[id - _ranks.Count] : null;

    /// <summary>The raw bytes of one token (a special token's UTF-8 text).</summary>
    public ReadOnlySpan<byte> TokenBytes(int id)
    {
        if ((uint)id < (uint)_ranks.Count) return _ranks.TokenBytes(id);
        if (IsSpecial(id)) return _specialBytes[id - _ranks.Count];
        throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is not in the vocabulary (0..{VocabSize - 1}{(VocabSize > _ranks.Count ? ", specials from " + _ranks.Count : "")})");
    }

    /// <summary>The rank (id) of a byte string if it is exactly one BPE token, else null.</summary>
    public int? Rank(ReadOnlySpan<byte> bytes) { int r = _ranks.Lookup(bytes); return r < 0 ? null : r; }

    // ---------------------------------------------------------------- encoding

    /// <summary>Meta's <c>encode(text, bos=False, eos=False)</c>; with <paramref name="allowSpecial"/> all special tokens are recognised.</summary>
    public int[] Encode(string text, bool allowSpecial = false) => Encode(text, false, false, allowSpecial ? SpecialFilter.All : SpecialFilter.None);

    /// <summary>Meta's <c>encode(text, bos, eos, allowed_special="all" or set())</c>.</summary>
    public int[] Encode(string text, bool bos, bool eos, bool allowSpecial = false)
        => Encode(text, bos, eos, allowSpecial ? SpecialFilter.All : SpecialFilter.None);

    /// <summary>Meta's <c>encode</c> with an explicit set of allowed special tokens; the others are plain text.</summary>
    public int[] Encode(string text, IEnumerable<string> allowedSpecial, bool bos = false, bool eos = false)
        => Encode(text, bos, eos, SpecialFilter.Of(allowedSpecial));

    /// <summary>
    /// One plain tiktoken call on the whole text, without Meta's slicing of very long inputs (the two differ only when
    /// a run of more than 25,000 whitespace or non-whitespace code points, or a 400,000-code-point cut, splits a pre-token).
    /// </summary>
    public int[] EncodeUnsliced(string text, bool allowSpecial = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var output = new List<int>(text.Length / 3 + 4);
        EncodeTiktoken(text, allowSpecial ? SpecialFilter.All : SpecialFilter.None, output);
        return output.ToArray();
    }

    /// <summary>Appends the ids of <paramref name="text"/> (Meta's slicing, no bos/eos) to <paramref name="output"/>.</summary>
    public void EncodeTo(ReadOnlySpan<char> text, List<int> output, bool allowSpecial = false)
        => EncodeSliced(text, allowSpecial ? SpecialFilter.All : SpecialFilter.None, output);

    /// <summary>
    /// The same ids as <see cref="Encode(string, bool)"/>, computed on several threads. The text is first cut into Meta's
    /// 400,000-code-point slices (as the serial encoder does); each slice is then split only after a '\n' that is followed by a
    /// letter or digit. No pre-token can span such a point (no regex branch matches a newline followed by a letter or digit;
    /// the pattern has no look-behind, and its only look-ahead, <c>\s+(?!\S)</c>, is never reached for a whitespace run ending
    /// in '\n' because <c>\s*[\r\n]+</c> comes first), no special token contains a newline, and a whitespace/non-whitespace run
    /// boundary lies there, so Meta's 25,000-character run cuts fall in the same places.
    /// </summary>
    public int[] EncodeParallel(string text, bool allowSpecial = false, int chunkChars = 1 << 16, int maxDegreeOfParallelism = -1)
    {
        ArgumentNullException.ThrowIfNull(text);
        var filter = allowSpecial ? SpecialFilter.All : SpecialFilter.None;
        var chunks = new List<(int Start, int Length)>();
        for (int pos = 0; pos < text.Length;)
        {
            int end = AdvanceCodePoints(text, pos, MaxEncodeChars);
            int chunkStart = pos;
            while (end - chunkStart > chunkChars)
            {
                int cut = text.AsSpan(chunkStart + chunkChars, end - chunkStart - chunkChars).IndexOf('\n');
                while (cut >= 0)
                {
                    int p = chunkStart + chunkChars + cut + 1;
                    if (p >= end) { cut = -1; break; }
                    if (char.IsLetterOrDigit(text[p])) break;
                    int next = text.AsSpan(p, end - p).IndexOf('\n');
                    cut = next < 0 ? -1 : p + next - (chunkStart + chunkChars);
                }
                if (cut < 0) break;
                int at = chunkStart + chunkChars + cut + 1;
                chunks.Add((chunkStart, at - chunkStart));
                chunkStart = at;
            }
            chunks.Add((chunkStart, end - chunkStart));
            pos = end;
        }
        var results = new int[chunks.Count][];
        Parallel.For(0, chunks.Count, new ParallelOptions { MaxDegreeOfParallelism = maxDegreeOfParallelism }, i =>
        {
            var output = new List<int>(chunks[i].Length / 3 + 4);
            EncodeSliced(text.AsSpan(chunks[i].Start, chunks[i].Length), filter, output);
            results[i] = output.ToArray();
        });
        var all = new int[results.Sum(r => r.Length)];
        int o = 0;
        foreach (var r in results) { r.CopyTo(all, o); o += r.Length; }
        return all;
    }

    /// <summary>The pre-token pieces of <paramref name="text"/> (regex split only, code-point semantics), for inspection and tests.</summary>
    public IReadOnlyList<string> PreTokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var sink = new PieceCollector(new List<string>());
        _pre.Split(text, ref sink);
        return sink.Pieces;
    }

    private readonly struct PieceCollector(List<string> pieces) : IPieceSink
    {
        public List<string> Pieces => pieces;
        public void Piece(ReadOnlySpan<char> piece) => pieces.Add(piece.ToString());
    }

    private int[] Encode(string text, bool bos, bool eos, SpecialFilter filter)
    {
        ArgumentNullException.ThrowIfNull(text);
        var output = new List<int>(text.Length / 3 + 4);
        if (bos) output.Add(BosId ?? throw new InvalidOperationException("this tokenizer has no <|begin_of_text|> token"));
        EncodeSliced(text, filter, output);
        if (eos) output.Add(EosId ?? throw new InvalidOperationException("this tokenizer has no <|end_of_text|> token"));
        return output.ToArray();
    }

    private void EncodeSliced(ReadOnlySpan<char> text, SpecialFilter filter, List<int> output)
    {
        // Meta: slices of 400,000 code points, each cut again inside whitespace/non-whitespace runs > 25,000.
        int pos = 0;
        while (pos < text.Length)
        {
            int end = AdvanceCodePoints(text, pos, MaxEncodeChars);
            var slice = text[pos..end];
            int sliceStart = 0, runLength = 0;
            bool runIsSpace = IsPythonSpace(slice, 0);
            for (int i = 0; i < slice.Length; i++)
            {
                bool isSpace = IsPythonSpace(slice, i);
                if (runIsSpace != isSpace)
                {
                    runLength = 1;
                    runIsSpace = isSpace;
                }
                else if (++runLength > MaxNoWhitespaceChars)
                {
                    EncodeTiktoken(slice[sliceStart..i], filter, output);
                    sliceStart = i;
                    runLength = 1;
                }
                if (char.IsHighSurrogate(slice[i]) && i + 1 < slice.Length && char.IsLowSurrogate(slice[i + 1])) i++;
            }
            EncodeTiktoken(slice[sliceStart..], filter, output);
            pos = end;
        }
    }

    private static int AdvanceCodePoints(ReadOnlySpan<char> text, int pos, int count)
    {
        if (text.Length - pos <= count) return text.Length;
        int i = pos;
        for (int k = 0; k < count && i < text.Length; k++)
            i += char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
        return i;
    }

    /// <summary>Python's <c>str.isspace()</c>: White_Space plus U+001C..U+001F (bidi class B/S). Nothing outside the BMP.</summary>
    private static bool IsPythonSpace(ReadOnlySpan<char> s, int i)
    {
        if (i >= s.Length) return false;
        char c = s[i];
        return char.IsWhiteSpace(c) || c is >= '\u001C' and <= '\u001F';
    }

    /// <summary>tiktoken's <c>encode</c>: allowed special tokens split the text; the rest is pre-tokenized and merged.</summary>
    private void EncodeTiktoken(ReadOnlySpan<char> text, SpecialFilter filter, List<int> output)
    {
        var scratch = _scratch.Value!;
        if (filter.IsNone || _specialIds.Count == 0)
        {
            EncodeOrdinary(text, output, scratch);
            return;
        }
        int start = 0, findFrom = 0;
        while (true)
        {
            int found = -1, foundLength = 0, foundId = 0;
            int at = findFrom;
            while (at < text.Length)
            {
                int k = text[at..].IndexOfAny(_specialFirstChars);
                if (k < 0) break;
                at += k;
                foreach (var candidate in _specialsByFirstChar[text[at]])
                {
                    if (text[at..].StartsWith(candidate, StringComparison.Ordinal))
                    {
                        found = at; foundLength = candidate.Length; foundId = _specialIds[candidate];
                        break;
                    }
                }
                if (found >= 0) break;
                at++;
            }
            if (found < 0) break;
            if (!filter.Allows(text.Slice(found, foundLength)))
            {
                findFrom = found + 1; // tiktoken: a special that is not allowed is ordinary text; look further
                continue;
            }
            EncodeOrdinary(text[start..found], output, scratch);
            output.Add(foundId);
            start = findFrom = found + foundLength;
        }
        EncodeOrdinary(text[start..], output, scratch);
    }

    private void EncodeOrdinary(ReadOnlySpan<char> text, List<int> output, Scratch scratch)
    {
        if (text.IsEmpty) return;
        var sink = new PieceEncoder(this, output, scratch);
        _pre.Split(text, ref sink);
    }

    private struct PieceEncoder(Llama4Tokenizer tokenizer, List<int> output, Scratch scratch) : IPieceSink
    {
        public void Piece(ReadOnlySpan<char> piece) => tokenizer.EncodePiece(piece, output, scratch);
    }

    private void EncodePiece(ReadOnlySpan<char> piece, List<int> output, Scratch scratch)
    {
        int maxBytes = piece.Length * 3;
        if (scratch.Bytes.Length < maxBytes) scratch.Bytes = new byte[Math.Max(maxBytes, scratch.Bytes.Length * 2)];
        int n = Encoding.UTF8.GetBytes(piece, scratch.Bytes); // a lone surrogate becomes U+FFFD, as tiktoken's Python layer does
        var bytes = scratch.Bytes.AsSpan(0, n);

        int whole = _ranks.Lookup(bytes);
        if (whole >= 0)
        {
            output.Add(whole);
            return;
        }
        bool cacheable = piece.Length <= CacheMaxPieceChars;
        if (cacheable && scratch.CacheLookup.TryGetValue(piece, out var cached))
        {
            output.AddRange(cached);
            return;
        }
        int before = output.Count;
        if (n <= LongPieceBytes) MergeSmall(bytes, output, scratch);
        else MergeLarge(bytes, output);
        if (cacheable)
        {
            if (scratch.Cache.Count >= CacheMaxEntries) scratch.Cache.Clear();
            scratch.Cache[piece.ToString()] = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(output)[before..].ToArray();
        }
    }

    /// <summary>tiktoken's merge loop: repeatedly merge the adjacent pair whose concatenation has the lowest rank (leftmost on ties).</summary>
    private void MergeSmall(ReadOnlySpan<byte> piece, List<int> output, Scratch scratch)
    {
        int n = piece.Length;
        Span<int> start = scratch.Starts.AsSpan(0, n + 1);
        Span<int> rank = scratch.PairRanks.AsSpan(0, n + 1);
        for (int i = 0; i <= n; i++) start[i] = i;
        int minRank = int.MaxValue, minIndex = -1;
        for (int i = 0; i < n - 1; i++)
        {
            int r = _ranks.Lookup(piece.Slice(i, 2));
            rank[i] = r < 0 ? int.MaxValue : r;
            if (rank[i] < minRank) { minRank = rank[i]; minIndex = i; }
        }
        rank[n - 1] = rank[n] = int.MaxValue;
        int count = n + 1; // parts, including the end sentinel
        while (minRank != int.MaxValue)
        {
            int i = minIndex;
            // remove part i+1, then refresh the ranks of the pairs (i-1, i) and (i, i+1)
            start.Slice(i + 2, count - i - 2).CopyTo(start.Slice(i + 1));
            rank.Slice(i + 2, count - i - 2).CopyTo(rank.Slice(i + 1));
            count--;
            if (i > 0) rank[i - 1] = PairRank(piece, start, count, i - 1);
            rank[i] = PairRank(piece, start, count, i);
            minRank = int.MaxValue;
            for (int k = 0; k < count - 1; k++)
                if (rank[k] < minRank) { minRank = rank[k]; minIndex = k; }
        }
        for (int k = 0; k < count - 1; k++)
            output.Add(_ranks.Lookup(piece[start[k]..start[k + 1]]));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int PairRank(ReadOnlySpan<byte> piece, Span<int> start, int count, int i)
    {
        if (i + 2 >= count) return int.MaxValue;
        int r = _ranks.Lookup(piece[start[i]..start[i + 2]]);
        return r < 0 ? int.MaxValue : r;
    }

    /// <summary>The same merge order as <see cref="MergeSmall"/> with a heap keyed by (rank, position), for long pieces.</summary>
    private void MergeLarge(ReadOnlySpan<byte> piece, List<int> output)
    {
        int n = piece.Length;
        int[] work = ArrayPool<int>.Shared.Rent(3 * n);
        long[] heapArray = ArrayPool<long>.Shared.Rent(3 * n);
        try
        {
            // Parts are identified by their start byte; next[i] = start of the following part (n at the end), -1 once merged away.
            Span<int> next = work.AsSpan(0, n), prev = work.AsSpan(n, n), rank = work.AsSpan(2 * n, n);
            Span<long> heap = heapArray;
            int heapCount = 0;
            for (int i = 0; i < n; i++) { next[i] = i + 1; prev[i] = i - 1; }
            for (int i = 0; i < n; i++)
            {
                rank[i] = LinkedPairRank(piece, next, i);
                if (rank[i] != int.MaxValue) HeapPush(heap, ref heapCount, ((long)rank[i] << 32) | (uint)i);
            }
            while (heapCount > 0)
            {
                long key = HeapPop(heap, ref heapCount);
                int i = (int)(key & 0xFFFFFFFF);
                if (next[i] < 0 || rank[i] != (int)(key >> 32)) continue; // stale entry
                int j = next[i];
                next[i] = next[j];
                next[j] = -1;
                if (next[i] < n) prev[next[i]] = i;
                rank[i] = LinkedPairRank(piece, next, i);
                if (rank[i] != int.MaxValue) HeapPush(heap, ref heapCount, ((long)rank[i] << 32) | (uint)i);
                int p = prev[i];
                if (p >= 0)
                {
                    rank[p] = LinkedPairRank(piece, next, p);
                    if (rank[p] != int.MaxValue) HeapPush(heap, ref heapCount, ((long)rank[p] << 32) | (uint)p);
                }
            }
            for (int i = 0; i < n; i = next[i])
                output.Add(_ranks.Lookup(piece[i..next[i]]));
        }
        finally
        {
            ArrayPool<int>.Shared.Return(work);
            ArrayPool<long>.Shared.Return(heapArray);
        }
    }

    private int LinkedPairRank(ReadOnlySpan<byte> piece, Span<int> next, int i)
    {
        int j = next[i];
        if (j >= piece.Length) return int.MaxValue;
        int r = _ranks.Lookup(piece[i..next[j]]);
        return r < 0 ? int.MaxValue : r;
    }

    private static void HeapPush(Span<long> heap, ref int count, long key)
    {
        int k = count++;
        while (k > 0)
        {
            int parent = (k - 1) >> 1;
            if (heap[parent] <= key) break;
            heap[k] = heap[parent];
            k = parent;
        }
        heap[k] = key;
    }

    private static long HeapPop(Span<long> heap, ref int count)
    {
        long top = heap[0];
        long last = heap[--count];
        int k = 0;
        while (true)
        {
            int child = 2 * k + 1;
            if (child >= count) break;
            if (child + 1 < count && heap[child + 1] < heap[child]) child++;
            if (heap[child] >= last) break;
            heap[k] = heap[child];
            k = child;
        }
        if (count > 0) heap[k] = last;
        return top;
    }

    private sealed class Scratch
    {
        public byte[] Bytes = new byte[256];
        public readonly int[] Starts = new int[LongPieceBytes + 2];
        public readonly int[] PairRanks = new int[LongPieceBytes + 2];
        public readonly Dictionary<string, int[]> Cache;
        public readonly Dictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> CacheLookup;

        public Scratch()
        {
            Cache = new Dictionary<string, int[]>(StringComparer.Ordinal);
            CacheLookup = Cache.GetAlternateLookup<ReadOnlySpan<char>>();
        }
    }

    private sealed class SpecialFilter
    {
        public static readonly SpecialFilter None = new(false, null);
        public static readonly SpecialFilter All = new(true, null);
        private readonly bool _all;
        private readonly HashSet<string>? _set;
        private readonly HashSet<string>.AlternateLookup<ReadOnlySpan<char>> _lookup;

        private SpecialFilter(bool all, HashSet<string>? set)
        {
            _all = all;
            _set = set;
            if (set != null) _lookup = set.GetAlternateLookup<ReadOnlySpan<char>>();
        }

        public static SpecialFilter Of(IEnumerable<string> allowed)
        {
            var set = new HashSet<string>(allowed, StringComparer.Ordinal);
            return set.Count == 0 ? None : new SpecialFilter(false, set);
        }

        public bool IsNone => !_all && _set == null;
        public bool Allows(ReadOnlySpan<char> token) => _all || (_set != null && _lookup.Contains(token));
    }

    // ---------------------------------------------------------------- decoding

    public byte[] DecodeBytes(ReadOnlySpan<int> ids)
    {
        var buffer = new ArrayBufferWriter<byte>(ids.Length * 4 + 16);
        foreach (int id in ids) buffer.Write(TokenBytes(id));
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>UTF-8 text of the ids; each maximal invalid byte subsequence becomes one U+FFFD (as Python's errors="replace").</summary>
    public string Decode(ReadOnlySpan<int> ids) => Encoding.UTF8.GetString(DecodeBytes(ids));

    /// <summary>A streaming decoder: feed ids, get text that never ends inside a UTF-8 character.</summary>
    public IncrementalDecoder CreateIncrementalDecoder() => new(this);
}

/// <summary>
/// Streams text from token ids: bytes of an incomplete (so far valid) UTF-8 sequence are held back until completed;
/// invalid bytes become U+FFFD as soon as they are known to be invalid; <see cref="Flush"/> emits what is left.
/// </summary>
public sealed class IncrementalDecoder
{
    private readonly Llama4Tokenizer _tokenizer;
    private readonly Decoder _decoder = new UTF8Encoding(false, false).GetDecoder();
    private char[] _chars = new char[64];

    internal IncrementalDecoder(Llama4Tokenizer tokenizer) => _tokenizer = tokenizer;

    /// <summary>Adds one token; returns the text that became complete (possibly empty).</summary>
    public string Add(int id) => Feed(_tokenizer.TokenBytes(id), flush: false);

    /// <summary>Adds several tokens; returns the text that became complete.</summary>
    public string Add(ReadOnlySpan<int> ids)
    {
        var sb = new StringBuilder();
        foreach (int id in ids) sb.Append(Add(id));
        return sb.ToString();
    }

    /// <summary>Ends the stream: a held incomplete sequence becomes U+FFFD. The decoder can then be reused.</summary>
    public string Flush() => Feed([], flush: true);

    private string Feed(ReadOnlySpan<byte> bytes, bool flush)
    {
        int need = _decoder.GetCharCount(bytes, flush: false) + 4;
        if (_chars.Length < need) _chars = new char[Math.Max(need, _chars.Length * 2)];
        int n = _decoder.GetChars(bytes, _chars, flush);
        return n == 0 ? "" : new string(_chars, 0, n);
    }
}
