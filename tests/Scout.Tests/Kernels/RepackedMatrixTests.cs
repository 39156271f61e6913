using System.IO.MemoryMappedFiles;
using Scout.Kernels;
using Scout.Kernels.Quant;
using Scout.Tensors;

namespace Scout.Tests.Kernels;

/// <summary>
/// The 8-row interleaved (repacked) matrices: the layout's scalar reference against the row-major scalar kernels and
/// an independent dequantize-then-dot in double; every SIMD path (AVX2 maddubs, AVX-VNNI) bit for bit against the
/// layout's scalar reference; and the source pages handed back after repacking must leave results unchanged.
/// </summary>
public unsafe class RepackedMatrixTests
{
    public static TheoryData<TensorType, string> TypesAndPaths()
    {
        var data = new TheoryData<TensorType, string>();
        foreach (var t in new[] { TensorType.Q4_0, TensorType.Q8_0, TensorType.Q4_K, TensorType.Q6_K })
            foreach (var p in RepackedMatrix.AvailablePaths())
                data.Add(t, p.ToString());
        return data;
    }

    private static float[] Activations(int count, int seed)
    {
        var rng = new Random(seed);
        var x = new float[count];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 7 == 0 ? 4f : 1f);
        return x;
    }

    private static int Cols(TensorType type) => type.BlockElements() == 32 ? 32 * 9 : 256 * 3;

    [Theory]
    [MemberData(nameof(TypesAndPaths))]
    public void SimdPathsEqualTheScalarReferenceBitForBit(TensorType type, string pathName)
    {
        var path = Enum.Parse<RepackPath>(pathName);
        int rows = 29, cols = Cols(type);   // 29 rows: three full groups and a 5-row tail group
        var data = QuantizedMatrixTests.RandomRows(type, rows, cols, seed: 41 + (int)type);
        foreach (int n in new[] { 1, 6, RepackedMatrix.TokenTile + 5 })
            AssertPathEqualsScalarBitForBit(type, path, data, rows, cols, Activations(n * cols, 3 + n), n);
    }

    /// <summary>The product of <paramref name="n"/> tokens through <paramref name="path"/> equals the scalar reference to the bit.</summary>
    private static void AssertPathEqualsScalarBitForBit(TensorType type, RepackPath path, byte[] data, int rows, int cols, float[] x, int n)
    {
        var expected = new float[n * rows];
        var actual = new float[n * rows];
        fixed (byte* w = data)
        {
            var m = new RepackedMatrix(type, w, rows, cols, TestPool.Instance, path, releaseSource: false);
            m.Multiply(x, n, expected, RepackPath.Scalar);
            m.Multiply(x, n, actual, path);
        }
        for (int i = 0; i < expected.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                $"{type} {path} n={n} t={i / rows} r={i % rows}: scalar {expected[i]:R} vs {actual[i]:R}");
    }

    /// <summary>
    /// The largest integer sums the layouts allow: every quant at its extreme (Q4 nibbles 15, Q6 quants 63 or 0, Q8 −128
    /// and 127, 6-bit scales 63, Q6_K scales −128/127) against activations that quantize to ±127 everywhere. The int16
    /// partial sums of the AVX2 kernels (8 Q4 pairs, 2 Q6 pairs) must not wrap or saturate here.
    /// </summary>
    [Theory]
    [MemberData(nameof(TypesAndPaths))]
    public void ExtremeQuantsAndActivationsStayExact(TensorType type, string pathName)
    {
        var path = Enum.Parse<RepackPath>(pathName);
        int rows = 16, cols = Cols(type), n = 9;
        var data = QuantizedMatrixTests.RandomRows(type, rows, cols, seed: 5);
        int bb = type.BlockBytes();
        for (int b = 0; b < data.Length / bb; b++)
        {
            var blk = data.AsSpan(b * bb, bb);
            bool high = (b & 1) == 0;   // alternate the two extremes per block
            switch (type)
            {
                case TensorType.Q4_0: blk[2..].Fill(high ? (byte)0xFF : (byte)0x00); break;
                case TensorType.Q8_0: blk[2..].Fill(high ? (byte)0x80 : (byte)0x7F); break;
                case TensorType.Q4_K:
                    blk[4..16].Fill(0xFF);   // every 6-bit scale and min = 63
                    blk[16..].Fill(high ? (byte)0xFF : (byte)0x00);
                    break;
                default:
                    blk[..192].Fill(high ? (byte)0xFF : (byte)0x00);   // v = 63 or 0
                    for (int s = 0; s < 16; s++) blk[192 + s] = (byte)(sbyte)((s & 1) == 0 ? -128 : 127);
                    break;
            }
        }
        var x = new float[n * cols];
        for (int t = 0; t < n; t++)
            for (int c = 0; c < cols; c++)
                x[t * cols + c] = (t % 3) switch { 0 => 1f, 1 => -1f, _ => (c / 32 % 2 == 0) ? 2f : -2f };
        AssertPathEqualsScalarBitForBit(type, path, data, rows, cols, x, n);
    }

    [Theory]
    [InlineData(TensorType.Q4_0)]
    [InlineData(TensorType.Q8_0)]
    [InlineData(TensorType.Q4_K)]
    [InlineData(TensorType.Q6_K)]
    public void ScalarReferenceMatchesRowMajorKernelsAndDoubleDequantization(TensorType type)
    {
        int rows = 13, cols = Cols(type), n = 3;
        var data = QuantizedMatrixTests.RandomRows(type, rows, cols, seed: 7 + (int)type);
        var deq = QuantizedMatrixTests.DecodeRows(type, data, rows, cols);
        var x = Activations(n * cols, 99);
        var repacked = new float[n * rows];
        var rowMajor = new float[n * rows];
        fixed (byte* w = data)
        {
            new RepackedMatrix(type, w, rows, cols, TestPool.Instance, RepackPath.Scalar, releaseSource: false).Multiply(x, n, repacked, RepackPath.Scalar);
            new QuantizedMatrix(type, w, rows, cols, TestPool.Instance).Multiply(x, n, rowMajor, KernelPath.Scalar);
        }
        int block = type.BlockElements();
        for (int t = 0; t < n; t++)
            for (int r = 0; r < rows; r++)
            {
                double exact = 0, bound = 0, magnitude = 0;
                for (int b = 0; b < cols / block; b++)
                {
                    float amax = 0;
                    for (int j = 0; j < block; j++) amax = Math.Max(amax, Math.Abs(x[t * cols + b * block + j]));
                    for (int j = 0; j < block; j++)
                    {
                        int i = b * block + j;
                        double wv = deq[r * cols + i];
                        exact += wv * x[t * cols + i];
                        magnitude += Math.Abs(wv * x[t * cols + i]);
                        bound += amax / 127.0 / 2 * Math.Abs(wv);
                    }
                }
                double got = repacked[t * rows + r];
                Assert.True(Math.Abs(got - exact) <= bound * 1.001 + 1e-5 * magnitude + 1e-6, $"{type} t={t} r={r}: {got} vs {exact}");
                // Same integer sums as the row-major kernels; only the float accumulation order differs.
                Assert.True(Math.Abs(got - rowMajor[t * rows + r]) <= 1e-5 * magnitude + 1e-6, $"{type} t={t} r={r}: {got} vs row-major {rowMajor[t * rows + r]}");
            }
    }

    /// <summary>
    /// Products that share their input (gate and up; q, k and v) quantize it once and run in one dispatch: every output
    /// must equal the separate product to the bit, for mixed weight types of one activation format and any row tails.
    /// </summary>
    [Theory]
    [MemberData(nameof(TypesAndPaths))]
    public void SharedInputProductsEqualSeparateProductsBitForBit(TensorType type, string pathName)
    {
        var path = Enum.Parse<RepackPath>(pathName);
        // A second type of the same activation format (Q4_K with Q6_K, Q4_0 with Q8_0), as in a Q4_K_M file's v.
        var other = type switch { TensorType.Q4_0 => TensorType.Q8_0, TensorType.Q8_0 => TensorType.Q4_0, TensorType.Q4_K => TensorType.Q6_K, _ => TensorType.Q4_K };
        int cols = Cols(type);
        int[] rows = [29, 16, 8 * 40 + 3];   // a tail group, one of exactly two groups, and many groups
        var types = new[] { type, type, other };
        var data = new byte[3][];
        for (int i = 0; i < 3; i++) data[i] = QuantizedMatrixTests.RandomRows(types[i], rows[i], cols, seed: 11 + i + (int)type);
        fixed (byte* w0 = data[0]) fixed (byte* w1 = data[1]) fixed (byte* w2 = data[2])
        {
            var m = new[]
            {
                new RepackedMatrix(types[0], w0, rows[0], cols, TestPool.Instance, path, releaseSource: false),
                new RepackedMatrix(types[1], w1, rows[1], cols, TestPool.Instance, path, releaseSource: false),
                new RepackedMatrix(types[2], w2, rows[2], cols, TestPool.Instance, path, releaseSource: false),
            };
            foreach (int n in new[] { 1, 6, RepackedMatrix.TokenTile + 5 })
            {
                var x = Activations(n * cols, 17 + n);
                var expected = new float[3][];
                for (int i = 0; i < 3; i++) m[i].Multiply(x, n, expected[i] = new float[n * rows[i]], path);
                var y = new float[3][];
                for (int i = 0; i < 3; i++) { y[i] = new float[n * rows[i]]; y[i].AsSpan().Fill(float.NaN); }
                Assert.True(RepackedMatrix.TryMultiplyShared(x, n, m[0], y[0], m[1], y[1], m[2], y[2]));
                for (int i = 0; i < 3; i++)
                    for (int j = 0; j < expected[i].Length; j++)
                        Assert.True(BitConverter.SingleToInt32Bits(expected[i][j]) == BitConverter.SingleToInt32Bits(y[i][j]),
                            $"{types[i]} {path} n={n} matrix {i} t={j / rows[i]} r={j % rows[i]}: separate {expected[i][j]:R} vs shared {y[i][j]:R}");
                // Two matrices (gate and up), through the public entry point.
                var g = new float[n * rows[0]];
                var u = new float[n * rows[1]];
                WeightMatrix.MultiplyShared(x, n, m[0], g, m[1], u);
                Assert.Equal(expected[0], g);
                Assert.Equal(expected[1], u);
            }
        }
    }

    [Fact]
    public void SharedInputProductsOfMatricesThatCannotShareRunSeparately()
    {
        int cols = 256 * 3, rows = 24, n = 5;
        var q4k = QuantizedMatrixTests.RandomRows(TensorType.Q4_K, rows, cols, seed: 1);
        var q8 = QuantizedMatrixTests.RandomRows(TensorType.Q8_0, rows, cols, seed: 2);
        var x = Activations(n * cols, 4);
        fixed (byte* a = q4k) fixed (byte* b = q8)
        {
            var path = RepackPath.Scalar;
            var ma = new RepackedMatrix(TensorType.Q4_K, a, rows, cols, TestPool.Instance, path, releaseSource: false);
            var mb = new RepackedMatrix(TensorType.Q8_0, b, rows, cols, TestPool.Instance, path, releaseSource: false);   // 32-value activation blocks
            var rowMajor = new QuantizedMatrix(TensorType.Q4_K, a, rows, cols, TestPool.Instance);
            var ya = new float[n * rows];
            var yb = new float[n * rows];
            Assert.False(RepackedMatrix.TryMultiplyShared(x, n, ma, ya, mb, yb, null, default));
            Assert.False(RepackedMatrix.TryMultiplyShared(x, n, ma, ya, rowMajor, yb, null, default));
            Assert.All(ya, v => Assert.Equal(0f, v));   // nothing computed when refused
            var ea = new float[n * rows];
            var eb = new float[n * rows];
            var er = new float[n * rows];
            ma.Multiply(x, n, ea);
            mb.Multiply(x, n, eb);
            rowMajor.Multiply(x, n, er);
            WeightMatrix.MultiplyShared(x, n, ma, ya, mb, yb);
            Assert.Equal(ea, ya);
            Assert.Equal(eb, yb);
            var yr = new float[n * rows];
            WeightMatrix.MultiplyShared(x, n, ma, ya, rowMajor, yr);
            Assert.Equal(ea, ya);
            Assert.Equal(er, yr);
        }
    }

    [Fact]
    public void ReleasingTheMappedSourcePagesKeepsResultsAndTheMappingValid()
    {
        var type = TensorType.Q4_0;
        int rows = 4096, cols = 256;   // 576 KiB: many whole pages
        var data = QuantizedMatrixTests.RandomRows(type, rows, cols, seed: 3);
        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(file, data);
            var x = Activations(cols, 5);
            var expected = new float[rows];
            var actual = new float[rows];
            fixed (byte* w = data)
                new RepackedMatrix(type, w, rows, cols, TestPool.Instance, RepackPath.Scalar, releaseSource: false).Multiply(x, 1, expected, RepackPath.Scalar);
            using var mmf = MemoryMappedFile.CreateFromFile(file, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            using var view = mmf.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            try
            {
                var m = new RepackedMatrix(type, p, rows, cols, TestPool.Instance, RepackPath.Scalar, releaseSource: true);
                Assert.False(m.IsPacked);
                m.Multiply(x, 1, actual, RepackPath.Scalar);
                Assert.True(m.IsPacked);
                Assert.Equal(expected, actual);
                // The released pages read back from the file.
                Assert.True(new ReadOnlySpan<byte>(p, data.Length).SequenceEqual(data));
            }
            finally { view.SafeMemoryMappedViewHandle.ReleasePointer(); }
        }
        finally { File.Delete(file); }
    }

    /// <summary>A model's matrices are repacked when they are made (at load), not in the first (timed) product.</summary>
    [Fact]
    public void RowMajorMatricesAreRepackedWhenMade()
    {
        int rows = 24, cols = 256;
        var data = QuantizedMatrixTests.RandomRows(TensorType.Q4_K, rows, cols, seed: 9);
        fixed (byte* w = data)
        {
            var m = WeightMatrix.RowMajor(TensorType.Q4_K, w, rows, cols, TestPool.Instance);
            if (DotKernels.Best == KernelPath.Avx2 && RepackedMatrix.BestPath is not null)
                Assert.True(Assert.IsType<RepackedMatrix>(m).IsPacked);
            else
                Assert.IsType<QuantizedMatrix>(m);
        }
    }

    [Fact]
    public void ReleasingAnonymousPagesKeepsTheirContents()
    {
        var data = new byte[1 << 20];
        new Random(1).NextBytes(data);
        var copy = (byte[])data.Clone();
        fixed (byte* p = data) RepackedMatrix.ReleasePages(p, data.Length);
        Assert.Equal(copy, data);
    }

    [Fact]
    public void BadShapesGiveClearErrors()
    {
        var data = new byte[4096];
        fixed (byte* p = data)
        {
            byte* w = p;
            var e = Assert.Throws<ArgumentException>(() => new RepackedMatrix(TensorType.Q4_K, w, 2, 100, TestPool.Instance, RepackPath.Scalar, false));
            Assert.Contains("multiple of 256", e.Message);
            var m = new RepackedMatrix(TensorType.Q8_0, w, 2, 64, TestPool.Instance, RepackPath.Scalar, false);
            Assert.Contains("shape mismatch", Assert.Throws<ArgumentException>(() => m.Multiply(new float[63], 1, new float[2])).Message);
            Assert.Throws<NotSupportedException>(() => new RepackedMatrix(TensorType.Q5_K, w, 1, 256, TestPool.Instance, RepackPath.Scalar, false));
        }
    }
}

