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
