using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using Scout.Backends;
using Scout.Kernels;
using Scout.Model;
using Scout.Planning;
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
/// A backend on an ILGPU accelerator. Weight matrices (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K row-major) are uploaded
/// once at load and multiplied straight from their GGUF blocks; the workspace's activation buffers are device memory,
/// and every operation of the forward pass runs as a device kernel over them (<see cref="DeviceKernels"/>), so a
/// forward pass moves only these across the bus: the input embeddings when the lookup is on the host, the position
/// tables (n × head_dim floats), the logits, and each layer's new K/V rows (a write-through copy into the host
/// <see cref="KvCache"/>, which keeps prefix sharing, forks and truncation working; the device copy of each cache
/// follows it by <see cref="KvCache.ContentVersion"/>).
/// Runs on the <see cref="Host"/> CPU backend instead, with the data copied across: matrices of other types or
/// layouts (Hugging Face input-major experts), and routed experts placed in RAM (--cpu-moe / --n-cpu-moe).
/// K/V on the device: f32, f16 and bf16 (q8_0/q4_0 caches are refused with a clear error).
/// </summary>
public sealed class GpuBackend : IBackend
{
    private readonly Context _context;
    private readonly Accelerator _accelerator;
    private readonly object _gate = new();
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _noIds;
    private readonly Dictionary<float[], MemoryBuffer1D<float, Stride1D.Dense>> _vectors = new(ReferenceEqualityComparer.Instance);
    private readonly List<DeviceKvCache> _caches = new();
    private readonly List<IDisposable> _owned = new();
    private readonly HashSet<DeviceBuffer> _live = new(ReferenceEqualityComparer.Instance);
    // Host staging for the data that crosses (grown, never shrunk: steady-state steps allocate nothing).
    private float[] _hostA = [], _hostB = [];
    private MemoryBuffer1D<float, Stride1D.Dense>? _deviceStaging;
    private MemoryBuffer1D<int, Stride1D.Dense>? _tokens;

    internal readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, ArrayView<int>, int, long> F32;
    internal readonly Action<Index1D, ArrayView<byte>, ArrayView<float>, ArrayView<float>, int, int, int, ArrayView<int>, int, long> F16;
    internal readonly Action<Index1D, ArrayView<byte>, ArrayView<float>, ArrayView<float>, int, int, ArrayView<int>, int, long> Q8_0, Q4_0, Q4_K, Q6_K;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, int> _rmsNorm;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int> _rope;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>> _add, _swiGlu;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, int> _scaleRows;
    private readonly Action<Index1D, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int, long> _embed;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int> _route;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int> _gather;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, int, int> _scatterAdd;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<ushort>, int, int, int, int, int> _storeKv;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, ArrayView<ushort>, AttendShape> _attend;

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
            var a = _accelerator;
            F32 = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, ArrayView<int>, int, long>(BlockKernels.F32);
            F16 = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<byte>, ArrayView<float>, ArrayView<float>, int, int, int, ArrayView<int>, int, long>(BlockKernels.F16);
            Q8_0 = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<byte>, ArrayView<float>, ArrayView<float>, int, int, ArrayView<int>, int, long>(BlockKernels.Q8_0);
            Q4_0 = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<byte>, ArrayView<float>, ArrayView<float>, int, int, ArrayView<int>, int, long>(BlockKernels.Q4_0);
            Q4_K = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<byte>, ArrayView<float>, ArrayView<float>, int, int, ArrayView<int>, int, long>(BlockKernels.Q4_K);
            Q6_K = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<byte>, ArrayView<float>, ArrayView<float>, int, int, ArrayView<int>, int, long>(BlockKernels.Q6_K);
            _rmsNorm = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, int>(DeviceKernels.RmsNorm);
            _rope = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(DeviceKernels.Rope);
            _add = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(DeviceKernels.Add);
            _swiGlu = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(DeviceKernels.SwiGlu);
            _scaleRows = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int>(DeviceKernels.ScaleRows);
            _embed = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<byte>, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int, long>(DeviceKernels.Embed);
            _route = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int>(DeviceKernels.Route);
            _gather = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(DeviceKernels.Gather);
            _scatterAdd = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int>(DeviceKernels.ScatterAdd);
            _storeKv = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<ushort>, int, int, int, int, int>(DeviceKernels.StoreKv);
            _attend = a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, ArrayView<ushort>, AttendShape>(DeviceKernels.Attend);
            _noIds = a.Allocate1D<int>(1);
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

