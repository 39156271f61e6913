using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Scout.Formats;
using Scout.Model;

namespace Scout.Tests.Model;

/// <summary>Every kind of bad checkpoint gets a specific ModelLoadException (and the CLI exits 1 with "error: ...").</summary>
public class LoaderErrorTests
{
    private static string CopyFixture(Fixtures.TempDir dir, string model = "scout-tiny")
    {
        foreach (var f in new[] { "config.json", "model.safetensors" })
            File.Copy(Fixtures.Text(model, f), dir.File(f));
        return dir.Path;
    }

    private static ModelLoadException LoadFails(string path, string? config = null)
        => Assert.Throws<ModelLoadException>(() => { using var m = Llama4Model.Load(path, config); });

    /// <summary>Rewrites a safetensors file with an edited JSON header (same data section).</summary>
    private static void EditSafetensorsHeader(string path, Action<JsonObject> edit, int dropTailBytes = 0)
    {
        var bytes = File.ReadAllBytes(path);
        long len = BitConverter.ToInt64(bytes, 0);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, (int)len))!.AsObject();
        edit(header);
        var newHeader = Encoding.UTF8.GetBytes(header.ToJsonString());
        var data = bytes.AsSpan(8 + (int)len, bytes.Length - 8 - (int)len - dropTailBytes).ToArray();
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes((long)newHeader.Length));
        fs.Write(newHeader);
        fs.Write(data);
    }

    [Fact]
    public void MissingModelPath()
        => Assert.Contains("not found", LoadFails("/nonexistent/model.safetensors").Message);

    [Fact]
    public void MissingWeightsInFolder()
    {
        using var dir = new Fixtures.TempDir();
        File.Copy(Fixtures.Text("scout-tiny", "config.json"), dir.File("config.json"));
        Assert.Contains("no model.safetensors", LoadFails(dir.Path).Message);
    }

    [Fact]
    public void MissingConfig()
    {
        using var dir = new Fixtures.TempDir();
        File.Copy(Fixtures.Text("scout-tiny", "model.safetensors"), dir.File("model.safetensors"));
        Assert.Contains("config not found", LoadFails(dir.File("model.safetensors")).Message);
    }

    [Fact]
    public void MalformedConfigJson()
    {
        using var dir = new Fixtures.TempDir();
        CopyFixture(dir);
        File.WriteAllText(dir.File("config.json"), "{\"text_config\": {\"hidden_size\": 64,");
        Assert.Contains("malformed JSON", LoadFails(dir.Path).Message);
    }

    [Fact]
    public void ConfigFieldOfWrongType()
    {
        using var dir = new Fixtures.TempDir();
        CopyFixture(dir);
        var cfg = JsonNode.Parse(File.ReadAllText(dir.File("config.json")))!;
        cfg["text_config"]!["hidden_size"] = "sixty-four";
        File.WriteAllText(dir.File("config.json"), cfg.ToJsonString());
        Assert.Contains("hidden_size", LoadFails(dir.Path).Message);
    }

    [Fact]
    public void ShapeDisagreesWithConfig()
    {
        using var dir = new Fixtures.TempDir();
        CopyFixture(dir);
        var cfg = JsonNode.Parse(File.ReadAllText(dir.File("config.json")))!;
        cfg["text_config"]!["intermediate_size"] = 96;
        File.WriteAllText(dir.File("config.json"), cfg.ToJsonString());
        var e = LoadFails(dir.Path);
        Assert.Contains("has shape", e.Message);
        Assert.Contains("config implies", e.Message);
    }

    [Fact]
    public void TruncatedTensorData()
    {
        using var dir = new Fixtures.TempDir();
        CopyFixture(dir);
        var bytes = File.ReadAllBytes(dir.File("model.safetensors"));
        File.WriteAllBytes(dir.File("model.safetensors"), bytes[..(bytes.Length - 1000)]);
        Assert.Contains("truncated", LoadFails(dir.Path).Message);
    }

    [Fact]
    public void TruncatedHeader()
    {
        using var dir = new Fixtures.TempDir();
        CopyFixture(dir);
        File.WriteAllBytes(dir.File("model.safetensors"), File.ReadAllBytes(dir.File("model.safetensors"))[..100]);
        Assert.Contains("header length", LoadFails(dir.Path).Message);
    }

    [Fact]
    public void OffsetsPastEndOfFile()
    {
        using var dir = new Fixtures.TempDir();
        CopyFixture(dir);
        EditSafetensorsHeader(dir.File("model.safetensors"), h =>
        {
            var t = h["language_model.model.norm.weight"]!.AsObject();
            var offs = t["data_offsets"]!.AsArray();
            long begin = offs[0]!.GetValue<long>() + 10_000_000;
            t["data_offsets"] = new JsonArray(begin, begin + 256);
        });
        var e = LoadFails(dir.Path);
        Assert.Contains("norm.weight' ends at byte", e.Message);
        Assert.Contains("truncated file?", e.Message);
    }

    [Fact]
    public void OverlappingTensors()
    {
        using var dir = new Fixtures.TempDir();
        CopyFixture(dir);
        EditSafetensorsHeader(dir.File("model.safetensors"), h =>
        {
            var a = h["language_model.model.norm.weight"]!["data_offsets"]!.AsArray();
            var b = h["language_model.model.layers.0.input_layernorm.weight"]!;
            b["data_offsets"] = new JsonArray(a[0]!.GetValue<long>(), a[1]!.GetValue<long>());
        });
        Assert.Contains("overlap", LoadFails(dir.Path).Message);
    }

    [Fact]
    public void SizeDisagreesWithShape()
    {
        using var dir = new Fixtures.TempDir();
        CopyFixture(dir);
        EditSafetensorsHeader(dir.File("model.safetensors"), h => h["language_model.model.norm.weight"]!["shape"] = new JsonArray(65));
        Assert.Contains("needs 260 bytes", LoadFails(dir.Path).Message);
    }

    [Fact]
    public void UnknownDtype()
    {
        using var dir = new Fixtures.TempDir();
        CopyFixture(dir);
        EditSafetensorsHeader(dir.File("model.safetensors"), h => h["language_model.model.norm.weight"]!["dtype"] = "F8_E4M3");
        var e = LoadFails(dir.Path);
        Assert.Contains("F8_E4M3", e.Message);
        Assert.Contains("norm.weight", e.Message);
    }

    [Fact]
    public void MissingTensor()
    {
        using var dir = new Fixtures.TempDir();
        CopyFixture(dir);
        EditSafetensorsHeader(dir.File("model.safetensors"), h => h.Remove("language_model.model.layers.2.self_attn.k_proj.weight"));
        Assert.Contains("layers.2.self_attn.k_proj.weight' is missing", LoadFails(dir.Path).Message);
    }

    [Fact]
    public void MalformedSafetensorsHeaderJson()
    {
        using var dir = new Fixtures.TempDir();
        var header = Encoding.UTF8.GetBytes("{\"a\": {\"dtype\": \"F32\", ");
        File.WriteAllBytes(dir.File("model.safetensors"), [.. BitConverter.GetBytes((long)header.Length), .. header]);
        File.Copy(Fixtures.Text("scout-tiny", "config.json"), dir.File("config.json"));
        Assert.Contains("malformed JSON header", LoadFails(dir.Path).Message);
    }

    [Fact]
    public void ShardListedInIndexIsMissing()
    {
        using var dir = new Fixtures.TempDir();
        CopyFixture(dir);
        File.Move(dir.File("model.safetensors"), dir.File("model-00001-of-00002.safetensors"));
        File.WriteAllText(dir.File("model.safetensors.index.json"),
            "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00002-of-00002.safetensors\"}}");
        Assert.Contains("model-00002-of-00002.safetensors", LoadFails(dir.Path).Message);
    }

    [Fact]
    public void ShardedCheckpointLoads()
    {
        // Split the fixture into two shards with an index: same logits as the single file.
        using var dir = new Fixtures.TempDir();
        File.Copy(Fixtures.Text("scout-tiny", "config.json"), dir.File("config.json"));
        using (var src = SafetensorsFile.Open(Fixtures.Text("scout-tiny", "model.safetensors")))
        {
            var names = src.Tensors.Keys.Order(StringComparer.Ordinal).ToList();
            var map = new JsonObject();
            for (int s = 0; s < 2; s++)
            {
                string shard = $"model-0000{s + 1}-of-00002.safetensors";
                var part = names.Where((_, i) => i % 2 == s).ToList();
                WriteSafetensors(dir.File(shard), part.Select(n => src.Tensors[n]));
                foreach (var n in part) map[n] = shard;
            }
            File.WriteAllText(dir.File("model.safetensors.index.json"), new JsonObject { ["weight_map"] = map }.ToJsonString());
        }
        using var sharded = Llama4Model.Load(dir.Path);
        Assert.Equal(2, sharded.Checkpoint!.Files.Count);
        var ids = Scout.Cli.Commands.LogitsCommand.ReadTokens(Fixtures.Text("scout-tiny", "tokens.json"));
        var logits = Scout.Cli.Commands.LogitsCommand.Compute(sharded, ids, decode: false);
        LogitAssert.Close(logits, Fixtures.ReadF32(Fixtures.Text("scout-tiny", "logits.f32")), 512);
    }

    private static unsafe void WriteSafetensors(string path, IEnumerable<Scout.Tensors.WeightTensor> tensors)
    {
        var header = new JsonObject();
        long offset = 0;
        var list = tensors.ToList();
        foreach (var t in list)
        {
            header[t.Name] = new JsonObject
            {
                ["dtype"] = t.Type.ToString(),
                ["shape"] = new JsonArray(t.Shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + t.ByteLength),
            };
            offset += t.ByteLength;
        }
        var h = Encoding.UTF8.GetBytes(header.ToJsonString());
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes((long)h.Length));
        fs.Write(h);
        foreach (var t in list) fs.Write(new ReadOnlySpan<byte>(t.Data, (int)t.ByteLength));
    }

    [Fact]
    public void GgufBadMagic()
    {
        using var dir = new Fixtures.TempDir();
        var bytes = File.ReadAllBytes(Fixtures.Text("scout-tiny", "model.gguf"));
        bytes[0] = (byte)'X';
        File.WriteAllBytes(dir.File("bad.gguf"), bytes);
        Assert.Contains("bad magic", LoadFails(dir.File("bad.gguf")).Message);
    }

    [Fact]
    public void GgufBadVersion()
    {
        using var dir = new Fixtures.TempDir();
        var bytes = File.ReadAllBytes(Fixtures.Text("scout-tiny", "model.gguf"));
        BitConverter.GetBytes(99u).CopyTo(bytes, 4);
        File.WriteAllBytes(dir.File("bad.gguf"), bytes);
        Assert.Contains("version 99", LoadFails(dir.File("bad.gguf")).Message);
    }

    [Fact]
    public void GgufUnknownArchitecture()
    {
        using var dir = new Fixtures.TempDir();
        var bytes = File.ReadAllBytes(Fixtures.Text("scout-tiny", "model.gguf"));
        // Same-length replacement of the architecture string value "llama4" → "llama9".
        var needle = Encoding.UTF8.GetBytes("general.architecture");
        int at = bytes.AsSpan().IndexOf(needle);
        int value = at + needle.Length + 4 + 8; // key, u32 type, u64 length
        Assert.Equal("llama4", Encoding.UTF8.GetString(bytes, value, 6));
        bytes[value + 5] = (byte)'9';
        File.WriteAllBytes(dir.File("bad.gguf"), bytes);
        Assert.Contains("architecture 'llama9' is not supported", LoadFails(dir.File("bad.gguf")).Message);
    }

    [Fact]
    public void GgufTruncated()
    {
        using var dir = new Fixtures.TempDir();
        var bytes = File.ReadAllBytes(Fixtures.Text("scout-tiny", "model.gguf"));
        File.WriteAllBytes(dir.File("cut.gguf"), bytes[..(bytes.Length - 5000)]);
        Assert.Contains("truncated", LoadFails(dir.File("cut.gguf")).Message);
    }

    [Fact]
    public void ConfigForAnotherModelIsRejectedForGguf()
    {
        var e = LoadFails(Fixtures.Text("scout-tiny", "model.gguf"), Fixtures.Text("maverick-tiny", "config.json"));
        Assert.Contains("does not describe this model", e.Message);
    }

    [Fact]
    public void CliReportsErrorWithoutStackTrace()
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int rc = Scout.Cli.Program.Run(["logits", "--model", "/nonexistent.gguf", "--tokens", Fixtures.Text("scout-tiny", "tokens.json"), "--out", "/tmp/x.f32"], stdout, stderr);
        Assert.Equal(1, rc);
        Assert.StartsWith("error: ", stderr.ToString());
        Assert.DoesNotContain("   at ", stderr.ToString());
    }

    [Fact]
    public void CliRejectsMalformedTokensFile()
    {
        using var dir = new Fixtures.TempDir();
        File.WriteAllText(dir.File("tokens.json"), "{\"input_ids\": [1, 2,");
        var stderr = new StringWriter();
        int rc = Scout.Cli.Program.Run(["logits", "--model", Fixtures.Text("scout-tiny", "model.safetensors"), "--tokens", dir.File("tokens.json"), "--out", dir.File("o.f32")], new StringWriter(), stderr);
        Assert.Equal(1, rc);
        Assert.Contains("malformed JSON", stderr.ToString());
    }

    [Fact]
    public void TokenOutsideVocabularyIsRejected()
    {
        using var m = Llama4Model.Load(Fixtures.Text("scout-tiny", "model.safetensors"));
        var cache = m.CreateCache(4);
        var e = Assert.Throws<ArgumentException>(() => m.Forward([1, 512], cache, new float[2 * 512]));
        Assert.Contains("outside the vocabulary", e.Message);
    }
}
