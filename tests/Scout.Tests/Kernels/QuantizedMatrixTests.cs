using Scout.Kernels;
using Scout.Kernels.Quant;
using Scout.Tensors;

namespace Scout.Tests.Kernels;

/// <summary>
/// Integer block kernels: every instruction-set path against the scalar reference, and whole products against an
/// independent dequantize-then-dot in double (written here from the block tables of docs/gguf-llama4.md §5).
/// Test weights are random block bytes with small random f16 scales.
/// </summary>
public unsafe class QuantizedMatrixTests
{
    // Paths travel as names: KernelPath is internal and xunit theories must be public.
    public static readonly TheoryData<TensorType, string> TypesAndPaths = Build();

    private static TheoryData<TensorType, string> Build()
    {
        var data = new TheoryData<TensorType, string>();
        foreach (var t in new[] { TensorType.Q4_0, TensorType.Q8_0, TensorType.Q4_K, TensorType.Q6_K })
            foreach (var p in DotKernels.AvailablePaths())
                data.Add(t, p.ToString());
        return data;
    }

    // ------------------------------------------------------------ random blocks

    private static ushort RandomScale(Random rng, double min = 0.001, double max = 0.05)
    {
        double v = min + rng.NextDouble() * (max - min);
        if (rng.Next(4) == 0) v = -v;
        return BitConverter.HalfToUInt16Bits((Half)v);
    }

    internal static byte[] RandomRows(TensorType type, int rows, int cols, int seed)
    {
        var rng = new Random(seed);
        int blockBytes = type.BlockBytes(), blocks = rows * cols / type.BlockElements();
        var data = new byte[blocks * blockBytes];
        rng.NextBytes(data);
        for (int b = 0; b < blocks; b++)
        {
            var blk = data.AsSpan(b * blockBytes, blockBytes);
            switch (type)
            {
                case TensorType.Q4_0:
                case TensorType.Q8_0:
                    BitConverter.TryWriteBytes(blk, RandomScale(rng));
                    break;
                case TensorType.Q4_K:
                    BitConverter.TryWriteBytes(blk, (ushort)(RandomScale(rng, 0.0005, 0.003) & 0x7FFF));
                    BitConverter.TryWriteBytes(blk[2..], (ushort)(RandomScale(rng, 0.0005, 0.003) & 0x7FFF));
                    break;
                case TensorType.Q6_K:
                    BitConverter.TryWriteBytes(blk[208..], RandomScale(rng, 0.0005, 0.003));
                    break;
            }
        }
        return data;
    }

    /// <summary>Independent decoder of one block into doubles (straight from the layout tables).</summary>
    internal static void DecodeBlock(TensorType type, ReadOnlySpan<byte> blk, Span<double> w)
    {
        static double H(ReadOnlySpan<byte> b, int at) => (double)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(b[at..]));
        switch (type)
        {
            case TensorType.Q8_0:
                for (int j = 0; j < 32; j++) w[j] = H(blk, 0) * (sbyte)blk[2 + j];
                break;
            case TensorType.Q4_0:
                for (int j = 0; j < 16; j++)
                {
                    w[j] = H(blk, 0) * ((blk[2 + j] & 15) - 8);
                    w[j + 16] = H(blk, 0) * ((blk[2 + j] >> 4) - 8);
                }
                break;
            case TensorType.Q4_K:
            {
                var sc = blk.Slice(4, 12);
                for (int j = 0; j < 8; j++)
                {
                    int s, m;
                    if (j < 4) { s = sc[j] & 63; m = sc[j + 4] & 63; }
                    else { s = (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4); m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4); }
                    for (int l = 0; l < 32; l++)
                    {
                        byte qb = blk[16 + 32 * (j / 2) + l];
                        int q = j % 2 == 0 ? qb & 15 : qb >> 4;
                        w[32 * j + l] = H(blk, 0) * s * q - H(blk, 2) * m;
                    }
                }
                break;
            }
            case TensorType.Q6_K:
                for (int half = 0; half < 2; half++)
                {
                    var ql = blk.Slice(64 * half, 64);
                    var qh = blk.Slice(128 + 32 * half, 32);
                    for (int l = 0; l < 32; l++)
                    {
                        int s = l / 16;
                        int[] q =
                        [
                            (ql[l] & 15) | ((qh[l] & 3) << 4),
                            (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4),
                            (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                            (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
                        ];
                        for (int k = 0; k < 4; k++)
                            w[128 * half + l + 32 * k] = H(blk, 208) * (sbyte)blk[192 + 8 * half + s + 2 * k] * (q[k] - 32);
                    }
                }
                break;
        }
    }

    internal static double[] DecodeRows(TensorType type, byte[] data, int rows, int cols)
    {
        var w = new double[rows * cols];
        int be = type.BlockElements(), bb = type.BlockBytes();
        for (int b = 0; b < rows * cols / be; b++) DecodeBlock(type, data.AsSpan(b * bb, bb), w.AsSpan(b * be, be));
        return w;
    }