    /// <summary>
    /// The device's peak memory bandwidth from the driver (2 × memory clock (kHz) × bus width (bits) / 8, as CUDA's
    /// bandwidthTest derives it), in bytes/s; null on the CPU accelerator or when the driver's numbers look wrong.
    /// </summary>
    public double? PeakBandwidthBytesPerSecond
    {
        get
        {
            if (_accelerator is not CudaAccelerator cuda) return null;
            double bytes = 2.0 * cuda.Device.MemoryClockRate * 1000 * (cuda.Device.MemoryBusWidth / 8.0);
            return bytes is > 1e10 and < 5e13 ? bytes : null;
        }
    }
    /// <summary>Weight bytes uploaded (matrices in their stored block form).</summary>
    public long UploadedBytes { get; private set; }
    /// <summary>Bytes of norm weight vectors uploaded (as f32, on first use).</summary>
    public long VectorBytes { get; private set; }
    /// <summary>Bytes of workspace buffers allocated on the device.</summary>
    public long WorkspaceBytes { get; private set; }
    /// <summary>Bytes of K/V held on the device for live caches.</summary>
    public long KvBytes { get; private set; }
    /// <summary>Bytes copied host → device and device → host by the forward passes (weights at load are not counted).</summary>
    public long BytesToDevice { get; private set; }
    public long BytesToHost { get; private set; }
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

    /// <summary>Weight types with a device kernel.</summary>
    public static bool Supports(TensorType type) => type is TensorType.F32 or TensorType.F16 or TensorType.BF16
        or TensorType.Q8_0 or TensorType.Q4_0 or TensorType.Q4_K or TensorType.Q6_K;

    /// <summary>K/V cache types the device attention reads.</summary>
    public static bool SupportsKv(KvType type) => type == KvType.F32 || type == KvType.F16 || type == KvType.BF16;

    /// <summary>Whether a row-major matrix of this type and width is uploaded (else it stays on the host).</summary>
    public static bool Uploads(TensorType type, long cols) => Supports(type) && cols % type.BlockElements() == 0;

    // ---- weights

    private unsafe MemoryBuffer1D<byte, Stride1D.Dense> Upload(byte* data, long bytes)
    {
        var buffer = _accelerator.Allocate1D<byte>(bytes);
        buffer.View.CopyFromCPU(ref Unsafe.AsRef<byte>(data), bytes);
        _owned.Add(buffer);
        UploadedBytes += bytes;
        UploadProgress?.Invoke(UploadedBytes);
        return buffer;
    }

    public unsafe IWeightMatrix RowMajor(TensorType type, byte* data, int rows, int cols)
    {
        if (!Uploads(type, cols))
        {
            HostMatrices++;
            return Host.RowMajor(type, data, rows, cols);
        }
        long bytes = type.RowBytes(cols) * rows;
        var m = new GpuMatrix(this, type, Upload(data, bytes).View, rows, cols, null);
        DeviceMatrices++;
        return m;
    }

    public unsafe FeedForward[] StackedExperts(TensorType gateType, byte* gate, TensorType upType, byte* up, TensorType downType, byte* down, int experts, int ffn, int dim)
    {
        if (!Uploads(gateType, dim) || !Uploads(upType, dim) || !Uploads(downType, ffn))
        {
            HostMatrices += 3 * experts;
            return CpuBackend.StackedExperts(Host, gateType, gate, upType, up, downType, down, experts, ffn, dim);
        }
        var stacks = new ExpertStacks(
            Stack(gateType, gate, experts, ffn, dim), Stack(upType, up, experts, ffn, dim), Stack(downType, down, experts, dim, ffn));
        var list = new FeedForward[experts];
        for (int x = 0; x < experts; x++)
            list[x] = new FeedForward(stacks.Gate.Expert(this, x, stacks), stacks.Up.Expert(this, x, stacks), stacks.Down.Expert(this, x, stacks));
        DeviceMatrices += 3 * experts;
        return list;
    }

    private unsafe ExpertStack Stack(TensorType type, byte* data, int experts, int rows, int cols)
    {
        long each = type.RowBytes(cols) * rows;
        return new ExpertStack(type, Upload(data, each * experts).View, rows, cols, each);
    }

    public unsafe IWeightMatrix InputMajor(TensorType type, byte* data, int inputs, int outputs, int leadingDim, int columnOffset)
    {
        HostMatrices++;
        return Host.InputMajor(type, data, inputs, outputs, leadingDim, columnOffset);
    }

