using System.Runtime.InteropServices;
using Scout.Backends;
using Scout.Tensors;

namespace Scout.Kernels.Quant;

/// <summary>
/// Quantizes float weight matrices while a model loads (e.g. a bf16 Hugging Face checkpoint run as Q4_0): each
/// matrix is encoded row by row into native memory owned by this object, then served through
/// the backend's (or the one named per matrix, <c>on</c>) <see cref="IBackend.RowMajor"/> like a quantized GGUF tensor (encoded on its host threads).
/// Dispose frees the memory.
/// </summary>
public sealed unsafe class LoadTimeQuantizer(TensorType target, IBackend backend) : IDisposable
{
    private readonly List<nint> _blocks = new();
    private readonly object _gate = new();

    public TensorType Target { get; } = Quantizer.CanEncode(target) && !target.IsFloat()
        ? target : throw new ArgumentException($"cannot quantize to {target} at load time (expected a block type such as Q4_0, Q8_0, Q4_K, Q6_K)");

    /// <summary>Bytes of quantized weights allocated so far.</summary>
    public long AllocatedBytes { get; private set; }

    /// <summary>The type a matrix with rows of <paramref name="cols"/> values gets: the target, or llama.cpp's 32-block fallback.</summary>
    public TensorType TypeFor(int cols)
    {
        if (cols % Target.BlockElements() == 0) return Target;
        var fallback = Target switch
        {
            TensorType.Q4_K => TensorType.Q5_0, TensorType.Q5_K => TensorType.Q5_1, TensorType.Q6_K => TensorType.Q8_0,
            TensorType.Q2_K or TensorType.Q3_K => TensorType.Q4_0, _ => Target,
        };
        return cols % fallback.BlockElements() == 0 ? fallback : TensorType.F32;
    }

    /// <summary>A quantized copy of a row-major float matrix (rows = outputs); the source is returned as is when not float or not encodable.</summary>
    public IWeightMatrix RowMajor(TensorType sourceType, byte* data, int rows, int cols, IBackend? on = null)
    {
        var type = TypeFor(cols);
        if (!sourceType.IsFloat() || type == TensorType.F32) return (on ?? backend).RowMajor(sourceType, data, rows, cols);
        long srcRowBytes = sourceType.RowBytes(cols);
        return Encode(type, rows, cols, (r, row) =>
            Dequantize.ToFloat(sourceType, new ReadOnlySpan<byte>(data + r * srcRowBytes, (int)srcRowBytes), row), on);
    }

    /// <summary>
    /// A quantized copy of an input-major matrix W[in, ld] used as y = x·W[:, offset..offset+outputs) (Hugging Face
    /// expert layout): transposed so each output feature becomes one encoded row.
    /// </summary>
    public IWeightMatrix InputMajor(TensorType sourceType, byte* data, int inputs, int outputs, int leadingDim, int columnOffset, IBackend? on = null)
    {
        var type = TypeFor(inputs);
        if (type == TensorType.F32) return (on ?? backend).InputMajor(sourceType, data, inputs, outputs, leadingDim, columnOffset);
        int elem = sourceType == TensorType.F32 ? 4 : 2;
        // Decode the [inputs, outputs] slice once, then read columns as rows.
        var slice = new float[(long)inputs * outputs];
        for (int i = 0; i < inputs; i++)
            Dequantize.ToFloat(sourceType, new ReadOnlySpan<byte>(data + ((long)i * leadingDim + columnOffset) * elem, outputs * elem), slice.AsSpan(i * outputs, outputs));
        return Encode(type, outputs, inputs, (o, row) =>
        {
            for (int i = 0; i < inputs; i++) row[i] = slice[(long)i * outputs + o];
        }, on);
    }

    private IWeightMatrix Encode(TensorType type, int rows, int cols, Action<long, float[]> readRow, IBackend? on)
    {
        long rowBytes = type.RowBytes(cols);
        long total = rowBytes * rows;
        byte* dst = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(total, 64), 64);
        lock (_gate)
        {
            _blocks.Add((nint)dst);
            AllocatedBytes += total;
        }
        backend.HostPool.ForRange(rows, Math.Max(1, 65536 / Math.Max(cols, 1)), (r0, r1) =>
        {
            var row = new float[cols];
            for (int r = r0; r < r1; r++)
            {
                readRow(r, row);
                Quantizer.Quantize(type, row, new Span<byte>(dst + r * rowBytes, (int)rowBytes));
            }
        });
        return (on ?? backend).RowMajor(type, dst, rows, cols);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var p in _blocks) NativeMemory.AlignedFree((void*)p);
            _blocks.Clear();
        }
    }
}
