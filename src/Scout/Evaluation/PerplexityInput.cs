using Scout.Tokenization;

namespace Scout.Evaluation;

/// <summary>Turns an evaluation text into token ids the way llama-perplexity does: one tokenization of the whole text, BOS first.</summary>
public static class PerplexityInput
{
    /// <summary>
    /// The ids of <paramref name="text"/> (special-token text is plain text), with <paramref name="bos"/> in front
    /// when given. Llama 4's tokenizer encodes the text in one piece, as llama.cpp does, without Meta's
    /// 400,000-character slicing.
    /// </summary>
    public static int[] Tokenize(ITokenizer tokenizer, string text, int? bos)
    {
        var ids = tokenizer is Llama4Tokenizer l ? l.EncodeUnsliced(text) : tokenizer.Encode(text);
        return bos is { } b ? [b, .. ids] : ids;
    }
}
