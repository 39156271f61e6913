using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Scout.Formats;
using Xunit.Abstractions;

namespace Scout.Tests.Robustness;

/// <summary>
/// A corpus of broken model folders, generated from the scout-tiny fixture on every run (nothing binary is
/// committed). Each case is a `scout logits` invocation that must end in exit 1 with `error: ...` naming the file
/// and the field (or, for the cases that must load, exit 0), within a bounded time and bounded managed allocation.
/// The classes follow issue #13.
/// </summary>
public static unsafe class CorruptionCorpus
{
    public sealed record Case(string Class, string Name, Func<Fixtures.TempDir, string[]> Build, string[] Expect, bool MustLoad = false);

    public sealed record Outcome(Case Case, int Code, string Err, TimeSpan Time, long AllocatedBytes, string? Problem)
    {
        public bool Clean => Problem is null;
    }

    /// <summary>Upper bounds each case must stay within (a hang or a multi-gigabyte allocation fails the case).</summary>
    public static readonly TimeSpan MaxTime = TimeSpan.FromSeconds(30);
    public const long MaxAllocatedBytes = 256L << 20;

    private const string Tiny = "scout-tiny";

    // ------------------------------------------------------------ helpers

    private static string Hf(Fixtures.TempDir d)
    {
        foreach (var f in new[] { "config.json", "model.safetensors", "tokens.json" })
            if (!File.Exists(d.File(f))) File.Copy(Fixtures.Text(Tiny, f), d.File(f));
        return d.Path;
    }

    private static string Gguf(Fixtures.TempDir d)
    {
        if (!File.Exists(d.File("tokens.json"))) File.Copy(Fixtures.Text(Tiny, "tokens.json"), d.File("tokens.json"));
        return d.File("model.gguf");
    }

    private static string[] Logits(Fixtures.TempDir d, string model, params string[] extra)
        => ["logits", "-m", model, "--tokens", d.File("tokens.json"), "-o", d.File("out.f32"), .. extra];

    private static string[] HfCase(Fixtures.TempDir d, Action<JsonObject, JsonObject> edit)
    {
        Hf(d);
        var root = JsonNode.Parse(File.ReadAllText(d.File("config.json")))!.AsObject();
        edit(root["text_config"]!.AsObject(), root);
        File.WriteAllText(d.File("config.json"), root.ToJsonString());
        return Logits(d, d.Path);
    }

    private static string[] ConfigText(Fixtures.TempDir d, string text)
    {
        Hf(d);
        File.WriteAllText(d.File("config.json"), text);
        return Logits(d, d.Path);
    }

    private static string[] TokensText(Fixtures.TempDir d, string text)
    {
        Hf(d);
        File.WriteAllText(d.File("tokens.json"), text);
        return Logits(d, d.Path);
    }

    /// <summary>Rewrites model.safetensors with an edited header (the data section kept).</summary>
    private static void EditHeader(Fixtures.TempDir d, Func<byte[], byte[]> edit)
    {
        var bytes = File.ReadAllBytes(d.File("model.safetensors"));
        long len = BitConverter.ToInt64(bytes, 0);
        var header = edit(bytes.AsSpan(8, (int)len).ToArray());
        using var fs = File.Create(d.File("model.safetensors"));
        fs.Write(BitConverter.GetBytes((long)header.Length));
        fs.Write(header);
        fs.Write(bytes.AsSpan(8 + (int)len));
    }

    private static void EditHeaderJson(Fixtures.TempDir d, Action<JsonObject> edit)
        => EditHeader(d, h =>
        {
            var o = JsonNode.Parse(Encoding.UTF8.GetString(h))!.AsObject();
            edit(o);
            return Encoding.UTF8.GetBytes(o.ToJsonString());
        });

