using Scout.Cli;
using Scout.Cli.Commands;
using Scout.Formats;
using Scout.Model;
using Scout.Quantization;
using Scout.Tensors;
using Xunit.Abstractions;

namespace Scout.Tests.Quant;

public class SynthAndLoadTimeTests(ITestOutputHelper output)
{
    private static int Run(params string[] args)
    {
        var err = new StringWriter();
        int rc = Program.Run(args, new StringWriter(), err);
        Assert.True(rc == 0, err.ToString());
        return rc;
    }

    [Theory]
    [InlineData("Q4_K_M", 1)]
    [InlineData("Q4_0", 2)]
    [InlineData("Q8_0", 1)]
    [InlineData("F16", 2)]
    public void SynthesizedModelLoadsAndRuns(string type, int interleave)
    {
        using var dir = new Fixtures.TempDir();
        string path = dir.File("s.gguf");
        Run("synth", "--layers", "4", "--dim", "256", "--heads", "4", "--kv-heads", "2", "--head-dim", "64", "--experts", "4",
            "--expert-ffn", "256", "--dense-ffn", "512", "--vocab", "300", "--interleave", interleave.ToString(), "--type", type, "--seed", "5", "--out", path);
        using var m = Llama4Model.Load(path);
        var c = m.Config;
        Assert.Equal(4, c.NumLayers);
        Assert.Equal(256, c.HiddenSize);
        Assert.Equal(300, c.VocabSize);
        Assert.Equal(interleave == 2 ? new[] { false, true, false, true } : new[] { true, true, true, true }, c.MoeLayers);
        int[] ids = [296, 1, 2, 3, 40, 41, 42, 100];
        var logits = LogitsCommand.Compute(m, ids, decode: false);
        Assert.All(logits, v => Assert.True(float.IsFinite(v)));
        double mean = logits.Average(), std = Math.Sqrt(logits.Average(v => (v - mean) * (v - mean)));
        output.WriteLine($"{type} interleave {interleave}: logits std {std:g3}");
        Assert.InRange(std, 0.05, 20); // N(0, 1/√fan_in) weights keep activations O(1)
        // Decoding token by token through the cache gives the same rows as the batched forward.
        var decoded = LogitsCommand.Compute(m, ids, decode: true);
        for (int i = 0; i < logits.Length; i++) Assert.True(Math.Abs(logits[i] - decoded[i]) < 1e-3, $"decode differs at {i}");

        using var g = GgufFile.Open(path);
        Assert.Equal("llama4", g.GetString("general.architecture"));
        Assert.Equal("gpt2", g.GetString("tokenizer.ggml.model"));
        Assert.Equal(300, g.GetArray<string>("tokenizer.ggml.tokens")!.Length);
        Assert.Equal(300 - 256 - 4, g.GetArray<string>("tokenizer.ggml.merges")!.Length);
        Assert.Equal(QuantMix.FileType(QuantMix.Parse(type)), (uint)g.GetInt("general.file_type")!);
        Assert.Equal(TensorType.F32, g.Tensors["rope_freqs.weight"].Type);
        Assert.Equal(new float[] { 1, 1, 1, 1, 1, 1, 1, 1 }, g.Tensors["rope_freqs.weight"].ToFloatArray()[..8]);
        Assert.Equal(16f, g.Tensors["rope_freqs.weight"].ToFloatArray()[^1]);
    }

    [Fact]
    public void SameSeedSameBytesOtherSeedOtherBytes()
    {
        using var dir = new Fixtures.TempDir();
        string[] Args(string seed, string file) => ["synth", "--preset", "tiny", "--type", "Q4_K_M", "--seed", seed, "--out", dir.File(file)];
        Run(Args("3", "a.gguf"));
        Run(Args("3", "b.gguf"));
        Run(Args("4", "c.gguf"));
        Assert.Equal(File.ReadAllBytes(dir.File("a.gguf")), File.ReadAllBytes(dir.File("b.gguf")));
        Assert.NotEqual(File.ReadAllBytes(dir.File("a.gguf")), File.ReadAllBytes(dir.File("c.gguf")));
    }

    [Fact]
    public void BenchPresetsHaveTheDocumentedParameterCounts()
    {
        // gguf-llama4.md §6: bench-1b 1.022 B, bench-4b 4.284 B total parameters.
        Assert.Equal(1.022, SynthShape.Presets["bench-1b"].TotalParameters() / 1e9, 3);
        Assert.Equal(4.284, SynthShape.Presets["bench-4b"].TotalParameters() / 1e9, 3);
    }

    [Fact]
    public void SynthRejectsBadShapes()
    {
        var err = new StringWriter();
        Assert.Equal(1, Program.Run(["synth", "--preset", "nope", "--out", "x.gguf"], new StringWriter(), err));
        Assert.Contains("unknown preset 'nope'", err.ToString());
        err = new StringWriter();
        Assert.Equal(1, Program.Run(["synth", "--heads", "5", "--kv-heads", "2", "--out", "x.gguf"], new StringWriter(), err));
        Assert.Contains("multiple of kv heads", err.ToString());
        err = new StringWriter();
        Assert.Equal(1, Program.Run(["synth", "--vocab", "100", "--out", "x.gguf"], new StringWriter(), err));
        Assert.Contains("too small", err.ToString());
    }