    private ArrayView<float> Vector(float[] v)
    {
        if (!_vectors.TryGetValue(v, out var buffer))
        {
            buffer = _accelerator.Allocate1D(v);
            _vectors.Add(v, buffer);
            VectorBytes += v.Length * 4L;
        }
        return buffer.View;
    }

    // ---- buffers

    public ActivationBuffer Allocate(WorkspaceBuffer spec)
    {
        if (spec.Place == BufferPlace.Host) return Host.Allocate(spec);
        DeviceBuffer? b = null;
        b = new DeviceBuffer(_accelerator, spec.Elements, spec.Integers, () =>
        {
            lock (_gate)
            {
                WorkspaceBytes -= spec.Bytes;
                _live.Remove(b!);
            }
        });
        lock (_gate)
        {
            WorkspaceBytes += spec.Bytes;
            _live.Add(b);
        }
        return b;
    }

    internal static ArrayView<float> F(BufferView v) => v.Buffer is DeviceBuffer d
        ? d.Floats.SubView(v.Offset, v.Length)
        : throw new ArgumentException($"the GPU backend was handed a {v.Buffer.GetType().Name}: its operations take its own device buffers");

    internal static ArrayView<int> I(BufferView v) => v.Buffer is DeviceBuffer d
        ? d.Ints.SubView(v.Offset, v.Length)
        : throw new ArgumentException($"the GPU backend was handed a {v.Buffer.GetType().Name}: its operations take its own device buffers");

    public void Upload(ReadOnlySpan<float> source, BufferView destination)
    {
        if (source.IsEmpty) return;
        F(destination).SubView(0, source.Length).CopyFromCPU(ref MemoryMarshal.GetReference(source), source.Length);
        BytesToDevice += source.Length * 4L;
    }

    public void Upload(ReadOnlySpan<int> source, BufferView destination)
    {
        if (source.IsEmpty) return;
        I(destination).SubView(0, source.Length).CopyFromCPU(ref MemoryMarshal.GetReference(source), source.Length);
        BytesToDevice += source.Length * 4L;
    }

    public void Download(BufferView source, Span<float> destination)
    {
        if (source.Length == 0) return;
        _accelerator.Synchronize();
        F(source).CopyToCPU(ref MemoryMarshal.GetReference(destination), source.Length);
        BytesToHost += source.Length * 4L;
    }

    private float[] HostScratch(ref float[] a, long floats)
    {
        if (a.Length < floats) a = new float[Math.Max(floats, 2 * (long)a.Length)];
        return a;
    }

    // ---- products

    public void MatMul(IWeightMatrix w, BufferView x, int n, BufferView y)
    {
        if (n <= 0) return;
        if (w is GpuMatrix m)
        {
            m.Launch(F(x).SubView(0, (long)n * m.Cols), F(y).SubView(0, (long)n * m.Rows), n, _noIds.View, 0);
            return;
        }
        // A matrix kept on the host: x down, the CPU product, y up.
        var hx = HostScratch(ref _hostA, (long)n * w.Cols).AsSpan(0, n * w.Cols);
        var hy = HostScratch(ref _hostB, (long)n * w.Rows).AsSpan(0, n * w.Rows);
        Download(x.Take(n * w.Cols), hx);
        w.Multiply(hx, n, hy);
        Upload(hy, y);
    }

    public void MatMulToHost(IWeightMatrix w, BufferView x, int n, ForwardWorkspace ws, Span<float> y)
    {
        if (w is not GpuMatrix)
        {
            var hx = HostScratch(ref _hostA, (long)n * w.Cols).AsSpan(0, n * w.Cols);
            Download(x.Take(n * w.Cols), hx);
            w.Multiply(hx, n, y);
            return;
        }
        int piece = ws.HeadOutput.Length / w.Rows;
        for (int r = 0; r < n; r += piece)
        {
            int m = Math.Min(piece, n - r);
            var part = ws.HeadOutput.Take(m * w.Rows);
            MatMul(w, x.Slice(r * w.Cols, m * w.Cols), m, part);
            Download(part, y.Slice(r * w.Rows, m * w.Rows));
        }
    }

    // ---- elementwise and row operations

    public void RmsNorm(BufferView x, float[]? weight, float eps, int rows, int dim, BufferView y)
    {
        var xv = F(x);
        _rmsNorm(rows, xv, weight is null ? xv : Vector(weight), F(y), dim, eps, weight is null ? 0 : 1);
    }

