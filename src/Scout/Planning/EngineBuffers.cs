using Scout.Backends;
using Scout.Model;

namespace Scout.Planning;

/// <summary>One activation buffer of a forward pass.</summary>
public sealed record BufferSize(string Name, string Phase, long Floats, long Bytes);

/// <summary>The engine's activation memory for one forward pass: every buffer, and the peak held at once.</summary>
public sealed record EngineBufferPlan(int Tokens, long Context, int LogitRows, int Threads, IReadOnlyList<BufferSize> Buffers, long PeakBytes);

/// <summary>
/// The activation memory of Scout's forward pass, read from the same layout the engine allocates
/// (<see cref="ForwardWorkspace.Layout"/>: one workspace sized for the largest batch, held for the model's life),
/// plus the caller's residual rows and logits and the attention score rows (rented from ArrayPool&lt;float&gt;.Shared
/// per running job, counted at the pool's bucket size). Kernel scratch rows (one dequantized or quantized activation
/// row per worker thread) are not included: at most threads × the widest row.
/// </summary>
public static class EngineBuffers
{
    /// <param name="tokens">tokens in one forward (a prefill piece, or 1 when decoding)</param>
    /// <param name="context">cache length the forward ends at (sizes the attention score rows)</param>
    /// <param name="logitRows">logit rows requested: 1 for LogitsMode.Last, <paramref name="tokens"/> for All</param>
    /// <param name="threads">worker threads (each attention job rents its own score row)</param>
    public static EngineBufferPlan ForForward(Llama4Config c, int tokens, long context, int logitRows = 1, int threads = 0)
    {
        if (tokens <= 0) throw new ArgumentException($"tokens per forward must be positive, got {tokens}");
        if (threads <= 0) threads = Environment.ProcessorCount;
        long n = tokens, d = c.HiddenSize;
        var list = new List<BufferSize>
        {
            new("h (residual stream, caller's)", "caller", n * d, n * d * sizeof(float)),
            new("logits (caller's)", "caller", (long)logitRows * c.VocabSize, (long)logitRows * c.VocabSize * sizeof(float)),
        };
        foreach (var b in ForwardWorkspace.Layout(c, tokens))
            if (b.BytesOn(device: false) > 0) list.Add(new BufferSize(b.Name, "workspace", b.Elements, b.Bytes));
        long longestRow = c.RopeLayers.All(r => r) ? Math.Min(context, c.AttentionChunkSize) : context;
        int group = c.NumHeads / Math.Max(1, c.NumKvHeads);
        long scores = threads * Pooled(group * longestRow);
        list.Add(new BufferSize($"scores ({threads} threads)", "attention", scores, scores * sizeof(float)));
        // Everything is held at once: the workspace lives as long as the model.
        long peak = list.Sum(b => b.Bytes);
        return new EngineBufferPlan(tokens, context, logitRows, threads, list, peak);
    }

    /// <summary>Length of the array ArrayPool&lt;float&gt;.Shared hands out for a request of <paramref name="floats"/>.</summary>
    public static long Pooled(long floats)
    {
        if (floats <= 0) return 0;
        if (floats > 1L << 30) return floats; // beyond the largest bucket the pool allocates exactly
        long size = 16;
        while (size < floats) size <<= 1;
        return size;
    }
}
