using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Scout.Tokenization;

/// <summary>
/// Splits text into pre-token pieces with the tokenizer's regex, with the semantics of Rust's regex crate
/// (tiktoken): leftmost-first matches over Unicode code points.
/// </summary>
/// <remarks>
/// .NET's Regex works on UTF-16 units, so a character outside the BMP is two surrogates of category Cs, while
/// Rust sees one code point (a letter, a digit, a mark, an emoji...). Text containing surrogates is therefore
/// matched on a proxy string holding one BMP stand-in of the same category per code point, and the match
/// boundaries are mapped back. The stand-ins are chosen so the pattern cannot tell them from the originals: the
/// pattern only looks at the general categories L*/M/N, at \s (no code point outside the BMP is White_Space)
/// and at a few ASCII characters, none of which is a stand-in.
/// </remarks>
internal sealed class PreTokenizer
{
    private static readonly ConcurrentDictionary<string, Regex> Compiled = new(StringComparer.Ordinal);

    private readonly Regex _regex;
    public string Pattern { get; }

    public PreTokenizer(string pattern)
    {
        Pattern = pattern;
        try
        {
            _regex = Compiled.GetOrAdd(pattern, p => new Regex(p, RegexOptions.Compiled | RegexOptions.CultureInvariant));
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"the pre-tokenizer pattern is not a valid regular expression: {e.Message}", e);
        }
    }

    /// <summary>Gives <paramref name="sink"/> (start, length) in <paramref name="text"/> for each piece, in order.</summary>
    public void Split<TSink>(ReadOnlySpan<char> text, ref TSink sink) where TSink : struct, IPieceSink
    {
        if (text.IndexOfAnyInRange('\uD800', '\uDFFF') < 0)
        {
            foreach (var m in _regex.EnumerateMatches(text))
                sink.Piece(text.Slice(m.Index, m.Length));
            return;
        }

        // One proxy char per code point; map[k] = UTF-16 index of proxy char k (map[count] = text.Length).
        char[] proxy = ArrayPool<char>.Shared.Rent(text.Length);
        int[] map = ArrayPool<int>.Shared.Rent(text.Length + 1);
        try
        {
            int n = 0;
            for (int i = 0; i < text.Length; i++)
            {
                map[n] = i;
                char c = text[i];
                if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                {
                    proxy[n++] = StandIn(CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(c, text[i + 1])));
                    i++;
                }
                else
                {
                    proxy[n++] = c; // BMP char, or a lone surrogate (Cs: like U+FFFD, neither letter, digit nor space)
                }
            }
            map[n] = text.Length;
            foreach (var m in _regex.EnumerateMatches(proxy.AsSpan(0, n)))
            {
                int start = map[m.Index];
                sink.Piece(text.Slice(start, map[m.Index + m.Length] - start));
            }
        }
        finally
        {
            ArrayPool<char>.Shared.Return(proxy);
            ArrayPool<int>.Shared.Return(map);
        }
    }

    private static char StandIn(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter => 'A',
        UnicodeCategory.LowercaseLetter => 'a',
        UnicodeCategory.TitlecaseLetter => '\u01C5',
        UnicodeCategory.ModifierLetter => '\u02B0',
        UnicodeCategory.OtherLetter => '\u3042',
        UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark => '\u0300',
        UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => '0',
        _ => '\u00A9', // symbol: not a letter, digit, space, '\r', '\n', '/' or apostrophe
    };
}

/// <summary>Receives pre-token pieces (a struct so the per-piece call is devirtualised).</summary>
internal interface IPieceSink
{
    void Piece(ReadOnlySpan<char> piece);
}
