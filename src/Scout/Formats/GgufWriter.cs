using System.Buffers.Binary;
using System.Text;
using Scout.Tensors;

namespace Scout.Formats;

/// <summary>
/// Writes a GGUF v3 file the way llama.cpp's gguf writer lays it out: header, metadata in insertion order, tensor
/// infos, zero padding to the alignment, then each tensor's data in tensor-info order, each padded to the alignment
/// (offsets are strict: offset i = Σ aligned sizes of tensors 0..i-1). Tensor data is streamed one tensor at a time.
///
/// Usage: set metadata, declare every tensor with <see cref="AddTensor"/>, then call <see cref="WriteTensor"/>
/// once per tensor in the same order, and <see cref="Finish"/>.
/// </summary>
public sealed class GgufWriter : IDisposable
{
    private readonly List<(string Key, GgufValueType Type, object Value)> _metadata = new();
    private readonly List<GgufTensorInfo> _tensors = new();
    private readonly HashSet<string> _tensorNames = new(StringComparer.Ordinal);
    private readonly string _path;
    /// <summary>The data goes to this name in the same folder; <see cref="Finish"/> renames it over <see cref="_path"/>,
    /// so an interrupted write never destroys the file it would replace.</summary>
    private readonly string _tempPath;
    private FileStream? _stream;
    private int _nextTensor;
    private long _partial;
    private bool _finished;

    public uint Alignment { get; private set; } = 32;
    public IReadOnlyList<GgufTensorInfo> Tensors => _tensors;
    public long DataStart { get; private set; }

