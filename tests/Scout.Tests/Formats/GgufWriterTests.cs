using System.Buffers.Binary;
using Scout.Formats;
using Scout.Kernels.Quant;
using Scout.Tensors;

namespace Scout.Tests.Formats;

public class GgufWriterTests
{
    /// <summary>One value of every GGUF type, and an array of every element type.</summary>
    public static readonly (string Key, GgufValueType Type, object Value)[] AllValues =
    [
        ("t.u8", GgufValueType.UInt8, (byte)200),
        ("t.i8", GgufValueType.Int8, (sbyte)-100),
        ("t.u16", GgufValueType.UInt16, (ushort)65000),
        ("t.i16", GgufValueType.Int16, (short)-32000),
        ("t.u32", GgufValueType.UInt32, 4_000_000_000u),
        ("t.i32", GgufValueType.Int32, -2_000_000_000),
        ("t.f32", GgufValueType.Float32, 3.25f),
        ("t.bool", GgufValueType.Bool, true),
        ("t.str", GgufValueType.String, "héllo ✓"),
        ("t.u64", GgufValueType.UInt64, ulong.MaxValue - 5),
        ("t.i64", GgufValueType.Int64, long.MinValue + 7),
        ("t.f64", GgufValueType.Float64, Math.PI),
        ("a.u8", GgufValueType.Array, new byte[] { 1, 2, 255 }),
        ("a.i8", GgufValueType.Array, new sbyte[] { -1, 2 }),
        ("a.u16", GgufValueType.Array, new ushort[] { 1, 65535 }),
        ("a.i16", GgufValueType.Array, new short[] { -5, 5 }),
        ("a.u32", GgufValueType.Array, new uint[] { 7, 8, 9 }),
        ("a.i32", GgufValueType.Array, new[] { 1, -2, 3 }),
        ("a.f32", GgufValueType.Array, new[] { 0.5f, -1.5f }),
        ("a.bool", GgufValueType.Array, new[] { true, false, true }),
        ("a.str", GgufValueType.Array, new[] { "a", "", "Ġhello", "<|eot|>" }),
        ("a.u64", GgufValueType.Array, new ulong[] { 1, ulong.MaxValue }),
        ("a.i64", GgufValueType.Array, new long[] { -1, long.MaxValue }),
        ("a.f64", GgufValueType.Array, new[] { 1e300, -2.5 }),
        ("a.empty", GgufValueType.Array, Array.Empty<int>()),
    ];

    private static readonly TensorType[] TensorTypes =
    [
        TensorType.F32, TensorType.F16, TensorType.BF16, TensorType.Q4_0, TensorType.Q4_1, TensorType.Q5_0, TensorType.Q5_1,
        TensorType.Q8_0, TensorType.Q2_K, TensorType.Q3_K, TensorType.Q4_K, TensorType.Q5_K, TensorType.Q6_K,
    ];

    [Theory]
    [InlineData(32u)]
    [InlineData(64u)]
    public unsafe void RoundTripsEveryValueTypeAndTensorType(uint alignment)
    {
        using var dir = new Fixtures.TempDir();
        string path = dir.File("all.gguf");
        var rng = new Random(3);
        var payloads = new Dictionary<string, byte[]>();
        using (var w = new GgufWriter(path))
        {
            w.SetString("general.architecture", "test");
            if (alignment != 32) w.SetUInt32("general.alignment", alignment);
            foreach (var (k, t, v) in AllValues) w.Set(k, t, v);
            foreach (var type in TensorTypes)
            {
                long[] ne = [256, 3, 2];
                var x = new float[256 * 6];
                for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
                var bytes = new byte[type.ByteCount(x.Length)];
                Quantizer.Quantize(type, x, bytes);
                string name = $"tensor.{type}";
                payloads[name] = bytes;
                w.AddTensor(name, ne, type);
            }
            w.AddTensor("tiny.f32", [3], TensorType.F32); // 12 bytes: forces padding before the next tensor
            payloads["tiny.f32"] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
            w.AddTensor("after.q8", [32, 1], TensorType.Q8_0);
            payloads["after.q8"] = Enumerable.Range(0, 34).Select(i => (byte)i).ToArray();
            foreach (var t in w.Tensors) w.WriteTensor(t.Name, payloads[t.Name]);
            w.Finish();
            Assert.Equal(w.ExpectedFileSize, new FileInfo(path).Length);
        }

        using var g = GgufFile.Open(path);
        Assert.Equal(3u, g.Version);
        Assert.Equal(alignment, g.Alignment);
        Assert.Equal(0, g.DataStart % alignment);
        foreach (var (k, t, v) in AllValues)
        {
            Assert.Equal(t, g.MetadataTypes[k]);
            Assert.Equal(v, g.Metadata[k]);
        }
        Assert.Equal(TensorTypes.Length + 2, g.TensorInfos.Count);
        long expectedOffset = 0;
        foreach (var info in g.TensorInfos)
        {
            Assert.Equal(expectedOffset, info.Offset);
            expectedOffset = GgufFile.AlignUp(info.Offset + info.ByteLength, alignment);
            var t = g.Tensors[info.Name];
            Assert.Equal(payloads[info.Name], new ReadOnlySpan<byte>(t.Data, (int)t.ByteLength).ToArray());
        }
        Assert.Equal(new long[] { 2, 3, 256 }, g.Tensors["tensor.Q4_K"].Shape);
        Assert.Equal(g.DataStart + expectedOffset, g.FileSize);
    }

