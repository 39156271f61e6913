using System.Text.Json;
using System.Text.RegularExpressions;

namespace Scout.Tokenization;

/// <summary>How a reply or message ended.</summary>
public enum StopReason { EndOfTurn, EndOfMessage, OutOfTokens }

/// <summary>How custom tool calls are written into an assistant message (Meta's ToolPromptFormat).</summary>
public enum ToolPromptFormat { Json, FunctionTag, PythonList }

/// <summary>One item of a message's content: text or an image (placed as its token layout).</summary>
public abstract record ChatContent
{
    public sealed record Text(string Value) : ChatContent;
    public sealed record Image(ImageTiling Tiling) : ChatContent;

    public static implicit operator ChatContent(string text) => new Text(text);
}

/// <summary>
/// A message as Meta's <c>RawMessage</c>: role (system, user, assistant, tool/ipython), content items, an optional user
/// RAG context, the assistant's stop reason and tool calls.
/// </summary>
public sealed record Llama4Message(string Role, IReadOnlyList<ChatContent> Content)
{
    public Llama4Message(string role, string content) : this(role, [new ChatContent.Text(content)]) { }

    public IReadOnlyList<ChatContent>? Context { get; init; }
    public StopReason? StopReason { get; init; }
    public IReadOnlyList<ToolCall> ToolCalls { get; init; } = [];
}

/// <summary>A parsed assistant reply with Meta's stop reason.</summary>
public sealed record Llama4AssistantMessage(string Content, StopReason StopReason, IReadOnlyList<ToolCall> ToolCalls);

/// <summary>
/// Llama 4's chat format, as Meta's <c>llama4/chat_format.py</c>: <c>&lt;|begin_of_text|&gt;</c>, then per message
/// <c>&lt;|header_start|&gt;role&lt;|header_end|&gt;\n\n</c> + content + tool calls + <c>&lt;|eot|&gt;</c>/<c>&lt;|eom|&gt;</c>,
/// and the assistant header as generation prompt. Every text piece is encoded on its own with special tokens as plain text,
/// so user content can never inject control tokens.
/// </summary>
public sealed partial class Llama4ChatFormat : IChatFormat
{
    private static readonly HashSet<string> BuiltinTools = new(StringComparer.Ordinal) { "brave_search", "wolfram_alpha", "photogen", "code_interpreter" };

    private readonly Llama4Tokenizer _tokenizer;
    private readonly int _bos, _headerStart, _headerEnd, _eot, _eom;

    public Llama4Tokenizer Tokenizer => _tokenizer;
    public ToolPromptFormat ToolFormat { get; }

    public Llama4ChatFormat(Llama4Tokenizer tokenizer, ToolPromptFormat toolFormat = ToolPromptFormat.Json)
    {
        _tokenizer = tokenizer;
        ToolFormat = toolFormat;
        int Need(string t) => tokenizer.SpecialTokenId(t) ?? throw new ArgumentException($"the tokenizer has no {t} token, so it cannot render Llama 4 chats");
        _bos = Need(Llama4SpecialTokens.BeginOfText);
        _headerStart = Need(Llama4SpecialTokens.HeaderStart);
        _headerEnd = Need(Llama4SpecialTokens.HeaderEnd);
        _eot = Need(Llama4SpecialTokens.EndOfTurn);
        _eom = Need(Llama4SpecialTokens.EndOfMessage);
    }

    // ------------------------------------------------------------------ encoding

    /// <summary>Meta's <c>encode_dialog_prompt</c>; without <paramref name="addGenerationPrompt"/> the trailing assistant header is left out.</summary>
    public int[] EncodeDialog(IReadOnlyList<Llama4Message> messages, bool addGenerationPrompt = true, ToolPromptFormat? toolFormat = null)
    {
        var ids = new List<int> { _bos };
        foreach (var m in messages) EncodeMessage(m, ids, toolFormat ?? ToolFormat);
        if (addGenerationPrompt) EncodeHeader("assistant", ids);
        return ids.ToArray();
    }

