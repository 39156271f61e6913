using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using Scout.Tokenization;

namespace Scout.Cli.Commands;

/// <summary>`scout tokenize`: text → Llama 4 token ids (Meta's encode; special-token text is plain text unless --special).</summary>
public static class TokenizeCommand
{
    internal static readonly JsonSerializerOptions JsonOut = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    internal static Option<string> TokenizerOption() => new("--tokenizer", "-t")
    {
        Description = "tokenizer.model, tokenizer.json, a model folder or a .gguf",
        Required = true,
    };

    public static Command Create(CliContext ctx)
    {
        var tokenizer = TokenizerOption();
        var text = new Option<string?>("--text") { Description = "the text to encode" };
        var file = new Option<string?>("--file", "-f") { Description = "encode the whole content of this UTF-8 file" };
        var jsonl = new Option<string?>("--jsonl") { Description = "read lines {\"text\": ...}, write one line {\"ids\": [...]} per input line, in order" };
        var special = new Option<bool>("--special") { Description = "recognise special-token text such as <|eot|> (default: plain text)" };
        var bos = new Option<bool>("--bos") { Description = "prepend <|begin_of_text|>" };
        var json = new Option<bool>("--json") { Description = "write {\"ids\": [...], \"count\": n} instead of space-separated ids" };
        var cmd = new Command("tokenize", "Encode text into Llama 4 token ids") { tokenizer, text, file, jsonl, special, bos, json };
        ctx.SetAction(cmd, p =>
        {
            int sources = (p.GetValue(text) != null ? 1 : 0) + (p.GetValue(file) != null ? 1 : 0) + (p.GetValue(jsonl) != null ? 1 : 0);
            if (sources != 1) throw new CliException("give exactly one of --text, --file or --jsonl");
            var tok = Llama4Tokenizer.Load(p.GetValue(tokenizer)!);
            bool allowSpecial = p.GetValue(special), addBos = p.GetValue(bos);

            if (p.GetValue(jsonl) is { } jsonlPath)
            {
                int lineNo = 0;
                foreach (var line in ReadLines(ctx, jsonlPath))
                {
                    lineNo++;
                    string input = ReadField(line, "text", jsonlPath, lineNo, JsonValueKind.String).GetString()!;
                    ctx.Out.WriteLine(JsonSerializer.Serialize(new { ids = tok.Encode(input, addBos, false, allowSpecial) }, JsonOut));
                }
                return 0;
            }
            string content = p.GetValue(text) ?? ReadFile(p.GetValue(file)!);
            // Large inputs are encoded on all cores; EncodeParallel gives exactly the serial ids.
            var ids = content.Length < (1 << 20) ? tok.Encode(content, addBos, false, allowSpecial)
                : (addBos ? [tok.BosId!.Value, .. tok.EncodeParallel(content, allowSpecial)] : tok.EncodeParallel(content, allowSpecial));
            ctx.Out.WriteLine(p.GetValue(json)
                ? JsonSerializer.Serialize(new { ids, count = ids.Length }, JsonOut)
                : string.Join(' ', ids));
            return 0;
        });
        return cmd;
    }

    internal static string ReadFile(string path)
    {
        if (!File.Exists(path)) throw new CliException($"file not found: {path}");
        return File.ReadAllText(path); // invalid UTF-8 becomes U+FFFD
    }

    /// <summary>Lines of a JSONL file ("-" reads stdin); blank lines are skipped.</summary>
    internal static IEnumerable<string> ReadLines(CliContext ctx, string path)
    {
        if (path == "-")
        {
            while (ctx.In.ReadLine() is { } l)
                if (!string.IsNullOrWhiteSpace(l)) yield return l;
            yield break;
        }
        if (!File.Exists(path)) throw new CliException($"file not found: {path}");
        foreach (var l in File.ReadLines(path))
            if (!string.IsNullOrWhiteSpace(l)) yield return l;
    }

    internal static JsonElement ReadField(string line, string field, string path, int lineNo, JsonValueKind kind)
    {
        JsonElement root;
        try
        {
            using var doc = JsonDocument.Parse(line);
            root = doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new CliException($"{path}: line {lineNo}: malformed JSON: {e.Message}");
        }
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty(field, out var value) || value.ValueKind != kind)
            throw new CliException($"{path}: line {lineNo}: expected an object with \"{field}\" ({(kind == JsonValueKind.String ? "a string" : "an array of ids")})");
        return value;
    }
}

/// <summary>`scout detokenize`: Llama 4 token ids → text (invalid UTF-8 becomes U+FFFD).</summary>
public static class DetokenizeCommand
{
    public static Command Create(CliContext ctx)
    {
        var tokenizer = TokenizeCommand.TokenizerOption();
        var ids = new Option<string?>("--ids") { Description = "token ids separated by commas or spaces, e.g. \"19873,24,3817\"" };
        var jsonl = new Option<string?>("--jsonl") { Description = "read lines {\"ids\": [...]}, write one line {\"text\": ...} per input line, in order" };
        var json = new Option<bool>("--json") { Description = "write {\"text\": ...} instead of the raw text" };
        var cmd = new Command("detokenize", "Decode Llama 4 token ids into text") { tokenizer, ids, jsonl, json };
        ctx.SetAction(cmd, p =>
        {
            if ((p.GetValue(ids) != null) == (p.GetValue(jsonl) != null)) throw new CliException("give exactly one of --ids or --jsonl");
            var tok = Llama4Tokenizer.Load(p.GetValue(tokenizer)!);
            if (p.GetValue(jsonl) is { } jsonlPath)
            {
                int lineNo = 0;
                foreach (var line in TokenizeCommand.ReadLines(ctx, jsonlPath))
                {
                    lineNo++;
                    var arr = TokenizeCommand.ReadField(line, "ids", jsonlPath, lineNo, JsonValueKind.Array);
                    var list = arr.EnumerateArray().Select(e => e.TryGetInt32(out int v) ? v
                        : throw new CliException($"{jsonlPath}: line {lineNo}: token id {e} is not an integer")).ToArray();
                    ctx.Out.WriteLine(JsonSerializer.Serialize(new { text = Decode(tok, list, $"{jsonlPath}: line {lineNo}: ") }, TokenizeCommand.JsonOut));
                }
                return 0;
            }
            var parsed = ParseIds(p.GetValue(ids)!);
            string text = Decode(tok, parsed, "");
            if (p.GetValue(json)) ctx.Out.WriteLine(JsonSerializer.Serialize(new { text }, TokenizeCommand.JsonOut));
            else ctx.Out.Write(text);
            return 0;
        });
        return cmd;
    }

    private static string Decode(Llama4Tokenizer tok, int[] ids, string where)
    {
        foreach (int id in ids)
            if (id < 0 || id >= tok.VocabSize || (id >= tok.NumBaseTokens && !tok.IsSpecial(id)))
                throw new CliException($"{where}token id {id} is not in the vocabulary (0..{tok.VocabSize - 1})");
        return tok.Decode(ids);
    }

    internal static int[] ParseIds(string text)
    {
        var parts = text.Split([',', ' ', '\t', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries);
        return parts.Select(s => int.TryParse(s, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out int v)
            ? v : throw new CliException($"--ids: '{s}' is not an integer token id")).ToArray();
    }
}
