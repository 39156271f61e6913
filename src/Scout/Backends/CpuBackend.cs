using System.Numerics.Tensors;
using Scout.Kernels;
using Scout.Kernels.Attention;
using Scout.Model;
using Scout.Tensors;

namespace Scout.Backends;

/// <summary>
/// The operations on this machine's cores: SIMD kernels (<see cref="Ops"/>, the weight matrices' own products) and
/// a fork/join <see cref="WorkerPool"/> for the parallel ones. Allocates nothing per call.
/// </summary>
public sealed class CpuBackend : IBackend
{
    private readonly AttentionKernels _attention = new(AttentionKernels.Best);

    /// <summary>A backend with its own pool of <paramref name="threads"/> worker threads (0: every core).</summary>
    public CpuBackend(int threads = 0)
    {
        if (threads < 0) throw new ArgumentException($"threads must not be negative, got {threads}");
        Pool = new WorkerPool(threads > 0 ? threads : Environment.ProcessorCount);
    }

    public string Name => "cpu";

    /// <summary>The threads the parallel operations run on (owned: disposed with the backend).</summary>
    public WorkerPool Pool { get; }

    public WorkerPool HostPool => Pool;

    IBackend IBackend.Host => this;

    public int Threads => Pool.Threads;

    public unsafe IWeightMatrix RowMajor(TensorType type, byte* data, int rows, int cols) => WeightMatrix.RowMajor(type, data, rows, cols, Pool);

    public unsafe FeedForward[] StackedExperts(TensorType gateType, byte* gate, TensorType upType, byte* up, TensorType downType, byte* down, int experts, int ffn, int dim)
        => StackedExperts(this, gateType, gate, upType, up, downType, down, experts, ffn, dim);

    /// <summary>One row-major matrix per expert over the stacks, made by <paramref name="backend"/>.</summary>
    public static unsafe FeedForward[] StackedExperts(IBackend backend, TensorType gateType, byte* gate, TensorType upType, byte* up, TensorType downType, byte* down,
        int experts, int ffn, int dim)
    {
        long gBytes = gateType.ByteCount((long)ffn * dim), uBytes = upType.ByteCount((long)ffn * dim), dBytes = downType.ByteCount((long)dim * ffn);
        var list = new FeedForward[experts];
        for (int x = 0; x < experts; x++)
            list[x] = new FeedForward(
                backend.RowMajor(gateType, gate + x * gBytes, ffn, dim),
                backend.RowMajor(upType, up + x * uBytes, ffn, dim),
                backend.RowMajor(downType, down + x * dBytes, dim, ffn));
        return list;
    }

    public unsafe IWeightMatrix InputMajor(TensorType type, byte* data, int inputs, int outputs, int leadingDim, int columnOffset)
        => new InputMajorFloatMatrix(type, data, inputs, outputs, leadingDim, columnOffset, Pool);

    public ActivationBuffer Allocate(WorkspaceBuffer spec)
    {
        int n = checked((int)spec.Elements);
        return spec.Integers ? new HostBuffer(new int[n]) : new HostBuffer(new float[n]);
    }

    public void Upload(ReadOnlySpan<float> source, BufferView destination) => source.CopyTo(destination.HostFloats);
    public void Upload(ReadOnlySpan<int> source, BufferView destination) => source.CopyTo(destination.HostInts);
    public void Download(BufferView source, Span<float> destination) => source.HostFloats.CopyTo(destination);

    public void MatMul(IWeightMatrix w, BufferView x, int n, BufferView y) => w.Multiply(x.HostFloats, n, y.HostFloats);

    public void MatMulShared(BufferView x, int n, IWeightMatrix a, BufferView ya, IWeightMatrix b, BufferView yb, IWeightMatrix? c = null, BufferView yc = default)
        => WeightMatrix.MultiplyShared(x.HostFloats, n, a, ya.HostFloats, b, yb.HostFloats, c, c is null ? default : yc.HostFloats);

    public void MatMulToHost(IWeightMatrix w, BufferView x, int n, ForwardWorkspace ws, Span<float> y) => w.Multiply(x.HostFloats, n, y);

    public void RmsNorm(BufferView xv, float[]? weight, float eps, int rows, int dim, BufferView yv)
    {
        var x = xv.HostFloats;
        var y = yv.HostFloats;
        for (int r = 0; r < rows; r++) Ops.RmsNorm(x.Slice(r * dim, dim), weight, eps, y.Slice(r * dim, dim));
    }

    public void RopeTables(ReadOnlySpan<int> positions, float[] freqs, BufferView cosv, BufferView sinv)
    {
        int rows = positions.Length;
        var cos = cosv.HostFloats;
        var sin = sinv.HostFloats;
        int half = freqs.Length;
        for (int r = 0; r < rows; r++)
        {
            int pos = positions[r];
            for (int j = 0; j < half; j++)
            {
                float angle = pos * freqs[j];
                cos[r * half + j] = (float)Math.Cos(angle);
                sin[r * half + j] = (float)Math.Sin(angle);
            }
        }
    }

    public void AttentionTemperature(ReadOnlySpan<int> positions, float floorScale, float attnScale, BufferView temperature)
    {
        var t = temperature.HostFloats;
        for (int r = 0; r < positions.Length; r++) t[r] = AttentionMath.TemperatureScale(positions[r], floorScale, attnScale);
    }

