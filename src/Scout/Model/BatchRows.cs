namespace Scout.Model;

/// <summary>
/// Where each row of a multi-sequence batch belongs: its segment, and each segment's first row and position.
/// One instance lives in the model's workspace and is re-planned every forward without allocating.
/// </summary>
public sealed class BatchRows
{
    private IReadOnlyList<BatchSegment> _segments = [];
    private int[] _offset = [], _start = [], _segment = [];
    private int _rows;

    /// <summary>A plan with room for <paramref name="maxRows"/> rows (and as many segments).</summary>
    public BatchRows(int maxRows) => Reserve(maxRows);

    public IReadOnlyList<BatchSegment> Segments => _segments;
    /// <summary>First row of segment s.</summary>
    public ReadOnlySpan<int> Offset => _offset.AsSpan(0, _segments.Count);
    /// <summary>Position of that row (the segment's cache length before the step).</summary>
    public ReadOnlySpan<int> Start => _start.AsSpan(0, _segments.Count);
    /// <summary>Segment of row r.</summary>
    public ReadOnlySpan<int> Segment => _segment.AsSpan(0, _rows);
    public int Count => _rows;
    public int Capacity => _segment.Length;

    public int SegmentOf(int row) => _segment[row];
    public int OffsetOf(int segment) => _offset[segment];
    public int StartOf(int segment) => _start[segment];
    public int Position(int row) => _start[_segment[row]] + row - _offset[_segment[row]];

    /// <summary>Rows a list of segments needs (each is checked to have at least one).</summary>
    public static int RowsOf(IReadOnlyList<BatchSegment> segments)
    {
        if (segments.Count == 0) throw new ArgumentException("a forward pass needs at least one sequence");
        int n = 0;
        for (int s = 0; s < segments.Count; s++)
        {
            if (segments[s].Count <= 0) throw new ArgumentException($"sequence {s} of the batch has no tokens");
            n += segments[s].Count;
        }
        return n;
    }

    /// <summary>Grows the arrays to hold <paramref name="maxRows"/> rows (allocates only when that is more than before).</summary>
    public void Reserve(int maxRows)
    {
        if (maxRows <= _segment.Length) return;
        _offset = new int[maxRows];
        _start = new int[maxRows];
        _segment = new int[maxRows];
    }

    /// <summary>Lays the segments out row after row and checks each can take its rows.</summary>
    public void Plan(IReadOnlyList<BatchSegment> segments)
    {
        int total = RowsOf(segments);
        Reserve(total);
        for (int s = 0; s < segments.Count; s++)
        {
            var cache = segments[s].Cache;
            for (int p = 0; p < s; p++)
                if (ReferenceEquals(segments[p].Cache, cache))
                    throw new ArgumentException("the same KV cache appears twice in one batch");
            if (cache.Length + segments[s].Count > cache.MaxContext)
                throw new InvalidOperationException($"context is full: {cache.Length} + {segments[s].Count} tokens exceeds the context length {cache.MaxContext}");
        }
        int n = 0;
        for (int s = 0; s < segments.Count; s++)
        {
            _offset[s] = n;
            _start[s] = segments[s].Cache.Length;
            _segment.AsSpan(n, segments[s].Count).Fill(s);
            n += segments[s].Count;
        }
        _segments = segments;
        _rows = n;
    }
}