    public void RopeTables(ReadOnlySpan<int> positions, float[] freqs, BufferView cos, BufferView sin)
    {
        // The model computes the tables on its host backend and uploads them; called here, the host computes them too
        // (double-precision cos/sin of large angles: PTX has only approximate sin/cos) and they are uploaded.
        var host = Host.Allocate(new WorkspaceBuffer("rope", "forward", cos.Length + (long)sin.Length, 4)).All;
        Host.RopeTables(positions, freqs, host.Take(cos.Length), host.Slice(cos.Length, sin.Length));
        Upload(host.Take(cos.Length).HostFloats, cos);
        Upload(host.Slice(cos.Length, sin.Length).HostFloats, sin);
    }

    public void AttentionTemperature(ReadOnlySpan<int> positions, float floorScale, float attnScale, BufferView temperature)
    {
        var t = HostScratch(ref _hostA, positions.Length);
        for (int r = 0; r < positions.Length; r++) t[r] = AttentionMath.TemperatureScale(positions[r], floorScale, attnScale);
        Upload(t.AsSpan(0, positions.Length), temperature);
    }

    public void Rope(BufferView x, int rows, int heads, int headDim, BufferView cos, BufferView sin)
        => _rope(rows * heads * (headDim / 2), F(x), F(cos), F(sin), heads, headDim);

    public void ScaleRows(BufferView x, int rows, int dim, BufferView scales) => _scaleRows(rows * dim, F(x).SubView(0, (long)rows * dim), F(scales), dim);

    public void SwiGlu(BufferView gate, BufferView up) => _swiGlu(gate.Length, F(gate), F(up));

    public void Add(BufferView x, BufferView delta) => _add(x.Length, F(x), F(delta));

    public void Embed(Llama4Weights weights, ReadOnlySpan<int> tokens, BufferView h)
    {
        int n = tokens.Length, d = (int)weights.Embedding.Shape[1];
        long vocab = weights.Embedding.Shape[0];
        foreach (int t in tokens)
            if ((uint)t >= (ulong)vocab) throw new ArgumentException($"token id {t} is outside the vocabulary (0..{vocab - 1})");
        if (weights.EmbeddingMatrix is not GpuMatrix m)
        {
            // Looked up on the host and uploaded (n × hidden floats).
            var host = HostScratch(ref _hostA, (long)n * d);
            for (int t = 0; t < n; t++) weights.Embed(tokens[t], host.AsSpan(t * d, d));
            Upload(host.AsSpan(0, n * d), h);
            return;
        }
        if (_tokens is null || _tokens.Length < n) { _tokens?.Dispose(); _tokens = _accelerator.Allocate1D<int>(Math.Max(n, 64)); }
        var ids = _tokens.View.SubView(0, n);
        ids.CopyFromCPU(ref MemoryMarshal.GetReference(tokens), n);
        BytesToDevice += n * 4L;
        _embed(n * d, m.Data, m.FloatData, ids, F(h), d, m.TypeCode, m.Type.RowBytes(d));
    }

    // ---- attention over the device K/V cache

    public void Attention(Llama4Config c, int layer, bool chunked, BufferView q, BufferView k, BufferView v, BatchRows rows, BufferView output)
    {
        var segments = rows.Segments;
        int n = rows.Count, kvDim = c.KvDim, chunk = c.AttentionChunkSize;
        float scale = 1f / MathF.Sqrt(c.HeadDim);
        var qv = F(q);
        var kv = F(k);
        var vv = F(v);
        var ov = F(output);
        for (int s = 0; s < segments.Count; s++)
        {
            var cache = segments[s].Cache;
            var dev = DeviceCache(cache, c);
            var l = dev.Layer(this, layer);
            int start = rows.StartOf(s), count = segments[s].Count, row0 = rows.OffsetOf(s);
            Sync(cache, dev, l, layer, start, kvDim);
            // A ring holds one chunk: rows that cross a chunk boundary are stored and attended one chunk at a time.
            for (int p = start; p < start + count;)
            {
                int end = l.Ring ? Math.Min(start + count, AttentionMath.ChunkStart(p, chunk) + chunk) : start + count;
                int r = row0 + p - start, m = end - p;
                _storeKv(m * kvDim, kv, l.K32, l.K16, l.KeyFormat, kvDim, r, p, l.Capacity);
                _storeKv(m * kvDim, vv, l.V32, l.V16, l.ValueFormat, kvDim, r, p, l.Capacity);
                _attend(m * c.NumHeads, qv, ov, l.K32, l.K16, l.V32, l.V16, new AttendShape
                {
                    Heads = c.NumHeads, KvHeads = c.NumKvHeads, HeadDim = c.HeadDim, FirstRow = r, FirstPos = p, Chunk = chunked ? chunk : 0,
                    Capacity = l.Capacity, KeyFormat = l.KeyFormat, ValueFormat = l.ValueFormat, Scale = scale,
                });
                p = end;
            }
            l.Synced = start + count;
        }
        // Write-through: the new rows also go to the host cache (prefix sharing, forks and the CPU layers read it there).
        var hk = HostScratch(ref _hostA, (long)n * kvDim).AsSpan(0, n * kvDim);
        var hv = HostScratch(ref _hostB, (long)n * kvDim).AsSpan(0, n * kvDim);
        Download(k.Take(n * kvDim), hk);
        Download(v.Take(n * kvDim), hv);
        for (int s = 0; s < segments.Count; s++)
        {
            int off = rows.OffsetOf(s) * kvDim, count = segments[s].Count;
            segments[s].Cache.Store(layer, rows.StartOf(s), hk.Slice(off, count * kvDim), hv.Slice(off, count * kvDim), count);
        }
    }

