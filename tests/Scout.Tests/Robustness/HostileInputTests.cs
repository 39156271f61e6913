using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Scout.Formats;
using Scout.Generation;
using Scout.Model;
using Scout.Tensors;
using Scout.Tests.Generation;

namespace Scout.Tests.Robustness;

/// <summary>Library-level defences of issue #13: schema compilation limits, the grammar's work caps, atomic GGUF writes, the tensor scan.</summary>
public class HostileInputTests
{
    /// <summary>
    /// The stalling schema: $defs L0..L(levels-1), each an anyOf whose alternatives refer to the next level
    /// <paramref name="refs"/> times (objects, arrays and bare references), ending in a string.
    /// </summary>
    public static string NestedSchema(int levels, int refs)
    {
        var defs = new JsonObject();
        for (int i = 0; i < levels; i++)
        {
            string next = i + 1 < levels ? $"#/$defs/L{i + 1}" : "#/$defs/Leaf";
            var alts = new JsonArray();
            var props = new JsonObject();
            for (int r = 0; r < refs; r++) props[$"k{r}"] = new JsonObject { ["$ref"] = next };
            alts.Add(new JsonObject { ["type"] = "object", ["properties"] = props });
            alts.Add(new JsonObject { ["type"] = "array", ["items"] = new JsonObject { ["$ref"] = next } });
            for (int r = 0; r < refs - 1; r++) alts.Add(new JsonObject { ["$ref"] = next });
            defs[$"L{i}"] = new JsonObject { ["anyOf"] = alts };
        }
        defs["Leaf"] = new JsonObject { ["type"] = "string", ["maxLength"] = 4 };
        return new JsonObject { ["$defs"] = defs, ["$ref"] = "#/$defs/L0" }.ToJsonString();
    }