    /// <summary>
    /// <see cref="IChatFormat"/> entry point. <paramref name="tools"/>, when given, are described in the system message
    /// (appended to the first system message or added as one). Images go where the content holds <c>&lt;|image|&gt;</c>
    /// (one per image, in order), else before the text.
    /// </summary>
    public int[] EncodeDialog(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, IReadOnlyList<ToolDefinition>? tools = null)
    {
        var converted = messages.Select(ToLlama4Message).ToList();
        if (tools is { Count: > 0 })
        {
            string toolText = ToolSystemPrompt(tools);
            int sys = converted.FindIndex(m => m.Role == "system");
            if (sys < 0) converted.Insert(0, new Llama4Message("system", toolText));
            else converted[sys] = converted[sys] with { Content = [.. converted[sys].Content, new ChatContent.Text("\n\n" + toolText)] };
        }
        return EncodeDialog(converted, addGenerationPrompt);
    }

    /// <summary>Converts the generic message shape, splitting the content at <c>&lt;|image|&gt;</c> placeholders for its images.</summary>
    public static Llama4Message ToLlama4Message(ChatMessage m)
    {
        var items = new List<ChatContent>();
        if (m.Images.Count == 0)
        {
            items.Add(new ChatContent.Text(m.Content));
        }
        else
        {
            string rest = m.Content;
            int placed = 0;
            while (placed < m.Images.Count)
            {
                int at = rest.IndexOf(Llama4SpecialTokens.Image, StringComparison.Ordinal);
                if (at < 0) break;
                if (at > 0) items.Add(new ChatContent.Text(rest[..at]));
                items.Add(new ChatContent.Image(m.Images[placed++]));
                rest = rest[(at + Llama4SpecialTokens.Image.Length)..];
            }
            if (placed < m.Images.Count)
                items.InsertRange(0, m.Images.Skip(placed).Select(t => (ChatContent)new ChatContent.Image(t)));
            if (rest.Length > 0 || items.Count == 0) items.Add(new ChatContent.Text(rest));
        }
        return new Llama4Message(m.Role, items) { ToolCalls = m.ToolCalls };
    }

    /// <summary>A system-prompt paragraph describing the tools and the python-list call syntax the model is trained on.</summary>
    public static string ToolSystemPrompt(IReadOnlyList<ToolDefinition> tools)
    {
        var sb = new System.Text.StringBuilder();
        sb.Append("You can call functions. If you decide to call a function, reply only with a Python list of calls, e.g. [func(param=value)].\n\n");
        sb.Append("Here is a list of functions in JSON format that you can invoke:\n[\n");
        for (int i = 0; i < tools.Count; i++)
        {
            var t = tools[i];
            using var schema = JsonDocument.Parse(string.IsNullOrWhiteSpace(t.ParametersJsonSchema) ? "{}" : t.ParametersJsonSchema);
            var obj = new PythonValues.PyDict { new("name", t.Name) };
            if (t.Description != null) obj.Add(new("description", t.Description));
            obj.Add(new("parameters", PythonValues.FromJson(schema.RootElement)));
            sb.Append("    ").Append(PythonValues.JsonDumps(obj));
            sb.Append(i + 1 < tools.Count ? ",\n" : "\n");
        }
        sb.Append(']');
        return sb.ToString();
    }

    private void EncodeHeader(string role, List<int> ids)
    {
        ids.Add(_headerStart);
        _tokenizer.EncodeTo(role, ids);
        ids.Add(_headerEnd);
        _tokenizer.EncodeTo("\n\n", ids);
    }

    private void EncodeMessage(Llama4Message m, List<int> ids, ToolPromptFormat toolFormat)
    {
        string role = m.Role switch
        {
            "tool" or "ipython" => "ipython",
            "system" or "user" or "assistant" => m.Role,
            _ => throw new ArgumentException($"unknown chat role '{m.Role}' (expected system, user, assistant, tool or ipython)"),
        };
        EncodeHeader(role, ids);
        foreach (var item in m.Content) EncodeContent(item, ids);
        if (role == "user" && m.Context != null)
        {
            EncodeContent(new ChatContent.Text("\n\n"), ids);
            foreach (var item in m.Context) EncodeContent(item, ids);
        }
        if (role == "assistant")
            foreach (var call in m.ToolCalls) _tokenizer.EncodeTo(FormatToolCall(call, toolFormat), ids);
        bool endOfMessage = role switch
        {
            "assistant" => m.StopReason == StopReason.EndOfMessage || m.ToolCalls.Count > 0,
            "ipython" => true,
            _ => false,
        };
        ids.Add(endOfMessage ? _eom : _eot);
    }