    [Fact]
    public void RealVocabularyFromMetasTokenizer()
    {
        var vocab = GgufVocab.FromTiktoken(Fixtures.Tokenizer("llama4/tokenizer.model"));
        Assert.Equal(202048, vocab.Tokens.Length);
        Assert.Equal(202048, vocab.Tokens.Distinct().Count());
        Assert.Equal("<|begin_of_text|>", vocab.Tokens[vocab.BosId]);
        Assert.Equal(200000, vocab.BosId);
        Assert.Equal(200001, vocab.EosId);
        Assert.Equal("<|eot|>", vocab.Tokens[200008]);
        Assert.Equal(GgufVocab.Control, vocab.TokenTypes[200008]);
        Assert.Equal(GgufVocab.Normal, vocab.TokenTypes[199999]);
        Assert.Equal("Ġ", vocab.Tokens.Single(t => t == "Ġ")); // the space byte is present
        // Every merge joins two tokens of lower id into a token whose id is higher, in id order.
        var id = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < 200000; i++) id[vocab.Tokens[i]] = i;
        int previous = -1;
        foreach (var merge in vocab.Merges)
        {
            int sp = merge.IndexOf(' ');
            string left = merge[..sp], right = merge[(sp + 1)..];
            int result = id[left + right];
            Assert.True(id[left] < result && id[right] < result, merge);
            Assert.True(result > previous, $"merges out of rank order at {merge}");
            previous = result;
        }
        Assert.Equal(vocab.Tokens.Take(200000).Count(t => t.Length >= 2), vocab.Merges.Length); // one merge per multi-byte token
    }

    [Fact]
    public void BuiltInSpecialTokenListEqualsMetas()
    {
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Fixtures.Tokenizer("llama4/special_tokens.json")));
        var expected = doc.RootElement.GetProperty("special_tokens").EnumerateObject().OrderBy(p => p.Value.GetInt32()).Select(p => p.Name).ToList();
        Assert.Equal(expected, GgufVocab.MetaSpecialTokens());

        // Without special_tokens.json next to tokenizer.model, the built-in list gives the same vocabulary.
        using var dir = new Fixtures.TempDir();
        File.Copy(Fixtures.Tokenizer("llama4/tokenizer.model"), dir.File("tokenizer.model"));
        var alone = GgufVocab.FromTiktoken(dir.File("tokenizer.model"));
        Assert.Equal(202048, alone.Tokens.Length);
        Assert.Equal(expected, alone.Tokens[200000..]);
        Assert.Equal((200000, 200001, 200018), (alone.BosId, alone.EosId, alone.PadId));
    }

    [Theory]
    [InlineData("maverick-tiny", "model-bf16.safetensors", "logits-bf16.f32", "Q8_0", 0.1, 0.90)]
    [InlineData("scout-tiny", "model.safetensors", "logits.f32", "Q8_0", 0.005, 0.90)]
    [InlineData("scout-tiny", "model.safetensors", "logits.f32", "Q4_0", 1.0, 0.45)]
    [InlineData("maverick-tiny", "model.safetensors", "logits.f32", "Q4_K", 1.0, 0.45)]
    public void LoadTimeQuantizationStaysClose(string model, string file, string golden, string type, double maxMeanKl, double minTop1)
    {
        var options = LogitsCommand.ParseLoadOptions(type);
        using var m = Llama4Model.Load(Fixtures.Text(model, file), Fixtures.Text(model, "config.json"), options: options);
        Assert.NotNull(m.Weights.Owned);
        Assert.False(m.Weights.Layers[0].Q.Type.IsFloat());
        var ids = LogitsCommand.ReadTokens(Fixtures.Text(model, "tokens.json"));
        var logits = LogitsCommand.Compute(m, ids, decode: false);
        var (meanKl, maxKl, top1) = LogitStats.Compare(Fixtures.ReadF32(Fixtures.Text(model, golden)), logits, m.Config.VocabSize);
        output.WriteLine($"{model}/{file} --quantize {type}: KL mean {meanKl:g3} max {maxKl:g3}, top-1 {top1:P1}");
        Assert.True(meanKl <= maxMeanKl, $"mean KL {meanKl} > {maxMeanKl}");
        Assert.True(top1 >= minTop1, $"top-1 {top1:P1} < {minTop1:P0}");
    }

    [Fact]
    public void LoadTimeQuantizeRejectsFloatTypes()
    {
        var err = new StringWriter();
        Assert.Equal(1, Program.Run(["logits", "--model", Fixtures.Text("scout-tiny"), "--tokens", Fixtures.Text("scout-tiny", "tokens.json"),
            "--out", Path.Combine(Path.GetTempPath(), "never.f32"), "--quantize", "F16"], new StringWriter(), err));
        Assert.Contains("--quantize", err.ToString());
    }
}