    public void Rope(BufferView xv, int rows, int heads, int headDim, BufferView cosv, BufferView sinv)
    {
        var x = xv.HostFloats;
        var cos = cosv.HostFloats;
        var sin = sinv.HostFloats;
        int half = headDim / 2, width = heads * headDim;
        for (int r = 0; r < rows; r++)
        {
            var c = cos.Slice(r * half, half);
            var s = sin.Slice(r * half, half);
            for (int h = 0; h < heads; h++) Ops.Rope(x.Slice(r * width + h * headDim, headDim), c, s);
        }
    }

    public void ScaleRows(BufferView xv, int rows, int dim, BufferView scalesv)
    {
        var x = xv.HostFloats;
        var scales = scalesv.HostFloats;
        for (int r = 0; r < rows; r++)
        {
            var row = x.Slice(r * dim, dim);
            TensorPrimitives.Multiply(row, scales[r], row);
        }
    }

    public void SwiGlu(BufferView gate, BufferView up) => SwiGlu(gate.HostFloats, up.HostFloats);

    private static void SwiGlu(Span<float> gate, ReadOnlySpan<float> up)
    {
        // silu(g)·u in stack-sized pieces (no scratch buffer, same per-element arithmetic as Ops.SwiGlu).
        const int Piece = 2048;
        Span<float> tmp = stackalloc float[Piece];
        for (int i = 0; i < gate.Length; i += Piece)
        {
            int len = Math.Min(Piece, gate.Length - i);
            var g = gate.Slice(i, len);
            var t = tmp[..len];
            TensorPrimitives.Sigmoid(g, t);
            TensorPrimitives.Multiply(g, t, g);
            TensorPrimitives.Multiply(g, up.Slice(i, len), g);
        }
    }

    public void Add(BufferView x, BufferView delta)
    {
        var xs = x.HostFloats;
        TensorPrimitives.Add(xs, delta.HostFloats, xs);
    }

    public void Embed(Llama4Weights weights, ReadOnlySpan<int> tokens, BufferView hv)
    {
        var h = hv.HostFloats;
        int d = h.Length / Math.Max(1, tokens.Length);
        for (int t = 0; t < tokens.Length; t++) weights.Embed(tokens[t], h.Slice(t * d, d));
    }

    /// <summary>
    /// Routing on the host: top-k per row, then a counting sort by expert (rows in order) so each expert's weights
    /// are read once for all its rows: slot i of expert e holds row SlotRows[i] with gate SlotGates[i].
    /// </summary>
    public void RoutedExperts(FeedForward[] experts, BufferView routerLogitsView, BufferView xv, int n, int k, ForwardWorkspace ws, BufferView outputView)
    {
        int count = experts.Length, d = ws.Config.HiddenSize;
        var routerLogits = routerLogitsView.HostFloats;
        var x = xv.HostFloats;
        var output = outputView.HostFloats;
        var choice = ws.Choice.HostInts;
        var gates = ws.SlotGates.HostFloats;
        var firstSlot = ws.FirstSlot.AsSpan(0, count + 1);
        var slotRows = ws.SlotRows;
        firstSlot.Clear();
        for (int t = 0; t < n; t++)
        {
            var top = choice.Slice(t * k, k);
            Llama4Model.TopK(routerLogits.Slice(t * count, count), top);
            foreach (int e in top) firstSlot[e + 1]++;
        }
        for (int e = 0; e < count; e++) firstSlot[e + 1] += firstSlot[e];
        var fill = ws.Fill.AsSpan(0, count);
        firstSlot[..count].CopyTo(fill);
        for (int t = 0; t < n; t++)
            foreach (int e in choice.Slice(t * k, k))
            {
                int slot = fill[e]++;
                slotRows[slot] = t;
                gates[slot] = Ops.Sigmoid(routerLogits[t * count + e]);
            }

        var expertIn = ws.ExpertIn.HostFloats;
        var expertOut = ws.ExpertOut.HostFloats;
        var gateAll = ws.Gate.HostFloats;
        var upAll = ws.Up.HostFloats;
        for (int e = 0; e < count; e++)
        {
            int from = firstSlot[e], m = firstSlot[e + 1] - from;
            if (m == 0) continue;
            var xin = expertIn[..(m * d)];
            var yout = expertOut[..(m * d)];
            for (int i = 0; i < m; i++)
                TensorPrimitives.Multiply(x.Slice(slotRows[from + i] * d, d), gates[from + i], xin.Slice(i * d, d));
            var ff = experts[e];
            int f = ff.Gate.Rows;
            var gate = gateAll[..(m * f)];
            var up = upAll[..(m * f)];
            WeightMatrix.MultiplyShared(xin, m, ff.Gate, gate, ff.Up, up);
            SwiGlu(gate, up);
            ff.Down.Multiply(gate, m, yout);
            for (int i = 0; i < m; i++)
            {
                var dst = output.Slice(slotRows[from + i] * d, d);
                TensorPrimitives.Add(dst, yout.Slice(i * d, d), dst);
            }
        }
    }

    public void Attention(Llama4Config config, int layer, bool chunked, BufferView q, BufferView k, BufferView v, BatchRows rows, BufferView output)
        => _attention.StoreAndAttend(Pool, config, layer, chunked, WholeArray(q), WholeArray(k), WholeArray(v), rows, WholeArray(output));

    /// <summary>The array behind a view that starts at its first element (the attention kernels index whole arrays).</summary>
    private static float[] WholeArray(BufferView v) => v.Buffer is HostBuffer { Floats: var f } && v.Offset == 0
        ? f
        : throw new ArgumentException("attention takes views that start at the beginning of a host buffer");

    public void Dispose() => Pool.Dispose();
}
