using Scout.Kernels;
using Scout.Tensors;
using Scout.Vision;

namespace Scout.Tests.Vision;

public class TiledFloatMatrixTests
{
    [Theory]
    [InlineData(TensorType.F32, 37, 29, 7)]
    [InlineData(TensorType.F32, 48, 588, 576)]
    [InlineData(TensorType.BF16, 21, 61, 5)]
    [InlineData(TensorType.F16, 16, 40, 1)]
    public unsafe void MatchesTheReferenceProduct(TensorType type, int rows, int cols, int n)
    {
        var rng = new Random(rows * 1000 + cols);
        var weights = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        byte[] raw = type switch
        {
            TensorType.F32 => weights.SelectMany(BitConverter.GetBytes).ToArray(),
            TensorType.BF16 => weights.SelectMany(w => BitConverter.GetBytes(Dequantize.SingleToBFloat16(w))).ToArray(),
            _ => weights.SelectMany(w => BitConverter.GetBytes(BitConverter.HalfToUInt16Bits((Half)w))).ToArray(),
        };
        var x = Enumerable.Range(0, n * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var expected = new float[n * rows];
        var actual = new float[n * rows];
        fixed (byte* p = raw)
        {
            WeightMatrix.RowMajor(type, p, rows, cols, TestPool.Instance).Multiply(x, n, expected);
            var tiled = TiledFloatMatrix.Create(type, p, rows, cols, TestPool.Instance);
            Assert.Equal((rows, cols), (tiled.Rows, tiled.Cols));
            tiled.Multiply(x, n, actual);
        }
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5 * (1 + Math.Abs(expected[i])), $"element {i}: {actual[i]} vs {expected[i]}");
    }
}
