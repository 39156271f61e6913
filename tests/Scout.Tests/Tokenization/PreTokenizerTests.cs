using System.Text;
using Scout.Tokenization;

namespace Scout.Tests.Tokenization;

/// <summary>
/// The pre-tokenizer must see code points as Rust's regex crate does, not UTF-16 units: a character outside the BMP is one
/// letter, digit or symbol. (.NET's Regex alone would see two Cs surrogates and split these differently.)
/// </summary>
public class PreTokenizerTests
{
    [Theory]
    [InlineData("😀abc", new[] { "😀abc" })]                         // a symbol code point is the optional word prefix
    [InlineData("𝐀𝐁𝐜 x", new[] { "𝐀𝐁𝐜", " x" })]                     // math bold Lu Lu Ll is one word
    [InlineData("x𝟏𝟐𝟑𝟒", new[] { "x", "𝟏𝟐𝟑", "𝟒" })]                  // digits grouped in threes by code point
    [InlineData("𠀀𠀁 a", new[] { "𠀀𠀁", " a" })]                       // CJK extension B letters
    [InlineData("a \ufeffb", new[] { "a", " \ufeff", "b" })]          // U+FEFF is not whitespace: it joins the space as punctuation
    [InlineData("   x", new[] { "  ", " x" })]
    [InlineData("I'M don'T", new[] { "I'M", " don'T" })]
    public void Pieces_follow_code_point_semantics(string text, string[] expected)
    {
        Assert.Equal(expected, TokenizerFixtures.Tiktoken.PreTokenize(text));
    }

    /// <summary>
    /// Characters outside the BMP, which no fixture case separates from .NET's UTF-16 view. Expected ids are from the real
    /// tiktoken (npm tiktoken 1.0.22, the WASM build of the Rust core the fixtures were made with) given Meta's
    /// tokenizer.model, special tokens and pattern: <c>encode_ordinary(text)</c>.
    /// </summary>
    [Theory]
    [InlineData("\ud83d\ude00abc", new[] { 80883, 222, 23358 })]
    [InlineData("\ud835\udc00\ud835\udc01\ud835\udc1c x", new[] { 38057, 222, 38057, 223, 38057, 250, 831 })]
    [InlineData("x\ud835\udfcf\ud835\udfd0\ud835\udfd1\ud835\udfd2", new[] { 100, 89324, 237, 89324, 238, 89324, 239, 89324, 240 })]
    [InlineData("\ud840\udc00\ud840\udc01 a", new[] { 183, 254, 222, 222, 183, 254, 222, 223, 262 })]
    [InlineData("a\ud83d\ude00b \ud83d\ude00 c", new[] { 77, 80883, 222, 78, 51358, 222, 271 })]
    [InlineData("\ud835\udc9c\ud835\udcb7\ud835\udcb8\ud835\udcb9 \ud835\udd04\ud835\udd05 \ud801\udc00\ud801\udc28 \ud835\udfd8\ud835\udfd9\ud835\udfda\ud835\udfdb\ud835\udfdc", new[] { 97073, 250, 97073, 128, 97073, 129, 97073, 130, 23938, 242, 226, 6356, 242, 227, 220, 183, 238, 238, 222, 183, 238, 238, 114, 220, 89324, 246, 89324, 247, 89324, 248, 89324, 249, 89324, 250 })]
    [InlineData("\ud83c\uddfa\ud83c\uddf8abc \ud83d\udc4d\ud83c\udffdx", new[] { 55788, 131, 55788, 129, 23358, 138200, 73601, 134, 100 })]
    [InlineData("\ud834\udd65a", new[] { 6356, 227, 111, 77 })]
    [InlineData("'\ud835\udc2c it'\ud835\udc2c", new[] { 19, 38057, 118, 536, 19, 38057, 118 })]
    public void Supplementary_plane_text_matches_tiktoken(string text, int[] expected)
    {
        Assert.Equal(expected, TokenizerFixtures.Tiktoken.Encode(text));
        Assert.Equal(expected, TokenizerFixtures.Gguf.Encode(text));
        Assert.Equal(text, TokenizerFixtures.Tiktoken.Decode(expected));
    }

    [Fact]
    public void Pieces_cover_the_text_exactly()
    {
        var tok = TokenizerFixtures.Tiktoken;
        foreach (var c in TokenizerFixtures.ReadJsonl("encode.jsonl"))
        {
            string text = c.GetProperty("text").GetString()!;
            Assert.Equal(text, string.Concat(tok.PreTokenize(text)));
        }
    }

    [Fact]
    public void Parallel_encoding_gives_the_serial_ids()
    {
        var tok = TokenizerFixtures.Tiktoken;
        var sb = new StringBuilder();
        var texts = TokenizerFixtures.ReadJsonl("encode.jsonl").Select(c => c.GetProperty("text").GetString()!).ToList();
        for (int round = 0; sb.Length < 450_000; round++) // crosses one of Meta's 400,000-code-point cuts
            foreach (var t in texts.Skip(round % 7)) sb.Append(t).Append('\n');
        string corpus = sb.ToString();
        var serial = tok.Encode(corpus);
        Assert.Equal(serial, tok.EncodeParallel(corpus, chunkChars: 4096));
        Assert.Equal(serial, tok.EncodeParallel(corpus, chunkChars: 1 << 20));
        Assert.NotEqual(serial, tok.EncodeUnsliced(corpus)); // the corpus really crosses Meta's slice cuts inside pre-tokens
    }
}
