using Scout.Cli;
using Scout.Cli.Commands;
using Scout.Model;
using Scout.Planning;
using Xunit.Abstractions;

namespace Scout.Tests.Memory;

/// <summary>
/// Logits through every K/V cache type against f32 K/V: Meta's fixtures (head_dim 16: f16 and bf16) and a synthetic
/// model with head_dim 64 (every type). The bounds are the measured error with headroom (numbers in docs/issue note).
/// </summary>
public class KvTypeAccuracyTests(ITestOutputHelper output)
{
    private static (double MaxAbs, double MeanKl) Compare(float[] reference, float[] actual, int vocab)
    {
        double maxAbs = 0, kl = 0;
        int rows = reference.Length / vocab;
        for (int r = 0; r < rows; r++)
        {
            var p = Softmax(reference.AsSpan(r * vocab, vocab));
            var q = Softmax(actual.AsSpan(r * vocab, vocab));
            for (int i = 0; i < vocab; i++)
            {
                maxAbs = Math.Max(maxAbs, Math.Abs(reference[r * vocab + i] - actual[r * vocab + i]));
                if (p[i] > 0) kl += p[i] * Math.Log(p[i] / Math.Max(q[i], 1e-300));
            }
        }
        return (maxAbs, kl / rows);
    }

    private static double[] Softmax(ReadOnlySpan<float> x)
    {
        double max = double.NegativeInfinity;
        foreach (var v in x) max = Math.Max(max, v);
        var e = new double[x.Length];
        double sum = 0;
        for (int i = 0; i < x.Length; i++) sum += e[i] = Math.Exp(x[i] - max);
        for (int i = 0; i < x.Length; i++) e[i] /= sum;
        return e;
    }

    [Theory]
    [InlineData("scout-tiny")]
    [InlineData("maverick-tiny")]
    public void FixturesThroughHalfTypes(string model)
    {
        using var m = Llama4Model.Load(Fixtures.Text(model, "model.safetensors"), Fixtures.Text(model, "config.json"));
        var ids = LogitsCommand.ReadTokens(Fixtures.Text(model, "tokens.json"));
        var golden = Fixtures.ReadF32(Fixtures.Text(model, "logits.f32"));
        int vocab = m.Config.VocabSize;
        var f32 = LogitsCommand.Compute(m, ids, decode: true, KvType.F32, KvType.F32);
        LogitAssert.Close(f32, golden, vocab); // f32 K/V: Meta's tolerance
        foreach (var (type, bound) in new[] { (KvType.F16, 0.03), (KvType.BF16, 0.2) })
        {
            var actual = LogitsCommand.Compute(m, ids, decode: true, type, type);
            var (maxAbs, kl) = Compare(f32, actual, vocab);
            output.WriteLine($"{model} {type.Name} K/V vs f32: max |Δlogit| {maxAbs:g3}, mean KL {kl:g3}");
            Assert.True(maxAbs < bound, $"{type.Name}: max |Δ| {maxAbs:g3} ≥ {bound}");
            for (int r = 0; r < ids.Length; r++)
                Assert.Equal(LogitAssert.ArgMax(f32.AsSpan(r * vocab, vocab)), LogitAssert.ArgMax(actual.AsSpan(r * vocab, vocab)));
        }
    }

    [Fact]
    public void SyntheticModelThroughEveryType()
    {
        using var dir = new Fixtures.TempDir();
        string path = dir.File("kv.gguf");
        Assert.Equal(0, Program.Run(["synth", "--layers", "4", "--dim", "256", "--heads", "4", "--kv-heads", "2", "--head-dim", "64",
            "--experts", "4", "--expert-ffn", "256", "--dense-ffn", "512", "--vocab", "300", "--type", "F16", "--seed", "11", "--out", path], new StringWriter(), new StringWriter()));
        using var m = Llama4Model.Load(path);
        var ids = Enumerable.Range(0, 48).Select(i => (i * 37 + 5) % 300).ToArray();
        int vocab = m.Config.VocabSize;
        var f32 = LogitsCommand.Compute(m, ids, decode: false, KvType.F32, KvType.F32);
        // Bounds: measured values × ~3 (see the issue note for the numbers).
        foreach (var (type, maxBound, klBound) in new[] { (KvType.F16, 5e-3, 1e-6), (KvType.BF16, 4e-2, 1e-4), (KvType.Q8_0, 5e-2, 2e-4), (KvType.Q4_0, 3.0, 0.03) })
        {
            var actual = LogitsCommand.Compute(m, ids, decode: false, type, type);
            var (maxAbs, kl) = Compare(f32, actual, vocab);
            output.WriteLine($"synthetic {type.Name} K/V vs f32: max |Δlogit| {maxAbs:g3}, mean KL {kl:g3}");
            Assert.True(maxAbs < maxBound, $"{type.Name}: max |Δ| {maxAbs:g3} ≥ {maxBound}");
            Assert.True(kl < klBound, $"{type.Name}: KL {kl:g3} ≥ {klBound}");
        }
    }
}
