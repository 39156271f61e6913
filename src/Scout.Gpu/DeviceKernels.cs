using ILGPU;

namespace Scout.Gpu;

/// <summary>
/// The device kernels of the forward pass besides the weight products (<see cref="BlockKernels"/>): RMSNorm, RoPE,
/// SwiGLU, add, row scaling, embedding lookup, MoE routing (top-k + sigmoid gates) with the gather/scatter around the
/// grouped expert product, and attention over the device K/V cache. Each computes what the CPU backend's operation
/// computes, in the same order of operations where it matters (tests compare them on ILGPU's CPU accelerator).
/// Written for correctness first: one thread per output element or per row, no shared-memory tiling.
/// Only sqrt and exp are used (both native on PTX); cos/sin/log run on the host (the position tables).
/// </summary>
internal static class DeviceKernels
{
    /// <summary>y[r] = x[r] / √(mean(x[r]²) + eps) (⊙ w when <paramref name="hasWeight"/>), one thread per row.</summary>
    public static void RmsNorm(Index1D r, ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, int dim, float eps, int hasWeight)
    {
        long o = (long)(int)r * dim;
        float ss = 0;
        for (int c = 0; c < dim; c++) ss += x[o + c] * x[o + c];
        float inv = 1f / MathF.Sqrt(ss / dim + eps);
        if (hasWeight != 0)
            for (int c = 0; c < dim; c++) y[o + c] = x[o + c] * inv * w[c];
        else
            for (int c = 0; c < dim; c++) y[o + c] = x[o + c] * inv;
    }

    /// <summary>Rotates pair j of head h of row r by the row's tables (Meta's adjacent-pair RoPE).</summary>
    public static void Rope(Index1D i, ArrayView<float> x, ArrayView<float> cos, ArrayView<float> sin, int heads, int headDim)
    {
        int half = headDim / 2;
        int r = i / (heads * half), rem = i % (heads * half), h = rem / half, j = rem % half;
        long b = (long)r * heads * headDim + h * headDim + 2 * j;
        float c = cos[r * half + j], s = sin[r * half + j];
        float a = x[b], e = x[b + 1];
        x[b] = a * c - e * s;
        x[b + 1] = a * s + e * c;
    }

    public static void Add(Index1D i, ArrayView<float> x, ArrayView<float> delta) => x[i] += delta[i];

    /// <summary>gate = (gate·sigmoid(gate))·up.</summary>
    public static void SwiGlu(Index1D i, ArrayView<float> gate, ArrayView<float> up)
    {
        float g = gate[i];
        float s = 1f / (1f + MathF.Exp(-g));
        gate[i] = g * s * up[i];
    }

    public static void ScaleRows(Index1D i, ArrayView<float> x, ArrayView<float> scales, int dim) => x[i] *= scales[i / dim];

    /// <summary>h[t, c] = W[tokens[t], c], decoded from the stored row (ids were checked on the host).</summary>
    public static void Embed(Index1D i, ArrayView<byte> w, ArrayView<float> wf, ArrayView<int> tokens, ArrayView<float> h, int cols, int type, long rowBytes)
    {
        int t = i / cols, c = i % cols;
        h[i] = BlockKernels.Element(type, w, wf, tokens[t] * rowBytes, c);
    }

    /// <summary>
    /// Row t's top-k experts by raw logit (ties: lower index first, as torch.topk and the CPU backend), their
    /// sigmoid gates, one thread per row: k passes, each taking the best expert ordered after the previous pick.
    /// </summary>
    public static void Route(Index1D t, ArrayView<float> logits, ArrayView<int> choice, ArrayView<float> gates, int experts, int k)
    {
        long o = (long)(int)t * experts;
        float prevV = 0;
        int prevE = -1;
        for (int j = 0; j < k; j++)
        {
            int best = -1;
            float bestV = 0;
            for (int e = 0; e < experts; e++)
            {
                float v = logits[o + e];
                bool after = prevE < 0 || v < prevV || (v == prevV && e > prevE);
                if (after && (best < 0 || v > bestV)) { best = e; bestV = v; }
            }
            choice[t * k + j] = best;
            gates[t * k + j] = 1f / (1f + MathF.Exp(-bestV));
            prevV = bestV;
            prevE = best;
        }
    }

    /// <summary>Routed row s = (t, j): xin[s] = x[t]·gate[s].</summary>
    public static void Gather(Index1D i, ArrayView<float> x, ArrayView<float> gates, ArrayView<float> xin, int dim, int k)
    {
        int s = i / dim, c = i % dim;
        xin[i] = x[(long)(s / k) * dim + c] * gates[s];
    }

