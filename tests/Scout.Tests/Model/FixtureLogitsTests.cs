using Scout.Cli.Commands;
using Scout.Model;
using Xunit.Abstractions;

namespace Scout.Tests.Model;

/// <summary>Logits against Meta's reference for every text fixture, file form and path (batched, token by token).</summary>
public class FixtureLogitsTests(ITestOutputHelper output)
{
    public static TheoryData<string, string, bool> Cases()
    {
        var data = new TheoryData<string, string, bool>();
        foreach (var model in new[] { "scout-tiny", "maverick-tiny" })
            foreach (var file in new[] { "model.safetensors", "model-bf16.safetensors", "model.gguf" })
                foreach (var decode in new[] { false, true })
                    data.Add(model, file, decode);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesMetaReference(string model, string file, bool decode)
    {
        using var m = Llama4Model.Load(Fixtures.Text(model, file), Fixtures.Text(model, "config.json"));
        var ids = LogitsCommand.ReadTokens(Fixtures.Text(model, "tokens.json"));
        var actual = LogitsCommand.Compute(m, ids, decode);
        string golden = file == "model-bf16.safetensors" ? "logits-bf16.f32" : "logits.f32";
        double maxDiff = LogitAssert.Close(actual, Fixtures.ReadF32(Fixtures.Text(model, golden)), m.Config.VocabSize);
        output.WriteLine($"{model}/{file} {(decode ? "decode" : "prefill")}: max |Δ| = {maxDiff:g3}");
    }

    [Fact]
    public void SafetensorsFileTakesConfigFromItsFolder()
    {
        using var m = Llama4Model.Load(Fixtures.Text("scout-tiny", "model.safetensors"));
        Assert.Equal(8, m.Config.AttentionChunkSize);
        Assert.Equal(4, m.Config.NumExperts);
    }

    [Fact]
    public void GgufWithoutConfigUsesLlamaCppDefaults()
    {
        using var m = Llama4Model.Load(Fixtures.Text("maverick-tiny", "model.gguf"));
        Assert.Equal(8192, m.Config.AttentionChunkSize);
        Assert.Equal(8192, m.Config.FloorScale);
        Assert.True(m.Config.UseQkNorm); // 8 experts, not 128: llama.cpp turns qk-norm on
        Assert.Equal(new[] { false, true, false, true }, m.Config.MoeLayers);
    }

    [Fact]
    public void PrefillInPiecesMatchesOneBatch()
    {
        // Pieces crossing chunk boundaries exercise keys read back from the ring cache.
        using var m = Llama4Model.Load(Fixtures.Text("scout-tiny", "model.safetensors"));
        var ids = LogitsCommand.ReadTokens(Fixtures.Text("scout-tiny", "tokens.json"));
        int vocab = m.Config.VocabSize;
        var expected = Fixtures.ReadF32(Fixtures.Text("scout-tiny", "logits.f32"));
        var cache = m.CreateCache(ids.Length);
        var actual = new float[ids.Length * vocab];
        int pos = 0;
        foreach (int piece in new[] { 3, 7, 1, 12, 5, 12 })
        {
            m.Forward(ids.AsSpan(pos, piece), cache, actual.AsSpan(pos * vocab, piece * vocab));
            pos += piece;
        }
        Assert.Equal(ids.Length, pos);
        LogitAssert.Close(actual, expected, vocab);
    }
}
