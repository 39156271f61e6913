using System.Text;
using System.Text.RegularExpressions;
using Scout.Generation;
using Scout.Tokenization;
using Scout.Vision;

namespace Scout.Tests.Generation;

/// <summary>
/// The vision fixture's placeholder vocabulary (its meta.json): one id per piece of the regex
/// <c>\s+|[A-Za-z]+|\d|[^\sA-Za-z\d]</c>, crc32(utf8(piece)) mod 416, and Llama 4's specials moved to 416 + (id − 200000).
/// With <see cref="VisionFixtureChatFormat"/> it reproduces the fixture's prompts, so images can be tested end to end.
/// </summary>
public sealed class VisionFixtureTokenizer : ITokenizer
{
    public const int First = 416, Bos = 416, EndOfText = 417, HeaderStart = 421, HeaderEnd = 422, Eom = 423, Eot = 424;
    public static VisionFixtureTokenizer Instance { get; } = new();
    public static ImageTokenIds ImageIds { get; } = ImageTokenIds.ForFirstSpecialId(First);
    private static readonly Regex Pieces = new(@"\s+|[A-Za-z]+|\d|[^\sA-Za-z\d]");

    public int VocabSize => 512;
    public int? BosId => Bos;
    public IReadOnlySet<int> StopIds { get; } = new HashSet<int> { EndOfText, Eom, Eot };
    public int[] Encode(string text, bool allowSpecial = false)
        => Pieces.Matches(text).Select(m => (int)(Crc32(Encoding.UTF8.GetBytes(m.Value)) % First)).ToArray();
    public byte[] DecodeBytes(ReadOnlySpan<int> ids)
    {
        var sb = new StringBuilder();
        foreach (int id in ids) sb.Append(id < First ? $"[{id}]" : $"<|special_{id}|>");
        return Encoding.UTF8.GetBytes(sb.ToString());
    }
    public string Decode(ReadOnlySpan<int> ids) => Encoding.UTF8.GetString(DecodeBytes(ids));
    public bool IsSpecial(int id) => id >= First;
    public int? SpecialTokenId(string text) => null;

    private static uint Crc32(byte[] data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320 & (uint)-(int)(crc & 1));
        }
        return ~crc;
    }

    public static TokenizerBundle Bundle { get; } = new(Instance, new VisionFixtureChatFormat());
}

/// <summary>Llama 4's chat layout over the fixture vocabulary; a message's images come before its text (placeholders dropped).</summary>
public sealed class VisionFixtureChatFormat : IChatFormat
{
    private static readonly VisionFixtureTokenizer T = VisionFixtureTokenizer.Instance;

    public int[] EncodeDialog(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, IReadOnlyList<ToolDefinition>? tools = null)
    {
        var ids = new List<int> { VisionFixtureTokenizer.Bos };
        foreach (var m in messages)
        {
            Header(ids, m.Role);
            foreach (var image in m.Images) ids.AddRange(ImagePromptLayout.Tokens(image, VisionFixtureTokenizer.ImageIds));
            ids.AddRange(T.Encode(m.Content.Replace("<|image|>", "")));
            ids.Add(VisionFixtureTokenizer.Eot);
        }
        if (addGenerationPrompt) Header(ids, "assistant");
        return ids.ToArray();
    }

    private static void Header(List<int> ids, string role)
    {
        ids.Add(VisionFixtureTokenizer.HeaderStart);
        ids.AddRange(T.Encode(role));
        ids.Add(VisionFixtureTokenizer.HeaderEnd);
        ids.AddRange(T.Encode("\n\n"));
    }

    public AssistantReply ParseAssistant(string text) => new(text, []);
}

/// <summary>
/// Points the CLI's tokenizer lookup at the stand-ins for the shared fixtures (which ship no tokenizer): the vision
/// fixture's vocabulary for its folder, byte-level for the rest. Any other model (e.g. a GGUF synthesized with the real
/// vocabulary) resolves from its own files, so tests that install this do not disturb those that use real tokenizers.
/// </summary>
public static class TestTokenizers
{
    public static void Install() => TokenizerSource.Override = (model, tokenizer) =>
        !IsUnder(model, Fixtures.Root) ? TokenizerSource.ResolveFromFiles(model, tokenizer)
        : IsUnder(model, Fixtures.Vision()) ? VisionFixtureTokenizer.Bundle
        : new TokenizerBundle(StandInTokenizer.Instance, StandInChatFormat.Instance);

    private static bool IsUnder(string path, string folder) =>
        Path.GetFullPath(path).StartsWith(Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder)) + Path.DirectorySeparatorChar, StringComparison.Ordinal)
        || Path.GetFullPath(path) == Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
}
