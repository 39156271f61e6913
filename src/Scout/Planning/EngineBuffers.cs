using Scout.Model;

namespace Scout.Planning;

/// <summary>One activation buffer of a forward pass.</summary>
public sealed record BufferSize(string Name, string Phase, long Floats, long Bytes);

/// <summary>The engine's activation memory for one forward pass: every buffer, and the peak held at once.</summary>
public sealed record EngineBufferPlan(int Tokens, long Context, int LogitRows, int Threads, IReadOnlyList<BufferSize> Buffers, long PeakBytes);

/// <summary>
/// The activation buffers Scout's forward pass allocates, computed from the same sizes the code uses. This is the
/// one place that mirrors <see cref="Llama4Model"/> (Forward, ForwardEmbeddings, Attention, AttendAll, FeedForward,
/// MixtureOfExperts) and Ops.SwiGlu; when those change, change this too (the planner tests compare against them).
/// Buffers rented from ArrayPool&lt;float&gt;.Shared are counted at the pool's bucket size (the next power of two,
/// at least 16, up to 2^30 floats), since that is what is really allocated. Kernel scratch rows (one dequantized
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
        bool anyMoe = c.MoeLayers.Any(m => m), anyDense = c.MoeLayers.Any(m => !m);
        var list = new List<BufferSize>();
        void Add(string name, string phase, long floats, bool pooled)
        {
            long allocated = pooled ? Pooled(floats) : floats;
            list.Add(new BufferSize(name, phase, allocated, allocated * sizeof(float)));
        }

        // Whole forward: residual stream h (Forward), normed and delta (ForwardEmbeddings), the caller's logits.
        Add("h (residual stream)", "forward", n * d, false);
        Add("normed", "forward", n * d, false);
        Add("delta", "forward", n * d, false);
        Add("logits", "forward", (long)logitRows * c.VocabSize, false);

        // Attention: q, k, v and the attention output, rented per layer; one score row per running job.
        Add("q", "attention", n * c.QDim, true);
        Add("k", "attention", n * c.KvDim, true);
        Add("v", "attention", n * c.KvDim, true);
        Add("attn", "attention", n * c.QDim, true);
        long longestRow = c.RopeLayers.All(r => r) ? Math.Min(context, c.AttentionChunkSize) : context;
        Add($"scores ({threads} threads)", "attention", threads * Pooled(longestRow), false);

        if (anyMoe)
        {
            long f = c.IntermediateSize;
            // Router logits and the routing table (pooled), then the shared expert and, one after another, each routed expert on
            // the tokens it was given: at most all n tokens (top-1), each with gate/up buffers and SwiGLU scratch.
            Add("router logits", "moe", n * c.NumExperts, true);
            // routing table: gate weights, routed tokens and top-k choices (n·k each, 4 bytes), slot starts (experts+1)
            Add("routing table", "moe", Pooled((long)n * c.TopK) * 3 + Pooled(c.NumExperts + 1), false);
            Add("expert input", "moe", n * d, true);
            Add("expert output", "moe", n * d, true);
            Add("gate", "moe", n * f, true);
            Add("up", "moe", n * f, true);
            if (n * f > 4096) Add("swiglu scratch", "moe", n * f, false);
        }
        if (anyDense)
        {
            long fd = c.IntermediateSizeMlp;
            Add("dense gate", "dense", n * fd, true);
            Add("dense up", "dense", n * fd, true);
            if (n * fd > 4096) Add("dense swiglu scratch", "dense", n * fd, false);
        }

        long Phase(string p) => list.Where(b => b.Phase == p).Sum(b => b.Bytes);
        long peak = Phase("forward") + Math.Max(Phase("attention"), Math.Max(Phase("moe"), Phase("dense")));
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
