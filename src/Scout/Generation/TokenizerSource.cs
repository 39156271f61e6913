using Scout.Formats;
using Scout.Tokenization;

namespace Scout.Generation;

/// <summary>A tokenizer and the chat format that goes with it.</summary>
public sealed record TokenizerBundle(ITokenizer Tokenizer, IChatFormat ChatFormat);

/// <summary>
/// Finds the tokenizer for a model: an explicit path, else tokenizer.model / tokenizer.json next to the weights,
/// else the GGUF's own tokenizer section. The file is opened by <see cref="FileLoader"/> (Llama 4's tokenizer by
/// default; replaceable, as tests do with stand-ins).
/// </summary>
public static class TokenizerSource
{
    /// <summary>Opens a tokenizer file (tokenizer.model, tokenizer.json or a .gguf) as a tokenizer and chat format.</summary>
    public static Func<string, TokenizerBundle>? FileLoader { get; set; } = LoadLlama4;

    /// <summary>Llama 4's tokenizer and chat format from any file <see cref="Llama4Tokenizer.Load"/> reads.</summary>
    public static TokenizerBundle LoadLlama4(string path)
    {
        var tokenizer = Llama4Tokenizer.Load(path);
        IChatFormat format;
        try
        {
            format = new Llama4ChatFormat(tokenizer);
        }
        catch (ArgumentException e)
        {
            // A vocabulary without Llama 4's chat specials still serves plain completions (--raw, /v1/completions).
            format = new UnavailableChatFormat($"{path}: {e.Message}");
        }
        return new TokenizerBundle(tokenizer, format);
    }

    /// <summary>Stands in for a chat format the tokenizer cannot support; using it says why.</summary>
    private sealed class UnavailableChatFormat(string reason) : IChatFormat
    {
        public int[] EncodeDialog(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, IReadOnlyList<ToolDefinition>? tools = null)
            => throw new NotSupportedException($"chat formatting is unavailable ({reason}); use plain completion (--raw, /v1/completions)");

        public AssistantReply ParseAssistant(string text) => new(text, []);
    }

    /// <summary>Replaces resolution entirely (model path, explicit tokenizer path → bundle); tests use stand-ins this way.</summary>
    public static Func<string, string?, TokenizerBundle>? Override { get; set; }

    public static TokenizerBundle Resolve(string modelPath, string? tokenizerPath = null)
        => Override is { } o ? o(modelPath, tokenizerPath) : ResolveFromFiles(modelPath, tokenizerPath);

    /// <summary>Resolution from the files alone, ignoring <see cref="Override"/> (an override falls back to it for models it does not stand in for).</summary>
    public static TokenizerBundle ResolveFromFiles(string modelPath, string? tokenizerPath = null)
    {
        string file = tokenizerPath is not null
            ? File.Exists(tokenizerPath) || Directory.Exists(tokenizerPath) ? tokenizerPath : throw new ModelLoadException($"tokenizer not found: {tokenizerPath}")
            : Find(modelPath) ?? throw new ModelLoadException(
                $"no tokenizer found for {modelPath}: expected tokenizer.model or tokenizer.json next to the weights, or a .gguf with a tokenizer; pass --tokenizer PATH");
        var loader = FileLoader ?? throw new ModelLoadException("this build has no tokenizer loader (TokenizerSource.FileLoader is not set)");
        return loader(file);
    }

    /// <summary>The tokenizer file for a model path, or null.</summary>
    public static string? Find(string modelPath)
    {
        string? folder = Directory.Exists(modelPath) ? modelPath : Path.GetDirectoryName(Path.GetFullPath(modelPath));
        foreach (var name in new[] { "tokenizer.model", "tokenizer.json", Path.Combine("original", "tokenizer.model") })
            if (folder is not null && File.Exists(Path.Combine(folder, name))) return Path.Combine(folder, name);
        if (File.Exists(modelPath) && modelPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)) return modelPath;
        return null;
    }
}
