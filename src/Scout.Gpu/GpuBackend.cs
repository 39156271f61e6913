using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using Scout.Backends;
using Scout.Kernels;
using Scout.Model;
using Scout.Tensors;

namespace Scout.Gpu;

/// <summary>Which ILGPU accelerator a <see cref="GpuBackend"/> runs on.</summary>
public enum GpuKind
{
    /// <summary>An NVIDIA GPU through the CUDA driver (PTX emitted by ILGPU).</summary>
    Cuda,
    /// <summary>ILGPU's CPU accelerator: the same kernels emulated on threads (tests, machines without a GPU).</summary>
    CpuEmulated,
}

/// <summary>The device could not be opened (no CUDA driver or GPU, or an index out of range).</summary>
public sealed class GpuUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// A backend whose weight matrices live on an ILGPU accelerator: each supported matrix (F32, F16, BF16, Q8_0,
/// Q4_0, Q4_K, Q6_K row-major) is uploaded once at load and multiplied on the device straight from its GGUF blocks.
/// Everything else (norms, RoPE, routing, attention over the KV cache, and matrices of other types or layouts)
/// runs on the <see cref="Host"/> CPU backend — this is the first step of a GPU backend, not all of it.
/// </summary>
public sealed class GpuBackend : IBackend
{
    private readonly Context _context;
    private readonly Accelerator _accelerator;
    private readonly object _gate = new();
    private MemoryBuffer1D<float, Stride1D.Dense>? _x, _y;

    internal readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int> F32;
    internal readonly Action<Index1D, ArrayView<byte>, ArrayView<float>, ArrayView<float>, int, int, int> F16;
    internal readonly Action<Index1D, ArrayView<byte>, ArrayView<float>, ArrayView<float>, int, int> Q8_0, Q4_0, Q4_K, Q6_K;

    /// <summary>Opens device <paramref name="index"/> of <paramref name="kind"/>; host work runs on <paramref name="host"/> (owned).</summary>
    public GpuBackend(GpuKind kind, int index, CpuBackend host)
    {
        Host = host;
        try
        {
            _context = Context.Create(b => { if (kind == GpuKind.Cuda) b.Cuda(); else b.CPU(); });
        }
        catch (Exception e)
        {
            throw new GpuUnavailableException($"cannot start ILGPU for {kind}: {e.Message}", e);
        }
        try
        {
            if (kind == GpuKind.Cuda)
            {
                var devices = _context.GetCudaDevices();
                if (devices.Count == 0)
                    throw new GpuUnavailableException("no CUDA device found (no NVIDIA GPU, or no CUDA driver visible to this process)");
                if (index < 0 || index >= devices.Count)
                    throw new GpuUnavailableException($"CUDA device {index} does not exist: {devices.Count} device(s), numbered 0..{devices.Count - 1}");
                _accelerator = devices[index].CreateAccelerator(_context);
            }
            else
            {
                _accelerator = _context.GetCPUDevice(0).CreateAccelerator(_context);
            }
            F32 = _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(BlockKernels.F32);
            F16 = _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<byte>, ArrayView<float>, ArrayView<float>, int, int, int>(BlockKernels.F16);
            Q8_0 = _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<byte>, ArrayView<float>, ArrayView<float>, int, int>(BlockKernels.Q8_0);
            Q4_0 = _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<byte>, ArrayView<float>, ArrayView<float>, int, int>(BlockKernels.Q4_0);
            Q4_K = _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<byte>, ArrayView<float>, ArrayView<float>, int, int>(BlockKernels.Q4_K);
            Q6_K = _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<byte>, ArrayView<float>, ArrayView<float>, int, int>(BlockKernels.Q6_K);
        }
        catch (GpuUnavailableException)
        {
            _accelerator?.Dispose();
            _context.Dispose();
            throw;
        }
        catch (Exception e)
        {
            _accelerator?.Dispose();
            _context.Dispose();
            throw new GpuUnavailableException($"cannot open {kind} device {index}: {e.Message}", e);
        }
        Name = kind == GpuKind.Cuda ? $"cuda:{index}" : "ilgpu-cpu";
    }