    private static float[] RandomActivations(int count, int seed)
    {
        var rng = new Random(seed);
        var x = new float[count];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 7 == 0 ? 4f : 1f);
        return x;
    }

    // ------------------------------------------------------------ tests

    [Fact]
    public void HalfToFloatMatchesTheFrameworkForEveryFiniteHalf()
    {
        for (int bits = 0; bits < 65536; bits++)
        {
            var h = BitConverter.UInt16BitsToHalf((ushort)bits);
            if (!Half.IsFinite(h)) continue;
            Assert.Equal((float)h, DotKernels.HalfToFloat((ushort)bits));
        }
    }

    [Theory]
    [InlineData(32)]
    [InlineData(256)]
    public void ActivationQuantizationIsWithinHalfAStepAndSumsAreExact(int block)
    {
        var format = block == 32 ? ActivationFormat.Blocks32 : ActivationFormat.Blocks256;
        int n = 3, cols = 512;
        var x = RandomActivations(n * cols, 7);
        x[5] = 0; x.AsSpan(block, block).Clear();   // an all-zero block must give scale 0, quants 0
        var act = new Q8Activations();
        act.Quantize(x, n, cols, format);
        for (int i = 0; i < n * cols; i++)
        {
            float d = act.Scales[i / block];
            Assert.InRange(Math.Abs(x[i] - d * act.Quants[i]), 0, d / 2 * 1.0001 + 1e-12);
            Assert.InRange((int)act.Quants[i], -127, 127);
        }
        Assert.Equal(0f, act.Scales[1]);
        for (int b = 0; b < n * cols / block; b++)
        {
            if (format == ActivationFormat.Blocks32)
            {
                int s = 0;
                for (int j = 0; j < 32; j++) s += act.Quants[b * 32 + j];
                Assert.Equal(s, act.BlockSums[b]);
            }
            else
                for (int g = 0; g < 16; g++)
                {
                    int s = 0;
                    for (int j = 0; j < 16; j++) s += act.Quants[b * 256 + g * 16 + j];
                    Assert.Equal(s, act.Sums16[b * 16 + g]);
                }
        }
    }

    [Theory]
    [MemberData(nameof(TypesAndPaths))]
    public void RowDotMatchesScalarReference(TensorType type, string pathName)
    {
        var path = Enum.Parse<KernelPath>(pathName);
        const int rows = 8;
        int cols = type.BlockElements() == 32 ? 32 * 13 : 256 * 3;   // odd block counts exercise the tails
        var data = RandomRows(type, rows, cols, seed: 11 + (int)type);
        var act = new Q8Activations();
        act.Quantize(RandomActivations(cols, 3), 1, cols, type.BlockElements() == 32 ? ActivationFormat.Blocks32 : ActivationFormat.Blocks256);
        int blocks = cols / type.BlockElements();
        long rowBytes = type.RowBytes(cols);
        var deq = DecodeRows(type, data, rows, cols);
        fixed (byte* w = data)
        fixed (sbyte* q = act.Quants)
        fixed (float* d = act.Scales)
        fixed (int* s = act.BlockSums)
        fixed (short* s16 = act.Sums16)
        {
            for (int r = 0; r < rows; r++)
            {
                byte* row = w + r * rowBytes;
                sbyte* pq = q; float* pd = d; int* ps = s; short* ps16 = s16;
                float Dot(KernelPath p) => type switch
                {
                    TensorType.Q4_0 => DotKernels.DotQ4_0(p, row, pq, pd, ps, blocks),
                    TensorType.Q8_0 => DotKernels.DotQ8_0(p, row, pq, pd, blocks),
                    TensorType.Q4_K => DotKernels.DotQ4_K(p, row, pq, pd, ps16, blocks),
                    _ => DotKernels.DotQ6_K(p, row, pq, pd, ps16, blocks),
                };
                // exact reference: dequantized weights · dequantized activations, in double
                double exact = 0, magnitude = 0;
                for (int i = 0; i < cols; i++)
                {
                    double a = (double)act.Scales[i / (type.BlockElements() == 32 ? 32 : 256)] * act.Quants[i];
                    exact += deq[r * cols + i] * a;
                    magnitude += Math.Abs(deq[r * cols + i] * a);
                }
                float scalar = Dot(KernelPath.Scalar), actual = Dot(path);
                double tol = 1e-5 * magnitude + 1e-6;
                Assert.True(Math.Abs(scalar - exact) <= tol, $"{type} scalar row {r}: {scalar} vs exact {exact} (tol {tol})");
                Assert.True(Math.Abs(actual - scalar) <= tol, $"{type} {path} row {r}: {actual} vs scalar {scalar} (tol {tol})");
            }
        }
    }

    [Theory]
    [MemberData(nameof(TypesAndPaths))]
    public void MatrixProductMatchesDequantizeThenDotInDouble(TensorType type, string pathName)
    {
        var path = Enum.Parse<KernelPath>(pathName);
        // 37 rows (not a multiple of any chunk), several tokens (prefill path) and a single token (decode path).
        int rows = 37, cols = type.BlockElements() == 32 ? 32 * 9 : 256 * 2;
        var data = RandomRows(type, rows, cols, seed: 5 + (int)type);
        var deq = DecodeRows(type, data, rows, cols);
        int block = type.BlockElements() == 32 ? 32 : 256;
        foreach (int n in new[] { 1, 5, QuantizedMatrix.TokenTile + 3 })
        {
            var x = RandomActivations(n * cols, 100 + n);
            var y = new float[n * rows];
            fixed (byte* w = data)
            {
                var m = new QuantizedMatrix(type, w, rows, cols, TestPool.Instance);
                m.Multiply(x, n, y, path);
            }
            for (int t = 0; t < n; t++)
                for (int r = 0; r < rows; r++)
                {
                    // y must equal Σ w·x up to the activation rounding: |x − d·q| ≤ d/2 per element, so the error is
                    // at most Σ_blocks (d_b/2)·Σ|w| plus float accumulation slack.
                    double exact = 0, bound = 0, magnitude = 0;
                    for (int b = 0; b < cols / block; b++)
                    {
                        float amax = 0;
                        for (int j = 0; j < block; j++) amax = Math.Max(amax, Math.Abs(x[t * cols + b * block + j]));
                        double halfStep = amax / 127.0 / 2;
                        for (int j = 0; j < block; j++)
                        {
                            int i = b * block + j;
                            double wv = deq[r * cols + i];
                            exact += wv * x[t * cols + i];
                            magnitude += Math.Abs(wv * x[t * cols + i]);
                            bound += halfStep * Math.Abs(wv);
                        }
                    }
                    double tol = bound * 1.001 + 1e-5 * magnitude + 1e-6;
                    Assert.True(Math.Abs(y[t * rows + r] - exact) <= tol, $"{type} {path} n={n} t={t} r={r}: {y[t * rows + r]} vs {exact} (tol {tol})");
                }
        }
    }

    [Fact]
    public void FactoryBuildsIntegerKernelsForBlockTypesAndFallsBackOtherwise()
    {
        var q4 = RandomRows(TensorType.Q4_0, 4, 64, 1);
        fixed (byte* p = q4)
        {
            var q4m = WeightMatrix.RowMajor(TensorType.Q4_0, p, 4, 64, TestPool.Instance);
            if (DotKernels.Best == KernelPath.Avx2 && RepackedMatrix.BestPath is not null) Assert.IsType<RepackedMatrix>(q4m);
            else Assert.IsType<QuantizedMatrix>(q4m);
            Assert.IsType<DequantizingMatrix>(WeightMatrix.RowMajor(TensorType.Q5_K, p, 1, 256, TestPool.Instance));
        }
    }

    [Fact]
    public void BadShapesGiveClearErrors()
    {
        var data = new byte[1024];
        fixed (byte* pinned = data)
        {
            byte* p = pinned;
            var e = Assert.Throws<ArgumentException>(() => new QuantizedMatrix(TensorType.Q4_K, p, 2, 100, TestPool.Instance));
            Assert.Contains("multiple of 256", e.Message);
            var m = new QuantizedMatrix(TensorType.Q8_0, p, 2, 64, TestPool.Instance);
            var e2 = Assert.Throws<ArgumentException>(() => m.Multiply(new float[63], 1, new float[2]));
            Assert.Contains("shape mismatch", e2.Message);
            Assert.Throws<ArgumentException>(() => m.Multiply(new float[64], 1, new float[1]));
            Assert.Throws<NotSupportedException>(() => new QuantizedMatrix(TensorType.Q5_K, p, 1, 256, TestPool.Instance));
        }
    }
}