    private DeviceKvCache DeviceCache(KvCache cache, Llama4Config c)
    {
        lock (_gate)
        {
            foreach (var d in _caches)
                if (d.Owner.TryGetTarget(out var o) && ReferenceEquals(o, cache)) return d;
            if (!SupportsKv(cache.KeyType) || !SupportsKv(cache.ValueType))
                throw new NotSupportedException(
                    $"the GPU backend keeps K/V as f32, f16 or bf16; this cache is K {cache.KeyType.Name}, V {cache.ValueType.Name} (use --kv-type f16, bf16 or f32 with --device cuda)");
            // Free the device copies of caches that were disposed or dropped.
            for (int i = _caches.Count - 1; i >= 0; i--)
                if (!_caches[i].Owner.TryGetTarget(out var o) || o.IsDisposed)
                {
                    KvBytes -= _caches[i].Bytes;
                    _caches[i].Dispose();
                    _caches.RemoveAt(i);
                }
            var dev = new DeviceKvCache(cache, c);
            _caches.Add(dev);
            return dev;
        }
    }

    internal void CountKv(long bytes) => KvBytes += bytes;

    /// <summary>
    /// Brings the device copy of one layer up to the host cache's first <paramref name="start"/> positions: after a
    /// truncation the device prefix is still valid; positions the device never stored (a forked or shared cache,
    /// rows stored elsewhere) are uploaded from the host copy.
    /// </summary>
    private void Sync(KvCache cache, DeviceKvCache dev, DeviceKvLayer l, int layer, int start, int kvDim)
    {
        if (dev.Version != cache.ContentVersion)
        {
            dev.Version = cache.ContentVersion;
            dev.Invalidate();
        }
        if (l.Synced >= start)
        {
            l.Synced = start;
            return;
        }
        int from = l.Ring ? Math.Max(l.Synced, start - l.Capacity) : l.Synced;
        int m = start - from;
        var hk = HostScratch(ref _hostA, (long)m * kvDim);
        var hv = HostScratch(ref _hostB, (long)m * kvDim);
        for (int p = 0; p < m; p++) cache.Read(layer, from + p, hk.AsSpan(p * kvDim, kvDim), hv.AsSpan(p * kvDim, kvDim));
        if (_deviceStaging is null || _deviceStaging.Length < 2L * m * kvDim)
        {
            _deviceStaging?.Dispose();
            _deviceStaging = _accelerator.Allocate1D<float>(2L * m * kvDim);
        }
        var st = _deviceStaging.View;
        st.SubView(0, (long)m * kvDim).CopyFromCPU(ref hk[0], (long)m * kvDim);
        st.SubView((long)m * kvDim, (long)m * kvDim).CopyFromCPU(ref hv[0], (long)m * kvDim);
        BytesToDevice += 8L * m * kvDim;
        _storeKv(m * kvDim, st.SubView(0, (long)m * kvDim), l.K32, l.K16, l.KeyFormat, kvDim, 0, from, l.Capacity);
        _storeKv(m * kvDim, st.SubView((long)m * kvDim, (long)m * kvDim), l.V32, l.V16, l.ValueFormat, kvDim, 0, from, l.Capacity);
        l.Synced = start;
    }

    // ---- routed experts

