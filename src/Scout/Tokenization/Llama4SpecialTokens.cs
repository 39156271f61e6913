namespace Scout.Tokenization;

/// <summary>
/// Meta's list of Llama 4 special tokens (llama4/tokenizer.py): 2,048 names whose ids follow the BPE ranks in this order.
/// </summary>
public static class Llama4SpecialTokens
{
    public const int Count = 2048;

    public const string BeginOfText = "<|begin_of_text|>";
    public const string EndOfText = "<|end_of_text|>";
    public const string HeaderStart = "<|header_start|>";
    public const string HeaderEnd = "<|header_end|>";
    public const string EndOfMessage = "<|eom|>";
    public const string EndOfTurn = "<|eot|>";
    public const string PythonStart = "<|python_start|>";
    public const string PythonEnd = "<|python_end|>";
    public const string ImageStart = "<|image_start|>";
    public const string ImageEnd = "<|image_end|>";
    public const string TileXSeparator = "<|tile_x_separator|>";
    public const string TileYSeparator = "<|tile_y_separator|>";
    public const string Image = "<|image|>";
    public const string Patch = "<|patch|>";

    private static readonly Lazy<string[]> _names = new(Build);

    /// <summary>The 2,048 names in id order (id = number of BPE ranks + index).</summary>
    public static IReadOnlyList<string> Names => _names.Value;

    private static string[] Build()
    {
        var names = new List<string>(Count)
        {
            BeginOfText, EndOfText, "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
        };
        // 75 text post-train tokens; reserved 6 and 7 do not exist (their slots are python_start/end, finetune_right_pad's neighbours).
        names.AddRange([HeaderStart, HeaderEnd, EndOfMessage, EndOfTurn, "<|step|>"]);
        for (int i = 0; i <= 5; i++) names.Add($"<|text_post_train_reserved_special_token_{i}|>");
        names.AddRange([PythonStart, PythonEnd, "<|finetune_right_pad|>"]);
        for (int i = 8; i <= 68; i++) names.Add($"<|text_post_train_reserved_special_token_{i}|>");
        // 1,054 vision tokens: the named ones in their slots, reserved names in order in the others.
        var vision = new string?[1054];
        vision[0] = ImageStart; vision[1] = ImageEnd; vision[4] = TileXSeparator; vision[5] = TileYSeparator;
        vision[10] = Image; vision[12] = Patch;
        for (int slot = 0, reserved = 0; slot < vision.Length; slot++)
            names.Add(vision[slot] ?? $"<|vision_reserved_special_token_{reserved++}|>");
        // 10 reasoning tokens
        for (int i = 0; i <= 7; i++) names.Add($"<|reasoning_reserved_special_token_{i}|>");
        names.AddRange(["<|reasoning_thinking_start|>", "<|reasoning_thinking_end|>"]);
        int filler = Count - names.Count;
        for (int i = 0; i < filler; i++) names.Add($"<|reserved_special_token_{i}|>");
        return names.ToArray();
    }

    /// <summary>Text → id for a vocabulary with <paramref name="numBaseTokens"/> BPE ranks.</summary>
    public static Dictionary<string, int> ToIds(int numBaseTokens)
    {
        var d = new Dictionary<string, int>(Count, StringComparer.Ordinal);
        for (int i = 0; i < Names.Count; i++) d.Add(Names[i], numBaseTokens + i);
        return d;
    }
}
