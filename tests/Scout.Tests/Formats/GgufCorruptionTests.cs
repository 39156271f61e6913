using System.Buffers.Binary;
using System.Text;
using Scout.Formats;
using Scout.Tensors;

namespace Scout.Tests.Formats;

/// <summary>
/// A corpus of broken GGUF files generated from one valid file. Every case must fail with a
/// <see cref="ModelLoadException"/> whose message names the problem — never another exception type, never a hang.
/// </summary>
public class GgufCorruptionTests : IDisposable
{
    private readonly Fixtures.TempDir _dir = new();
    private readonly byte[] _valid;

    public GgufCorruptionTests()
    {
        string path = _dir.File("valid.gguf");
        using (var w = new GgufWriter(path))
        {
            w.SetString("general.architecture", "llama4");
            w.SetUInt32("llama4.block_count", 1);
            w.SetBool("flag", true);
            w.SetArray("tokens", new[] { "a", "b", "c" });
            w.AddTensor("norm.weight", [4], TensorType.F32);
            w.AddTensor("q8.weight", [32, 2], TensorType.Q8_0);
            w.AddTensor("q4k.weight", [256, 1], TensorType.Q4_K);
            w.AddTensor("f16.weight", [8, 2], TensorType.F16);
            foreach (var t in w.Tensors) w.WriteTensor(t.Name, new byte[t.ByteLength]);
            w.Finish();
        }
        _valid = File.ReadAllBytes(path);
    }

    public void Dispose() => _dir.Dispose();

    private string Write(byte[] bytes, string name = "bad.gguf")
    {
        string p = _dir.File(name);
        File.WriteAllBytes(p, bytes);
        return p;
    }

