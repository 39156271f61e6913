namespace Scout.Tokenization;

/// <summary>
/// What generation needs from a tokenizer. <see cref="Llama4Tokenizer"/> (tiktoken-style BPE) implements it for real
/// checkpoints; tests may use small stand-ins.
/// </summary>
public interface ITokenizer
{
    int VocabSize { get; }
    int? BosId { get; }
    /// <summary>Ids that end a turn or the text (<c>&lt;|eot|&gt;</c>, <c>&lt;|eom|&gt;</c>, <c>&lt;|end_of_text|&gt;</c>).</summary>
    IReadOnlySet<int> StopIds { get; }

    /// <summary>Encodes text. With <paramref name="allowSpecial"/> false, special-token text such as "&lt;|eot|&gt;" is plain text.</summary>
    int[] Encode(string text, bool allowSpecial = false);

    /// <summary>The raw bytes of the tokens (special tokens as their text).</summary>
    byte[] DecodeBytes(ReadOnlySpan<int> ids);

    /// <summary>
    /// The raw bytes of one token, as <see cref="DecodeBytes"/> of that id alone. Generation calls it once per
    /// token: an implementation that returns its stored bytes (as <see cref="Llama4Tokenizer"/>) keeps the decode
    /// step free of allocations; the default decodes into a new array.
    /// </summary>
    ReadOnlySpan<byte> TokenBytes(int id) => DecodeBytes([id]);

    /// <summary>Decoded text; invalid UTF-8 becomes U+FFFD.</summary>
    string Decode(ReadOnlySpan<int> ids);

    bool IsSpecial(int id);

    /// <summary>Id of a special token by its text (e.g. "&lt;|eot|&gt;"), or null.</summary>
    int? SpecialTokenId(string text);
}

/// <summary>A tool call in an assistant message: a function name and its arguments as a JSON object text.</summary>
public sealed record ToolCall(string Name, string ArgumentsJson, string? Id = null);

/// <summary>A function the model may call: name, description and a JSON-schema for its parameters.</summary>
public sealed record ToolDefinition(string Name, string? Description, string ParametersJsonSchema);

/// <summary>One message of a dialog. Roles: system, user, assistant, ipython (tool results; "tool" is accepted too).</summary>
public sealed record ChatMessage(string Role, string Content)
{
    public IReadOnlyList<ToolCall> ToolCalls { get; init; } = [];
    /// <summary>Images in this message, in order; each is placed where the content holds <c>&lt;|image|&gt;</c>, else before the text.</summary>
    public IReadOnlyList<ImageTiling> Images { get; init; } = [];
}

/// <summary>How an image was tiled: a grid of <paramref name="TilesX"/>×<paramref name="TilesY"/> 336-px tiles, plus a thumbnail when the grid has more than one tile.</summary>
public sealed record ImageTiling(int TilesX, int TilesY, int PatchesPerTile = 144);

/// <summary>An assistant reply parsed back into plain text and tool calls.</summary>
public sealed record AssistantReply(string Content, IReadOnlyList<ToolCall> ToolCalls);

/// <summary>Renders dialogs in a model's chat format and parses replies.</summary>
public interface IChatFormat
{
    /// <summary>Token ids for a dialog (BOS first); with <paramref name="addGenerationPrompt"/>, ends with the assistant header.</summary>
    int[] EncodeDialog(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, IReadOnlyList<ToolDefinition>? tools = null);

    /// <summary>Splits a finished assistant reply into text and tool calls (python-list style or JSON).</summary>
    AssistantReply ParseAssistant(string text);
}
