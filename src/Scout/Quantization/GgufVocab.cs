using System.Text;
using System.Text.Json;
using Scout.Formats;

namespace Scout.Quantization;

/// <summary>A byte-level BPE vocabulary as llama.cpp's gpt2 tokenizer section stores it.</summary>
public sealed record GgufVocab(string[] Tokens, int[] TokenTypes, string[] Merges, int BosId, int EosId, int PadId)
{
    public const int Normal = 1, Control = 3;

    /// <summary>Writes the tokenizer.ggml.* keys (model gpt2, pre-tokenizer llama4).</summary>
    public void WriteTo(GgufWriter w)
    {
        w.SetString("tokenizer.ggml.model", "gpt2");
        w.SetString("tokenizer.ggml.pre", "llama4");
        w.SetArray("tokenizer.ggml.tokens", Tokens);
        w.SetArray("tokenizer.ggml.token_type", TokenTypes);
        w.SetArray("tokenizer.ggml.merges", Merges);
        w.SetUInt32("tokenizer.ggml.bos_token_id", (uint)BosId);
        w.SetUInt32("tokenizer.ggml.eos_token_id", (uint)EosId);
        w.SetUInt32("tokenizer.ggml.padding_token_id", (uint)PadId);
        w.SetBool("tokenizer.ggml.add_bos_token", true);
        w.SetBool("tokenizer.ggml.add_sep_token", false);
    }

    private static readonly Lazy<string[]> ByteSymbols = new(() =>
    {
        // GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the rest map to U+0100 upwards.
        var map = new string[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = ((char)(printable ? b : next++)).ToString();
        }
        return map;
    });

    /// <summary>The GPT-2 byte-to-unicode text of a byte string (how byte-level BPE tokens are stored).</summary>
    public static string ByteText(ReadOnlySpan<byte> bytes)
    {
        var sb = new StringBuilder(bytes.Length);
        foreach (byte b in bytes) sb.Append(ByteSymbols.Value[b]);
        return sb.ToString();
    }

    /// <summary>
    /// A synthetic vocabulary of exactly <paramref name="vocabSize"/> tokens, like the fixtures': the 256 byte
    /// symbols, merges built from "Ġ" and lowercase letters, then the control tokens &lt;|begin_of_text|&gt;,
    /// &lt;|end_of_text|&gt;, &lt;|eot|&gt;, &lt;|finetune_right_pad|&gt; as the last four ids.
    /// </summary>
    public static GgufVocab Synthetic(int vocabSize)
    {
        string[] specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot|>", "<|finetune_right_pad|>"];
        if (vocabSize < 256 + specials.Length)
            throw new ArgumentException($"vocabulary size {vocabSize} is too small: a byte-level vocabulary needs at least {256 + specials.Length} tokens");
        var tokens = new List<string>(vocabSize);
        tokens.AddRange(ByteSymbols.Value);
        var seen = new HashSet<string>(tokens, StringComparer.Ordinal);
        var merges = new List<string>();
        int mergeCount = vocabSize - 256 - specials.Length;
        var letters = Enumerable.Range('a', 26).Select(c => ((char)c).ToString()).ToArray();
        var stems = new List<string> { "Ġ" };
        stems.AddRange(letters);
        for (int i = 0; merges.Count < mergeCount; i++)
        {
            string stem = stems[i];
            foreach (var l in letters)
            {
                if (merges.Count == mergeCount) break;
                string t = stem + l;
                if (!seen.Add(t)) continue;
                tokens.Add(t);
                stems.Add(t);
                merges.Add(stem + " " + l);
            }
        }
        tokens.AddRange(specials);
        var types = new int[vocabSize];
        Array.Fill(types, Normal);
        for (int i = vocabSize - specials.Length; i < vocabSize; i++) types[i] = Control;
        return new GgufVocab(tokens.ToArray(), types, merges.ToArray(), vocabSize - 4, vocabSize - 3, vocabSize - 1);
    }