    [Fact]
    public void HeaderBytesFollowTheSpec()
    {
        using var dir = new Fixtures.TempDir();
        string path = dir.File("h.gguf");
        using (var w = new GgufWriter(path))
        {
            w.SetUInt32("k", 5);
            w.AddTensor("w", [32, 2], TensorType.Q8_0);
            w.WriteTensor("w", new byte[68]);
            w.Finish();
        }
        var b = File.ReadAllBytes(path);
        Assert.Equal("GGUF"u8.ToArray(), b[..4]);
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(4)));
        Assert.Equal(1ul, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(8)));   // tensors
        Assert.Equal(1ul, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(16)));  // kv
        Assert.Equal(1ul, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(24)));  // key length
        Assert.Equal((byte)'k', b[32]);
        Assert.Equal(4u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(33)));   // u32 type
        Assert.Equal(5u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(37)));
        // tensor info: name "w", n_dims 2, ne 32, 2, type 8, offset 0
        Assert.Equal(1ul, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(41)));
        Assert.Equal((byte)'w', b[49]);
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(50)));
        Assert.Equal(32ul, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(54)));
        Assert.Equal(2ul, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(62)));
        Assert.Equal(8u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(70)));
        Assert.Equal(0ul, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(74)));
        // 82 bytes of header, padded to 96; 68 data bytes padded to 96.
        Assert.All(b[82..96], x => Assert.Equal(0, x));
        Assert.Equal(96 + 96, b.Length);
    }

    [Theory]
    [InlineData("scout-tiny")]
    [InlineData("maverick-tiny")]
    public unsafe void RewritingLlamaCppFileIsByteIdentical(string model)
    {
        // model.gguf was written by llama.cpp's converter: copying its metadata and tensors must reproduce it exactly.
        using var dir = new Fixtures.TempDir();
        string src = Fixtures.Text(model, "model.gguf");
        string dst = dir.File("copy.gguf");
        using (var g = GgufFile.Open(src))
        using (var w = new GgufWriter(dst))
        {
            w.CopyMetadataFrom(g);
            foreach (var info in g.TensorInfos) w.AddTensor(info.Name, info.Ne, info.Type);
            foreach (var info in g.TensorInfos)
            {
                var t = g.Tensors[info.Name];
                w.WriteTensor(info.Name, new ReadOnlySpan<byte>(t.Data, (int)t.ByteLength));
            }
            w.Finish();
        }
        Assert.Equal(File.ReadAllBytes(src), File.ReadAllBytes(dst));
    }

    [Fact]
    public void MisuseIsRejected()
    {
        using var dir = new Fixtures.TempDir();
        using var w = new GgufWriter(dir.File("x.gguf"));
        Assert.Throws<ArgumentException>(() => w.Set("k", GgufValueType.UInt32, 5));           // int is not u32
        Assert.Throws<ArgumentException>(() => w.SetUInt32("general.alignment", 48));
        Assert.Throws<ArgumentException>(() => w.AddTensor("q", [33], TensorType.Q8_0));
        Assert.Throws<ArgumentException>(() => w.AddTensor(new string('n', 64), [4], TensorType.F32));
        Assert.Throws<ArgumentException>(() => w.AddTensor("d", [1, 1, 1, 1, 1], TensorType.F32));
        Assert.Throws<ArgumentException>(() => w.Set("nested", GgufValueType.Array, new[] { new[] { 1 } }));
        w.AddTensor("a", [4], TensorType.F32);
        w.AddTensor("b", [4], TensorType.F32);
        Assert.Throws<ArgumentException>(() => w.AddTensor("a", [4], TensorType.F32));
        Assert.Throws<InvalidOperationException>(() => w.WriteTensor("b", new byte[16]));
        Assert.Throws<ArgumentException>(() => w.WriteTensor("a", new byte[15]));
        w.WriteTensor("a", new byte[16]);
        Assert.Throws<InvalidOperationException>(() => w.Finish());
    }
}
