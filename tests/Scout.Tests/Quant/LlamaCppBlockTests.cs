using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Scout.Kernels;
using Scout.Kernels.Quant;
using Scout.Tensors;

namespace Scout.Tests.Quant;

/// <summary>Scout's encoders against blocks written by llama.cpp's quantizer (see Data/README.md): bit-identical.</summary>
public class LlamaCppBlockTests
{
    private static string DataFile()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "tests", "Scout.Tests", "Quant", "Data", "llamacpp-blocks.dat");
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException("tests/Scout.Tests/Quant/Data/llamacpp-blocks.dat not found above the test binaries");
    }

    private static Dictionary<TensorType, (float[] Source, byte[] Encoded, int Rows, int Cols)> Load()
    {
        var bytes = File.ReadAllBytes(DataFile());
        var result = new Dictionary<TensorType, (float[], byte[], int, int)>();
        int pos = 0;
        while (pos < bytes.Length)
        {
            var type = (TensorType)BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(pos));
            int rows = (int)BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(pos + 4));
            int cols = (int)BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(pos + 8));
            pos += 12;
            var source = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(pos, rows * cols * 4)).ToArray();
            pos += rows * cols * 4;
            int encodedBytes = (int)type.RowBytes(cols) * rows;
            result[type] = (source, bytes.AsSpan(pos, encodedBytes).ToArray(), rows, cols);
            pos += encodedBytes;
        }
        return result;
    }

    public static TheoryData<TensorType> Types() => new()
    {
        TensorType.Q8_0, TensorType.Q4_0, TensorType.Q4_1, TensorType.Q5_0, TensorType.Q5_1,
        TensorType.Q2_K, TensorType.Q3_K, TensorType.Q4_K, TensorType.Q5_K, TensorType.Q6_K,
    };

    [Theory]
    [MemberData(nameof(Types))]
    public void EncoderIsBitIdenticalToLlamaCpp(TensorType type)
    {
        var (source, expected, rows, cols) = Load()[type];
        var actual = new byte[expected.Length];
        Quantizer.QuantizeRows(type, source, rows, cols, actual);
        int rowBytes = (int)type.RowBytes(cols);
        for (int r = 0; r < rows; r++)
            Assert.True(expected.AsSpan(r * rowBytes, rowBytes).SequenceEqual(actual.AsSpan(r * rowBytes, rowBytes)),
                $"{type}: row {r} differs from llama.cpp (rows 0..7 are edge patterns, see Data/README.md)");
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void DecodingLlamaCppBlocksStaysNearTheSource(TensorType type)
    {
        var (source, encoded, _, _) = Load()[type];
        var decoded = new float[source.Length];
        Dequantize.ToFloat(type, encoded, decoded);
        // Row 6 is ggml's 0.1 + 2·cos(i) test row: error within ggml's test-quantize-fns thresholds (per-value RMS form).
        double sq = 0;
        for (int i = 6 * 256; i < 7 * 256; i++) sq += (decoded[i] - source[i]) * (decoded[i] - source[i]);
        double rms = Math.Sqrt(sq / 256);
        double bound = type switch { TensorType.Q2_K => 0.5, TensorType.Q3_K => 0.3, _ => 0.15 };
        Assert.True(rms < bound, $"{type}: rms {rms}");
        Assert.All(decoded.AsSpan(0, 256).ToArray(), v => Assert.Equal(0f, v)); // the all-zero row
    }
}