    /// <summary>output[t] += Σ_j y[(t, j)] (in choice order).</summary>
    public static void ScatterAdd(Index1D i, ArrayView<float> output, ArrayView<float> y, int dim, int k)
    {
        int t = i / dim, c = i % dim;
        float acc = output[i];
        for (int j = 0; j < k; j++) acc += y[((long)t * k + j) * dim + c];
        output[i] = acc;
    }

    /// <summary>K/V storage codes: f32 floats, or 16-bit f16 / bf16 bits.</summary>
    public const int KvF32 = 0, KvF16 = 1, KvBF16 = 2;

    /// <summary>
    /// Writes rows [firstRow, firstRow + count) of k/v (kv_dim floats each) into the cache slots of positions
    /// firstPos.. (slot = position mod capacity for a ring), as f32, f16 or bf16 (both round to nearest even, as the
    /// host cache's codec).
    /// </summary>
    public static void StoreKv(Index1D i, ArrayView<float> src, ArrayView<float> f32, ArrayView<ushort> f16, int format, int kvDim, int firstRow, int firstPos, int capacity)
    {
        int r = i / kvDim, c = i % kvDim;
        long slot = (firstPos + r) % capacity;
        float v = src[(long)(firstRow + r) * kvDim + c];
        if (format == KvF16) f16[slot * kvDim + c] = BlockKernels.ToHalf(v);
        else if (format == KvBF16) f16[slot * kvDim + c] = BlockKernels.ToBFloat(v);
        else f32[slot * kvDim + c] = v;
    }

    private static float Key(ArrayView<float> f32, ArrayView<ushort> f16, int format, long at)
        => format == KvF16 ? BlockKernels.HalfBits(f16[at])
            : format == KvBF16 ? Interop.IntAsFloat((uint)f16[at] << 16)
            : f32[at];

    /// <summary>
    /// One (row, head) of attention for rows [firstRow, firstRow + m) of one sequence at positions firstPos..:
    /// softmax(q·kᵀ·scale)·v over the visible keys (causal; within the row's chunk when <paramref name="chunk"/> &gt; 0),
    /// streamed with a running max (online softmax); the output row is the accumulator.
    /// </summary>
    public static void Attend(Index1D i, ArrayView<float> q, ArrayView<float> output,
        ArrayView<float> k32, ArrayView<ushort> k16, ArrayView<float> v32, ArrayView<ushort> v16, AttendShape a)
    {
        int heads = a.Heads, kvHeads = a.KvHeads, headDim = a.HeadDim, firstRow = a.FirstRow, firstPos = a.FirstPos, chunk = a.Chunk, capacity = a.Capacity;
        int kFormat = a.KeyFormat, vFormat = a.ValueFormat;
        float scale = a.Scale;
        int r = i / heads, h = i % heads;
        int pos = firstPos + r;
        int first = chunk > 0 ? pos / chunk * chunk : 0;
        int kvHead = h / (heads / kvHeads), kvDim = kvHeads * headDim;
        long qo = ((long)(firstRow + r) * heads + h) * headDim;
        for (int e = 0; e < headDim; e++) output[qo + e] = 0;
        float max = float.NegativeInfinity, sum = 0;
        for (int p = first; p <= pos; p++)
        {
            long ko = (long)(p % capacity) * kvDim + kvHead * headDim;
            float s = 0;
            for (int e = 0; e < headDim; e++) s += q[qo + e] * Key(k32, k16, kFormat, ko + e);
            s *= scale;
            if (s > max)
            {
                float shrink = MathF.Exp(max - s);   // exp(-inf) = 0 on the first key
                sum *= shrink;
                for (int e = 0; e < headDim; e++) output[qo + e] *= shrink;
                max = s;
            }
            float wgt = MathF.Exp(s - max);
            sum += wgt;
            for (int e = 0; e < headDim; e++) output[qo + e] += wgt * Key(v32, v16, vFormat, ko + e);
        }
        float inv = 1f / sum;
        for (int e = 0; e < headDim; e++) output[qo + e] *= inv;
    }
}

/// <summary>The scalar arguments of <see cref="DeviceKernels.Attend"/> (a kernel takes at most 15 parameters).</summary>
internal struct AttendShape
{
    public int Heads, KvHeads, HeadDim, FirstRow, FirstPos, Chunk, Capacity, KeyFormat, ValueFormat;
    public float Scale;
}