    [Fact]
    public void HostileNestedSchemasCompileWithinBoundsOrAreRefused()
    {
        var outcomes = new List<string>();
        foreach (int levels in new[] { 8, 12, 15 })
            foreach (int refs in new[] { 2, 3, 4 })
            {
                string schema = NestedSchema(levels, refs);
                long before = GC.GetAllocatedBytesForCurrentThread();
                var clock = Stopwatch.StartNew();
                string outcome;
                try
                {
                    var s = JsonSchemaSubset.Parse(schema);
                    Assert.True(s.AnyOf!.Count <= JsonSchemaSubset.MaxAlternatives);
                    outcome = $"compiled ({s.AnyOf.Count} alternatives)";
                }
                catch (JsonSchemaException e)
                {
                    outcome = "refused: " + e.Message;
                }
                clock.Stop();
                long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                outcomes.Add($"{levels} levels × {refs} refs: {outcome}");
                // Bounds, not benchmarks: the unbounded compiler took 92 s and gigabytes on these.
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"{levels}×{refs}: compiling took {clock.Elapsed}");
                Assert.True(allocated < 64 << 20, $"{levels}×{refs}: compiling allocated {allocated} bytes");
            }
        Assert.Equal(9, outcomes.Count);
    }

    [Fact]
    public void AnAmbiguousGrammarFailsItsSequenceInsteadOfStallingTheStep()
    {
        // Drive the grammar as a sampler would (always the first allowed token): every Mask stays within the
        // recognizer's work cap, and the sequence either completes or fails with a clear InvalidOperationException.
        var tokenizer = StandInTokenizer.Instance;
        var c = new JsonConstraint(tokenizer, JsonSchemaSubset.Parse(NestedSchema(15, 4)));
        var logits = new float[tokenizer.VocabSize];
        string? failure = null;
        var clock = Stopwatch.StartNew();
        for (int step = 0; step < 60 && failure is null && !c.IsComplete; step++)
        {
            Array.Fill(logits, 0f);
            // Prefer '{' so the output nests as deep as the schema allows (the worst case for the grammar).
            var brace = tokenizer.Encode("{\"k0\":");
            try
            {
                c.Mask(logits);
                int pick = brace.FirstOrDefault(id => !float.IsNegativeInfinity(logits[id]), -1);
                if (pick < 0) pick = Array.FindIndex(logits, v => !float.IsNegativeInfinity(v));
                Assert.True(pick >= 0, "the grammar left no token");
                c.Accept(pick);
            }
            catch (InvalidOperationException e)
            {
                failure = e.Message;
            }
        }
        clock.Stop();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"60 grammar steps took {clock.Elapsed}");
        if (failure is not null) Assert.Contains("ambiguous", failure);
    }

    [Theory]
    [InlineData("""{"type":5}""", "type")]
    [InlineData("""{"$ref":5}""", "$ref")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string"}},"required":[5]}""", "required")]
    [InlineData("""{"$ref":"#/$defs/X"}""", "$defs")]
    [InlineData("""{"type":"string","pattern":"^a+$"}""", "pattern")]
    [InlineData("""{"type":"string","format":"date-time"}""", "format")]
    [InlineData("""{"type":"string","minLength":-1}""", "minLength")]
    [InlineData("""{"type":"string","maxLength":"3"}""", "maxLength")]
    [InlineData("""{"type":"integer","minimum":10,"maximum":2}""", "minimum")]
    [InlineData("""{"type":"integer","maximum":"9"}""", "maximum")]
    [InlineData("""{"allOf":[{"type":"string"}]}""", "allOf")]
    [InlineData("""{"type":"number","multipleOf":3}""", "multipleOf")]
    public void SchemasScoutCannotEnforceAreRefusedNamingTheKeyword(string schema, string keyword)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => JsonSchemaSubset.Parse(schema));
        Assert.Contains(keyword, e.Message);
    }

    [Theory]
    [InlineData("""{"type":"integer","maximum":9}""", "9", true)]
    [InlineData("""{"type":"integer","maximum":9}""", "10", false)]
    [InlineData("""{"type":"integer","maximum":9}""", "504492916", false)]
    [InlineData("""{"type":"integer","maximum":9}""", "-504492916", true)]
    [InlineData("""{"type":"integer","minimum":-3,"maximum":40}""", "-4", false)]
    [InlineData("""{"type":"integer","minimum":-3,"maximum":40}""", "40", true)]
    [InlineData("""{"type":"integer","minimum":-3,"maximum":40}""", "41", false)]
    [InlineData("""{"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":10}""", "0", false)]
    [InlineData("""{"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":10}""", "10", false)]
    [InlineData("""{"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":10}""", "9", true)]
    [InlineData("""{"type":"number","minimum":0.5,"maximum":1.5}""", "0.49", false)]
    [InlineData("""{"type":"number","minimum":0.5,"maximum":1.5}""", "1.25", true)]
    [InlineData("""{"type":"number","minimum":0.5,"maximum":1.5}""", "1.51", false)]
    [InlineData("""{"type":"number","minimum":0.5,"maximum":1.5}""", "1e0", false)] // no exponents when bounded
    [InlineData("""{"type":"number","maximum":1,"exclusiveMaximum":true}""", "1", false)]
    [InlineData("""{"type":"number","maximum":1,"exclusiveMaximum":true}""", "0.999", true)]
    public void NumericBoundsAreEnforced(string schema, string text, bool accepted)
        => Assert.Equal(accepted, new JsonConstraint(StandInTokenizer.Instance, JsonSchemaSubset.Parse(schema)).Accepts(text));

    [Fact]
    public void BoundedIntegersCannotStartWhatTheyCannotFinish()
    {
        // After "1", a maximum of 9 leaves only the end of the number: no digit may follow.
        var c = new JsonConstraint(StandInTokenizer.Instance, JsonSchemaSubset.Parse("""{"type":"integer","maximum":9}"""));
        Assert.True(c.Accepts("1", complete: true));
        Assert.False(c.Accepts("12", complete: false));
        Assert.True(c.Accepts("-12", complete: false));
    }

    [Fact]
    public void ObjectsWithoutAdditionalPropertiesYieldTheirDeclaredPropertiesInOrder()
    {
        // What Microsoft.Extensions.AI sends for GetResponseAsync<T>: no additionalProperties at all.
        var s = JsonSchemaSubset.Parse("""{"type":"object","properties":{"city":{"type":"string"},"degrees":{"type":"integer"}},"required":["city","degrees"]}""");
        var c = new JsonConstraint(StandInTokenizer.Instance, s);
        Assert.True(c.Accepts("""{"city":"Oslo","degrees":3}"""));
        Assert.False(c.Accepts("""{"degrees":3,"city":"Oslo"}"""));
        Assert.False(c.Accepts("""{"city":"Oslo","degrees":3,"x":1}"""));
        Assert.False(c.Accepts("""{"x":1}"""));
        // additionalProperties: true still opens the object.
        var open = new JsonConstraint(StandInTokenizer.Instance, JsonSchemaSubset.Parse("""{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":true}"""));
        Assert.True(open.Accepts("""{"zz":1,"a":2}"""));
    }

    [Fact]
    public void RecursiveSchemasCompileOnce()
    {
        var s = JsonSchemaSubset.Parse("""{"$defs":{"Node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/Node"},{"type":"null"}]}},"required":["v","next"]}},"$ref":"#/$defs/Node"}""");
        var c = new JsonConstraint(StandInTokenizer.Instance, s);
        Assert.True(c.Accepts("""{"v":1,"next":{"v":2,"next":null}}"""));
        Assert.False(c.Accepts("""{"v":1,"next":{"v":2}}"""));
    }

    [Fact]
    public void AnInterruptedGgufWriteLeavesTheFileItWouldReplace()
    {
        using var dir = new Fixtures.TempDir();
        string path = dir.File("model.gguf");
        File.WriteAllText(path, "the previous file");
        using (var w = new GgufWriter(path))
        {
            w.SetString("general.architecture", "llama4");
            w.AddTensor("a.weight", [4], TensorType.F32);
            w.AddTensor("b.weight", [4], TensorType.F32);
            w.WriteTensor("a.weight", new byte[16]);
            Assert.True(File.Exists(w.TemporaryPath));
            Assert.Equal(Path.GetDirectoryName(Path.GetFullPath(path)), Path.GetDirectoryName(w.TemporaryPath));
            // interrupted here: Dispose without Finish
        }
        Assert.Equal("the previous file", File.ReadAllText(path));
        Assert.Single(Directory.GetFiles(dir.Path));

        using (var w = new GgufWriter(path))
        {
            w.SetString("general.architecture", "llama4");
            w.AddTensor("a.weight", [4], TensorType.F32);
            w.WriteTensor("a.weight", new byte[16]);
            Assert.Equal("the previous file", File.ReadAllText(path)); // untouched until the rename
            w.Finish();
        }
        using (var g = GgufFile.Open(path)) Assert.Single(g.Tensors);
        Assert.Single(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void QuantizeThatFailsKeepsTheOldOutput()
    {
        using var dir = new Fixtures.TempDir();
        string outPath = dir.File("out.gguf");
        File.WriteAllText(outPath, "keep me");
        // A config for another model: the export fails after the output was named.
        File.Copy(Fixtures.Text("scout-tiny", "model.safetensors"), dir.File("model.safetensors"));
        var cfg = JsonNode.Parse(File.ReadAllText(Fixtures.Text("scout-tiny", "config.json")))!;
        cfg["text_config"]!["hidden_size"] = 96;
        File.WriteAllText(dir.File("config.json"), cfg.ToJsonString());
        var (code, _, err) = ScoutCli.Run("quantize", "-m", dir.Path, "-t", "Q8_0", "-o", outPath);
        Assert.Equal(1, code);
        Assert.Contains("error:", err);
        Assert.Equal("keep me", File.ReadAllText(outPath));
        Assert.DoesNotContain(Directory.GetFiles(dir.Path), f => f.EndsWith(".partial", StringComparison.Ordinal));

        var ok = ScoutCli.Run("quantize", "-m", Fixtures.Text("scout-tiny", ""), "-t", "Q8_0", "-o", outPath);
        Assert.True(ok.Code == 0, ok.Err);
        using var g = GgufFile.Open(outPath);
        Assert.Contains(g.Tensors.Values, t => t.Type == TensorType.Q8_0);
    }

    [Fact]
    public void FuzzFindingTokenizerJsonWithInvalidUtf8IsALoadError()
    {
        // tools/fuzz (tokenizer target) found this: invalid UTF-8 inside a tokenizer.json string reached the generic handler.
        using var dir = new Fixtures.TempDir();
        var text = Encoding.UTF8.GetBytes("""{"model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":[]},"added_tokens":[{"id":2,"content":"<|XX|>"}]}""");
        int at = text.AsSpan().IndexOf("XX"u8);
        text[at] = 0xC3; text[at + 1] = 0x28;
        File.WriteAllBytes(dir.File("tokenizer.json"), text);
        var e = Assert.Throws<ModelLoadException>(() => Scout.Tokenization.Llama4Tokenizer.FromHuggingFaceJson(dir.File("tokenizer.json")));
        Assert.Contains("tokenizer.json", e.Message);
        Assert.Contains("UTF-8", e.Message);
    }

    [Fact]
    public unsafe void TensorScanFindsNonFiniteBlockScalesAndValues()
    {
        using var dir = new Fixtures.TempDir();
        string path = dir.File("scan.gguf");
        var q8 = new byte[2 * 34];
        BitConverter.TryWriteBytes(q8.AsSpan(34, 2), BitConverter.HalfToUInt16Bits(Half.NaN)); // block 1's scale
        var f16 = new byte[2 * 8];
        BitConverter.TryWriteBytes(f16.AsSpan(6, 2), BitConverter.HalfToUInt16Bits(Half.PositiveInfinity));
        var q4k = new byte[144];
        BitConverter.TryWriteBytes(q4k.AsSpan(2, 2), BitConverter.HalfToUInt16Bits(Half.NaN)); // dmin
        using (var w = new GgufWriter(path))
        {
            w.AddTensor("q8.weight", [64], TensorType.Q8_0);
            w.AddTensor("f16.weight", [8], TensorType.F16);
            w.AddTensor("q4k.weight", [256], TensorType.Q4_K);
            w.AddTensor("clean.weight", [32], TensorType.Q8_0);
            w.WriteTensor("q8.weight", q8);
            w.WriteTensor("f16.weight", f16);
            w.WriteTensor("q4k.weight", q4k);
            w.WriteTensor("clean.weight", new byte[34]);
            w.Finish();
        }
        using var g = GgufFile.Open(path);
        var p = TensorScan.Check(g.Tensors["q8.weight"])!;
        Assert.Contains("block 1", p.What);
        Assert.Contains("Q8_0 scale", p.What);
        Assert.Contains("element 3", TensorScan.Check(g.Tensors["f16.weight"])!.What);
        Assert.Contains("Q4_K scale", TensorScan.Check(g.Tensors["q4k.weight"])!.What);
        Assert.Null(TensorScan.Check(g.Tensors["clean.weight"]));
    }
}