    public string Name { get; }
    /// <summary>Device name as the driver reports it.</summary>
    public string DeviceName => _accelerator.Name;
    /// <summary>Bytes of device memory.</summary>
    public long DeviceMemoryBytes => _accelerator.MemorySize;
    /// <summary>Weight bytes uploaded so far.</summary>
    public long UploadedBytes { get; private set; }
    /// <summary>Matrices uploaded, and those kept on the host (unsupported type or layout).</summary>
    public int DeviceMatrices { get; private set; }
    public int HostMatrices { get; private set; }
    /// <summary>Called after each upload with the bytes uploaded so far.</summary>
    public Action<long>? UploadProgress { get; set; }

    /// <summary>The CPU backend that runs everything not on the device.</summary>
    public CpuBackend Host { get; }
    public WorkerPool HostPool => Host.Pool;
    IBackend IBackend.Host => Host;
    internal Accelerator Accelerator => _accelerator;

    public static bool Supports(TensorType type) => type is TensorType.F32 or TensorType.F16 or TensorType.BF16
        or TensorType.Q8_0 or TensorType.Q4_0 or TensorType.Q4_K or TensorType.Q6_K;

    public unsafe IWeightMatrix RowMajor(TensorType type, byte* data, int rows, int cols)
    {
        if (!Supports(type) || cols % type.BlockElements() != 0)
        {
            HostMatrices++;
            return Host.RowMajor(type, data, rows, cols);
        }
        var m = new GpuMatrix(this, type, data, rows, cols);
        UploadedBytes += m.ByteSize;
        DeviceMatrices++;
        UploadProgress?.Invoke(UploadedBytes);
        return m;
    }

    public unsafe IWeightMatrix InputMajor(TensorType type, byte* data, int inputs, int outputs, int leadingDim, int columnOffset)
    {
        HostMatrices++;
        return Host.InputMajor(type, data, inputs, outputs, leadingDim, columnOffset);
    }

    public ActivationBuffer Allocate(WorkspaceBuffer spec) => Host.Allocate(spec);
    public void Upload(ReadOnlySpan<float> source, BufferView destination) => Host.Upload(source, destination);
    public void Upload(ReadOnlySpan<int> source, BufferView destination) => Host.Upload(source, destination);
    public void Download(BufferView source, Span<float> destination) => Host.Download(source, destination);
    public void MatMul(IWeightMatrix w, BufferView x, int n, BufferView y) => w.Multiply(x.HostFloats, n, y.HostFloats);
    public void MatMulToHost(IWeightMatrix w, BufferView x, int n, ForwardWorkspace ws, Span<float> y) => w.Multiply(x.HostFloats, n, y);

    /// <summary>y = x·Wᵀ on the device: x up, one kernel launch, y down (scratch buffers grow, then are reused).</summary>
    internal void Run(GpuMatrix m, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        int inputs = n * m.Cols, outputs = n * m.Rows;
        lock (_gate)
        {
            if (_x is null || _x.Length < inputs) { _x?.Dispose(); _x = _accelerator.Allocate1D<float>(Math.Max(inputs, 1024)); }
            if (_y is null || _y.Length < outputs) { _y?.Dispose(); _y = _accelerator.Allocate1D<float>(Math.Max(outputs, 1024)); }
            var xv = _x.View.SubView(0, inputs);
            var yv = _y.View.SubView(0, outputs);
            xv.CopyFromCPU(ref Unsafe.AsRef(in x[0]), inputs);
            m.Launch(xv, yv, n);
            _accelerator.Synchronize();
            yv.CopyToCPU(ref y[0], outputs);
        }
    }