    public GgufWriter(string path)
    {
        _path = path;
        string full = System.IO.Path.GetFullPath(path);
        _tempPath = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(full) ?? ".",
            $".{System.IO.Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.partial");
    }

    /// <summary>Where the data is written until <see cref="Finish"/> renames it to the output path.</summary>
    public string TemporaryPath => _tempPath;

    // ---------------- metadata ----------------

    public bool HasKey(string key) => _metadata.Exists(m => m.Key == key);

    /// <summary>Sets (or replaces, keeping its position) a metadata value. Arrays are .NET arrays of the element type.</summary>
    public void Set(string key, GgufValueType type, object value)
    {
        if (_stream != null) throw new InvalidOperationException("metadata cannot change after the header is written");
        ArgumentException.ThrowIfNullOrEmpty(key);
        Validate(key, type, value);
        if (key == "general.alignment")
        {
            if (type != GgufValueType.UInt32 || value is not uint a || a == 0 || (a & (a - 1)) != 0)
                throw new ArgumentException($"general.alignment must be a power-of-two u32, got {value}");
            Alignment = a;
        }
        int i = _metadata.FindIndex(m => m.Key == key);
        if (i >= 0) _metadata[i] = (key, type, value);
        else _metadata.Add((key, type, value));
    }

    public void Remove(string key)
    {
        int i = _metadata.FindIndex(m => m.Key == key);
        if (i >= 0) _metadata.RemoveAt(i);
        if (key == "general.alignment") Alignment = 32;
    }

    public void SetString(string key, string v) => Set(key, GgufValueType.String, v);
    public void SetUInt32(string key, uint v) => Set(key, GgufValueType.UInt32, v);
    public void SetInt32(string key, int v) => Set(key, GgufValueType.Int32, v);
    public void SetFloat32(string key, float v) => Set(key, GgufValueType.Float32, v);
    public void SetBool(string key, bool v) => Set(key, GgufValueType.Bool, v);
    public void SetArray<T>(string key, T[] values) => Set(key, GgufValueType.Array, values);

    /// <summary>Copies every metadata entry of <paramref name="source"/> (with its original value types).</summary>
    public void CopyMetadataFrom(GgufFile source, Func<string, bool>? include = null)
    {
        foreach (var (key, value) in source.Metadata)
        {
            if (include != null && !include(key)) continue;
            Set(key, source.MetadataTypes[key], value);
        }
    }

    /// <summary>The GGUF element type of a .NET array used as an array value.</summary>
    public static GgufValueType ElementType(Array a)
    {
        // Match on the exact element type: the CLR lets an int[] pass as a uint[] (and sbyte[] as byte[]) in type tests.
        var e = a.GetType().GetElementType();
        if (e == typeof(byte)) return GgufValueType.UInt8;
        if (e == typeof(sbyte)) return GgufValueType.Int8;
        if (e == typeof(ushort)) return GgufValueType.UInt16;
        if (e == typeof(short)) return GgufValueType.Int16;
        if (e == typeof(uint)) return GgufValueType.UInt32;
        if (e == typeof(int)) return GgufValueType.Int32;
        if (e == typeof(float)) return GgufValueType.Float32;
        if (e == typeof(bool)) return GgufValueType.Bool;
        if (e == typeof(string)) return GgufValueType.String;
        if (e == typeof(ulong)) return GgufValueType.UInt64;
        if (e == typeof(long)) return GgufValueType.Int64;
        if (e == typeof(double)) return GgufValueType.Float64;
        throw new ArgumentException($"unsupported GGUF array element type {e?.Name} (nested arrays are not allowed)");
    }

    private static void Validate(string key, GgufValueType type, object value)
    {
        var vt = value.GetType();
        bool ok = type switch
        {
            GgufValueType.UInt8 => vt == typeof(byte), GgufValueType.Int8 => vt == typeof(sbyte),
            GgufValueType.UInt16 => vt == typeof(ushort), GgufValueType.Int16 => vt == typeof(short),
            GgufValueType.UInt32 => vt == typeof(uint), GgufValueType.Int32 => vt == typeof(int),
            GgufValueType.Float32 => value is float, GgufValueType.Bool => value is bool,
            GgufValueType.String => value is string, GgufValueType.UInt64 => vt == typeof(ulong),
            GgufValueType.Int64 => vt == typeof(long), GgufValueType.Float64 => value is double,
            GgufValueType.Array => value is Array a && Enum.IsDefined(ElementType(a)),
            _ => false,
        };
        if (!ok) throw new ArgumentException($"metadata '{key}': value of .NET type {value.GetType().Name} does not match GGUF type {type}");
    }

    // ---------------- tensors ----------------

    /// <summary>Declares the next tensor. <paramref name="ne"/> is ggml order (ne[0] contiguous).</summary>
    public GgufTensorInfo AddTensor(string name, long[] ne, TensorType type)
    {
        if (_stream != null) throw new InvalidOperationException("tensors cannot be added after the header is written");
        if (Encoding.UTF8.GetByteCount(name) >= 64)
            throw new ArgumentException($"tensor name '{name}' is {Encoding.UTF8.GetByteCount(name)} bytes; GGUF allows at most 63");
        if (!_tensorNames.Add(name)) throw new ArgumentException($"duplicate tensor name '{name}'");
        if (ne.Length is 0 or > 4) throw new ArgumentException($"tensor '{name}' has {ne.Length} dimensions (1 to 4 allowed)");
        if (ne.Any(d => d <= 0)) throw new ArgumentException($"tensor '{name}' has a non-positive dimension [{string.Join(", ", ne)}]");
        if (ne[0] % type.BlockElements() != 0)
            throw new ArgumentException($"tensor '{name}': row length ne[0] = {ne[0]} is not a multiple of the {type} block size {type.BlockElements()}");
        long count = 1;
        foreach (var d in ne) count = checked(count * d);
        long offset = _tensors.Count == 0 ? 0 : GgufFile.AlignUp(_tensors[^1].Offset + _tensors[^1].ByteLength, Alignment);
        var info = new GgufTensorInfo(name, (long[])ne.Clone(), type, offset, type.ByteCount(count));
        _tensors.Add(info);
        return info;
    }

    /// <summary>Writes the header, metadata, tensor infos and padding. Called by the first <see cref="WriteTensor"/> if not before.</summary>
    public void WriteHeader()
    {
        if (_stream != null) return;
        // Offsets were computed with the alignment current at AddTensor time: recompute in case it changed since.
        long offset = 0;
        for (int i = 0; i < _tensors.Count; i++)
        {
            if (_tensors[i].Offset != offset) _tensors[i] = _tensors[i] with { Offset = offset };
            offset = GgufFile.AlignUp(offset + _tensors[i].ByteLength, Alignment);
        }
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms, Encoding.UTF8);
        w.Write(GgufFile.Magic);
        w.Write(3u);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_metadata.Count);
        foreach (var (key, type, value) in _metadata)
        {
            WriteString(w, key);
            w.Write((uint)type);
            WriteValue(w, type, value);
        }
        foreach (var t in _tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Ne.Length);
            foreach (var d in t.Ne) w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write((ulong)t.Offset);
        }
        w.Flush();
        DataStart = GgufFile.AlignUp(ms.Length, Alignment);
        ms.Write(new byte[DataStart - ms.Length]);
        _stream = new FileStream(_tempPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        ms.Position = 0;
        ms.CopyTo(_stream);
    }

    /// <summary>Writes the data of the next declared tensor (which must be <paramref name="name"/>), then its padding.</summary>
    public void WriteTensor(string name, ReadOnlySpan<byte> data)
    {
        if (_partial != 0) throw new InvalidOperationException($"tensor '{_tensors[_nextTensor].Name}' is partly written");
        var info = NextInfo(name);
        if (data.Length != info.ByteLength) throw new ArgumentException($"tensor '{name}' needs {info.ByteLength} bytes ({info.Type}), got {data.Length}");
        WriteTensorPart(name, data);
    }

    /// <summary>
    /// Appends part of the next declared tensor's data (for tensors streamed in chunks). When its last byte is
    /// written the padding follows and the next tensor becomes current.
    /// </summary>
    public void WriteTensorPart(string name, ReadOnlySpan<byte> part)
    {
        var info = NextInfo(name);
        if (_partial + part.Length > info.ByteLength)
            throw new ArgumentException($"tensor '{name}' needs {info.ByteLength} bytes ({info.Type}); {_partial + part.Length} were given");
        _stream!.Write(part);
        _partial += part.Length;
        if (_partial < info.ByteLength) return;
        long end = info.Offset + info.ByteLength;
        long padded = GgufFile.AlignUp(end, Alignment);
        if (padded > end) _stream.Write(new byte[padded - end]);
        _partial = 0;
        _nextTensor++;
    }

    private GgufTensorInfo NextInfo(string name)
    {
        WriteHeader();
        if (_nextTensor >= _tensors.Count) throw new InvalidOperationException($"tensor '{name}' was not declared (all {_tensors.Count} tensors are written)");
        var info = _tensors[_nextTensor];
        if (info.Name != name) throw new InvalidOperationException($"tensor data out of order: expected '{info.Name}', got '{name}'");
        return info;
    }

    /// <summary>Checks every declared tensor was written and closes the file.</summary>
    public void Finish()
    {
        WriteHeader();
        if (_nextTensor != _tensors.Count)
            throw new InvalidOperationException($"only {_nextTensor} of {_tensors.Count} tensors were written; next missing: '{_tensors[_nextTensor].Name}'");
        _stream!.Flush(flushToDisk: true);
        _stream.Dispose();
        File.Move(_tempPath, _path, overwrite: true);
        _finished = true;
    }

    /// <summary>Total file size once finished.</summary>
    public long ExpectedFileSize => DataStart + (_tensors.Count == 0 ? 0 : _tensors[^1].Offset + GgufFile.AlignUp(_tensors[^1].ByteLength, Alignment));

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, GgufValueType type, object value)
    {
        switch (type)
        {
            case GgufValueType.UInt8: w.Write((byte)value); break;
            case GgufValueType.Int8: w.Write((sbyte)value); break;
            case GgufValueType.UInt16: w.Write((ushort)value); break;
            case GgufValueType.Int16: w.Write((short)value); break;
            case GgufValueType.UInt32: w.Write((uint)value); break;
            case GgufValueType.Int32: w.Write((int)value); break;
            case GgufValueType.Float32: w.Write((float)value); break;
            case GgufValueType.Bool: w.Write((bool)value ? (byte)1 : (byte)0); break;
            case GgufValueType.String: WriteString(w, (string)value); break;
            case GgufValueType.UInt64: w.Write((ulong)value); break;
            case GgufValueType.Int64: w.Write((long)value); break;
            case GgufValueType.Float64: w.Write((double)value); break;
            case GgufValueType.Array:
            {
                var a = (Array)value;
                var et = ElementType(a);
                w.Write((uint)et);
                w.Write((ulong)a.Length);
                if (et == GgufValueType.String)
                    foreach (string s in (string[])a) WriteString(w, s);
                else if (et == GgufValueType.Bool)
                    foreach (bool b in (bool[])a) w.Write(b ? (byte)1 : (byte)0);
                else
                {
                    // Primitive arrays are little-endian in memory already: copy their bytes.
                    var bytes = new byte[Buffer.ByteLength(a)];
                    Buffer.BlockCopy(a, 0, bytes, 0, bytes.Length);
                    w.Write(bytes);
                }
                break;
            }
            default: throw new ArgumentException($"unknown GGUF value type {type}");
        }
    }

    public void Dispose()
    {
        if (_stream != null && !_finished)
        {
            // An unfinished file is not a valid GGUF: remove it; the file at the output path (if any) is untouched.
            _stream.Dispose();
            try { File.Delete(_tempPath); } catch (IOException) { }
        }
        _stream = null;
    }
}