    private void EncodeContent(ChatContent item, List<int> ids)
    {
        switch (item)
        {
            case ChatContent.Text t: _tokenizer.EncodeTo(t.Value, ids); break;
            case ChatContent.Image img: ids.AddRange(ImageTokens(img.Tiling, _tokenizer)); break;
        }
    }

    /// <summary>Meta's <c>ToolUtils.encode_tool_call</c>: the text an assistant tool call is written as.</summary>
    public static string FormatToolCall(ToolCall call, ToolPromptFormat format)
    {
        using var doc = JsonDocument.Parse(string.IsNullOrWhiteSpace(call.ArgumentsJson) ? "{}" : call.ArgumentsJson);
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new ArgumentException($"tool call '{call.Name}': arguments must be a JSON object");
        var args = (PythonValues.PyDict)PythonValues.FromJson(doc.RootElement)!;
        string Arg(string key) => args.FirstOrDefault(kv => (string)kv.Key == key).Value is { } v ? PythonValues.Str(v)
            : throw new ArgumentException($"tool call '{call.Name}' needs a '{key}' argument");
        switch (call.Name)
        {
            case "brave_search" or "wolfram_alpha" or "photogen":
                return $"{call.Name}.call(query=\"{Arg("query")}\")";
            case "code_interpreter":
                return Arg("code");
        }
        return format switch
        {
            ToolPromptFormat.Json => PythonValues.JsonDumps(new PythonValues.PyDict { new("type", "function"), new("name", call.Name), new("parameters", args) }),
            ToolPromptFormat.FunctionTag => $"<function={call.Name}>{PythonValues.JsonDumps(args)}</function>",
            _ => $"[{call.Name}({string.Join(", ", args.Select(kv => $"{kv.Key}={PythonListValue(kv.Value)}"))})]",
        };
    }

    private static string PythonListValue(object? v) => v switch
    {
        string s => $"\"{s}\"",
        List<object?> list => "[" + string.Join(", ", list.Select(PythonListValue)) + "]",
        PythonValues.PyDict d => "{" + string.Join(", ", d.Select(kv => $"{PythonValues.Str(kv.Key)}={PythonListValue(kv.Value)}")) + "}",
        _ => PythonValues.Str(v),
    };

    // ------------------------------------------------------------------ images

    /// <summary>Patches per 336-px tile for the published checkpoints: (336/14)² / 4 after the 0.5 pixel shuffle.</summary>
    public const int PatchesPerTile = 144;

    /// <summary>
    /// Token ids of an image in the prompt, with Llama 4's standard special-token ids: one tile is
    /// <c>&lt;|image_start|&gt;&lt;|image|&gt;</c> + patches + <c>&lt;|image_end|&gt;</c>; a grid is <c>&lt;|image_start|&gt;</c>,
    /// per row the tiles' patches separated by <c>&lt;|tile_x_separator|&gt;</c> and closed by <c>&lt;|tile_y_separator|&gt;</c>,
    /// then <c>&lt;|image|&gt;</c> + the thumbnail's patches + <c>&lt;|image_end|&gt;</c>.
    /// </summary>
    public static int[] ImageTokens(ImageTiling tiling) => ImageTokens(tiling, 200080, 200081, 200084, 200085, 200090, 200092);

    /// <summary><see cref="ImageTokens(ImageTiling)"/> with the ids of a given tokenizer.</summary>
    public static int[] ImageTokens(ImageTiling tiling, Llama4Tokenizer tokenizer)
    {
        int Id(string t) => tokenizer.SpecialTokenId(t) ?? throw new ArgumentException($"the tokenizer has no {t} token");
        return ImageTokens(tiling, Id(Llama4SpecialTokens.ImageStart), Id(Llama4SpecialTokens.ImageEnd), Id(Llama4SpecialTokens.TileXSeparator),
                           Id(Llama4SpecialTokens.TileYSeparator), Id(Llama4SpecialTokens.Image), Id(Llama4SpecialTokens.Patch));
    }

