using Scout.Model;
using Scout.Planning;

namespace Scout.Tests.Planning;

/// <summary>llama-quantize's tensor-type mixes, checked against the rules written down in docs/gguf-llama4.md.</summary>
public class GgufMixTests
{
    private static Llama4Config Scout => ModelPresets.Scout.Text;

    private static Dictionary<string, StorageType> Types(QuantScheme s, Llama4Config c)
        => TensorInventory.FromConfig(c, null, includeRopeFreqs: true).ToDictionary(t => t.Name, t => s.TypeFor(t, c));

    [Fact]
    public void UseMoreBitsMatchesTheDocumentedLayersFor16()
    {
        var layers = Enumerable.Range(0, 16).Where(i => QuantScheme.UseMoreBits(i, 16));
        Assert.Equal(new[] { 0, 1, 4, 7, 10, 13, 14, 15 }, layers);
    }

    [Fact]
    public void Q4KMixOnScout()
    {
        var t = Types(QuantScheme.Q4_K_M, Scout);
        var more = new HashSet<int>(Enumerable.Range(0, 48).Where(i => i < 6 || i >= 42 || (i - 6) % 3 == 2));
        Assert.Equal(StorageType.Q6_K, t["output.weight"]);
        Assert.Equal(StorageType.Q4_K, t["token_embd.weight"]);
        Assert.Equal(StorageType.F32, t["rope_freqs.weight"]);
        Assert.Equal(StorageType.F32, t["output_norm.weight"]);
        for (int i = 0; i < 48; i++)
        {
            var expected = more.Contains(i) ? StorageType.Q6_K : StorageType.Q4_K;
            Assert.Equal(expected, t[$"blk.{i}.attn_v.weight"]);
            Assert.Equal(expected, t[$"blk.{i}.ffn_down_exps.weight"]);
            Assert.Equal(expected, t[$"blk.{i}.ffn_down_shexp.weight"]);
            Assert.Equal(StorageType.Q4_K, t[$"blk.{i}.attn_k.weight"]);
            Assert.Equal(StorageType.Q4_K, t[$"blk.{i}.ffn_gate_exps.weight"]);
            Assert.Equal(StorageType.F32, t[$"blk.{i}.ffn_gate_inp.weight"]);
            Assert.Equal(StorageType.F32, t[$"blk.{i}.attn_norm.weight"]);
        }
    }

    [Fact]
    public void Q8AndQ4_0KeepOnlyTheDocumentedExceptions()
    {
        var q8 = Types(QuantScheme.Q8_0, Scout);
        Assert.Equal(StorageType.Q8_0, q8["output.weight"]);
        Assert.All(q8.Where(kv => !kv.Key.Contains("norm") && !kv.Key.Contains("gate_inp") && !kv.Key.Contains("rope_freqs")),
            kv => Assert.Equal(StorageType.Q8_0, kv.Value));
        var q4 = Types(QuantScheme.Q4_0, Scout);
        Assert.Equal(StorageType.Q6_K, q4["output.weight"]);
        Assert.Equal(StorageType.Q4_0, q4["token_embd.weight"]);
        Assert.Equal(StorageType.Q4_0, q4["blk.0.attn_v.weight"]);
    }

    [Fact]
    public void Q8TotalIsClosedForm()
    {
        // Every 2-D weight at 34/32 bytes; norms, routers and rope_freqs (64 floats) F32.
        long matrices = 107_769_861_120L - 496_640 - 3_932_160;
        long expected = matrices / 32 * 34 + (496_640 + 3_932_160 + 64) * 4L;
        Assert.Equal(expected, MemoryPlanner.Weights(QuantScheme.Q8_0, Scout, null).TextBytes);
    }

