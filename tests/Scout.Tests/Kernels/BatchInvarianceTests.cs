using Scout.Kernels.Quant;
using Scout.Tensors;

namespace Scout.Tests.Kernels;

/// <summary>
/// A token's product must not depend on how many tokens share the call: with 8-bit activations a 1-ulp difference
/// can flip a rounding and move logits by ~1e-3, so prefill, decode and continuous batching would disagree.
/// </summary>
public unsafe class BatchInvarianceTests
{
    public static TheoryData<TensorType, string> Cases()
    {
        var data = new TheoryData<TensorType, string>();
        foreach (var type in new[] { TensorType.Q4_0, TensorType.Q8_0, TensorType.Q4_K, TensorType.Q6_K })
            foreach (var path in DotKernels.AvailablePaths())
                data.Add(type, path.ToString());
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EachTokenIsComputedAsIfAlone(TensorType type, string pathName)
    {
        var path = Enum.Parse<KernelPath>(pathName);
        int rows = 21, cols = type.BlockElements() == 32 ? 32 * 19 : 256 * 3; // 19 blocks: two 8-block batches and a tail
        var data = QuantizedMatrixTests.RandomRows(type, rows, cols, seed: 31 + (int)type);
        const int n = 9;
        var rng = new Random(17);
        var x = Enumerable.Range(0, n * cols).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
        var batched = new float[n * rows];
        fixed (byte* w = data)
        {
            var m = new QuantizedMatrix(type, w, rows, cols, TestPool.Instance);
            m.Multiply(x, n, batched, path);
            for (int t = 0; t < n; t++)
            {
                var alone = new float[rows];
                m.Multiply(x.AsSpan(t * cols, cols), 1, alone, path);
                for (int r = 0; r < rows; r++)
                    Assert.True(BitConverter.SingleToInt32Bits(alone[r]) == BitConverter.SingleToInt32Bits(batched[t * rows + r]),
                        $"{type} {path} token {t} row {r}: alone {alone[r]:R} vs batched {batched[t * rows + r]:R}");
            }
        }
    }

    public static TheoryData<TensorType, string> RepackedCases()
    {
        var data = new TheoryData<TensorType, string>();
        foreach (var type in new[] { TensorType.Q4_0, TensorType.Q8_0, TensorType.Q4_K, TensorType.Q6_K })
            foreach (var path in RepackedMatrix.AvailablePaths())
                data.Add(type, path.ToString());
        return data;
    }

    [Theory]
    [MemberData(nameof(RepackedCases))]
    public void RepackedTokensAreComputedAsIfAlone(TensorType type, string pathName)
    {
        var path = Enum.Parse<RepackPath>(pathName);
        int rows = 21, cols = type.BlockElements() == 32 ? 32 * 19 : 256 * 3;   // 21 rows: two groups and a 5-row tail
        var data = QuantizedMatrixTests.RandomRows(type, rows, cols, seed: 61 + (int)type);
        const int n = 9;   // two four-token passes and a single-token tail
        var rng = new Random(23);
        var x = Enumerable.Range(0, n * cols).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
        var batched = new float[n * rows];
        fixed (byte* w = data)
        {
            var m = new RepackedMatrix(type, w, rows, cols, TestPool.Instance, path, releaseSource: false);
            m.Multiply(x, n, batched, path);
            for (int t = 0; t < n; t++)
            {
                var alone = new float[rows];
                m.Multiply(x.AsSpan(t * cols, cols), 1, alone, path);
                for (int r = 0; r < rows; r++)
                    Assert.True(BitConverter.SingleToInt32Bits(alone[r]) == BitConverter.SingleToInt32Bits(batched[t * rows + r]),
                        $"repacked {type} {path} token {t} row {r}: alone {alone[r]:R} vs batched {batched[t * rows + r]:R}");
            }
        }
    }
}
