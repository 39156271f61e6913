using System.Buffers;
using System.Buffers.Text;
using System.Text;
using System.Text.Json;
using Scout.Formats;

namespace Scout.Tokenization;

public sealed partial class Llama4Tokenizer
{
    /// <summary>
    /// Loads the tokenizer from Meta's <c>tokenizer.model</c>, a Hugging Face <c>tokenizer.json</c>, a <c>.gguf</c>
    /// (its tokenizer.ggml.* metadata) or a model folder holding one of those.
    /// </summary>
    /// <exception cref="ModelLoadException">The file is missing, malformed or not a Llama 4 style byte-level BPE.</exception>
    public static Llama4Tokenizer Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path))
        {
            foreach (var name in new[] { "tokenizer.model", "original/tokenizer.model", "tokenizer.json" })
            {
                var candidate = System.IO.Path.Combine(path, name);
                if (File.Exists(candidate)) return Load(candidate);
            }
            var ggufs = Directory.GetFiles(path, "*.gguf").Order(StringComparer.Ordinal).ToArray();
            if (ggufs.Length > 0) return Load(ggufs[0]);
            throw new ModelLoadException($"{path}: no tokenizer.model, tokenizer.json or .gguf file in this folder");
        }
        if (!File.Exists(path)) throw new ModelLoadException($"{path}: tokenizer file not found");

        Span<byte> head = stackalloc byte[4];
        int got;
        using (var fs = File.OpenRead(path)) got = fs.ReadAtLeast(head, 4, throwOnEndOfStream: false);
        if (got == 4 && BitConverter.ToUInt32(head) == GgufFile.Magic)
        {
            using var gguf = GgufFile.Open(path);
            return FromGguf(gguf);
        }
        int firstNonSpace = 0;
        while (firstNonSpace < got && head[firstNonSpace] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n' or 0xEF or 0xBB or 0xBF) firstNonSpace++;
        if (path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || (firstNonSpace < got && head[firstNonSpace] == (byte)'{'))
            return FromHuggingFaceJson(path);
        return FromTiktokenModel(path);
    }

    /// <summary>Meta's <c>tokenizer.model</c>: one <c>base64(token bytes) rank</c> per line, ranks 0..N-1; Llama 4's specials follow.</summary>
    public static Llama4Tokenizer FromTiktokenModel(string path)
    {
        byte[] data;
        try { data = File.ReadAllBytes(path); }
        catch (IOException e) { throw new ModelLoadException($"{path}: cannot read tokenizer.model: {e.Message}", e); }
        return FromTiktokenModel(data, System.IO.Path.GetFileName(path));
    }

    /// <summary>Parses tiktoken rank lines from memory. <paramref name="sourceName"/> names the data in errors.</summary>
    public static Llama4Tokenizer FromTiktokenModel(ReadOnlySpan<byte> data, string sourceName = "tokenizer.model")
    {
        var tokens = new List<(int Rank, byte[] Bytes, int Line)>(200_000);
        var buffer = new byte[1024];
        int lineNo = 0;
        while (!data.IsEmpty)
        {
            lineNo++;
            int nl = data.IndexOf((byte)'\n');
            var line = nl < 0 ? data : data[..nl];
            data = nl < 0 ? default : data[(nl + 1)..];
            line = line.TrimEnd((byte)'\r');
            if (line.Trim((byte)' ').IsEmpty) continue; // tiktoken skips empty lines
            int sep = line.IndexOfAny((byte)' ', (byte)'\t');
            if (sep <= 0)
                throw new ModelLoadException($"{sourceName}: line {lineNo}: expected 'base64-token rank', got '{Preview(line)}'");
            var b64 = line[..sep];
            var rest = line[(sep + 1)..].Trim((byte)' ');
            if (rest.IsEmpty || rest.IndexOfAny((byte)' ', (byte)'\t') >= 0)
                throw new ModelLoadException($"{sourceName}: line {lineNo}: expected exactly two fields 'base64-token rank', got '{Preview(line)}'");
            if (!Utf8Parser.TryParse(rest, out int rank, out int consumed) || consumed != rest.Length || rank < 0 || rest[0] is (byte)'-' or (byte)'+')
                throw new ModelLoadException($"{sourceName}: line {lineNo}: rank '{Preview(rest)}' is not a non-negative integer");
            if (buffer.Length < b64.Length) buffer = new byte[b64.Length];
            if (Base64.DecodeFromUtf8(b64, buffer, out _, out int len) != OperationStatus.Done || len == 0)
                throw new ModelLoadException($"{sourceName}: line {lineNo}: '{Preview(b64)}' is not valid base64 for a non-empty token");
            tokens.Add((rank, buffer.AsSpan(0, len).ToArray(), lineNo));
        }
        if (tokens.Count == 0) throw new ModelLoadException($"{sourceName}: no tokens (empty file?)");

        var byRank = new byte[tokens.Count][];
        var lineOfRank = new int[tokens.Count];
        foreach (var (rank, bytes, line) in tokens)
        {
            if (rank >= tokens.Count)
                throw new ModelLoadException($"{sourceName}: line {line}: rank {rank} leaves a gap: with {tokens.Count} tokens the ranks must be exactly 0..{tokens.Count - 1}");
            if (byRank[rank] != null)
                throw new ModelLoadException($"{sourceName}: line {line}: duplicate rank {rank} (already given on line {lineOfRank[rank]})");
            byRank[rank] = bytes;
            lineOfRank[rank] = line;
        }
        return Create(byRank, Llama4SpecialTokens.ToIds(byRank.Length), Llama4Pattern, sourceName);
    }

    /// <summary>A Hugging Face <c>tokenizer.json</c> with a byte-level BPE model converted from tiktoken ranks (ids = ranks).</summary>
    public static Llama4Tokenizer FromHuggingFaceJson(string path)
    {
        string name = System.IO.Path.GetFileName(path);
        JsonDocument doc;
        try
        {
            var bytes = File.ReadAllBytes(path);
            // System.Text.Json checks UTF-8 only when a string is read: refuse a file that is not text up front.
            if (!System.Text.Unicode.Utf8.IsValid(bytes))
                throw new ModelLoadException($"{name}: not valid UTF-8 text (a token or merge holds invalid bytes)");
            doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e) { throw new ModelLoadException($"{name}: malformed JSON: {e.Message}", e); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException($"{name}: not a Hugging Face tokenizer.json (no \"model\" object)");
            string type = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "";
            if (type != "BPE")
                throw new ModelLoadException($"{name}: tokenizer model type is '{(type == "" ? "unspecified" : type)}', but Llama 4 needs a byte-level 'BPE' model");
            if (!model.TryGetProperty("vocab", out var vocab) || vocab.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException($"{name}: model.vocab must be an object of token → id");

            var added = new Dictionary<string, int>(StringComparer.Ordinal);
            if (root.TryGetProperty("added_tokens", out var addedTokens) && addedTokens.ValueKind == JsonValueKind.Array)
            {
                foreach (var a in addedTokens.EnumerateArray())
                {
                    if (a.ValueKind != JsonValueKind.Object || !a.TryGetProperty("id", out var idEl) || idEl.ValueKind != JsonValueKind.Number || !idEl.TryGetInt32(out int id)
                        || !a.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String)
                        throw new ModelLoadException($"{name}: an added_tokens entry lacks an integer id or a string content");
                    added[c.GetString()!] = id;
                }
            }

            var byRank = new List<byte[]?>();
            var vocabIds = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var entry in vocab.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
                    throw new ModelLoadException($"{name}: vocab id of '{entry.Name}' is not a non-negative integer");
                vocabIds[entry.Name] = id;
                if (added.TryGetValue(entry.Name, out int addedId) && addedId == id) continue;
                var bytes = ByteLevel.TryDecode(entry.Name)
                    ?? throw new ModelLoadException($"{name}: vocab token '{entry.Name}' (id {id}) is not a byte-level BPE token");
                while (byRank.Count <= id) byRank.Add(null);
                if (byRank[id] != null) throw new ModelLoadException($"{name}: vocab id {id} is used twice");
                byRank[id] = bytes;
            }
            int missing = byRank.IndexOf(null);
            if (missing >= 0)
                throw new ModelLoadException($"{name}: vocab ids have a gap: id {missing} is missing (BPE ids must be contiguous from 0)");
            var ranks = byRank.Select(b => b!).ToArray();
            var specials = added.Where(kv => kv.Value >= ranks.Length).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);

            if (model.TryGetProperty("merges", out var merges) && merges.ValueKind == JsonValueKind.Array)
                ValidateMerges(merges.EnumerateArray().Select(m => MergePair(m, name)), vocabIds, name);
            else
                throw new ModelLoadException($"{name}: model.merges is missing");

            string pattern = FindSplitPattern(root.TryGetProperty("pre_tokenizer", out var pre) ? pre : default)
                ?? throw new ModelLoadException($"{name}: no Split pre-tokenizer with a regex pattern (Llama 4's tokenizer.json has one)");
            if (root.TryGetProperty("normalizer", out var norm) && norm.ValueKind != JsonValueKind.Null)
                throw new ModelLoadException($"{name}: a normalizer is set; Llama 4's byte-level BPE has none");
            return Create(ranks, specials, pattern, name);
        }
    }

    private static (string, string) MergePair(JsonElement m, string name)
    {
        if (m.ValueKind == JsonValueKind.String)
        {
            var s = m.GetString()!;
            int sp = s.IndexOf(' ');
            if (sp <= 0 || sp == s.Length - 1 || s.IndexOf(' ', sp + 1) >= 0)
                throw new ModelLoadException($"{name}: merge '{s}' is not 'left right'");
            return (s[..sp], s[(sp + 1)..]);
        }
        if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2 && m[0].ValueKind == JsonValueKind.String && m[1].ValueKind == JsonValueKind.String)
            return (m[0].GetString()!, m[1].GetString()!);
        throw new ModelLoadException($"{name}: a merge is neither 'left right' nor [left, right]");
    }

    /// <summary>
    /// The merge list must follow from the ranks (as the tiktoken→BPE conversion writes it): every merge joins two vocab tokens
    /// into a vocab token, in ascending order of the result's rank. Then rank-based merging gives the same ids as the merge list.
    /// </summary>
    private static void ValidateMerges(IEnumerable<(string Left, string Right)> merges, Dictionary<string, int> vocab, string name)
    {
        int previous = -1, index = 0;
        var lookup = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        char[] joined = new char[256];
        foreach (var (left, right) in merges)
        {
            if (!vocab.ContainsKey(left) || !vocab.ContainsKey(right))
                throw new ModelLoadException($"{name}: merge #{index} '{left} {right}' uses a token that is not in the vocab");
            if (joined.Length < left.Length + right.Length) joined = new char[(left.Length + right.Length) * 2];
            left.CopyTo(joined);
            right.CopyTo(joined.AsSpan(left.Length));
            if (!lookup.TryGetValue(joined.AsSpan(0, left.Length + right.Length), out int result))
                throw new ModelLoadException($"{name}: merge #{index} '{left} {right}' makes a token that is not in the vocab");
            if (result < previous)
                throw new ModelLoadException($"{name}: merge #{index} '{left} {right}' is out of rank order (the merges do not follow the vocab ranks as in a tiktoken conversion)");
            previous = result;
            index++;
        }
    }

    private static string? FindSplitPattern(JsonElement pre)
    {
        if (pre.ValueKind != JsonValueKind.Object) return null;
        string? type = pre.TryGetProperty("type", out var t) ? t.GetString() : null;
        if (type == "Split" && pre.TryGetProperty("pattern", out var p) && p.ValueKind == JsonValueKind.Object
            && p.TryGetProperty("Regex", out var r) && r.ValueKind == JsonValueKind.String)
            return r.GetString();
        if (type == "Sequence" && pre.TryGetProperty("pretokenizers", out var list) && list.ValueKind == JsonValueKind.Array)
            foreach (var item in list.EnumerateArray())
                if (FindSplitPattern(item) is { } found) return found;
        return null;
    }

    /// <summary>The tokenizer.ggml.* section of a GGUF: model "gpt2", pre-tokenizer "llama4", tokens, token types and merges.</summary>
    public static Llama4Tokenizer FromGguf(GgufFile gguf)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        string name = System.IO.Path.GetFileName(gguf.Path);
        string? model = gguf.GetString("tokenizer.ggml.model");
        if (model == null) throw new ModelLoadException($"{name}: no tokenizer.ggml.model in the GGUF metadata (no tokenizer embedded)");
        if (model != "gpt2")
            throw new ModelLoadException($"{name}: tokenizer.ggml.model is '{model}', but Llama 4 needs the byte-level BPE model 'gpt2'");
        string pre = gguf.GetString("tokenizer.ggml.pre") ?? "";
        if (pre != "llama4")
            throw new ModelLoadException($"{name}: tokenizer.ggml.pre is '{pre}', Scout supports the 'llama4' pre-tokenizer");
        var tokens = gguf.GetArray<string>("tokenizer.ggml.tokens")
            ?? throw new ModelLoadException($"{name}: tokenizer.ggml.tokens is missing or not a string array");
        var types = gguf.GetArray<int>("tokenizer.ggml.token_type")
            ?? throw new ModelLoadException($"{name}: tokenizer.ggml.token_type is missing or not an int32 array");
        if (types.Length != tokens.Length)
            throw new ModelLoadException($"{name}: tokenizer.ggml.token_type has {types.Length} entries for {tokens.Length} tokens");

        const int Normal = 1, Control = 3, UserDefined = 4, Unused = 5;
        int numBase = 0;
        while (numBase < types.Length && types[numBase] == Normal) numBase++;
        var ranks = new byte[numBase][];
        var vocab = new Dictionary<string, int>(tokens.Length, StringComparer.Ordinal);
        for (int id = 0; id < numBase; id++)
        {
            ranks[id] = ByteLevel.TryDecode(tokens[id])
                ?? throw new ModelLoadException($"{name}: token {id} '{tokens[id]}' is not a byte-level BPE token");
            vocab[tokens[id]] = id;
        }
        var specials = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = numBase; id < tokens.Length; id++)
        {
            switch (types[id])
            {
                case Control or UserDefined: specials[tokens[id]] = id; break;
                case Unused: break;
                case Normal:
                    throw new ModelLoadException($"{name}: normal token {id} '{tokens[id]}' follows the special tokens (BPE ranks must come first, contiguous)");
                default:
                    throw new ModelLoadException($"{name}: token {id} has token type {types[id]}, which a gpt2 vocabulary does not use");
            }
        }
        var merges = gguf.GetArray<string>("tokenizer.ggml.merges")
            ?? throw new ModelLoadException($"{name}: tokenizer.ggml.merges is missing or not a string array");
        ValidateMerges(merges.Select((m, i) =>
        {
            int sp = m.IndexOf(' ');
            if (sp <= 0 || sp == m.Length - 1) throw new ModelLoadException($"{name}: merge #{i} '{m}' is not 'left right'");
            return (m[..sp], m[(sp + 1)..]);
        }), vocab, name);
        return Create(ranks, specials, Llama4Pattern, name);
    }

    private static Llama4Tokenizer Create(byte[][] ranks, Dictionary<string, int> specials, string pattern, string source)
    {
        try { return new Llama4Tokenizer(ranks, specials, pattern, source); }
        catch (ArgumentException e) { throw new ModelLoadException(e.Message, e); }
    }

    private static string Preview(ReadOnlySpan<byte> s)
    {
        var text = Encoding.UTF8.GetString(s[..Math.Min(s.Length, 60)]);
        return s.Length > 60 ? text + "…" : text;
    }
}
