using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Scout.Tokenization;

namespace Scout.Tests.Generation;

/// <summary>
/// A byte-level tokenizer over scout-tiny's 512-token vocabulary, standing in for the real Llama 4 tokenizer:
/// ids 0..255 are bytes, 256..499 are two-letter pieces ("aa".."jj"; decoded only — encoding is byte by byte),
/// 500..511 are specials with the fixture's BOS 508, end of text 509, end of turn 510 and pad 511.
/// </summary>
public sealed class StandInTokenizer : ITokenizer
{
    public const int HeaderStart = 500, HeaderEnd = 501, Eom = 502, Bos = 508, EndOfText = 509, Eot = 510, Pad = 511;

    private static readonly Dictionary<int, string> Specials = new()
    {
        [HeaderStart] = "<|header_start|>", [HeaderEnd] = "<|header_end|>", [Eom] = "<|eom|>", [503] = "<|reserved_3|>",
        [504] = "<|reserved_4|>", [505] = "<|reserved_5|>", [506] = "<|reserved_6|>", [507] = "<|reserved_7|>",
        [Bos] = "<|begin_of_text|>", [EndOfText] = "<|end_of_text|>", [Eot] = "<|eot|>", [Pad] = "<|finetune_right_pad_id|>",
    };

    public static StandInTokenizer Instance { get; } = new();

    public int VocabSize => 512;
    public int? BosId => Bos;
    public IReadOnlySet<int> StopIds { get; } = new HashSet<int> { Eom, EndOfText, Eot };

    public int[] Encode(string text, bool allowSpecial = false)
    {
        var ids = new List<int>();
        int i = 0;
        while (i < text.Length)
        {
            if (allowSpecial && text[i] == '<')
            {
                var hit = Specials.FirstOrDefault(kv => string.CompareOrdinal(text, i, kv.Value, 0, kv.Value.Length) == 0);
                if (hit.Value is not null) { ids.Add(hit.Key); i += hit.Value.Length; continue; }
            }
            int len = char.IsSurrogatePair(text, i) ? 2 : 1;
            foreach (byte b in Encoding.UTF8.GetBytes(text.Substring(i, len))) ids.Add(b);
            i += len;
        }
        return ids.ToArray();
    }

    public byte[] DecodeBytes(ReadOnlySpan<int> ids)
    {
        var bytes = new List<byte>();
        foreach (int id in ids)
        {
            if (id < 256) bytes.Add((byte)id);
            else if (id < 500) { bytes.Add((byte)('a' + (id - 256) / 26 % 26)); bytes.Add((byte)('a' + (id - 256) % 26)); }
            else bytes.AddRange(Encoding.UTF8.GetBytes(Specials[id]));
        }
        return bytes.ToArray();
    }

    public string Decode(ReadOnlySpan<int> ids) => Encoding.UTF8.GetString(DecodeBytes(ids));
    public bool IsSpecial(int id) => id >= 500;
    public int? SpecialTokenId(string text) => Specials.FirstOrDefault(kv => kv.Value == text) is { Value: not null } kv ? kv.Key : null;
}

/// <summary>Llama 4's chat layout over <see cref="StandInTokenizer"/>: header, role, header end, blank line, content, end of turn.</summary>
public sealed class StandInChatFormat(StandInTokenizer tokenizer) : IChatFormat
{
    public static StandInChatFormat Instance { get; } = new(StandInTokenizer.Instance);

    public int[] EncodeDialog(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, IReadOnlyList<ToolDefinition>? tools = null)
    {
        var ids = new List<int> { StandInTokenizer.Bos };
        bool toolsDone = tools is null || tools.Count == 0;
        foreach (var m in messages)
        {
            string content = m.Content;
            if (!toolsDone && m.Role == "system")
            {
                content += "\nTools: " + string.Join(", ", tools!.Select(t => t.Name));
                toolsDone = true;
            }
            if (m.ToolCalls.Count > 0)
                content += "[" + string.Join(", ", m.ToolCalls.Select(c => $"{c.Name}({c.ArgumentsJson})")) + "]";
            Header(ids, m.Role == "tool" ? "ipython" : m.Role);
            ids.AddRange(tokenizer.Encode(content));
            ids.Add(StandInTokenizer.Eot);
        }
        if (addGenerationPrompt) Header(ids, "assistant");
        return ids.ToArray();
    }

    private void Header(List<int> ids, string role)
    {
        ids.Add(StandInTokenizer.HeaderStart);
        ids.AddRange(tokenizer.Encode(role));
        ids.Add(StandInTokenizer.HeaderEnd);
        ids.AddRange(tokenizer.Encode("\n\n"));
    }

    /// <summary>JSON <c>{"name": ..., "parameters": {...}}</c> or python-list <c>[f(a=1, b="x")]</c> tool calls; anything else is text.</summary>
    public AssistantReply ParseAssistant(string text)
    {
        string t = text.Trim();
        if (t.StartsWith('{'))
        {
            try
            {
                using var doc = JsonDocument.Parse(t);
                if (doc.RootElement.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String
                    && doc.RootElement.TryGetProperty("parameters", out var args))
                    return new AssistantReply("", [new ToolCall(name.GetString()!, args.GetRawText())]);
            }
            catch (JsonException) { }
        }
        var m = Regex.Match(t, @"^\[(\w+)\((.*)\)\]$", RegexOptions.Singleline);
        if (m.Success)
        {
            var args = Regex.Matches(m.Groups[2].Value, @"(\w+)=(""[^""]*""|[-\d.]+)")
                .ToDictionary(a => a.Groups[1].Value, a => a.Groups[2].Value.StartsWith('"') ? (object)a.Groups[2].Value.Trim('"') : double.Parse(a.Groups[2].Value));
            return new AssistantReply("", [new ToolCall(m.Groups[1].Value, JsonSerializer.Serialize(args))]);
        }
        return new AssistantReply(t, []);
    }
}