    public void RoutedExperts(FeedForward[] experts, BufferView routerLogits, BufferView x, int n, int k, ForwardWorkspace ws, BufferView output)
    {
        int d = ws.Config.HiddenSize, count = experts.Length;
        if (experts[0].Gate is not GpuMatrix gm)
        {
            // Experts in RAM: router logits and x down, the CPU backend's grouped product, the sum up and added.
            var hw = ws.Host;
            var hl = hw.RouterLogits.Take(n * count);
            var hx = hw.Normed.Take(n * d);
            var ho = hw.Delta.Take(n * d);
            Download(routerLogits.Take(n * count), hl.HostFloats);
            Download(x.Take(n * d), hx.HostFloats);
            ho.HostFloats.Clear();
            Host.RoutedExperts(experts, hl, hx, n, k, hw, ho);
            var sum = ws.ExpertOut.Take(n * d);
            Upload(ho.HostFloats, sum);
            Add(output.Take(n * d), sum);
            return;
        }
        int f = experts[0].Gate.Rows, slots = n * k;
        var choice = I(ws.Choice).SubView(0, slots);
        var gates = F(ws.SlotGates).SubView(0, slots);
        var xin = ws.ExpertIn.Take(slots * d);
        var gate = ws.Gate.Take(slots * f);
        var up = ws.Up.Take(slots * f);
        var yout = ws.ExpertOut.Take(slots * d);
        _route(n, F(routerLogits), choice, gates, count, k);
        _gather(slots * d, F(x), gates, F(xin), d, k);
        if (gm.Stacks is { } stacks)
        {
            // One grouped product per matrix (MUL_MAT_ID): routed row s reads expert choice[s]'s weights.
            stacks.Gate.Launch(this, F(xin), F(gate), slots, choice);
            stacks.Up.Launch(this, F(xin), F(up), slots, choice);
            _swiGlu(slots * f, F(gate), F(up));
            stacks.Down.Launch(this, F(gate), F(yout), slots, choice);
        }
        else
        {
            // Experts uploaded one by one (load-time quantized): the choices come down (n·k ints), one product per routed row.
            _accelerator.Synchronize();
            var idBuffer = HostInts(slots);
            choice.CopyToCPU(ref idBuffer[0], slots);
            BytesToHost += slots * 4L;
            for (int s = 0; s < slots; s++)
            {
                var ff = experts[idBuffer[s]];
                MatMul(ff.Gate, xin.Slice(s * d, d), 1, gate.Slice(s * f, f));
                MatMul(ff.Up, xin.Slice(s * d, d), 1, up.Slice(s * f, f));
            }
            _swiGlu(slots * f, F(gate), F(up));
            for (int s = 0; s < slots; s++) MatMul(experts[idBuffer[s]].Down, gate.Slice(s * f, f), 1, yout.Slice(s * d, d));
        }
        _scatterAdd(n * d, F(output), F(yout), d, k);
    }

    private int[] _hostInts = [];
    private int[] HostInts(int n)
    {
        if (_hostInts.Length < n) _hostInts = new int[Math.Max(n, 2 * _hostInts.Length)];
        return _hostInts;
    }

    /// <summary>Waits for the queued kernels (tests and timing).</summary>
    public void Synchronize() => _accelerator.Synchronize();

    public void Dispose()
    {
        foreach (var b in _live.ToArray()) b.Dispose();   // workspaces of models still alive
        lock (_gate)
        {
            foreach (var c in _caches) c.Dispose();
            _caches.Clear();
            foreach (var v in _vectors.Values) v.Dispose();
            _vectors.Clear();
            foreach (var o in _owned) o.Dispose();
            _owned.Clear();
            _deviceStaging?.Dispose();
            _tokens?.Dispose();
            _noIds.Dispose();
        }
        _accelerator.Dispose();
        _context.Dispose();
        Host.Dispose();
    }
}

/// <summary>A float or int buffer in device memory.</summary>
internal sealed class DeviceBuffer : ActivationBuffer, IDisposable
{
    private readonly MemoryBuffer1D<float, Stride1D.Dense>? _floats;
    private readonly MemoryBuffer1D<int, Stride1D.Dense>? _ints;
    private readonly long _length;
    private Action? _released;

    public DeviceBuffer(Accelerator a, long elements, bool integers, Action released)
    {
        _released = released;
        _length = elements;
        long n = Math.Max(1, elements);   // ILGPU refuses empty allocations
        if (integers) _ints = a.Allocate1D<int>(n);
        else _floats = a.Allocate1D<float>(n);
    }