    /// <summary>The image layout with explicit special-token ids (models whose special tokens start elsewhere).</summary>
    public static int[] ImageTokens(ImageTiling tiling, int start, int end, int xSep, int ySep, int image, int patch)
    {
        if (tiling.TilesX < 1 || tiling.TilesY < 1 || tiling.PatchesPerTile < 1)
            throw new ArgumentException($"invalid image tiling {tiling.TilesX}x{tiling.TilesY} with {tiling.PatchesPerTile} patches per tile");
        var ids = new List<int>(ImageTokenCount(tiling)) { start };
        if (tiling.TilesX * tiling.TilesY > 1)
        {
            for (int y = 0; y < tiling.TilesY; y++)
            {
                for (int x = 0; x < tiling.TilesX; x++)
                {
                    ids.AddRange(Enumerable.Repeat(patch, tiling.PatchesPerTile));
                    if (x < tiling.TilesX - 1) ids.Add(xSep);
                }
                ids.Add(ySep);
            }
        }
        ids.Add(image);
        ids.AddRange(Enumerable.Repeat(patch, tiling.PatchesPerTile));
        ids.Add(end);
        return ids.ToArray();
    }

    /// <summary>Number of ids <see cref="ImageTokens(ImageTiling)"/> gives: 3 + patches for one tile, (patches+1)·tiles + patches + 3 otherwise.</summary>
    public static int ImageTokenCount(ImageTiling tiling)
    {
        int tiles = tiling.TilesX * tiling.TilesY;
        return tiles == 1 ? tiling.PatchesPerTile + 3 : (tiling.PatchesPerTile + 1) * tiles + tiling.PatchesPerTile + 3;
    }

