using Scout.Kernels;
using Scout.Kernels.Attention;
using Scout.Model;
using Scout.Planning;
using Scout.Tests.Memory;

namespace Scout.Tests.Kernels;

/// <summary>
/// Every attention path against the scalar reference, for every K/V type, across chunk boundaries (ring wrap
/// included), GQA group sizes and split counts; split-K against unsplit.
/// </summary>
public class AttentionKernelTests : IDisposable
{
    private readonly WorkerPool _pool = new(2);
    public void Dispose() => _pool.Dispose();

    public static TheoryData<string, string, int> Cases()
    {
        var data = new TheoryData<string, string, int>();
        foreach (var (k, v) in new[] { ("f32", "f32"), ("f16", "f16"), ("bf16", "bf16"), ("q8_0", "q8_0"), ("q4_0", "q4_0"), ("q8_0", "f16"), ("f16", "q4_0") })
            foreach (int group in new[] { 1, 2, 4, 5 })
                data.Add(k, v, group);
        return data;
    }

    internal sealed record Setup(int Heads, int KvHeads, int HeadDim, float[] Q, AttentionRows Rows, KvCache[] Caches) : IDisposable
    {
        public void Dispose() { foreach (var c in Caches) c.Dispose(); }
    }

    /// <summary>
    /// Two sequences in one call: sequence 0 in a chunked (ring) layer with chunk 48 and 150 positions (its rows
    /// straddle the chunk starts 96 and 144), sequence 1 a single decode row at 70.
    /// </summary>
    internal static Setup Build(string kType, string vType, int group, bool chunked, int hd = 64, int kvHeads = 2)
    {
        var config = KvCacheTests.Config(kvHeads: kvHeads, headDim: hd, chunk: 48, heads: kvHeads * group);
        int layer = chunked ? 0 : 3;
        var (kt, vt) = (KvType.Parse(kType), KvType.Parse(vType));
        var caches = new[] { new KvCache(config, 400, kt, vt, pagePositions: 32), new KvCache(config, 400, kt, vt, pagePositions: 32) };
        var rnd = new Random(group * 31 + hd);
        int kvDim = config.KvDim;
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => (float)(rnd.NextDouble() * 4 - 2)).ToArray();
        var seq0 = new[] { 95, 96, 97, 120, 143, 144, 149 };
        int[] lengths = [150, 71];
        for (int s = 0; s < 2; s++)
            for (int p = 0; p < lengths[s]; p++) caches[s].Store(layer, p, Rand(kvDim), Rand(kvDim), 1);
        // Sequence 0's rows see only their chunk (or everything in the global layer): a ring layer holds the last
        // 48 positions, so only rows of the last chunk [144, 150) can read it; earlier rows use the global layer.
        var positions = chunked ? new[] { 144, 145, 147, 149, 70 } : seq0.Append(70).ToArray();
        int n = positions.Length;
        var seqOf = positions.Select((_, i) => i == n - 1 ? 1 : 0).ToArray();
        var first = positions.Select((p, i) => chunked ? AttentionMath.FirstVisibleKey(p, true, 48) : 0).ToArray();
        // In the chunked case the decode row of sequence 1 reads a ring too: 70 is in chunk [48, 96), which holds
        // positions 48..70 (its last write was 70 < 96).
        var layers = caches.Select(c => c.Layers[layer]).ToArray();
        var q = Rand(n * config.NumHeads * hd);
        return new Setup(config.NumHeads, kvHeads, hd, q, new AttentionRows(n, layers, seqOf, positions, first), caches);
    }

    /// <summary>Largest |a − b|; +∞ when either side has a NaN where the other does not (LINQ's Max would skip NaNs).</summary>
    private static double MaxAbsDiff(float[] a, float[] b) =>
        a.Zip(b, (x, y) => float.IsNaN(x) != float.IsNaN(y) ? double.PositiveInfinity : float.IsNaN(x) ? 0 : Math.Abs((double)x - y)).Max();

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryPathMatchesTheReference(string kType, string vType, int group)
    {
        foreach (bool chunked in new[] { false, true })
        {
            using var s = Build(kType, vType, group, chunked);
            int size = s.Rows.Rows * s.Heads * s.HeadDim;
            var expected = new float[size];
            AttentionReference.Attend(s.Heads, s.KvHeads, s.HeadDim, s.Q, expected, s.Rows);
            foreach (var path in AttentionKernels.AvailablePaths())
            {
                var kernels = new AttentionKernels(path);
                float[]? unsplit = null;
                foreach (int splits in new[] { 1, 2, 3, 7 })
                {
                    var actual = new float[size];
                    kernels.Attend(_pool, s.Heads, s.KvHeads, s.HeadDim, s.Q, actual, s.Rows, splits);
                    double diff = MaxAbsDiff(actual, expected);
                    Assert.True(diff < 2e-5, $"{kType}/{vType} group {group} {(chunked ? "chunked" : "global")} {path} splits {splits}: max |Δ| {diff:g3} vs reference");
                    unsplit ??= actual;
                    double splitDiff = MaxAbsDiff(actual, unsplit);
                    Assert.True(splitDiff < 2e-6, $"{path} {splits} splits vs unsplit: {splitDiff:g3}");
                }
            }
        }
    }

    [Fact]
    public void MasksAreExact()
    {
        // Keys outside a row's window must have no effect: poison them with huge values and compare with a cache
        // that never held them.
        using var s = Build("f32", "f32", 2, chunked: false);
        var rows = s.Rows with { RowFirstKey = s.Rows.RowPosition.Select(p => p - 10).ToArray() };
        int size = rows.Rows * s.Heads * s.HeadDim;
        var before = new float[size];
        var kernels = new AttentionKernels(AttentionKernels.Best);
        kernels.Attend(_pool, s.Heads, s.KvHeads, s.HeadDim, s.Q, before, rows);
        var poison = Enumerable.Repeat(1e4f, s.Caches[0].Layers[3].KeyRowBytes / 4).ToArray();
        for (int seq = 0; seq < 2; seq++)
        {
            var mine = Enumerable.Range(0, rows.Rows).Where(i => rows.RowSequence[i] == seq).ToArray();
            s.Caches[seq].Store(3, mine.Min(i => rows.RowFirstKey[i]) - 1, poison, poison, 1); // before every window
            s.Caches[seq].Store(3, mine.Max(i => rows.RowPosition[i]) + 1, poison, poison, 1); // after every row
        }
        var after = new float[size];
        kernels.Attend(_pool, s.Heads, s.KvHeads, s.HeadDim, s.Q, after, rows);
        Assert.Equal(before, after);
    }

    /// <summary>
    /// An f16 cache that stored an infinity (a value past 65504) decodes it as infinity, as the reference does — the
    /// fast half decoding (finite values only) must not turn it into a large finite number.
    /// </summary>
    [Fact]
    public void NonFiniteHalvesDecodeAsTheReferenceDoes()
    {
        using var s = Build("f16", "f16", 2, chunked: false);
        Assert.False(s.Caches[1].Layers[3].MayHoldNonFiniteHalves);
        int kvDim = s.Caches[1].Layers[3].KeyRowBytes / 2;
        var v = Enumerable.Repeat(0.5f, kvDim).ToArray();
        v[3] = 1e6f; // → +inf in f16
        s.Caches[1].Store(3, 20, new float[kvDim], v, 1);
        Assert.True(s.Caches[1].Layers[3].MayHoldNonFiniteHalves);
        int size = s.Rows.Rows * s.Heads * s.HeadDim;
        var expected = new float[size];
        AttentionReference.Attend(s.Heads, s.KvHeads, s.HeadDim, s.Q, expected, s.Rows);
        foreach (var path in AttentionKernels.AvailablePaths())
        {
            var actual = new float[size];
            new AttentionKernels(path).Attend(_pool, s.Heads, s.KvHeads, s.HeadDim, s.Q, actual, s.Rows);
            for (int i = 0; i < size; i++)
            {
                Assert.Equal(float.IsFinite(expected[i]), float.IsFinite(actual[i]));
                if (float.IsFinite(expected[i])) Assert.True(Math.Abs(expected[i] - actual[i]) < 2e-5, $"{path} element {i}");
            }
        }
        Assert.Contains(expected, x => float.IsPositiveInfinity(x)); // the decode row sees the infinite value
    }

    /// <summary>Queries too large for the pre-scaled half products (|q| ≥ 2^15) take the exact decoding and still match.</summary>
    [Fact]
    public void HugeQueriesMatchTheReference()
    {
        using var s = Build("f16", "f16", 2, chunked: false);
        var q = s.Q.Select((x, i) => i % 7 == 0 ? x * 1e5f : x * 1e-3f).ToArray();
        int size = s.Rows.Rows * s.Heads * s.HeadDim;
        var expected = new float[size];
        AttentionReference.Attend(s.Heads, s.KvHeads, s.HeadDim, q, expected, s.Rows);
        foreach (var path in AttentionKernels.AvailablePaths())
        {
            var actual = new float[size];
            new AttentionKernels(path).Attend(_pool, s.Heads, s.KvHeads, s.HeadDim, q, actual, s.Rows);
            Assert.True(MaxAbsDiff(actual, expected) < 2e-5, $"{path}: {MaxAbsDiff(actual, expected):g3}");
        }
    }
}