    public override long Length => _length;
    public ArrayView<float> Floats => _floats?.View ?? throw new InvalidOperationException("an int buffer read as floats");
    public ArrayView<int> Ints => _ints?.View ?? throw new InvalidOperationException("a float buffer read as ints");

    public void Dispose()
    {
        _floats?.Dispose();
        _ints?.Dispose();
        _released?.Invoke();
        _released = null;
    }
}

/// <summary>The three stacked expert tensors of one MoE layer on the device.</summary>
internal sealed record ExpertStacks(ExpertStack Gate, ExpertStack Up, ExpertStack Down);

/// <summary>One stacked [experts, rows, cols] tensor on the device.</summary>
internal sealed class ExpertStack(TensorType type, ArrayView<byte> data, int rows, int cols, long expertBytes)
{
    public TensorType Type { get; } = type;
    public ArrayView<byte> Data { get; } = data;
    public int Rows { get; } = rows;
    public int Cols { get; } = cols;
    public long ExpertBytes { get; } = expertBytes;

    public GpuMatrix Expert(GpuBackend b, int x, ExpertStacks stacks)
        => new(b, Type, Data.SubView(x * ExpertBytes, ExpertBytes), Rows, Cols, stacks);

    /// <summary>y[s] = W[ids[s]]·x[s] for <paramref name="slots"/> routed rows.</summary>
    public void Launch(GpuBackend b, ArrayView<float> x, ArrayView<float> y, int slots, ArrayView<int> ids)
        => new GpuMatrix(b, Type, Data, Rows, Cols, null).Launch(x, y, slots, ids, 1, ExpertBytes);
}

/// <summary>A weight matrix resident on the device in its stored (GGUF block) form.</summary>
internal sealed class GpuMatrix : IWeightMatrix
{
    private readonly GpuBackend _backend;

    public GpuMatrix(GpuBackend backend, TensorType type, ArrayView<byte> data, int rows, int cols, ExpertStacks? stacks)
    {
        _backend = backend;
        Type = type;
        Rows = rows;
        Cols = cols;
        Data = data;
        Stacks = stacks;
        ByteSize = type.RowBytes(cols) * rows;
        FloatData = type == TensorType.F32 ? data.Cast<float>() : default;
        TypeCode = type switch
        {
            TensorType.F32 => BlockKernels.TF32, TensorType.F16 => BlockKernels.TF16, TensorType.BF16 => BlockKernels.TBF16,
            TensorType.Q8_0 => BlockKernels.TQ8_0, TensorType.Q4_0 => BlockKernels.TQ4_0, TensorType.Q4_K => BlockKernels.TQ4_K,
            TensorType.Q6_K => BlockKernels.TQ6_K, _ => throw new NotSupportedException($"no device kernel for {type}"),
        };
    }

    public int Rows { get; }
    public int Cols { get; }
    public TensorType Type { get; }
    public long ByteSize { get; }
    public ArrayView<byte> Data { get; }
    public ArrayView<float> FloatData { get; }
    public int TypeCode { get; }
    /// <summary>The layer's stacked expert tensors when this matrix is one expert of them.</summary>
    public ExpertStacks? Stacks { get; }

    /// <summary>The product with host vectors (tests, callers outside a forward pass): x up, one launch, y down.</summary>
    public void Multiply(ReadOnlySpan<float> x, int n, Span<float> y)
    {
        if (n <= 0) return;
        if (x.Length < (long)n * Cols || y.Length < (long)n * Rows)
            throw new ArgumentException($"matmul shape mismatch: x {x.Length}, y {y.Length}, W [{Rows}, {Cols}], n {n}");
        var a = _backend.Accelerator;
        using var xb = a.Allocate1D<float>((long)n * Cols);
        using var yb = a.Allocate1D<float>((long)n * Rows);
        xb.View.CopyFromCPU(ref MemoryMarshal.GetReference(x), (long)n * Cols);
        using var ids = a.Allocate1D<int>(1);
        Launch(xb.View, yb.View, n, ids.View, 0);
        a.Synchronize();
        yb.View.CopyToCPU(ref MemoryMarshal.GetReference(y), (long)n * Rows);
    }