    /// <summary>
    /// Meta's tile choice (<c>VariableSizeImageTransform</c>, resize_to_max_canvas=False): among canvases of a×b tiles
    /// (a·b ≤ <paramref name="maxTiles"/>) take the smallest scale ≥ 1 that fits the image without distortion, else the
    /// largest scale below 1; ties go to the smallest canvas area, then to Meta's enumeration order.
    /// </summary>
    public static ImageTiling TilingForImage(int width, int height, int tileSize = 336, int maxTiles = 16, int patchesPerTile = PatchesPerTile)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"image size {width}x{height} must be positive");
        var canvases = CandidateCanvases(maxTiles).Select(c => (H: c.TilesY, W: c.TilesX)).ToList();
        var scales = canvases.Select(c => Math.Min((float)(c.W * tileSize) / width, (float)(c.H * tileSize) / height)).ToList();
        float selected = scales.Any(s => s >= 1f) ? scales.Where(s => s >= 1f).Min() : scales.Where(s => s < 1f).Max();
        int best = -1;
        for (int i = 0; i < canvases.Count; i++)
        {
            if (scales[i] != selected) continue;
            if (best < 0 || canvases[i].H * canvases[i].W < canvases[best].H * canvases[best].W) best = i;
        }
        return new ImageTiling(canvases[best].W, canvases[best].H, patchesPerTile);
    }

    /// <summary>
    /// Meta's candidate canvases (<c>_find_supported_resolutions</c>) as (tiles across, tiles down), in its order: for chunk
    /// counts maxTiles..1, factor pairs (height h, width n/h) in ascending h, grouped by aspect ratio h/w in first-seen order.
    /// The order breaks ties between canvases of equal scale and area.
    /// </summary>
    public static IReadOnlyList<(int TilesX, int TilesY)> CandidateCanvases(int maxTiles = 16)
    {
        var groups = new List<(double Ratio, List<(int W, int H)> Items)>();
        for (int chunks = maxTiles; chunks >= 1; chunks--)
        {
            for (int h = 1; h <= chunks; h++)
            {
                if (chunks % h != 0) continue;
                int w = chunks / h;
                double ratio = (double)h / w;
                var group = groups.FirstOrDefault(g => g.Ratio == ratio);
                if (group.Items == null) groups.Add((ratio, [(w, h)]));
                else group.Items.Add((w, h));
            }
        }
        return groups.SelectMany(g => g.Items).ToList();
    }

    // ------------------------------------------------------------------ parsing model output

    /// <summary><see cref="IChatFormat"/>: <see cref="ParseAssistantMessage"/> with end-of-turn as the incoming stop reason.</summary>
    public AssistantReply ParseAssistant(string text)
    {
        var m = ParseAssistantMessage(text, StopReason.EndOfTurn);
        return new AssistantReply(m.Content, m.ToolCalls);
    }

    /// <summary>
    /// Meta's <c>decode_assistant_message_from_content</c>: strips spaces, a leading assistant header, the python tags and a
    /// trailing <c>&lt;|eot|&gt;</c>/<c>&lt;|eom|&gt;</c> (which sets the stop reason), then detects one tool call:
    /// <c>&lt;function=name&gt;{json}</c>, a JSON <c>{"type": "function", "name", "parameters"}</c>, a python list
    /// <c>[f(a=1), ...]</c> (the first call only, as Meta), <c>tool.call(query="...")</c>, or code after <c>&lt;|python_start|&gt;</c>.
    /// Tool-call arguments are given as JSON text (Python <c>json.dumps</c> style).
    /// </summary>
    public static Llama4AssistantMessage ParseAssistantMessage(string content, StopReason stopReason)
    {
        content = content.Trim(' ');
        const string header = Llama4SpecialTokens.HeaderStart + "assistant" + Llama4SpecialTokens.HeaderEnd + "\n\n";
        if (content.StartsWith(header, StringComparison.Ordinal)) content = content[header.Length..];
        bool ipython = content.StartsWith(Llama4SpecialTokens.PythonStart, StringComparison.Ordinal);
        if (ipython)
            content = content[Llama4SpecialTokens.PythonStart.Length..].Replace(Llama4SpecialTokens.PythonEnd, "", StringComparison.Ordinal);
        if (content.EndsWith(Llama4SpecialTokens.EndOfTurn, StringComparison.Ordinal))
        {
            content = content[..^Llama4SpecialTokens.EndOfTurn.Length];
            stopReason = StopReason.EndOfTurn;
        }
        else if (content.EndsWith(Llama4SpecialTokens.EndOfMessage, StringComparison.Ordinal))
        {
            content = content[..^Llama4SpecialTokens.EndOfMessage.Length];
            stopReason = StopReason.EndOfMessage;
        }

        string? toolName = null;
        PythonValues.PyDict? arguments = null;
        if (TryCustomToolCall(content, out var custom))
        {
            (toolName, arguments) = custom;
            if (BuiltinTools.Contains(toolName) && arguments.Count > 0)
                arguments = new PythonValues.PyDict { new("query", arguments[0].Value) };
        }
        else if (BuiltinCallRegex().Match(content) is { Success: true } builtin)
        {
            toolName = builtin.Groups["tool"].Value;
            arguments = new PythonValues.PyDict { new("query", builtin.Groups["query"].Value) };
        }
        else if (ipython)
        {
            toolName = "code_interpreter";
            arguments = new PythonValues.PyDict { new("code", content) };
        }

        if (toolName == null || arguments == null) return new Llama4AssistantMessage(content, stopReason, []);
        return new Llama4AssistantMessage("", stopReason, [new ToolCall(toolName, PythonValues.JsonDumps(arguments))]);
    }

    private static bool TryCustomToolCall(string content, out (string Name, PythonValues.PyDict Args) call)
    {
        call = default;
        var m = FunctionTagRegex().Match(content);
        if (m.Success)
        {
            // Meta turns single quotes into double quotes before json.loads; a parse failure means "no custom call".
            if (TryParseJsonObject(m.Groups["args"].Value.Replace('\'', '"'), out var args))
            {
                call = (m.Groups["name"].Value, args);
                return true;
            }
            return false;
        }
        if (TryParseJsonObject(content, out var obj))
        {
            var type = obj.FirstOrDefault(kv => (string)kv.Key == "type").Value;
            var name = obj.FirstOrDefault(kv => (string)kv.Key == "name");
            if (type as string == "function" || name.Key != null)
            {
                var parameters = obj.FirstOrDefault(kv => (string)kv.Key == "parameters").Value as PythonValues.PyDict;
                if (name.Value is string n && parameters != null)
                {
                    call = (n, parameters);
                    return true;
                }
            }
            return false;
        }
        var calls = PythonValues.ParseCallList(content);
        if (calls is { Count: > 0 })
        {
            call = calls[0]; // Meta keeps only the first call (its FIXME)
            return true;
        }
        return false;
    }

    private static bool TryParseJsonObject(string text, out PythonValues.PyDict obj)
    {
        obj = null!;
        try
        {
            using var doc = JsonDocument.Parse(text);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return false;
            obj = (PythonValues.PyDict)PythonValues.FromJson(doc.RootElement)!;
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    [GeneratedRegex(@"<function=(?<name>[^}]+)>(?<args>{.*?})")]
    private static partial Regex FunctionTagRegex();

    [GeneratedRegex(@"\b(?<tool>\w+)\.call\(query=""(?<query>[^""]*)""\)")]
    private static partial Regex BuiltinCallRegex();
}