    /// <summary>The full name of the tensor whose name ends with <paramref name="suffix"/>.</summary>
    private static string Tensor(Fixtures.TempDir d, string suffix)
    {
        var bytes = File.ReadAllBytes(d.File("model.safetensors"));
        long len = BitConverter.ToInt64(bytes, 0);
        var o = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, (int)len))!.AsObject();
        return o.Select(p => p.Key).Single(k => k.EndsWith(suffix, StringComparison.Ordinal));
    }

    /// <summary>Overwrites F32 values of a tensor of model.safetensors (element offset, values).</summary>
    private static void PatchFloats(Fixtures.TempDir d, string suffix, long element, params float[] values)
    {
        string name = Tensor(d, suffix);
        var bytes = File.ReadAllBytes(d.File("model.safetensors"));
        long len = BitConverter.ToInt64(bytes, 0);
        var o = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, (int)len))!.AsObject();
        var t = o[name]!.AsObject();
        if ((string)t["dtype"]! != "F32") throw new InvalidOperationException($"{name} is not F32");
        long begin = (long)t["data_offsets"]![0]!;
        for (int i = 0; i < values.Length; i++)
            BitConverter.TryWriteBytes(bytes.AsSpan((int)(8 + len + begin + (element + i) * 4), 4), values[i]);
        File.WriteAllBytes(d.File("model.safetensors"), bytes);
    }

    /// <summary>Writes model.gguf from the fixture's, with metadata edited, tensors filtered and data edited.</summary>
    private static string[] GgufCase(Fixtures.TempDir d, Action<GgufWriter> meta, Func<string, bool>? keep = null)
    {
        string dst = Gguf(d);
        using (var g = GgufFile.Open(Fixtures.Text(Tiny, "model.gguf")))
        using (var w = new GgufWriter(dst))
        {
            w.CopyMetadataFrom(g);
            meta(w);
            var infos = g.TensorInfos.Where(i => keep?.Invoke(i.Name) ?? true).ToList();
            foreach (var i in infos) w.AddTensor(i.Name, i.Ne, i.Type);
            foreach (var i in infos)
            {
                var t = g.Tensors[i.Name];
                w.WriteTensor(i.Name, new ReadOnlySpan<byte>(t.Data, checked((int)t.ByteLength)));
            }
            w.Finish();
        }
        return Logits(d, dst);
    }

    /// <summary>A Hugging Face cache: blobs/HASH files and snapshots/REV/NAME → ../../blobs/HASH links.</summary>
    private static string HfCache(Fixtures.TempDir d, string[] files, string? dangling = null)
    {
        string blobs = Path.Combine(d.Path, "models--meta--tiny", "blobs");
        string snap = Path.Combine(d.Path, "models--meta--tiny", "snapshots", "0123abcd");
        Directory.CreateDirectory(blobs);
        Directory.CreateDirectory(snap);
        int n = 0;
        foreach (var f in files)
        {
            string hash = $"{++n:x8}{Guid.NewGuid():N}";
            File.Copy(Fixtures.Text(Tiny, f), Path.Combine(blobs, hash));
            File.CreateSymbolicLink(Path.Combine(snap, f), Path.Combine("..", "..", "blobs", hash));
        }
        if (dangling is not null) File.CreateSymbolicLink(Path.Combine(snap, dangling), Path.Combine("..", "..", "blobs", "gone"));
        File.Copy(Fixtures.Text(Tiny, "tokens.json"), d.File("tokens.json"));
        return snap;
    }

    // ------------------------------------------------------------ the corpus

    public static IReadOnlyList<Case> All()
    {
        var c = new List<Case>();
        void Add(string cls, string name, Func<Fixtures.TempDir, string[]> build, params string[] expect) => c.Add(new Case(cls, name, build, expect));
        void Loads(string cls, string name, Func<Fixtures.TempDir, string[]> build) => c.Add(new Case(cls, name, build, [], MustLoad: true));

        // Baselines: the unmodified copies load (the corpus mutates something that works).
        Loads("0 baseline", "hf folder", d => Logits(d, Hf(d)));
        Loads("0 baseline", "gguf rewritten unchanged", d => GgufCase(d, _ => { }));

        // 2. symbolic links (Hugging Face cache layout)
        Loads("2 symlink", "hf cache snapshot folder", d => Logits(d, HfCache(d, ["config.json", "model.safetensors"])));
        Loads("2 symlink", "hf cache gguf file", d => Logits(d, Path.Combine(HfCache(d, ["model.gguf"]), "model.gguf")));
        Add("2 symlink", "dangling weight link", d =>
        {
            string snap = HfCache(d, ["config.json"], dangling: "model.safetensors");
            return Logits(d, snap);
        }, "model.safetensors");

        // 3. NaN / infinity in metadata or weights
        Add("3 non-finite", "rms_norm_eps negative", d => HfCase(d, (t, _) => t["rms_norm_eps"] = -1e-5), "config.json", "rms_norm_eps");
        Add("3 non-finite", "rms_norm_eps zero", d => HfCase(d, (t, _) => t["rms_norm_eps"] = 0), "config.json", "rms_norm_eps");
        Add("3 non-finite", "rope_theta zero", d => HfCase(d, (t, _) => t["rope_theta"] = 0), "config.json", "rope_theta");
        Add("3 non-finite", "rope_scaling factor negative", d => HfCase(d, (t, _) => t["rope_scaling"]!["factor"] = -16.0), "config.json", "rope_scaling.factor");
        Add("3 non-finite", "gguf eps NaN", d => GgufCase(d, w => w.SetFloat32("llama4.attention.layer_norm_rms_epsilon", float.NaN)), "model.gguf", "layer_norm_rms_epsilon");
        Add("3 non-finite", "gguf eps negative", d => GgufCase(d, w => w.SetFloat32("llama4.attention.layer_norm_rms_epsilon", -1e-5f)), "model.gguf", "layer_norm_rms_epsilon");
        Add("3 non-finite", "gguf rope freq_base 0", d => GgufCase(d, w => w.SetFloat32("llama4.rope.freq_base", 0)), "model.gguf", "freq_base");
        Add("3 non-finite", "gguf rope freq_base inf", d => GgufCase(d, w => w.SetFloat32("llama4.rope.freq_base", float.PositiveInfinity)), "model.gguf", "freq_base");
        Add("3 non-finite", "NaN row in q_proj", d => { Hf(d); PatchFloats(d, "layers.0.self_attn.q_proj.weight", 0, Enumerable.Repeat(float.NaN, 64).ToArray()); return Logits(d, d.Path); },
            "non-finite", "position");
        Add("3 non-finite", "NaN in q_proj, --check-tensors", d => { Hf(d); PatchFloats(d, "layers.0.self_attn.q_proj.weight", 70, float.NaN); return Logits(d, d.Path, "--check-tensors"); },
            "model.safetensors", "q_proj", "element 70");
        Add("3 non-finite", "inf embedding row", d =>
        {
            Hf(d);
            int first = (int)JsonNode.Parse(File.ReadAllText(d.File("tokens.json")))!["input_ids"]![0]!;
            PatchFloats(d, "embed_tokens.weight", first * 64L + 3, float.PositiveInfinity);
            return Logits(d, d.Path);
        }, "embed_tokens", "token");
        Add("3 non-finite", "NaN in a norm", d => { Hf(d); PatchFloats(d, "layers.1.input_layernorm.weight", 5, float.NaN); return Logits(d, d.Path); },
            "model.safetensors", "input_layernorm");

        // 5. counts checked before anything is sized by them
        Add("5 counts", "gguf 2,147,483,000 layers", d => GgufCase(d, w => w.SetUInt32("llama4.block_count", 2_147_483_000)), "model.gguf", "block_count");
        Add("5 counts", "config 2,147,483,000 layers", d => HfCase(d, (t, _) => { t["num_hidden_layers"] = 2_147_483_000; t.Remove("no_rope_layers"); }), "config.json", "num_hidden_layers");
        Add("5 counts", "gguf expert_count 2^31-1", d => GgufCase(d, w => w.SetUInt32("llama4.expert_count", int.MaxValue)), "model.gguf", "expert_count");
        Add("5 counts", "config num_local_experts huge", d => HfCase(d, (t, _) => t["num_local_experts"] = 2_147_483_000), "config.json", "num_local_experts");
        Add("5 counts", "config vocab_size huge", d => HfCase(d, (t, _) => t["vocab_size"] = 2_147_483_000), "config.json", "vocab_size");

        // 7. what used to reach the generic handler
        Add("7 unchecked", "gguf head_count 0 without key_length", d => GgufCase(d, w => { w.SetUInt32("llama4.attention.head_count", 0); w.Remove("llama4.attention.key_length"); }), "model.gguf", "head_count");
        Add("7 unchecked", "gguf sliding_window_pattern 0", d => GgufCase(d, w => w.SetUInt32("llama4.attention.sliding_window_pattern", 0)), "model.gguf", "sliding_window_pattern");
        Add("7 unchecked", "config no_rope_layer_interval 0", d => HfCase(d, (t, _) => { t["no_rope_layer_interval"] = 0; t.Remove("no_rope_layers"); }), "config.json", "no_rope_layer_interval");
        Add("7 unchecked", "gguf block_count 0xffffffff", d => GgufCase(d, w => w.SetUInt32("llama4.block_count", uint.MaxValue)), "model.gguf", "block_count");
        Add("7 unchecked", "gguf vocab_size u64 max", d => GgufCase(d, w => w.Set("llama4.vocab_size", GgufValueType.UInt64, ulong.MaxValue)), "model.gguf", "vocab_size");
        Add("7 unchecked", "safetensors shape product overflows", d =>
        {
            Hf(d);
            EditHeaderJson(d, h => h["huge"] = new JsonObject { ["dtype"] = "F32", ["shape"] = new JsonArray(1L << 40, 1L << 40), ["data_offsets"] = new JsonArray(0, 4) });
            return Logits(d, d.Path);
        }, "model.safetensors", "huge");
        Add("7 unchecked", "moe_layers as strings", d => HfCase(d, (t, _) => t["moe_layers"] = new JsonArray("0", "1")), "config.json", "moe_layers");
        Add("7 unchecked", "config root null", d => ConfigText(d, "null"), "config.json");
        Add("7 unchecked", "config root array", d => ConfigText(d, "[1,2]"), "config.json");
        Add("7 unchecked", "config root number", d => ConfigText(d, "42"), "config.json");
        Add("7 unchecked", "tokens.json root null", d => TokensText(d, "null"), "tokens.json");
        Add("7 unchecked", "tokens.json root number", d => TokensText(d, "7"), "tokens.json");
        Add("7 unchecked", "tokens.json ids as strings", d => TokensText(d, """{"input_ids": ["1", "2"]}"""), "tokens.json", "input_ids");
        Add("7 unchecked", "safetensors header invalid UTF-8", d =>
        {
            Hf(d);
            EditHeader(d, h =>
            {
                string text = Encoding.UTF8.GetString(h);
                int at = text.IndexOf("embed_tokens", StringComparison.Ordinal);
                var b = (byte[])h.Clone();
                b[Encoding.UTF8.GetByteCount(text[..at])] = 0xFF;
                return b;
            });
            return Logits(d, d.Path);
        }, "model.safetensors", "UTF-8");
        Add("7 unchecked", "index weight_map values not strings", d =>
        {
            Hf(d);
            File.WriteAllText(d.File("model.safetensors.index.json"), """{"weight_map": {"a": 5}}""");
            return Logits(d, d.Path);
        }, "model.safetensors.index.json", "weight_map");
        Add("7 unchecked", "index root array", d =>
        {
            Hf(d);
            File.WriteAllText(d.File("model.safetensors.index.json"), "[]");
            return Logits(d, d.Path);
        }, "model.safetensors.index.json", "weight_map");

        // 8. layer counts and the lesser ones
        Add("8 mismatch", "config says 3 of 4 layers", d => HfCase(d, (t, _) => { t["num_hidden_layers"] = 3; t["moe_layers"] = new JsonArray(0, 1, 2); t["no_rope_layers"] = new JsonArray(1, 1, 0); }),
            "config.json", "num_hidden_layers");
        Add("8 mismatch", "gguf says 3 of 4 layers", d => GgufCase(d, w => w.SetUInt32("llama4.block_count", 3)), "model.gguf", "block_count");
        Add("8 mismatch", "unclaimed extra tensor", d =>
        {
            Hf(d);
            EditHeaderJson(d, h => h["model.stray.weight"] = new JsonObject { ["dtype"] = "F32", ["shape"] = new JsonArray(1), ["data_offsets"] = new JsonArray(0, 4) });
            return Logits(d, d.Path);
        }, "model.safetensors", "model.stray.weight");
        Add("8 mismatch", "eos_token_id float", d => HfCase(d, (t, _) => t["eos_token_id"] = 509.5), "config.json", "eos_token_id");
        Add("8 mismatch", "eos_token_id string", d => HfCase(d, (t, _) => t["eos_token_id"] = "</s>"), "config.json", "eos_token_id");
        Add("8 mismatch", "logits past the context length", d => HfCase(d, (t, _) => t["max_position_embeddings"] = 4), "max_position_embeddings");

        // Classes handled before issue #13 (kept as regressions)
        Add("x handled", "truncated safetensors", d => { Hf(d); var b = File.ReadAllBytes(d.File("model.safetensors")); File.WriteAllBytes(d.File("model.safetensors"), b[..(b.Length - 100)]); return Logits(d, d.Path); },
            "model.safetensors", "truncated");
        Add("x handled", "gguf bad magic", d => { string p = Gguf(d); var b = File.ReadAllBytes(Fixtures.Text(Tiny, "model.gguf")); b[0] = (byte)'X'; File.WriteAllBytes(p, b); return Logits(d, p); },
            "model.gguf", "magic");
        Add("x handled", "gguf truncated", d => { string p = Gguf(d); var b = File.ReadAllBytes(Fixtures.Text(Tiny, "model.gguf")); File.WriteAllBytes(p, b[..(b.Length / 2)]); return Logits(d, p); },
            "model.gguf");
        Add("x handled", "malformed config JSON", d => ConfigText(d, "{\"text_config\": {"), "config.json");
        Add("x handled", "missing tensor", d => { Hf(d); string n = Tensor(d, "layers.2.post_attention_layernorm.weight"); EditHeaderJson(d, h => h.Remove(n)); return Logits(d, d.Path); },
            "post_attention_layernorm");
        Add("x handled", "unknown dtype", d => { Hf(d); string n = Tensor(d, "embed_tokens.weight"); EditHeaderJson(d, h => h[n]!["dtype"] = "F8_E4M3"); return Logits(d, d.Path); },
            "model.safetensors", "dtype");
        return c;
    }

    /// <summary>Runs one case on its own thread (so a hang is caught) and measures its time and managed allocation.</summary>
    public static Outcome Run(Case c)
    {
        using var dir = new Fixtures.TempDir();
        int code = -1;
        string err = "";
        long allocated = 0;
        Exception? crash = null;
        var clock = Stopwatch.StartNew();
        var thread = new Thread(() =>
        {
            try
            {
                var args = c.Build(dir);
                long before = GC.GetAllocatedBytesForCurrentThread();
                (code, _, err) = ScoutCli.Run(args);
                allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            }
            catch (Exception e) { crash = e; }
        }, 64 << 20) { IsBackground = true };
        thread.Start();
        bool finished = thread.Join(MaxTime * 2);
        clock.Stop();
        string? problem = null;
        if (!finished) problem = $"did not finish within {MaxTime * 2}";
        else if (crash is not null) problem = $"threw {crash.GetType().Name}: {crash.Message}";
        else if (clock.Elapsed > MaxTime) problem = $"took {clock.Elapsed.TotalSeconds:F1} s (bound {MaxTime.TotalSeconds} s)";
        else if (allocated > MaxAllocatedBytes) problem = $"allocated {allocated / 1048576.0:F0} MiB (bound {MaxAllocatedBytes >> 20} MiB)";
        else if (c.MustLoad && code != 0) problem = $"exit {code} (must load): {First(err)}";
        else if (!c.MustLoad && code != 1) problem = $"exit {code}, expected 1: {First(err)}";
        else if (!c.MustLoad && !err.Contains("error: ", StringComparison.Ordinal)) problem = $"no 'error:' line: {First(err)}";
        else if (!c.MustLoad && c.Expect.FirstOrDefault(f => !err.Contains(f, StringComparison.OrdinalIgnoreCase)) is { } missing)
            problem = $"message lacks '{missing}': {First(err)}";
        else if (!c.MustLoad && err.Contains("internal error", StringComparison.Ordinal)) problem = $"internal error: {First(err)}";
        return new Outcome(c, code, err, clock.Elapsed, allocated, problem);
    }

    private static string First(string err)
    {
        var line = err.Split('\n').FirstOrDefault(l => l.StartsWith("error", StringComparison.Ordinal)) ?? err.Split('\n')[0];
        return line.Length > 300 ? line[..300] : line.TrimEnd();
    }
}

