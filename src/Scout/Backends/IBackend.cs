using Scout.Kernels;
using Scout.Model;
using Scout.Tensors;

namespace Scout.Backends;

/// <summary>
/// The operations the Llama 4 forward pass is composed of, on one device. <see cref="Llama4Model"/> says what is
/// computed; a backend says how and where (CPU threads today). A backend is an object passed to the model at load,
/// never a process-wide setting: two models may run on two backends side by side.
/// Activations live in buffers of the <see cref="ForwardWorkspace"/> the model sizes once for its largest batch.
/// </summary>
public interface IBackend : IDisposable
{
    /// <summary>Short device name ("cpu").</summary>
    string Name { get; }

    /// <summary>The CPU backend that runs this backend's host-side work (itself, for the CPU backend). Matrices created
    /// through it stay in system RAM: <c>--cpu-moe</c> places routed experts there.</summary>
    IBackend Host { get; }

    /// <summary>The CPU threads of this backend (its products on the CPU, host-side work such as the vision tower).</summary>
    WorkerPool HostPool { get; }

    /// <summary>A row-major weight matrix over stored data (row r = one output feature of <paramref name="cols"/> weights),
    /// in the form this backend multiplies with. The data stays where it is (a mapped file) unless the backend copies it to its device.</summary>
    unsafe IWeightMatrix RowMajor(TensorType type, byte* data, int rows, int cols);

    /// <summary>An input-major float matrix W[inputs, leadingDim], y = x·W[:, offset..offset+outputs) (Hugging Face expert tensors).</summary>
    unsafe IWeightMatrix InputMajor(TensorType type, byte* data, int inputs, int outputs, int leadingDim, int columnOffset);

    /// <summary>y[n, W.Rows] = x[n, W.Cols] · Wᵀ (overwrites y).</summary>
    void MatMul(IWeightMatrix w, ReadOnlySpan<float> x, int n, Span<float> y);

    /// <summary>y[r] = x[r] / √(mean(x[r]²) + eps) ⊙ weight for each of <paramref name="rows"/> rows of <paramref name="dim"/>
    /// values (an empty weight means none, as in the QK-norm). x and y may be the same buffer.</summary>
    void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, int rows, int dim, Span<float> y);

    /// <summary>cos/sin[r, j] of angle positions[r]·freqs[j]: the rotation tables of one forward, shared by every RoPE layer.</summary>
    void RopeTables(ReadOnlySpan<int> positions, ReadOnlySpan<float> freqs, Span<float> cos, Span<float> sin);

    /// <summary>Rotates adjacent pairs of every head of every row: x is [rows, heads·headDim], tables [rows, headDim/2].</summary>
    void Rope(Span<float> x, int rows, int heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin);

    /// <summary>x[r] *= scales[r] for rows of <paramref name="dim"/> values.</summary>
    void ScaleRows(Span<float> x, int dim, ReadOnlySpan<float> scales);

    /// <summary>gate = silu(gate) ⊙ up.</summary>
    void SwiGlu(Span<float> gate, ReadOnlySpan<float> up);

    /// <summary>x += delta.</summary>
    void Add(Span<float> x, ReadOnlySpan<float> delta);

    /// <summary>h[t] = embedding row of tokens[t] (ids checked against the vocabulary).</summary>
    void Embed(Llama4Weights weights, ReadOnlySpan<int> tokens, Span<float> h);

    /// <summary>
    /// Attention of one layer for a batch of rows: softmax(q·kᵀ/√d)·v per (row, head) over the row's own sequence
    /// (its cached keys and this batch's), then this batch's k/v are stored in the caches. q, k, v, output hold
    /// <c>rows.Count</c> rows.
    /// </summary>
    void Attention(Llama4Config config, int layer, bool chunked, float[] q, float[] k, float[] v, BatchRows rows, float[] output);

    /// <summary>
    /// The routed experts of one MoE layer (a grouped product, like ggml's MUL_MAT_ID): for each expert e, the
    /// rows routed to it (slots <c>routing.FirstSlot[e]..FirstSlot[e+1]</c>) are scaled by their gate, run through
    /// its SwiGLU block and added to their output row.
    /// </summary>
    void RoutedExperts(FeedForward[] experts, ReadOnlySpan<float> x, int dim, ExpertRouting routing, ForwardWorkspace ws, Span<float> output);
}

/// <summary>The expert-grouped routing table of one MoE layer (views into the workspace).</summary>
public readonly ref struct ExpertRouting(ReadOnlySpan<int> firstSlot, ReadOnlySpan<int> rows, ReadOnlySpan<float> gates)
{
    /// <summary>Slot range of expert e: [FirstSlot[e], FirstSlot[e+1]).</summary>
    public ReadOnlySpan<int> FirstSlot { get; } = firstSlot;
    /// <summary>Row of the batch in each slot.</summary>
    public ReadOnlySpan<int> Rows { get; } = rows;
    /// <summary>Gate weight (sigmoid of the router logit) of each slot.</summary>
    public ReadOnlySpan<float> Gates { get; } = gates;
}