    /// <summary>Opens the file on another thread; returns the exception (null when it loaded), failing on a hang.</summary>
    private static Exception? OpenWithTimeout(string path)
    {
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try { using var g = GgufFile.Open(path); }
            catch (Exception e) { error = e; }
        });
        thread.Start();
        Assert.True(thread.Join(TimeSpan.FromSeconds(20)), $"{Path.GetFileName(path)}: loading did not finish (hang)");
        return error;
    }

    private static void ExpectLoadError(string path, params string[] fragments)
    {
        var e = Assert.IsType<ModelLoadException>(OpenWithTimeout(path));
        foreach (var f in fragments)
            Assert.Contains(f, e.Message, StringComparison.OrdinalIgnoreCase);
    }

    private byte[] Copy() => (byte[])_valid.Clone();

    /// <summary>Byte position of the tensor info (its name length field) of <paramref name="name"/>.</summary>
    private int InfoPos(string name)
    {
        var needle = new byte[8 + name.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(needle, (ulong)name.Length);
        Encoding.ASCII.GetBytes(name).CopyTo(needle, 8);
        int p = _valid.AsSpan().IndexOf(needle);
        Assert.True(p > 0);
        return p;
    }

    private int TypePos(string name, int dims) => InfoPos(name) + 8 + name.Length + 4 + 8 * dims;
    private int OffsetPos(string name, int dims) => TypePos(name, dims) + 4;

    private int KeyPos(string key) => InfoPos(key); // same encoding: u64 length + bytes

    [Fact]
    public void ValidFileLoads()
    {
        using var g = GgufFile.Open(Write(_valid, "ok.gguf"));
        Assert.Equal(4, g.TensorInfos.Count);
    }

    [Fact]
    public void BadMagic()
    {
        var b = Copy(); b[3] = (byte)'X';
        ExpectLoadError(Write(b), "bad magic");
    }

    [Theory]
    [InlineData(1u)]
    [InlineData(4u)]
    [InlineData(0xFFFFFFFFu)]
    public void BadVersion(uint version)
    {
        var b = Copy(); BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), version);
        ExpectLoadError(Write(b), "version");
    }

    [Theory]
    [InlineData(5ul)]            // one more than present
    [InlineData(3ul)]            // one fewer: the last info would be read as padding/data
    [InlineData(1ul << 40)]
    [InlineData(ulong.MaxValue)]
    public void LyingTensorCount(ulong count)
    {
        var b = Copy(); BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), count);
        ExpectLoadError(Write(b), "GGUF");
    }

    [Theory]
    [InlineData(5ul)]
    [InlineData(3ul)]
    [InlineData(0ul)]
    [InlineData(1ul << 40)]
    [InlineData(ulong.MaxValue)]
    public void LyingMetadataCount(ulong count)
    {
        var b = Copy(); BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), count);
        ExpectLoadError(Write(b), "GGUF");
    }

    [Fact]
    public void OffsetPastTheEnd()
    {
        var b = Copy(); BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(OffsetPos("f16.weight", 2)), (ulong)b.Length);
        ExpectLoadError(Write(b), "f16.weight", "offset");
    }

    [Fact]
    public void HugeOffset()
    {
        var b = Copy(); BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(OffsetPos("q8.weight", 2)), ulong.MaxValue - 3);
        ExpectLoadError(Write(b), "q8.weight", "offset");
    }

    [Fact]
    public void OverlappingOffsets()
    {
        var b = Copy(); BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(OffsetPos("q4k.weight", 2)), 0);
        ExpectLoadError(Write(b), "q4k.weight", "overlap");
    }

    [Fact]
    public void MisorderedOffsets()
    {
        var b = Copy();
        int p1 = OffsetPos("q8.weight", 2), p2 = OffsetPos("q4k.weight", 2);
        ulong o1 = BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(p1)), o2 = BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(p2));
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(p1), o2);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(p2), o1);
        ExpectLoadError(Write(b), "q8.weight", "offset");
    }

    [Fact]
    public void RowNotAMultipleOfTheBlockSize()
    {
        var b = Copy(); BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(InfoPos("q8.weight") + 8 + 9 + 4), 33);
        ExpectLoadError(Write(b), "q8.weight", "multiple", "block size");
    }

    [Theory]
    [InlineData(4u)]    // removed Q4_2
    [InlineData(99u)]
    [InlineData(0xFFFFFFFFu)]
    public void UnknownTypeId(uint id)
    {
        var b = Copy(); BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(TypePos("q4k.weight", 2)), id);
        ExpectLoadError(Write(b), "q4k.weight", "unknown ggml type");
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(5u)]
    [InlineData(1000u)]
    public void BadDimensionCount(uint dims)
    {
        var b = Copy(); BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(InfoPos("q8.weight") + 8 + 9), dims);
        ExpectLoadError(Write(b), "q8.weight", "dimension");
    }

    [Fact]
    public void ZeroDimension()
    {
        var b = Copy(); BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(InfoPos("q8.weight") + 8 + 9 + 4 + 8), 0);
        ExpectLoadError(Write(b), "q8.weight", "dimension");
    }

    [Fact]
    public void HugeDimensionsOverflow()
    {
        var b = Copy();
        int p = InfoPos("f16.weight") + 8 + 10 + 4;
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(p), 1ul << 40);
        ExpectLoadError(Write(b), "f16.weight");
    }

    [Theory]
    [InlineData(1ul << 62)]
    [InlineData(ulong.MaxValue)]
    [InlineData(100000ul)]
    public void HugeStringLength(ulong length)
    {
        var b = Copy(); BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(KeyPos("general.architecture") + 8 + 20 + 4), length);
        ExpectLoadError(Write(b), "general.architecture");
    }

    [Fact]
    public void HugeKeyLength()
    {
        var b = Copy(); BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(24), ulong.MaxValue / 2);
        ExpectLoadError(Write(b), "metadata key");
    }

    [Fact]
    public void HugeArrayCount()
    {
        var b = Copy(); BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(KeyPos("tokens") + 8 + 6 + 4 + 4), ulong.MaxValue);
        ExpectLoadError(Write(b), "tokens");
    }

    [Fact]
    public void UnknownValueType()
    {
        var b = Copy(); BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(KeyPos("llama4.block_count") + 8 + 18), 13);
        ExpectLoadError(Write(b), "llama4.block_count", "unknown value type");
    }

    [Fact]
    public void NestedArray()
    {
        var b = Copy(); BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(KeyPos("tokens") + 8 + 6 + 4), 9);
        ExpectLoadError(Write(b), "tokens", "nested");
    }

    [Fact]
    public void InvalidBoolByte()
    {
        var b = Copy(); b[KeyPos("flag") + 8 + 4 + 4] = 7;
        ExpectLoadError(Write(b), "flag", "bool");
    }

    [Fact]
    public void DuplicateTensorName()
    {
        var fresh = Copy();
        int p = InfoPos("q4k.weight") + 8;
        Encoding.ASCII.GetBytes("f16.weight").CopyTo(fresh, p); // both 10 bytes
        ExpectLoadError(Write(fresh), "duplicate tensor name", "f16.weight");
    }

    [Fact]
    public void DuplicateKey()
    {
        // Rename the 4-byte key "flag" to "toke"... no: rename "tokens" to "flag.." is not the same length, so
        // rename "flag" to the first four bytes of an existing 4-byte key instead: there is none, so add one via the writer.
        string path = _dir.File("dup.gguf");
        using (var w = new GgufWriter(path))
        {
            w.SetUInt32("keyA", 1);
            w.SetUInt32("keyB", 2);
            w.Finish();
        }
        var b = File.ReadAllBytes(path);
        b[KeyPos2(b, "keyB") + 8 + 3] = (byte)'A';
        ExpectLoadError(Write(b), "duplicate metadata key", "keyA");
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(48u)]
    public void BadAlignment(uint alignment)
    {
        string path = _dir.File("align.gguf");
        using (var w = new GgufWriter(path))
        {
            w.SetUInt32("general.alignment", 32);
            w.AddTensor("x", [4], TensorType.F32);
            w.WriteTensor("x", new byte[16]);
            w.Finish();
        }
        var b = File.ReadAllBytes(path);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(KeyPos2(b, "general.alignment") + 8 + 17 + 4), alignment);
        ExpectLoadError(Write(b), "general.alignment");
    }

    private static int KeyPos2(byte[] b, string key)
    {
        var needle = new byte[8 + key.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(needle, (ulong)key.Length);
        Encoding.ASCII.GetBytes(key).CopyTo(needle, 8);
        return b.AsSpan().IndexOf(needle);
    }

    [Fact]
    public void TruncatedAtEveryHeaderByteAndThroughTheData()
    {
        var cuts = new List<int>();
        for (int i = 0; i < 400 && i < _valid.Length; i++) cuts.Add(i);
        for (int i = 400; i < _valid.Length; i += 37) cuts.Add(i);
        cuts.Add(_valid.Length - 1);
        foreach (int cut in cuts)
        {
            if (cut == 0) continue; // an empty file is covered below
            string p = Write(_valid[..cut], $"cut{cut}.gguf");
            ExpectLoadError(p);
        }
        ExpectLoadError(Write([], "empty.gguf"), "too short");
    }

    [Fact]
    public void TensorNameOf64BytesOrMore()
    {
        string path = _dir.File("long.gguf");
        string longName = new('n', 63);
        using (var w = new GgufWriter(path))
        {
            w.AddTensor(longName, [4], TensorType.F32);
            w.WriteTensor(longName, new byte[16]);
            w.Finish();
        }
        var b = File.ReadAllBytes(path);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(KeyPos2(b, longName)), 64); // the name now swallows a byte
        ExpectLoadError(Write(b), "at most 63");
    }

    [Fact]
    public void TrailingGarbageAfterTheLastTensor()
    {
        var b = _valid.Concat(new byte[4096]).ToArray();
        ExpectLoadError(Write(b), "after the last tensor");
    }

    [Fact]
    public void RandomByteFlipsNeverCrash()
    {
        // Any single corrupted header byte either still parses (a changed value) or gives a ModelLoadException.
        var rng = new Random(42);
        int headerEnd = InfoPos("norm.weight") + 200;
        for (int trial = 0; trial < 300; trial++)
        {
            var b = Copy();
            int pos = rng.Next(0, Math.Min(headerEnd, b.Length));
            b[pos] = (byte)rng.Next(256);
            string p = Write(b, $"flip{trial}.gguf");
            var error = OpenWithTimeout(p);
            Assert.True(error is null or ModelLoadException, $"flip at {pos}: {error}");
        }
    }
}