    internal void Launch(ArrayView<float> x, ArrayView<float> y, int n, ArrayView<int> ids, int useIds, long expertBytes = 0)
    {
        int count = n * Rows;
        var w = Data;
        var b = _backend;
        switch (Type)
        {
            case TensorType.F32: b.F32(count, FloatData, x, y, Rows, Cols, ids, useIds, expertBytes); break;
            case TensorType.F16: b.F16(count, w, x, y, Rows, Cols, 0, ids, useIds, expertBytes); break;
            case TensorType.BF16: b.F16(count, w, x, y, Rows, Cols, 1, ids, useIds, expertBytes); break;
            case TensorType.Q8_0: b.Q8_0(count, w, x, y, Rows, Cols, ids, useIds, expertBytes); break;
            case TensorType.Q4_0: b.Q4_0(count, w, x, y, Rows, Cols, ids, useIds, expertBytes); break;
            case TensorType.Q4_K: b.Q4_K(count, w, x, y, Rows, Cols, ids, useIds, expertBytes); break;
            case TensorType.Q6_K: b.Q6_K(count, w, x, y, Rows, Cols, ids, useIds, expertBytes); break;
            default: throw new NotSupportedException($"no device kernel for {Type}");
        }
    }
}

/// <summary>The device copy of one <see cref="KvCache"/>: per layer, K and V rows laid out as the host cache's slots
/// (a ring of one chunk for chunked layers shorter than the context), allocated when the layer first runs on the device.</summary>
internal sealed class DeviceKvCache(KvCache cache, Llama4Config config) : IDisposable
{
    private readonly DeviceKvLayer?[] _layers = new DeviceKvLayer?[config.NumLayers];

    public WeakReference<KvCache> Owner { get; } = new(cache);
    public long Version { get; set; } = cache.ContentVersion;
    public long Bytes { get; private set; }

    public DeviceKvLayer Layer(GpuBackend b, int layer)
    {
        if (_layers[layer] is { } l) return l;
        if (!Owner.TryGetTarget(out var owner)) throw new ObjectDisposedException(nameof(KvCache));
        int capacity = DevicePlan.Capacity(config, layer, owner.MaxContext);
        bool ring = capacity < owner.MaxContext;
        l = new DeviceKvLayer(b.Accelerator, ring, capacity, config.KvDim, Format(owner.KeyType), Format(owner.ValueType));
        _layers[layer] = l;
        Bytes += l.Bytes;
        b.CountKv(l.Bytes);
        return l;
    }

    private static int Format(KvType t) => t == KvType.F16 ? DeviceKernels.KvF16 : t == KvType.BF16 ? DeviceKernels.KvBF16 : DeviceKernels.KvF32;

    public void Invalidate()
    {
        foreach (var l in _layers) if (l is not null) l.Synced = 0;
    }

    public void Dispose()
    {
        foreach (var l in _layers) l?.Dispose();
    }
}

/// <summary>One layer's K and V on the device, as f32 or 16-bit (f16/bf16) rows (the other view of each is a 1-element placeholder).
/// <see cref="KeyFormat"/>/<see cref="ValueFormat"/> hold the storage code (<see cref="DeviceKernels.KvF32"/>, KvF16, KvBF16).</summary>
internal sealed class DeviceKvLayer : IDisposable
{
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _k32, _v32;
    private readonly MemoryBuffer1D<ushort, Stride1D.Dense> _k16, _v16;

    public DeviceKvLayer(Accelerator a, bool ring, int capacity, int kvDim, int keyFormat, int valueFormat)
    {
        bool keyHalf = keyFormat != DeviceKernels.KvF32, valueHalf = valueFormat != DeviceKernels.KvF32;
        Ring = ring;
        Capacity = capacity;
        long rows = (long)capacity * kvDim;
        _k32 = a.Allocate1D<float>(keyHalf ? 1 : rows);
        _k16 = a.Allocate1D<ushort>(keyHalf ? rows : 1);
        _v32 = a.Allocate1D<float>(valueHalf ? 1 : rows);
        _v16 = a.Allocate1D<ushort>(valueHalf ? rows : 1);
        KeyFormat = keyFormat;
        ValueFormat = valueFormat;
        Bytes = rows * ((keyHalf ? 2 : 4) + (valueHalf ? 2 : 4));
    }

    public bool Ring { get; }
    public int Capacity { get; }
    public int KeyFormat { get; }
    public int ValueFormat { get; }
    public long Bytes { get; }
    /// <summary>Positions [0, Synced) of the host cache are on the device.</summary>
    public int Synced { get; set; }
    public ArrayView<float> K32 => _k32.View;
    public ArrayView<ushort> K16 => _k16.View;
    public ArrayView<float> V32 => _v32.View;
    public ArrayView<ushort> V16 => _v16.View;

    public void Dispose()
    {
        _k32.Dispose();
        _k16.Dispose();
        _v32.Dispose();
        _v16.Dispose();
    }
}
