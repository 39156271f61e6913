using System.Buffers;
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

    public unsafe IWeightMatrix InputMajor(TensorType type, byte* data, int inputs, int outputs, int leadingDim, int columnOffset)
        => new InputMajorFloatMatrix(type, data, inputs, outputs, leadingDim, columnOffset, Pool);

    public void MatMul(IWeightMatrix w, ReadOnlySpan<float> x, int n, Span<float> y) => w.Multiply(x, n, y);

    public void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, int rows, int dim, Span<float> y)
    {
        for (int r = 0; r < rows; r++) Ops.RmsNorm(x.Slice(r * dim, dim), weight, eps, y.Slice(r * dim, dim));
    }

    public void RopeTables(ReadOnlySpan<int> positions, ReadOnlySpan<float> freqs, Span<float> cos, Span<float> sin)
    {
        int half = freqs.Length;
        for (int r = 0; r < positions.Length; r++)
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

    public void Rope(Span<float> x, int rows, int heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = headDim / 2, width = heads * headDim;
        for (int r = 0; r < rows; r++)
        {
            var c = cos.Slice(r * half, half);
            var s = sin.Slice(r * half, half);
            for (int h = 0; h < heads; h++) Ops.Rope(x.Slice(r * width + h * headDim, headDim), c, s);
        }
    }

    public void ScaleRows(Span<float> x, int dim, ReadOnlySpan<float> scales)
    {
        for (int r = 0; r < scales.Length; r++)
        {
            var row = x.Slice(r * dim, dim);
            TensorPrimitives.Multiply(row, scales[r], row);
        }
    }

    public void SwiGlu(Span<float> gate, ReadOnlySpan<float> up)
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

    public void Add(Span<float> x, ReadOnlySpan<float> delta) => TensorPrimitives.Add(x, delta, x);

    public void Embed(Llama4Weights weights, ReadOnlySpan<int> tokens, Span<float> h)
    {
        int d = h.Length / Math.Max(1, tokens.Length);
        for (int t = 0; t < tokens.Length; t++) weights.Embed(tokens[t], h.Slice(t * d, d));
    }

    public void RoutedExperts(FeedForward[] experts, ReadOnlySpan<float> x, int dim, ExpertRouting routing, ForwardWorkspace ws, Span<float> output)
    {
        int d = dim;
        for (int e = 0; e < experts.Length; e++)
        {
            int from = routing.FirstSlot[e], m = routing.FirstSlot[e + 1] - from;
            if (m == 0) continue;
            var xin = ws.ExpertIn.AsSpan(0, m * d);
            var yout = ws.ExpertOut.AsSpan(0, m * d);
            for (int i = 0; i < m; i++)
                TensorPrimitives.Multiply(x.Slice(routing.Rows[from + i] * d, d), routing.Gates[from + i], xin.Slice(i * d, d));
            var ff = experts[e];
            int f = ff.Gate.Rows;
            var gate = ws.Gate.AsSpan(0, m * f);
            var up = ws.Up.AsSpan(0, m * f);
            ff.Gate.Multiply(xin, m, gate);
            ff.Up.Multiply(xin, m, up);
            SwiGlu(gate, up);
            ff.Down.Multiply(gate, m, yout);
            for (int i = 0; i < m; i++)
            {
                var dst = output.Slice(routing.Rows[from + i] * d, d);
                TensorPrimitives.Add(dst, yout.Slice(i * d, d), dst);
            }
        }
    }

    public void Attention(Llama4Config config, int layer, bool chunked, float[] q, float[] k, float[] v, BatchRows rows, float[] output)
        => _attention.StoreAndAttend(Pool, config, layer, chunked, q, k, v, rows, output);

    public void Dispose() => Pool.Dispose();
}
