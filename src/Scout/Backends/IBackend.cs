using Scout.Kernels;
using Scout.Model;
using Scout.Tensors;

namespace Scout.Backends;

/// <summary>
/// The operations the Llama 4 forward pass is composed of, on one device. <see cref="Llama4Model"/> says what is
/// computed; a backend says how and where (CPU threads today). A backend is an object passed to the model at load,
/// never a process-wide setting: two models may run on two backends side by side.
/// Activations live in buffers this backend allocates for the <see cref="ForwardWorkspace"/> the model sizes once for
/// its largest batch; every operation takes views of them, so a device backend keeps them on its device.
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

    /// <summary>
    /// The routed experts of one MoE layer from stacked [experts, rows, cols] tensors (GGUF's <c>*_exps</c>): gate and
    /// up [experts, <paramref name="ffn"/>, <paramref name="dim"/>], down [experts, dim, ffn]. A device backend uploads
    /// each stack once so one grouped product (MUL_MAT_ID) reads every expert.
    /// </summary>
    unsafe FeedForward[] StackedExperts(TensorType gateType, byte* gate, TensorType upType, byte* up, TensorType downType, byte* down, int experts, int ffn, int dim);

    /// <summary>An input-major float matrix W[inputs, leadingDim], y = x·W[:, offset..offset+outputs) (Hugging Face expert tensors).</summary>
    unsafe IWeightMatrix InputMajor(TensorType type, byte* data, int inputs, int outputs, int leadingDim, int columnOffset);

    /// <summary>A buffer for one entry of the <see cref="ForwardWorkspace.Layout"/> (on the device for a GPU backend).</summary>
    ActivationBuffer Allocate(WorkspaceBuffer spec);

    /// <summary>Copies host floats into a buffer of this backend.</summary>
    void Upload(ReadOnlySpan<float> source, BufferView destination);

    /// <summary>Copies host ints into an int buffer of this backend.</summary>
    void Upload(ReadOnlySpan<int> source, BufferView destination);

    /// <summary>Copies a buffer of this backend to host memory (waits for the work queued before it).</summary>
    void Download(BufferView source, Span<float> destination);

    /// <summary>y[n, W.Rows] = x[n, W.Cols] · Wᵀ (overwrites y).</summary>
    void MatMul(IWeightMatrix w, BufferView x, int n, BufferView y);

    /// <summary>
    /// ya = x·Aᵀ, yb = x·Bᵀ (and yc = x·Cᵀ when <paramref name="c"/> is given): products that read the same input (gate
    /// and up; q, k and v), which a backend may run as one (the CPU quantizes x once). Same results as separate
    /// <see cref="MatMul"/> calls, which is what this default does.
    /// </summary>
    void MatMulShared(BufferView x, int n, IWeightMatrix a, BufferView ya, IWeightMatrix b, BufferView yb, IWeightMatrix? c = null, BufferView yc = default)
    {
        MatMul(a, x, n, ya);
        MatMul(b, x, n, yb);
        if (c is not null) MatMul(c, x, n, yc);
    }

    /// <summary>The same product into host memory (the head's logits): y[n, W.Rows] = x[n, W.Cols] · Wᵀ.</summary>
    void MatMulToHost(IWeightMatrix w, BufferView x, int n, ForwardWorkspace ws, Span<float> y);

    /// <summary>y[r] = x[r] / √(mean(x[r]²) + eps) ⊙ weight for each of <paramref name="rows"/> rows of <paramref name="dim"/>
    /// values (a null weight means none, as in the QK-norm). x and y may be the same view.</summary>
    void RmsNorm(BufferView x, float[]? weight, float eps, int rows, int dim, BufferView y);

    /// <summary>cos/sin[r, j] of angle positions[r]·freqs[j]: the rotation tables of one forward, shared by every RoPE layer.
    /// The model computes them on the host backend (double-precision cos/sin of large angles) and uploads them to a device.</summary>
    void RopeTables(ReadOnlySpan<int> positions, float[] freqs, BufferView cos, BufferView sin);

    /// <summary>Temperature of NoPE layers' queries per row: 1 + attnScale·ln(⌊(p+1)/floorScale⌋ + 1) (host, as the tables).</summary>
    void AttentionTemperature(ReadOnlySpan<int> positions, float floorScale, float attnScale, BufferView temperature);

    /// <summary>Rotates adjacent pairs of every head of every row: x is [rows, heads·headDim], tables [rows, headDim/2].</summary>
    void Rope(BufferView x, int rows, int heads, int headDim, BufferView cos, BufferView sin);

    /// <summary>x[r] *= scales[r] for <paramref name="rows"/> rows of <paramref name="dim"/> values.</summary>
    void ScaleRows(BufferView x, int rows, int dim, BufferView scales);

    /// <summary>gate = silu(gate) ⊙ up.</summary>
    void SwiGlu(BufferView gate, BufferView up);

    /// <summary>x += delta.</summary>
    void Add(BufferView x, BufferView delta);

    /// <summary>h[t] = embedding row of tokens[t] (ids checked against the vocabulary).</summary>
    void Embed(Llama4Weights weights, ReadOnlySpan<int> tokens, BufferView h);

    /// <summary>
    /// Attention of one layer for a batch of rows: softmax(q·kᵀ/√d)·v per (row, head) over the row's own sequence
    /// (its cached keys and this batch's), then this batch's k/v are stored in the caches. q, k, v, output hold
    /// <c>rows.Count</c> rows.
    /// </summary>
    void Attention(Llama4Config config, int layer, bool chunked, BufferView q, BufferView k, BufferView v, BatchRows rows, BufferView output);

    /// <summary>
    /// The routed experts of one MoE layer (a grouped product, like ggml's MUL_MAT_ID): each row's top-k experts by
    /// raw router logit are chosen (ties: lower index), the row is scaled by sigmoid(logit) of each, run through that
    /// expert's SwiGLU block and added to its <paramref name="output"/> row.
    /// </summary>
    void RoutedExperts(FeedForward[] experts, BufferView routerLogits, BufferView x, int n, int topK, ForwardWorkspace ws, BufferView output);
}