/// <summary>The register-blocked float matrix: against a double reference, and each token as if alone.</summary>
public unsafe class FloatMatrixTests
{
    [Theory]
    [InlineData(TensorType.F32)]
    [InlineData(TensorType.F16)]
    [InlineData(TensorType.BF16)]
    public void TiledProductMatchesDoubleAndIsBatchInvariant(TensorType type)
    {
        int rows = 23, cols = 75, n = 11;   // row and column tails, 4-token tiles and a token tail
        var rng = new Random(5 + (int)type);
        var wf = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var bytes = new byte[rows * cols * (type == TensorType.F32 ? 4 : 2)];
        for (int i = 0; i < wf.Length; i++)
        {
            switch (type)
            {
                case TensorType.F32: BitConverter.TryWriteBytes(bytes.AsSpan(4 * i), wf[i]); break;
                case TensorType.F16: wf[i] = (float)(Half)wf[i]; BitConverter.TryWriteBytes(bytes.AsSpan(2 * i), BitConverter.HalfToUInt16Bits((Half)wf[i])); break;
                default:
                    uint bits = BitConverter.SingleToUInt32Bits(wf[i]) & 0xFFFF0000u;
                    wf[i] = BitConverter.UInt32BitsToSingle(bits);
                    BitConverter.TryWriteBytes(bytes.AsSpan(2 * i), (ushort)(bits >> 16));
                    break;
            }
        }
        var x = Enumerable.Range(0, n * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var y = new float[n * rows];
        fixed (byte* p = bytes)
        {
            var m = new FloatMatrix(type, p, rows, cols, TestPool.Instance);
            m.Multiply(x, n, y);
            for (int t = 0; t < n; t++)
            {
                var alone = new float[rows];
                m.Multiply(x.AsSpan(t * cols, cols), 1, alone);
                for (int r = 0; r < rows; r++)
                {
                    double exact = 0, mag = 0;
                    for (int c = 0; c < cols; c++) { exact += (double)wf[r * cols + c] * x[t * cols + c]; mag += Math.Abs((double)wf[r * cols + c] * x[t * cols + c]); }
                    Assert.True(Math.Abs(y[t * rows + r] - exact) <= 1e-5 * mag + 1e-6, $"{type} t={t} r={r}: {y[t * rows + r]} vs {exact}");
                    Assert.True(BitConverter.SingleToInt32Bits(alone[r]) == BitConverter.SingleToInt32Bits(y[t * rows + r]), $"{type} t={t} r={r}: alone {alone[r]:R} vs batched {y[t * rows + r]:R}");
                }
            }
        }
    }
}