/// <summary>Activation quantization split across a pool (prefill) gives exactly the serial result.</summary>
public class Q8ActivationsTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void ParallelQuantizationEqualsSerialBitForBit(int formatIndex)
    {
        var format = (ActivationFormat)formatIndex;
        int cols = 1024, n = 3 * Q8Activations.ParallelValues / cols + 7;   // several pieces and a partial one
        var rng = new Random(21 + formatIndex);
        var x = new float[n * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 13 == 0 ? 8f : 1f);
        using var pool = new Scout.Kernels.WorkerPool(3);
        var serial = new Q8Activations();
        var parallel = new Q8Activations();
        serial.Quantize(x, n, cols, format);
        parallel.Quantize(x, n, cols, format, pool);
        int blocks = n * serial.BlocksPerRow;
        Assert.Equal(serial.Quants.AsSpan(0, n * cols).ToArray(), parallel.Quants.AsSpan(0, n * cols).ToArray());
        Assert.Equal(serial.Scales.AsSpan(0, blocks).ToArray(), parallel.Scales.AsSpan(0, blocks).ToArray());
        if (format == ActivationFormat.Blocks32) Assert.Equal(serial.BlockSums.AsSpan(0, blocks).ToArray(), parallel.BlockSums.AsSpan(0, blocks).ToArray());
        else Assert.Equal(serial.Sums16.AsSpan(0, blocks * 16).ToArray(), parallel.Sums16.AsSpan(0, blocks * 16).ToArray());
        Assert.Contains(parallel.Scales.AsSpan(0, blocks).ToArray(), d => d > 0);
    }
}
