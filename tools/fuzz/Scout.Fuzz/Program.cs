using System.Text;
using System.Text.Json;
using Scout.Formats;
using Scout.Generation;
using Scout.Server;
using Scout.Tensors;
using Scout.Tokenization;
using SharpFuzz;

namespace Scout.Fuzz;

/// <summary>
/// Fuzz targets over Scout's parsers. An input may be refused only with the parser's own error
/// (<see cref="ModelLoadException"/>, a 4xx <see cref="ApiException"/>, a schema's <see cref="ArgumentException"/>);
/// any other exception, a hang or a crash is a finding.
///   Scout.Fuzz TARGET            run under afl-fuzz (persistent mode)
///   Scout.Fuzz TARGET FILE...    replay inputs (exit 1 on a finding)
///   Scout.Fuzz seed DIR          write seed inputs for every target into DIR/TARGET/
/// Targets: gguf, safetensors, tokenizer, request.
/// </summary>
public static class Program
{
    private static readonly string Scratch = Path.Combine(Path.GetTempPath(), $"scout-fuzz-{Environment.ProcessId}");

    public static int Main(string[] args)
    {
        if (args.Length == 0) { Console.Error.WriteLine("usage: Scout.Fuzz gguf|safetensors|tokenizer|request [FILE...] | seed DIR"); return 2; }
        if (args[0] == "seed") { Seeds.Write(args[1]); return 0; }
        Action<byte[]> target = args[0] switch
        {
            "gguf" => Gguf,
            "safetensors" => Safetensors,
            "tokenizer" => Tokenizer,
            "request" => Request,
            _ => throw new ArgumentException($"unknown target {args[0]}"),
        };
        Directory.CreateDirectory(Scratch);
        if (args.Length > 1)
        {
            int findings = 0;
            foreach (var file in args.Skip(1))
            {
                try { target(File.ReadAllBytes(file)); }
                catch (Exception e) { findings++; Console.WriteLine($"{file}: {e.GetType().Name}: {e.Message}\n{e.StackTrace}"); }
            }
            return findings == 0 ? 0 : 1;
        }
        Fuzzer.Run(stream =>
        {
            using var ms = new MemoryStream();
            stream.CopyTo(ms);
            target(ms.ToArray());
        });
        return 0;
    }

    private static string AsFile(byte[] data, string name)
    {
        string path = Path.Combine(Scratch, name);
        File.WriteAllBytes(path, data);
        return path;
    }

    private static void Gguf(byte[] data)
    {
        try
        {
            using var g = GgufFile.Open(AsFile(data, "input.gguf"));
            foreach (var t in g.Tensors.Values) _ = Scout.Model.TensorScan.Check(t);
            try { _ = Scout.Model.Llama4Config.FromGguf(g); } catch (ModelLoadException) { }
            try { _ = Llama4Tokenizer.FromGguf(g); } catch (ModelLoadException) { }
        }
        catch (ModelLoadException) { }
    }

    private static void Safetensors(byte[] data)
    {
        try
        {
            using var f = SafetensorsFile.Open(AsFile(data, "input.safetensors"));
            foreach (var t in f.Tensors.Values) _ = Scout.Model.TensorScan.Check(t);
        }
        catch (ModelLoadException) { }
    }

    private static void Tokenizer(byte[] data)
    {
        try
        {
            var t = Llama4Tokenizer.FromTiktokenModel(data, "tokenizer.model");
            var ids = t.Encode("Hello, fuzz! 123 ü");
            _ = t.Decode(ids);
        }
        catch (ModelLoadException) { }
        try { _ = Llama4Tokenizer.FromHuggingFaceJson(AsFile(data, "tokenizer.json")); }
        catch (ModelLoadException) { }
        try { _ = Scout.Model.Llama4Config.FromJsonFile(AsFile(data, "config.json")); }
        catch (ModelLoadException) { }
    }

    private static void Request(byte[] data)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(data, new JsonDocumentOptions { MaxDepth = 64 }); }
        catch (JsonException) { return; }
        using var owned = doc;
        try
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return;
            JsonRequest.CheckText(doc.RootElement);
            var r = new JsonRequest(doc.RootElement);
            var schema = r.Object("response_format")?.Object("json_schema")?.Get("schema") ?? doc.RootElement;
            JsonSchemaSubset compiled;
            try { compiled = JsonSchemaSubset.Parse(schema); }
            catch (ArgumentException) { return; }
            var c = new JsonConstraint(ByteTokenizer.Instance, compiled);
            try
            {
                foreach (var text in new[] { "{}", "[]", "\"a\"", "0", "-1.5", "true", "null", """{"a":1,"b":[2,"x"]}""" })
                    _ = c.Accepts(text);
                var logits = new float[ByteTokenizer.Instance.VocabSize];
                for (int step = 0; step < 8 && !c.IsComplete; step++)
                {
                    Array.Clear(logits);
                    c.Mask(logits);
                    int pick = Array.FindIndex(logits, v => !float.IsNegativeInfinity(v));
                    if (pick < 0 || ByteTokenizer.Instance.StopIds.Contains(pick)) break;
                    c.Accept(pick);
                }
            }
            catch (InvalidOperationException e) when (e.Message.Contains("ambiguous", StringComparison.Ordinal)) { }
        }
        catch (ApiException e) when (e.Status is >= 400 and < 500) { }
    }
}