    /// <summary>
    /// Meta's Llama 4 vocabulary from its tiktoken <c>tokenizer.model</c> (base64 bytes + rank per line) and the
    /// <c>special_tokens.json</c> next to it when present (else Meta's built-in special-token list): ranks become token ids, each multi-byte token gets the merge that
    /// byte-level BPE restricted to lower ranks would make last, and the special tokens follow as control tokens.
    /// </summary>
    public static GgufVocab FromTiktoken(string tokenizerModelPath, string? specialTokensPath = null)
    {
        if (!File.Exists(tokenizerModelPath)) throw new ModelLoadException($"tokenizer not found: {tokenizerModelPath}");
        specialTokensPath ??= Path.Combine(Path.GetDirectoryName(Path.GetFullPath(tokenizerModelPath)) ?? ".", "special_tokens.json");
        var ranks = new Dictionary<ByteKey, int>();
        var byRank = new List<byte[]>();
        int lineNo = 0;
        foreach (var line in File.ReadLines(tokenizerModelPath))
        {
            lineNo++;
            if (line.Length == 0) continue;
            int sp = line.IndexOf(' ');
            byte[] bytes;
            int rank;
            try
            {
                bytes = Convert.FromBase64String(line[..sp]);
                rank = int.Parse(line.AsSpan(sp + 1));
            }
            catch (Exception e) when (e is FormatException or ArgumentOutOfRangeException or OverflowException)
            {
                throw new ModelLoadException($"{tokenizerModelPath}: line {lineNo} is not 'base64 rank'");
            }
            if (rank != byRank.Count) throw new ModelLoadException($"{tokenizerModelPath}: line {lineNo} has rank {rank}, expected {byRank.Count} (ranks must be contiguous)");
            ranks[new ByteKey(bytes)] = rank;
            byRank.Add(bytes);
        }

        var tokens = new List<string>(byRank.Count + 2048);
        var merges = new List<string>(byRank.Count);
        foreach (var bytes in byRank)
        {
            tokens.Add(ByteText(bytes));
            if (bytes.Length < 2) continue;
            var (left, right) = LastMerge(bytes, ranks[new ByteKey(bytes)], ranks);
            merges.Add(ByteText(left) + " " + ByteText(right));
        }

        // Special tokens: from special_tokens.json when present, else Meta's fixed list (ids follow the ranks).
        IEnumerable<string> special = MetaSpecialTokens();
        if (File.Exists(specialTokensPath))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(specialTokensPath));
            var list = doc.RootElement.GetProperty("special_tokens").EnumerateObject().Select(p => (Text: p.Name, Id: p.Value.GetInt32())).OrderBy(p => p.Id).ToList();
            for (int i = 0; i < list.Count; i++)
                if (list[i].Id != byRank.Count + i)
                    throw new ModelLoadException($"{specialTokensPath}: special token {list[i].Text} has id {list[i].Id}, expected {byRank.Count + i}");
            special = list.Select(p => p.Text);
        }
        tokens.AddRange(special);
        var types = new int[tokens.Count];
        Array.Fill(types, Normal, 0, byRank.Count);
        Array.Fill(types, Control, byRank.Count, tokens.Count - byRank.Count);
        int IdOf(string text, int fallback) { int i = tokens.IndexOf(text, byRank.Count); return i >= 0 ? i : fallback; }
        return new GgufVocab(tokens.ToArray(), types, merges.ToArray(), IdOf("<|begin_of_text|>", byRank.Count), IdOf("<|end_of_text|>", byRank.Count + 1),
            IdOf("<|finetune_right_pad|>", tokens.Count - 1));
    }

    /// <summary>Llama 4's 2,048 special tokens in id order (Meta's tokenizer builds the same list in code).</summary>
    public static List<string> MetaSpecialTokens()
    {
        static string T(string name) => $"<|{name}|>";
        var list = new List<string> { T("begin_of_text"), T("end_of_text"), T("fim_prefix"), T("fim_middle"), T("fim_suffix") };
        list.AddRange([T("header_start"), T("header_end"), T("eom"), T("eot"), T("step")]);
        for (int i = 0; i <= 5; i++) list.Add(T($"text_post_train_reserved_special_token_{i}"));
        list.AddRange([T("python_start"), T("python_end"), T("finetune_right_pad")]);
        for (int i = 8; i <= 68; i++) list.Add(T($"text_post_train_reserved_special_token_{i}"));
        int v = 0;
        string Vision() => T($"vision_reserved_special_token_{v++}");
        list.AddRange([T("image_start"), T("image_end"), Vision(), Vision(), T("tile_x_separator"), T("tile_y_separator"),
            Vision(), Vision(), Vision(), Vision(), T("image"), Vision(), T("patch")]);
        while (v <= 1047) list.Add(Vision());
        for (int i = 0; i <= 7; i++) list.Add(T($"reasoning_reserved_special_token_{i}"));
        list.AddRange([T("reasoning_thinking_start"), T("reasoning_thinking_end")]);
        for (int i = 0; i <= 903; i++) list.Add(T($"reserved_special_token_{i}"));
        return list;
    }

    /// <summary>
    /// The vocabulary of a Hugging Face model folder: tokenizer.json (BPE vocab, merges and added tokens), else
    /// Meta's tokenizer.model (tiktoken), else a synthetic byte-level vocabulary of the model's size.
    /// </summary>
    public static GgufVocab FromModelFolder(string folder, int vocabSize)
    {
        string json = Path.Combine(folder, "tokenizer.json");
        if (File.Exists(json)) return FromTokenizerJson(json, vocabSize);
        string tiktoken = Path.Combine(folder, "tokenizer.model");
        if (File.Exists(tiktoken)) return FromTiktoken(tiktoken);
        return Synthetic(vocabSize);
    }

    /// <summary>A Hugging Face tokenizer.json with a byte-level BPE model; ids missing from it become unused padding tokens.</summary>
    public static GgufVocab FromTokenizerJson(string path, int vocabSize)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var model = doc.RootElement.GetProperty("model");
            if (model.TryGetProperty("type", out var ty) && ty.GetString() != "BPE")
                throw new ModelLoadException($"{path}: tokenizer model type {ty.GetString()} is not BPE");
            var tokens = new string?[vocabSize];
            var types = new int[vocabSize];
            foreach (var p in model.GetProperty("vocab").EnumerateObject())
            {
                int id = p.Value.GetInt32();
                if (id < 0 || id >= vocabSize) throw new ModelLoadException($"{path}: token '{p.Name}' has id {id}, outside the model's vocabulary of {vocabSize}");
                tokens[id] = p.Name;
                types[id] = Normal;
            }
            int? bos = null, eos = null, pad = null;
            if (doc.RootElement.TryGetProperty("added_tokens", out var added))
            {
                foreach (var a in added.EnumerateArray())
                {
                    int id = a.GetProperty("id").GetInt32();
                    string content = a.GetProperty("content").GetString() ?? "";
                    if (id < 0 || id >= vocabSize) continue;
                    tokens[id] = content;
                    types[id] = a.TryGetProperty("special", out var sp) && sp.GetBoolean() ? Control : 4;
                    if (content == "<|begin_of_text|>") bos = id;
                    if (content == "<|end_of_text|>") eos = id;
                    if (content == "<|finetune_right_pad|>" || content == "<|finetune_right_pad_id|>") pad = id;
                }
            }
            for (int i = 0; i < vocabSize; i++)
            {
                if (tokens[i] != null) continue;
                tokens[i] = $"[PAD{i}]"; // llama.cpp's converter fills holes the same way
                types[i] = 5;
            }
            var merges = model.GetProperty("merges").EnumerateArray()
                .Select(m => m.ValueKind == JsonValueKind.Array ? $"{m[0].GetString()} {m[1].GetString()}" : m.GetString() ?? "")
                .ToArray();
            return new GgufVocab(tokens!, types, merges, bos ?? 0, eos ?? Math.Min(1, vocabSize - 1), pad ?? vocabSize - 1);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new ModelLoadException($"{path}: not a usable tokenizer.json ({e.Message})");
        }
    }

    /// <summary>Runs BPE on <paramref name="token"/> using only ranks below its own until two parts remain.</summary>
    private static (byte[] Left, byte[] Right) LastMerge(byte[] token, int maxRank, Dictionary<ByteKey, int> ranks)
    {
        var parts = token.Select(b => new[] { b }).ToList();
        while (parts.Count > 2)
        {
            int best = -1, bestRank = int.MaxValue;
            for (int i = 0; i + 1 < parts.Count; i++)
            {
                if (ranks.TryGetValue(new ByteKey([.. parts[i], .. parts[i + 1]]), out int r) && r < maxRank && r < bestRank)
                {
                    best = i;
                    bestRank = r;
                }
            }
            if (best < 0) break;
            parts[best] = [.. parts[best], .. parts[best + 1]];
            parts.RemoveAt(best + 1);
        }
        if (parts.Count != 2)
            throw new ModelLoadException($"token {ByteText(token)} (rank {maxRank}) cannot be built from two lower-ranked tokens");
        return (parts[0], parts[1]);
    }

    private readonly struct ByteKey(byte[] bytes) : IEquatable<ByteKey>
    {
        private readonly byte[] _bytes = bytes;
        public bool Equals(ByteKey other) => _bytes.AsSpan().SequenceEqual(other._bytes);
        public override bool Equals(object? obj) => obj is ByteKey k && Equals(k);
        public override int GetHashCode()
        {
            var h = new HashCode();
            h.AddBytes(_bytes);
            return h.ToHashCode();
        }
    }
}