    [Fact]
    public void Q3KMAndQ2KMixes()
    {
        var q3 = Types(QuantScheme.Q3_K_M, Scout);
        Assert.Equal(StorageType.Q5_K, q3["blk.1.attn_v.weight"]);
        Assert.Equal(StorageType.Q4_K, q3["blk.2.attn_v.weight"]);
        Assert.Equal(StorageType.Q5_K, q3["blk.2.ffn_down_exps.weight"]);   // layer < 48/16
        Assert.Equal(StorageType.Q4_K, q3["blk.3.ffn_down_exps.weight"]);
        Assert.Equal(StorageType.Q4_K, q3["blk.9.attn_output.weight"]);
        Assert.Equal(StorageType.Q3_K, q3["blk.9.ffn_up_exps.weight"]);
        Assert.Equal(StorageType.Q6_K, q3["output.weight"]);

        var q2 = Types(QuantScheme.Q2_K, Scout);
        Assert.Equal(StorageType.Q4_K, q2["blk.7.attn_v.weight"]);          // 40/8 = 5 query heads per KV head ≥ 4
        Assert.Equal(StorageType.Q3_K, q2["blk.7.ffn_down_exps.weight"]);
        Assert.Equal(StorageType.Q3_K, q2["blk.7.attn_output.weight"]);
        Assert.Equal(StorageType.Q2_K, q2["blk.7.attn_q.weight"]);
        Assert.Equal(StorageType.Q2_K, q2["token_embd.weight"]);

        var q5 = Types(QuantScheme.Q5_K_M, Scout);
        Assert.Equal(StorageType.Q6_K, q5["blk.8.ffn_down_exps.weight"]);
        Assert.Equal(StorageType.Q5_K, q5["blk.9.ffn_down_exps.weight"]);
    }

    [Fact]
    public void EightExpertModelsGetQ8AttentionAndFallbacksForShortRows()
    {
        // maverick-tiny: 8 experts (llama.cpp bumps attn_k/attn_v to Q8_0 and attn_output to Q5_K), rows of 96 and 40.
        var c = Llama4Config.FromJsonFile(Fixtures.Text("maverick-tiny", "config.json"));
        var t = Types(QuantScheme.Q4_K_M, c);
        Assert.Equal(StorageType.Q8_0, t["blk.1.attn_k.weight"]);
        Assert.Equal(StorageType.Q8_0, t["blk.1.attn_v.weight"]);
        Assert.Equal(StorageType.Q5_1, t["blk.1.attn_output.weight"]);    // Q5_K on a 96-wide row falls back to Q5_1
        Assert.Equal(StorageType.Q5_0, t["blk.1.attn_q.weight"]);         // Q4_K → Q5_0
        Assert.Equal(StorageType.Q8_0, t["output.weight"]);               // row 96 is not a multiple of 256
        Assert.Equal(StorageType.F16, t["blk.1.ffn_down_exps.weight"]);   // row 40: not even 32-wide blocks
        Assert.Equal(StorageType.IQ4_NL, Types(QuantScheme.Q2_K, c)["blk.1.attn_q.weight"]);
        var q4_0 = MemoryPlanner.Weights(QuantScheme.Q4_0, c, null);
        Assert.NotNull(q4_0.Error);
        Assert.Contains("ffn_down_exps", q4_0.Error);
    }

    [Fact]
    public void MetaRecipes()
    {
        var fp8 = TensorInventory.FromConfig(Scout).ToDictionary(t => t.Name, t => QuantScheme.Fp8.TypeFor(t, Scout));
        Assert.Equal(StorageType.BF16, fp8["blk.0.ffn_gate_exps.weight"]);   // first and last layer stay bf16
        Assert.Equal(StorageType.BF16, fp8["blk.47.ffn_down_exps.weight"]);
        Assert.Equal(StorageType.Fp8RowWise, fp8["blk.1.ffn_down_exps.weight"]);
        Assert.Equal(StorageType.BF16, fp8["blk.1.ffn_down_shexp.weight"]);
        var int4 = TensorInventory.FromConfig(Scout).ToDictionary(t => t.Name, t => QuantScheme.Int4.TypeFor(t, Scout));
        Assert.Equal(StorageType.Int4G128, int4["blk.0.ffn_gate_exps.weight"]);
        Assert.Equal(StorageType.Int4G128, int4["blk.47.ffn_down_shexp.weight"]);
        Assert.Equal(StorageType.BF16, int4["blk.3.attn_q.weight"]);
        // BF16 is exactly 2 bytes per parameter: the published 217 GB safetensors.
        var bf16 = MemoryPlanner.Weights(QuantScheme.BF16, Scout, ModelPresets.Scout.Vision);
        Assert.Equal(2 * 108_641_793_536L, bf16.TextBytes + bf16.VisionBytes);
    }

    [Theory]
    [InlineData("q4_k_m", "Q4_K_M")]
    [InlineData("fp16", "F16")]
    [InlineData("int4", "INT4")]
    [InlineData("FP8", "FP8")]
    public void SchemeNamesParse(string text, string name) => Assert.Equal(name, QuantScheme.Parse(text).Name);

    [Fact]
    public void UnknownSchemeIsRejected()
        => Assert.Contains("unknown scheme", Assert.Throws<ArgumentException>(() => QuantScheme.Parse("Q9_K")).Message);
}