/// <summary>One token per byte, and a stop token.</summary>
internal sealed class ByteTokenizer : ITokenizer
{
    public static readonly ByteTokenizer Instance = new();
    public int VocabSize => 257;
    public int? BosId => null;
    public IReadOnlySet<int> StopIds { get; } = new HashSet<int> { 256 };
    public int[] Encode(string text, bool allowSpecial = false) => Encoding.UTF8.GetBytes(text).Select(b => (int)b).ToArray();
    public byte[] DecodeBytes(ReadOnlySpan<int> ids) { var b = new List<byte>(); foreach (int i in ids) if (i < 256) b.Add((byte)i); return b.ToArray(); }
    public string Decode(ReadOnlySpan<int> ids) => Encoding.UTF8.GetString(DecodeBytes(ids));
    public bool IsSpecial(int id) => id >= 256;
    public int? SpecialTokenId(string text) => null;
}

/// <summary>Small valid inputs each target starts from.</summary>
internal static class Seeds
{
    public static void Write(string dir)
    {
        string D(string t) { string p = Path.Combine(dir, t); Directory.CreateDirectory(p); return p; }
        string gguf = Path.Combine(D("gguf"), "tiny.gguf");
        using (var w = new GgufWriter(gguf))
        {
            w.SetString("general.architecture", "llama4");
            w.SetUInt32("llama4.block_count", 1);
            w.SetUInt32("llama4.embedding_length", 32);
            w.SetUInt32("llama4.attention.head_count", 2);
            w.SetFloat32("llama4.attention.layer_norm_rms_epsilon", 1e-5f);
            w.SetString("tokenizer.ggml.model", "gpt2");
            w.SetArray("tokenizer.ggml.tokens", new[] { "a", "b", "ab" });
            w.SetArray("tokenizer.ggml.token_type", new[] { 1, 1, 1 });
            w.AddTensor("token_embd.weight", [32, 3], TensorType.F32);
            w.AddTensor("blk.0.attn_q.weight", [32, 2], TensorType.Q8_0);
            w.AddTensor("blk.0.ffn_up.weight", [256, 1], TensorType.Q4_K);
            foreach (var t in w.Tensors) w.WriteTensor(t.Name, new byte[t.ByteLength]);
            w.Finish();
        }
        var header = Encoding.UTF8.GetBytes("""{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]}}""");
        using (var fs = File.Create(Path.Combine(D("safetensors"), "tiny.safetensors")))
        {
            fs.Write(BitConverter.GetBytes((long)header.Length));
            fs.Write(header);
            fs.Write(new byte[24]);
        }
        File.WriteAllText(Path.Combine(D("tokenizer"), "tokenizer.model"), "YQ== 0\nYg== 1\nYWI= 2\nIA== 3\n");
        File.WriteAllText(Path.Combine(D("tokenizer"), "config.json"), """{"text_config":{"model_type":"llama4_text","vocab_size":8,"hidden_size":8,"num_hidden_layers":2,"num_attention_heads":2,"head_dim":4,"intermediate_size":8,"intermediate_size_mlp":8,"num_local_experts":2,"moe_layers":[1],"rms_norm_eps":1e-5,"eos_token_id":[1,2]}}""");
        File.WriteAllText(Path.Combine(D("tokenizer"), "tokenizer.json"), """{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},"added_tokens":[{"id":3,"content":"<|eot|>","special":true}],"pre_tokenizer":{"type":"Split","pattern":{"Regex":"\\s+"}}}""");
        string req = D("request");
        File.WriteAllText(Path.Combine(req, "schema.json"), """{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"n":{"type":"integer","minimum":0,"maximum":99},"s":{"type":"string","maxLength":3},"l":{"type":"array","items":{"enum":["a",1]},"maxItems":2}},"required":["n"]}}}}""");
        File.WriteAllText(Path.Combine(req, "refs.json"), """{"$defs":{"A":{"anyOf":[{"$ref":"#/$defs/B"},{"type":"null"}]},"B":{"type":"object","properties":{"x":{"$ref":"#/$defs/A"}}}},"$ref":"#/$defs/A"}""");
        File.WriteAllText(Path.Combine(req, "text.json"), """{"messages":[{"role":"user","content":"caf\u00e9 \ud83d\ude00"}],"logit_bias":{"1":-5}}""");
    }
}
