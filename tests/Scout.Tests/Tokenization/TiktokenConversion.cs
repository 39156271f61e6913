using System.Text;
using System.Text.Json;
using Scout.Tokenization;

namespace Scout.Tests.Tokenization;

/// <summary>
/// Test-side conversion of Meta's tokenizer.model into the other two forms a checkpoint carries: a Hugging Face
/// tokenizer.json and a GGUF tokenizer section. Merges follow from the ranks as in the standard tiktoken→BPE conversion
/// (every split of a token into two tokens, grouped by the token's rank, then by the ranks of the two halves).
/// </summary>
public static class TiktokenConversion
{
    /// <summary>Token strings (GPT-2 byte-level form) indexed by rank, parsed independently of the product loader.</summary>
    public static List<string> ReadRanks(string path)
    {
        var lines = File.ReadAllLines(path).Where(l => l.Length > 0).ToArray();
        var byRank = new string[lines.Length];
        foreach (var line in lines)
        {
            int sp = line.IndexOf(' ');
            byRank[int.Parse(line.AsSpan(sp + 1))] = ByteLevel.Encode(Convert.FromBase64String(line[..sp]));
        }
        return byRank.ToList();
    }

    public static List<(string Left, string Right)> Merges(IReadOnlyList<string> ranks)
    {
        var rankOf = new Dictionary<string, int>(ranks.Count, StringComparer.Ordinal);
        for (int i = 0; i < ranks.Count; i++) rankOf[ranks[i]] = i;
        var lookup = rankOf.GetAlternateLookup<ReadOnlySpan<char>>();
        var merges = new List<(string, string)>(ranks.Count * 3);
        var local = new List<(int L, int R)>();
        foreach (var token in ranks) // ascending rank, so the final sort by the merged token's rank is already done
        {
            if (token.Length == 1) continue;
            local.Clear();
            for (int k = 1; k < token.Length; k++)
                if (lookup.TryGetValue(token.AsSpan(0, k), out int l) && lookup.TryGetValue(token.AsSpan(k), out int r)) local.Add((l, r));
            local.Sort();
            foreach (var (l, r) in local) merges.Add((ranks[l], ranks[r]));
        }
        return merges;
    }

    public static void WriteHuggingFaceJson(string path, IReadOnlyList<string> ranks, IReadOnlyList<(string Left, string Right)> merges,
                                            IReadOnlyDictionary<string, int> specials, string modelType = "BPE")
    {
        using var fs = File.Create(path);
        using var w = new Utf8JsonWriter(fs);
        w.WriteStartObject();
        w.WriteString("version", "1.0");
        w.WriteNull("truncation");
        w.WriteNull("padding");
        w.WriteStartArray("added_tokens");
        foreach (var (text, id) in specials.OrderBy(kv => kv.Value))
        {
            w.WriteStartObject();
            w.WriteNumber("id", id);
            w.WriteString("content", text);
            w.WriteBoolean("single_word", false);
            w.WriteBoolean("lstrip", false);
            w.WriteBoolean("rstrip", false);
            w.WriteBoolean("normalized", false);
            w.WriteBoolean("special", true);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNull("normalizer");
        w.WriteStartObject("pre_tokenizer");
        w.WriteString("type", "Sequence");
        w.WriteStartArray("pretokenizers");
        w.WriteStartObject();
        w.WriteString("type", "Split");
        w.WriteStartObject("pattern");
        w.WriteString("Regex", Llama4Tokenizer.Llama4Pattern);
        w.WriteEndObject();
        w.WriteString("behavior", "Isolated");
        w.WriteBoolean("invert", false);
        w.WriteEndObject();
        w.WriteStartObject();
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", false);
        w.WriteBoolean("trim_offsets", true);
        w.WriteBoolean("use_regex", false);
        w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteStartObject("decoder");
        w.WriteString("type", "ByteLevel");
        w.WriteEndObject();
        w.WriteStartObject("model");
        w.WriteString("type", modelType);
        w.WriteBoolean("ignore_merges", true);
        w.WriteStartObject("vocab");
        for (int i = 0; i < ranks.Count; i++) w.WriteNumber(ranks[i], i);
        w.WriteEndObject();
        w.WriteStartArray("merges");
        foreach (var (l, r) in merges) w.WriteStringValue(l + " " + r);
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
    }

    /// <summary>A metadata-only GGUF v3 (zero tensors) with a llama.cpp-style tokenizer.ggml.* section.</summary>
    public static void WriteGguf(string path, IReadOnlyList<string> ranks, IReadOnlyList<(string Left, string Right)> merges,
                                 IReadOnlyDictionary<string, int> specials, string model = "gpt2", string pre = "llama4")
    {
        var tokens = ranks.Concat(specials.OrderBy(kv => kv.Value).Select(kv => kv.Key)).ToList();
        var types = Enumerable.Repeat(1, ranks.Count).Concat(Enumerable.Repeat(3, specials.Count)).ToArray();
        var writer = new MiniGgufWriter();
        writer.String("general.architecture", "llama4");
        writer.String("tokenizer.ggml.model", model);
        writer.String("tokenizer.ggml.pre", pre);
        writer.StringArray("tokenizer.ggml.tokens", tokens);
        writer.Int32Array("tokenizer.ggml.token_type", types);
        writer.StringArray("tokenizer.ggml.merges", merges.Select(m => m.Left + " " + m.Right).ToList());
        writer.UInt32("tokenizer.ggml.bos_token_id", 200000);
        writer.UInt32("tokenizer.ggml.eos_token_id", 200008);
        writer.Save(path);
    }
}

/// <summary>Just enough of a GGUF v3 writer for metadata-only test files.</summary>
public sealed class MiniGgufWriter
{
    private readonly MemoryStream _kv = new();
    private int _count;

    private BinaryWriter W => new(_kv, Encoding.UTF8, leaveOpen: true);

    private void Key(BinaryWriter w, string key, uint type)
    {
        WriteString(w, key);
        w.Write(type);
        _count++;
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)b.Length);
        w.Write(b);
    }

    public void String(string key, string value) { using var w = W; Key(w, key, 8); WriteString(w, value); }
    public void UInt32(string key, uint value) { using var w = W; Key(w, key, 4); w.Write(value); }

    public void StringArray(string key, IReadOnlyList<string> values)
    {
        using var w = W;
        Key(w, key, 9);
        w.Write(8u);
        w.Write((ulong)values.Count);
        foreach (var v in values) WriteString(w, v);
    }

    public void Int32Array(string key, IReadOnlyList<int> values)
    {
        using var w = W;
        Key(w, key, 9);
        w.Write(5u);
        w.Write((ulong)values.Count);
        foreach (var v in values) w.Write(v);
    }

    public void Save(string path)
    {
        using var fs = File.Create(path);
        using var w = new BinaryWriter(fs);
        w.Write(0x46554747u); // "GGUF"
        w.Write(3u);
        w.Write(0UL);          // tensors
        w.Write((ulong)_count);
        w.Write(_kv.ToArray());
        long pad = (32 - fs.Position % 32) % 32;
        for (int i = 0; i < pad; i++) w.Write((byte)0);
    }
}
