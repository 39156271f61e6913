using Scout.Model;

namespace Scout.Generation;

/// <summary>
/// KV caches of earlier sequences, kept so a new prompt that starts the same way (a shared system prompt, or the
/// next turn of a conversation) skips recomputing that prefix. Chunked-attention layers keep only the current
/// chunk, so a cache can be cut back only as far as <see cref="KvCache.UsablePrefix"/> allows; the reuse is then
/// exact, not approximate. Least-recently-used entries are dropped beyond the byte budget.
/// </summary>
public sealed class PrefixCache(long budgetBytes, int maxEntries = 16)
{
    private sealed record Entry(int[] Tokens, KvCache Cache)
    {
        public long LastUse;
    }

    private readonly List<Entry> _entries = new();
    private readonly object _lock = new();
    private long _clock;

    public long BudgetBytes { get; } = budgetBytes;
    public int Count { get { lock (_lock) return _entries.Count; } }
    /// <summary>Bytes of the kept caches' pages (read by the scheduler every step: a plain loop, no enumerator).</summary>
    public long Bytes
    {
        get
        {
            lock (_lock)
            {
                long sum = 0;
                foreach (var e in _entries) sum += e.Cache.AllocatedBytes;
                return sum;
            }
        }
    }
    public long Hits { get; private set; }
    public long ReusedTokens { get; private set; }

    /// <summary>
    /// Fills <paramref name="target"/> with the longest reusable prefix of <paramref name="prompt"/> (at most
    /// prompt.Length - 1 tokens: the last prompt token must run to give logits) and returns those tokens.
    /// </summary>
    public List<int> Restore(ReadOnlySpan<int> prompt, KvCache target)
    {
        lock (_lock)
        {
            Entry? best = null;
            int bestLength = 0;
            foreach (var e in _entries)
            {
                if (!target.CanShareWith(e.Cache)) continue;
                int common = CommonPrefix(e.Tokens, prompt);
                int usable = e.Cache.UsablePrefix(Math.Min(common, prompt.Length - 1));
                if (usable > bestLength) { best = e; bestLength = usable; }
            }
            target.Clear();
            if (best is null) return new List<int>();
            best.LastUse = ++_clock;
            target.ShareFrom(best.Cache); // pages shared by reference, copied only where the target writes
            target.TruncateTo(bestLength);
            Hits++;
            ReusedTokens += bestLength;
            return new List<int>(prompt[..bestLength].ToArray());
        }
    }

    /// <summary>
    /// Keeps <paramref name="cache"/> (which holds <paramref name="tokens"/>); the caller gives it up (a cache that is
    /// not kept, or is later evicted, is disposed here).
    /// </summary>
    public void Add(IReadOnlyList<int> tokens, KvCache cache)
    {
        if (tokens.Count == 0 || BudgetBytes <= 0 || cache.AllocatedBytes > BudgetBytes)
        {
            cache.Dispose();
            return;
        }
        var key = tokens.ToArray();
        lock (_lock)
        {
            // An entry whose tokens are a prefix of the new one is superseded, if the new cache can still be cut back to it.
            foreach (var e in _entries.Where(e => e.Tokens.Length <= key.Length && CommonPrefix(e.Tokens, key) == e.Tokens.Length
                                                  && cache.UsablePrefix(e.Tokens.Length) == e.Tokens.Length && !ReferenceEquals(e.Cache, cache)).ToList())
            {
                _entries.Remove(e);
                e.Cache.Dispose();
            }
            _entries.Add(new Entry(key, cache) { LastUse = ++_clock });
            while (_entries.Count > maxEntries || (_entries.Count > 1 && _entries.Sum(e => e.Cache.AllocatedBytes) > BudgetBytes))
            {
                var drop = _entries.MinBy(e => e.LastUse)!;
                _entries.Remove(drop);
                drop.Cache.Dispose();
            }
        }
    }

    public void Clear()
    {
        lock (_lock)
        {
            foreach (var e in _entries) e.Cache.Dispose();
            _entries.Clear();
        }
    }

    internal static int CommonPrefix(ReadOnlySpan<int> a, ReadOnlySpan<int> b) => a.CommonPrefixLength(b);
}
