using System.Text;
using Scout.Tensors;

namespace Scout.Formats;

/// <summary>GGUF metadata value types (the u32 written before each value).</summary>
public enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
    String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
}

/// <summary>One tensor entry of a GGUF file. <see cref="Ne"/> is ggml order (ne[0] contiguous).</summary>
public sealed record GgufTensorInfo(string Name, long[] Ne, TensorType Type, long Offset, long ByteLength);

/// <summary>
/// Reads a GGUF (v2/v3) file: metadata of every value type, tensor infos, alignment and strict offsets,
/// all bounds-checked against the file. Tensors are zero-copy views into the mapping.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF"
    private readonly MappedFile _file;
    private readonly Dictionary<string, object> _metadata = new(StringComparer.Ordinal);
    private readonly Dictionary<string, GgufValueType> _metadataTypes = new(StringComparer.Ordinal);
    private readonly List<GgufTensorInfo> _infos = new();
    private readonly Dictionary<string, WeightTensor> _tensors = new(StringComparer.Ordinal);

    public string Path => _file.Path;
    public long FileSize => _file.Length;
    public uint Version { get; private set; }
    public uint Alignment { get; private set; } = 32;
    public long DataStart { get; private set; }
    public IReadOnlyDictionary<string, object> Metadata => _metadata;
    public IReadOnlyDictionary<string, GgufValueType> MetadataTypes => _metadataTypes;
    public IReadOnlyList<GgufTensorInfo> TensorInfos => _infos;
    public IReadOnlyDictionary<string, WeightTensor> Tensors => _tensors;

    private GgufFile(MappedFile file)
    {
        _file = file;
        try { Parse(); }
        catch (ModelLoadException) { file.Dispose(); throw; }
        catch (Exception e) when (e is OverflowException or DecoderFallbackException or ArgumentException or NotSupportedException)
        {
            file.Dispose();
            throw new ModelLoadException($"{System.IO.Path.GetFileName(file.Path)}: corrupt GGUF: {e.Message}", e);
        }
    }

    public static GgufFile Open(string path) => new(MappedFile.Open(path));

    public string? GetString(string key) => _metadata.TryGetValue(key, out var v) ? v as string : null;

    /// <summary>Integer metadata of any integer type (or a bool), or null when absent; another type, or a u64 past
    /// the range of a long, is a <see cref="ModelLoadException"/> naming the file and the key.</summary>
    public long? GetInt(string key) => _metadata.TryGetValue(key, out var v) ? v switch
    {
        byte b => b, sbyte sb => sb, ushort us => us, short s => s, uint u => u, int i => i,
        ulong ul => ul <= long.MaxValue ? (long)ul : throw Bad(key, $"is {ul}, past the range of a signed 64-bit integer"),
        long l => l, bool bo => bo ? 1 : 0,
        _ => throw Bad(key, $"must be an integer, got a {_metadataTypes[key]} value"),
    } : null;

    /// <summary>Integer metadata that must lie in [<paramref name="min"/>, <paramref name="max"/>], or null when absent.</summary>
    public int? GetInt32(string key, int min, int max)
    {
        if (GetInt(key) is not long v) return null;
        if (v < min || v > max) throw Bad(key, $"is {v}; it must be between {min} and {max}");
        return (int)v;
    }

    /// <summary>Float metadata (any float or integer type), or null when absent.</summary>
    public double? GetFloat(string key) => _metadata.TryGetValue(key, out var v) ? v switch
    {
        float f => f, double d => d, string => throw Bad(key, "must be a number, got a string"), Array => throw Bad(key, "must be a number, got an array"),
        _ => GetInt(key),
    } : null;

    private ModelLoadException Bad(string key, string what) => new($"{System.IO.Path.GetFileName(Path)}: metadata '{key}' {what}");

    public T[]? GetArray<T>(string key) => _metadata.TryGetValue(key, out var v) ? v as T[] : null;

    private sealed class Cursor(GgufFile owner)
    {
        public long Pos;
        private readonly MappedFile _f = owner._file;
        private string Name => System.IO.Path.GetFileName(_f.Path);

        public ReadOnlySpan<byte> Take(long n, string what)
        {
            if (n < 0 || Pos + n > _f.Length)
                throw new ModelLoadException($"{Name}: truncated GGUF: {what} at byte {Pos} needs {n} bytes but the file has {_f.Length}");
            var s = _f.Span(Pos, checked((int)n));
            Pos += n;
            return s;
        }
        public uint U32(string what) => BitConverter.ToUInt32(Take(4, what));
        public ulong U64(string what) => BitConverter.ToUInt64(Take(8, what));
        public string Str(string what)
        {
            ulong len = U64(what);
            if (len > (ulong)(_f.Length - Pos))
                throw new ModelLoadException($"{Name}: corrupt GGUF: {what} claims a string of {len} bytes past the end of the file");
            return Encoding.UTF8.GetString(Take((long)len, what));
        }
    }

    private void Parse()
    {
        string name = System.IO.Path.GetFileName(Path);
        var c = new Cursor(this);
        if (_file.Length < 24)
            throw new ModelLoadException($"{name}: file is {_file.Length} bytes, too short for a GGUF header");
        uint magic = c.U32("magic");
        if (magic != Magic)
            throw new ModelLoadException($"{name}: not a GGUF file (bad magic 0x{magic:X8}, expected 'GGUF')");
        Version = c.U32("version");
        if (Version is not (2 or 3))
            throw new ModelLoadException($"{name}: unsupported GGUF version {Version} (Scout reads versions 2 and 3)");
        ulong tensorCount = c.U64("tensor count");
        ulong kvCount = c.U64("metadata count");
        // Every KV needs >= 8+4+1 bytes and every tensor info >= 8+4+8+4+8: counts beyond that are lies.
        if (kvCount > (ulong)_file.Length / 13)
            throw new ModelLoadException($"{name}: corrupt GGUF: metadata count {kvCount} cannot fit in a {_file.Length}-byte file");
        if (tensorCount > (ulong)_file.Length / 32)
            throw new ModelLoadException($"{name}: corrupt GGUF: tensor count {tensorCount} cannot fit in a {_file.Length}-byte file");

        for (ulong i = 0; i < kvCount; i++)
        {
            string key = c.Str($"metadata key #{i}");
            var type = (GgufValueType)c.U32($"type of '{key}'");
            if (_metadata.ContainsKey(key))
                throw new ModelLoadException($"{name}: duplicate metadata key '{key}'");
            _metadata[key] = ReadValue(c, type, key, allowArray: true);
            _metadataTypes[key] = type;
        }

        if (_metadata.TryGetValue("general.alignment", out var al))
        {
            if (al is not uint a || a == 0 || (a & (a - 1)) != 0)
                throw new ModelLoadException($"{name}: general.alignment must be a power-of-two u32, got {al}");
            Alignment = a;
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (ulong i = 0; i < tensorCount; i++)
        {
            string tname = c.Str($"tensor name #{i}");
            if (Encoding.UTF8.GetByteCount(tname) >= 64)
                throw new ModelLoadException($"{name}: tensor name '{tname[..Math.Min(tname.Length, 80)]}' is {Encoding.UTF8.GetByteCount(tname)} bytes; GGUF allows at most 63");
            if (!seen.Add(tname))
                throw new ModelLoadException($"{name}: duplicate tensor name '{tname}'");
            uint nDims = c.U32($"dimension count of '{tname}'");
            if (nDims is 0 or > 4)
                throw new ModelLoadException($"{name}: tensor '{tname}' has {nDims} dimensions (1 to 4 allowed)");
            var ne = new long[nDims];
            long count = 1;
            for (int d = 0; d < nDims; d++)
            {
                ulong v = c.U64($"shape of '{tname}'");
                if (v == 0 || v > (ulong)_file.Length * 8)
                    throw new ModelLoadException($"{name}: tensor '{tname}' has impossible dimension ne[{d}] = {v}");
                ne[d] = (long)v;
                count = checked(count * ne[d]);
            }
            uint typeId = c.U32($"type of '{tname}'");
            if (!TensorTypeInfo.IsKnown((int)typeId))
                throw new ModelLoadException($"{name}: tensor '{tname}' has unknown ggml type id {typeId}");
            var type = (TensorType)typeId;
            if (ne[0] % type.BlockElements() != 0)
                throw new ModelLoadException($"{name}: tensor '{tname}' row length ne[0] = {ne[0]} is not a multiple of the {type} block size {type.BlockElements()}");
            ulong offset = c.U64($"offset of '{tname}'");
            long byteLength = count > _file.Length * 8L ? -1 : type.ByteCount(count);
            if (byteLength < 0 || byteLength > _file.Length)
                throw new ModelLoadException($"{name}: tensor '{tname}' shape [{string.Join(", ", ne)}] needs more bytes than the {_file.Length}-byte file holds");
            _infos.Add(new GgufTensorInfo(tname, ne, type, (long)Math.Min(offset, long.MaxValue), byteLength));
        }

        DataStart = AlignUp(c.Pos, Alignment);
        if (DataStart > _file.Length && _infos.Count > 0)
            throw new ModelLoadException($"{name}: truncated GGUF: the data section would start at byte {DataStart} but the file has {_file.Length}");
        // Writers pad with zeros; anything else there means the counts do not describe the header (e.g. a lying tensor count).
        var padding = _file.Span(c.Pos, (int)(Math.Min(DataStart, _file.Length) - c.Pos));
        if (padding.IndexOfAnyExcept((byte)0) >= 0)
            throw new ModelLoadException($"{name}: corrupt GGUF: non-zero bytes between the tensor infos (end at byte {c.Pos}) and the data section at {DataStart}; the tensor or metadata count does not match the header");
        long expectedOffset = 0;
        foreach (var info in _infos)
        {
            if (info.Offset != expectedOffset)
                throw new ModelLoadException($"{name}: tensor '{info.Name}' has offset {info.Offset}, expected {expectedOffset} (offsets must follow tensor order without gaps or overlap)");
            long end = DataStart + info.Offset + info.ByteLength;
            if (end > _file.Length)
                throw new ModelLoadException($"{name}: tensor '{info.Name}' ends at byte {end} but the file has only {_file.Length} bytes (truncated file?)");
            expectedOffset = AlignUp(info.Offset + info.ByteLength, Alignment);
            var shape = info.Ne.Reverse().ToArray();
            _tensors[info.Name] = new WeightTensor(info.Name, info.Type, shape, _file.Pointer + DataStart + info.Offset, info.ByteLength, name);
        }
        if (_infos.Count > 0 && _file.Length > DataStart + expectedOffset)
            throw new ModelLoadException($"{name}: corrupt GGUF: {_file.Length - DataStart - expectedOffset} unexplained bytes after the last tensor (the tensor count or shapes do not describe the file)");
    }

    public static long AlignUp(long x, long a) => (x + a - 1) / a * a;

    private object ReadValue(Cursor c, GgufValueType type, string key, bool allowArray)
    {
        string what = $"value of '{key}'";
        switch (type)
        {
            case GgufValueType.UInt8: return c.Take(1, what)[0];
            case GgufValueType.Int8: return (sbyte)c.Take(1, what)[0];
            case GgufValueType.UInt16: return BitConverter.ToUInt16(c.Take(2, what));
            case GgufValueType.Int16: return BitConverter.ToInt16(c.Take(2, what));
            case GgufValueType.UInt32: return c.U32(what);
            case GgufValueType.Int32: return BitConverter.ToInt32(c.Take(4, what));
            case GgufValueType.Float32: return BitConverter.ToSingle(c.Take(4, what));
            case GgufValueType.Bool:
                byte b = c.Take(1, what)[0];
                if (b > 1) throw new ModelLoadException($"{System.IO.Path.GetFileName(Path)}: '{key}' has invalid bool byte {b}");
                return b == 1;
            case GgufValueType.String: return c.Str(what);
            case GgufValueType.UInt64: return c.U64(what);
            case GgufValueType.Int64: return BitConverter.ToInt64(c.Take(8, what));
            case GgufValueType.Float64: return BitConverter.ToDouble(c.Take(8, what));
            case GgufValueType.Array:
                if (!allowArray)
                    throw new ModelLoadException($"{System.IO.Path.GetFileName(Path)}: '{key}' is a nested array, which GGUF readers reject");
                var et = (GgufValueType)c.U32(what);
                ulong n = c.U64(what);
                if (n > (ulong)(_file.Length - c.Pos))
                    throw new ModelLoadException($"{System.IO.Path.GetFileName(Path)}: '{key}' claims {n} array elements, more than the file can hold");
                return ReadArray(c, et, (long)n, key);
            default:
                throw new ModelLoadException($"{System.IO.Path.GetFileName(Path)}: '{key}' has unknown value type {(uint)type}");
        }
    }

    private Array ReadArray(Cursor c, GgufValueType et, long n, string key)
    {
        switch (et)
        {
            case GgufValueType.String:
            {
                var a = new string[n];
                for (long i = 0; i < n; i++) a[i] = c.Str($"element {i} of '{key}'");
                return a;
            }
            case GgufValueType.UInt8: return c.Take(n, key).ToArray();
            case GgufValueType.Int8: return Cast<sbyte>(c.Take(n, key));
            case GgufValueType.UInt16: return Cast<ushort>(c.Take(n * 2, key));
            case GgufValueType.Int16: return Cast<short>(c.Take(n * 2, key));
            case GgufValueType.UInt32: return Cast<uint>(c.Take(n * 4, key));
            case GgufValueType.Int32: return Cast<int>(c.Take(n * 4, key));
            case GgufValueType.Float32: return Cast<float>(c.Take(n * 4, key));
            case GgufValueType.UInt64: return Cast<ulong>(c.Take(n * 8, key));
            case GgufValueType.Int64: return Cast<long>(c.Take(n * 8, key));
            case GgufValueType.Float64: return Cast<double>(c.Take(n * 8, key));
            case GgufValueType.Bool:
            {
                var raw = c.Take(n, key);
                var a = new bool[n];
                for (int i = 0; i < n; i++) a[i] = raw[i] != 0;
                return a;
            }
            case GgufValueType.Array:
                throw new ModelLoadException($"{System.IO.Path.GetFileName(Path)}: '{key}' is a nested array, which GGUF readers reject");
            default:
                throw new ModelLoadException($"{System.IO.Path.GetFileName(Path)}: '{key}' has unknown array element type {(uint)et}");
        }
    }

    private static T[] Cast<T>(ReadOnlySpan<byte> s) where T : unmanaged
        => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, T>(s).ToArray();

    public void Dispose() => _file.Dispose();
}
