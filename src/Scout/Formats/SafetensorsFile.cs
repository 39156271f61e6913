using System.Text.Json;
using Scout.Tensors;

namespace Scout.Formats;

/// <summary>
/// Reads a .safetensors file: u64 header length, JSON header (dtype, shape, data_offsets per tensor), raw data.
/// Every tensor is validated (dtype, size, bounds, overlap) and exposed as a zero-copy view into the mapping.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    private const long MaxHeaderBytes = 100L << 20;
    private readonly MappedFile _file;
    private readonly Dictionary<string, WeightTensor> _tensors = new(StringComparer.Ordinal);

    public string Path => _file.Path;
    public long FileSize => _file.Length;
    public IReadOnlyDictionary<string, WeightTensor> Tensors => _tensors;

    private SafetensorsFile(MappedFile file)
    {
        _file = file;
        try { Parse(); }
        catch (ModelLoadException) { file.Dispose(); throw; }
        catch (Exception e) when (e is OverflowException or InvalidOperationException or ArgumentException or System.Text.DecoderFallbackException
                                      or FormatException or InvalidDataException or NotSupportedException)
        {
            file.Dispose();
            throw new ModelLoadException($"{System.IO.Path.GetFileName(file.Path)}: corrupt safetensors header: {e.Message}", e);
        }
        catch { file.Dispose(); throw; }
    }

    public static SafetensorsFile Open(string path) => new(MappedFile.Open(path));

    private void Parse()
    {
        string name = System.IO.Path.GetFileName(Path);
        if (_file.Length < 8)
            throw new ModelLoadException($"{name}: file is {_file.Length} bytes, too short for a safetensors header");
        long headerLen = BitConverter.ToInt64(_file.Span(0, 8));
        if (headerLen <= 0 || headerLen > MaxHeaderBytes || 8 + headerLen > _file.Length)
            throw new ModelLoadException($"{name}: header length {headerLen} does not fit in the file ({_file.Length} bytes); the file is truncated or not safetensors");
        long dataStart = 8 + headerLen;
        long dataLen = _file.Length - dataStart;

        JsonDocument doc;
        try { doc = JsonDocument.Parse(_file.Span(8, (int)headerLen).ToArray()); }
        catch (JsonException e) { throw new ModelLoadException($"{name}: malformed JSON header: {e.Message}"); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new ModelLoadException($"{name}: header is not a JSON object");
        // Names and strings must be valid UTF-8 (System.Text.Json checks them only when read).
        if (!System.Text.Unicode.Utf8.IsValid(_file.Span(8, (int)headerLen)))
            throw new ModelLoadException($"{name}: the JSON header is not valid UTF-8 (a tensor name or value holds invalid bytes)");

        var ranges = new List<(long Start, long End, string Name)>();
        foreach (var prop in doc.RootElement.EnumerateObject())
        {
            if (prop.Name == "__metadata__") continue;
            var t = prop.Value;
            if (t.ValueKind != JsonValueKind.Object
                || !t.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String
                || !t.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array
                || !t.TryGetProperty("data_offsets", out var offEl) || offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2)
                throw new ModelLoadException($"{name}: tensor '{prop.Name}' needs dtype, shape and data_offsets [begin, end]");

            string dtype = dtypeEl.GetString()!;
            TensorType type = dtype switch
            {
                "F32" => TensorType.F32,
                "BF16" => TensorType.BF16,
                "F16" => TensorType.F16,
                _ => throw new ModelLoadException($"{name}: tensor '{prop.Name}' has dtype {dtype}, which Scout does not read (F32, BF16, F16 are supported)"),
            };
            var shape = new long[shapeEl.GetArrayLength()];
            int i = 0;
            long count = 1;
            foreach (var d in shapeEl.EnumerateArray())
            {
                if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0)
                    throw new ModelLoadException($"{name}: tensor '{prop.Name}' has an invalid shape entry {d}");
                shape[i++] = dim;
                try { count = checked(count * dim); }
                catch (OverflowException) { throw new ModelLoadException($"{name}: tensor '{prop.Name}' shape {FormatShape(shape)} has more elements than fit in 64 bits"); }
            }
            if (offEl[0].ValueKind != JsonValueKind.Number || offEl[1].ValueKind != JsonValueKind.Number
                || !offEl[0].TryGetInt64(out long begin) || !offEl[1].TryGetInt64(out long end) || begin < 0 || end < begin)
                throw new ModelLoadException($"{name}: tensor '{prop.Name}' has invalid data_offsets");
            long expected = type.ByteCount(count);
            if (end - begin != expected)
                throw new ModelLoadException($"{name}: tensor '{prop.Name}' {dtype} {FormatShape(shape)} needs {expected} bytes but data_offsets span {end - begin}");
            if (end > dataLen)
                throw new ModelLoadException($"{name}: tensor '{prop.Name}' ends at byte {dataStart + end} but the file has {_file.Length} bytes (truncated file?)");
            ranges.Add((begin, end, prop.Name));
            _tensors[prop.Name] = new WeightTensor(prop.Name, type, shape, _file.Pointer + dataStart + begin, expected, name);
        }
        ranges.Sort((a, b) => a.Start.CompareTo(b.Start));
        for (int k = 1; k < ranges.Count; k++)
            if (ranges[k].Start < ranges[k - 1].End)
                throw new ModelLoadException($"{name}: tensors '{ranges[k - 1].Name}' and '{ranges[k].Name}' overlap in the data section");
    }

    private static string FormatShape(long[] s) => "[" + string.Join(", ", s) + "]";

    public void Dispose() => _file.Dispose();
}