public class CorruptionCorpusTests(ITestOutputHelper output)
{
    [Fact]
    public void EveryCaseEndsInACleanErrorNamingTheFileAndTheField()
    {
        var outcomes = CorruptionCorpus.All().Select(CorruptionCorpus.Run).ToList();
        foreach (var g in outcomes.GroupBy(o => o.Case.Class).OrderBy(g => g.Key))
            output.WriteLine($"class {g.Key}: {g.Count(o => o.Clean)}/{g.Count()} clean");
        output.WriteLine($"total: {outcomes.Count(o => o.Clean)}/{outcomes.Count} clean; slowest {outcomes.Max(o => o.Time.TotalSeconds):F2} s, most allocated {outcomes.Max(o => o.AllocatedBytes) / 1048576.0:F1} MiB");
        foreach (var o in outcomes)
            output.WriteLine($"  [{(o.Clean ? "ok" : "FAIL")}] {o.Case.Class} / {o.Case.Name}: exit {o.Code}, {o.Time.TotalMilliseconds:F0} ms, {o.AllocatedBytes / 1048576.0:F1} MiB{(o.Problem is null ? "" : " — " + o.Problem)}");
        var failed = outcomes.Where(o => !o.Clean).ToList();
        Assert.True(failed.Count == 0, string.Join("\n", failed.Select(o => $"{o.Case.Class} / {o.Case.Name}: {o.Problem}")));
    }
}
