using Scout.Kernels;
using Scout.Tensors;

namespace Scout.Tests.Kernels;

/// <summary>Each SIMD kernel against its plain scalar version.</summary>
public unsafe class ReferenceOpsTests
{
    private static float[] Random(int n, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 2 - 1) * scale).ToArray();
    }

    [Theory]
    [InlineData(16)]
    [InlineData(67)]
    [InlineData(5120)]
    public void RmsNormMatchesScalar(int n)
    {
        var x = Random(n, 1, 3);
        var w = Random(n, 2);
        var expected = new float[n];
        var actual = new float[n];
        ScalarReference.RmsNorm(x, w, 1e-5f, expected);
        Ops.RmsNorm(x, w, 1e-5f, actual);
        for (int i = 0; i < n; i++) Assert.Equal(expected[i], actual[i], 1e-5f);
        ScalarReference.RmsNorm(x, default, 1e-5f, expected);
        Ops.RmsNorm(x, default, 1e-5f, actual);
        for (int i = 0; i < n; i++) Assert.Equal(expected[i], actual[i], 1e-5f);
    }

    [Theory]
    [InlineData(16)]
    [InlineData(64)]
    [InlineData(128)]
    [InlineData(67)]
    [InlineData(5)]
    public void HeadDotAndAddScaledMatchScalar(int n)
    {
        var a = Random(n, 11, 2);
        var b = Random(n, 12, 2);
        double expected = 0;
        for (int i = 0; i < n; i++) expected += (double)a[i] * b[i];
        Assert.Equal(expected, Ops.Dot(a, b), 1e-4);
        var dst = Random(n, 13);
        var want = dst.Select((d, i) => d + 0.37f * b[i]).ToArray();
        Ops.AddScaled(dst, b, 0.37f);
        for (int i = 0; i < n; i++) Assert.Equal(want[i], dst[i], 1e-5f);
    }

    [Fact]
    public void SoftmaxMatchesScalar()
    {
        var x = Random(1000, 3, 20);
        var expected = (float[])x.Clone();
        ScalarReference.Softmax(expected);
        Ops.Softmax(x);
        for (int i = 0; i < x.Length; i++) Assert.Equal(expected[i], x[i], 1e-6f);
        Assert.Equal(1.0, x.Sum(), 4);
    }

    [Fact]
    public void SwiGluMatchesScalar()
    {
        var g = Random(300, 4, 6);
        var u = Random(300, 5, 2);
        var expected = (float[])g.Clone();
        ScalarReference.SwiGlu(expected, u);
        Ops.SwiGlu(g, u);
        for (int i = 0; i < g.Length; i++) Assert.Equal(expected[i], g[i], 1e-5f);
    }

    [Fact]
    public void RopeMatchesScalar()
    {
        var freqs = Scout.Model.AttentionMath.RopeFrequencies(128, 500000, new Scout.Model.RopeScaling(16, 1, 4, 8192));
        var head = Random(128, 6);
        var expected = (float[])head.Clone();
        int pos = 1234;
        ScalarReference.Rope(expected, pos, freqs.Select(f => (double)(pos * f) / pos).ToArray());
        var cos = freqs.Select(f => (float)Math.Cos(pos * f)).ToArray();
        var sin = freqs.Select(f => (float)Math.Sin(pos * f)).ToArray();
        Ops.Rope(head, cos, sin);
        for (int i = 0; i < 128; i++) Assert.Equal(expected[i], head[i], 2e-4f);
    }

    [Theory]
    [InlineData(TensorType.F32, 1)]
    [InlineData(TensorType.F32, 5)]
    [InlineData(TensorType.BF16, 3)]
    [InlineData(TensorType.F16, 2)]
    public void FloatMatrixMatchesScalar(TensorType type, int n)
    {
        const int rows = 70, cols = 96;
        var w = Random(rows * cols, 7);
        var bytes = Encode(type, w);
        var wide = new float[w.Length];
        Dequantize.ToFloat(type, bytes, wide);
        var x = Random(n * cols, 8);
        var expected = new float[n * rows];
        ScalarReference.MatMul(wide, rows, cols, x, n, expected);
        var actual = new float[n * rows];
        fixed (byte* p = bytes) WeightMatrix.RowMajor(type, p, rows, cols, TestPool.Instance).Multiply(x, n, actual);
        for (int i = 0; i < actual.Length; i++) Assert.Equal(expected[i], actual[i], 1e-4f);
    }

    [Theory]
    [InlineData(TensorType.F32, 1)]
    [InlineData(TensorType.BF16, 4)]
    public void InputMajorMatrixMatchesScalar(TensorType type, int n)
    {
        // Stored [in, ld] with the logical matrix in columns [offset, offset + out) — the HF expert layout.
        const int inputs = 40, outputs = 24, ld = 48, offset = 24;
        var stored = Random(inputs * ld, 9);
        var bytes = Encode(type, stored);
        var wide = new float[stored.Length];
        Dequantize.ToFloat(type, bytes, wide);
        var rowMajor = new float[outputs * inputs];
        for (int o = 0; o < outputs; o++)
            for (int i = 0; i < inputs; i++) rowMajor[o * inputs + i] = wide[i * ld + offset + o];
        var x = Random(n * inputs, 10);
        var expected = new float[n * outputs];
        ScalarReference.MatMul(rowMajor, outputs, inputs, x, n, expected);
        var actual = new float[n * outputs];
        fixed (byte* p = bytes) new InputMajorFloatMatrix(type, p, inputs, outputs, ld, offset, TestPool.Instance).Multiply(x, n, actual);
        for (int i = 0; i < actual.Length; i++) Assert.Equal(expected[i], actual[i], 1e-4f);
    }

    [Fact]
    public void BFloat16RoundsToNearestEven()
    {
        Assert.Equal(0x3F80, Dequantize.SingleToBFloat16(1f));
        Assert.Equal(0x3F80, Dequantize.SingleToBFloat16(BitConverter.UInt32BitsToSingle(0x3F808000))); // tie → even
        Assert.Equal(0x3F82, Dequantize.SingleToBFloat16(BitConverter.UInt32BitsToSingle(0x3F818000))); // tie → even (up)
        Assert.Equal(0x3F81, Dequantize.SingleToBFloat16(BitConverter.UInt32BitsToSingle(0x3F808001)));
    }

    private static byte[] Encode(TensorType type, float[] w) => type switch
    {
        TensorType.F32 => w.SelectMany(BitConverter.GetBytes).ToArray(),
        TensorType.F16 => w.SelectMany(v => BitConverter.GetBytes((Half)v)).ToArray(),
        TensorType.BF16 => w.SelectMany(v => BitConverter.GetBytes(Dequantize.SingleToBFloat16(v))).ToArray(),
        _ => throw new ArgumentException(type.ToString()),
    };
}