    public void RmsNorm(BufferView x, float[]? weight, float eps, int rows, int dim, BufferView y) => Host.RmsNorm(x, weight, eps, rows, dim, y);
    public void RopeTables(ReadOnlySpan<int> positions, float[] freqs, BufferView cos, BufferView sin) => Host.RopeTables(positions, freqs, cos, sin);
    public void AttentionTemperature(ReadOnlySpan<int> positions, float floorScale, float attnScale, BufferView temperature)
        => Host.AttentionTemperature(positions, floorScale, attnScale, temperature);
    public void Rope(BufferView x, int rows, int heads, int headDim, BufferView cos, BufferView sin) => Host.Rope(x, rows, heads, headDim, cos, sin);
    public void ScaleRows(BufferView x, int rows, int dim, BufferView scales) => Host.ScaleRows(x, rows, dim, scales);
    public void SwiGlu(BufferView gate, BufferView up) => Host.SwiGlu(gate, up);
    public void Add(BufferView x, BufferView delta) => Host.Add(x, delta);
    public void Embed(Llama4Weights weights, ReadOnlySpan<int> tokens, BufferView h) => Host.Embed(weights, tokens, h);
    public void Attention(Llama4Config config, int layer, bool chunked, BufferView q, BufferView k, BufferView v, BatchRows rows, BufferView output)
        => Host.Attention(config, layer, chunked, q, k, v, rows, output);
    public void RoutedExperts(FeedForward[] experts, BufferView routerLogits, BufferView x, int n, int topK, ForwardWorkspace ws, BufferView output)
        => Host.RoutedExperts(experts, routerLogits, x, n, topK, ws, output);

    public void Dispose()
    {
        lock (_gate)
        {
            _x?.Dispose();
            _y?.Dispose();
        }
        _accelerator.Dispose();
        _context.Dispose();
        Host.Dispose();
    }
}

/// <summary>A weight matrix resident on the device in its stored (GGUF block) form.</summary>
internal sealed class GpuMatrix : IWeightMatrix, IDisposable
{
    private readonly GpuBackend _backend;
    private readonly MemoryBuffer1D<byte, Stride1D.Dense> _data;

    public unsafe GpuMatrix(GpuBackend backend, TensorType type, byte* data, int rows, int cols)
    {
        _backend = backend;
        Type = type;
        Rows = rows;
        Cols = cols;
        ByteSize = type.RowBytes(cols) * rows;
        _data = backend.Accelerator.Allocate1D<byte>(ByteSize);
        _data.View.CopyFromCPU(ref Unsafe.AsRef<byte>(data), ByteSize);
    }

    public int Rows { get; }
    public int Cols { get; }
    public TensorType Type { get; }
    public long ByteSize { get; }

    public void Multiply(ReadOnlySpan<float> x, int n, Span<float> y)
    {
        if (n <= 0) return;
        if (x.Length < (long)n * Cols || y.Length < (long)n * Rows)
            throw new ArgumentException($"matmul shape mismatch: x {x.Length}, y {y.Length}, W [{Rows}, {Cols}], n {n}");
        _backend.Run(this, x, n, y);
    }

    internal void Launch(ArrayView<float> x, ArrayView<float> y, int n)
    {
        int count = n * Rows;
        ArrayView<byte> w = _data.View;
        switch (Type)
        {
            case TensorType.F32: _backend.F32(count, w.Cast<float>(), x, y, Rows, Cols); break;
            case TensorType.F16: _backend.F16(count, w, x, y, Rows, Cols, 0); break;
            case TensorType.BF16: _backend.F16(count, w, x, y, Rows, Cols, 1); break;
            case TensorType.Q8_0: _backend.Q8_0(count, w, x, y, Rows, Cols); break;
            case TensorType.Q4_0: _backend.Q4_0(count, w, x, y, Rows, Cols); break;
            case TensorType.Q4_K: _backend.Q4_K(count, w, x, y, Rows, Cols); break;
            case TensorType.Q6_K: _backend.Q6_K(count, w, x, y, Rows, Cols); break;
            default: throw new NotSupportedException($"no device kernel for {Type}");
        }
    }

    public void Dispose() => _data.Dispose();
}
