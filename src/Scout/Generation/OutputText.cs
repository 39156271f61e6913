using System.Text;

namespace Scout.Generation;

/// <summary>
/// Turns token bytes into streamable text: bytes of an unfinished UTF-8 character wait for the rest, and text that
/// could be the start of a stop string is held back until it is known not to be one. A matched stop string and
/// everything after it is dropped.
/// </summary>
public sealed class OutputText(IReadOnlyList<string> stopStrings)
{
    private readonly Decoder _decoder = new UTF8Encoding(false, false).GetDecoder();
    private readonly StringBuilder _emitted = new();
    private string _pending = "";
    private char[] _chars = new char[64];

    /// <summary>All text emitted so far.</summary>
    public string Text => _emitted.ToString();
    /// <summary>The stop string that matched, once one has.</summary>
    public string? MatchedStop { get; private set; }

    /// <summary>Adds a token's bytes; returns the text that may be shown now.</summary>
    public string Append(ReadOnlySpan<byte> bytes)
    {
        if (MatchedStop is not null) return "";
        int need = _decoder.GetCharCount(bytes, flush: false);
        if (_chars.Length < need) _chars = new char[Math.Max(need, 2 * _chars.Length)];
        int got = _decoder.GetChars(bytes, _chars, flush: false);
        return Release(_pending + new string(_chars, 0, got));
    }

    /// <summary>At the end: releases held-back text (a dangling partial character becomes U+FFFD).</summary>
    public string Flush()
    {
        if (MatchedStop is not null) return "";
        Span<char> tail = stackalloc char[8];
        int got = _decoder.GetChars(ReadOnlySpan<byte>.Empty, tail, flush: true);
        string text = _pending + new string(tail[..got]);
        _pending = "";
        int cut = FindStop(text, out string? stop);
        if (stop is not null) { MatchedStop = stop; text = text[..cut]; }
        _emitted.Append(text);
        return text;
    }

    private string Release(string text)
    {
        int cut = FindStop(text, out string? stop);
        if (stop is not null)
        {
            MatchedStop = stop;
            _pending = "";
            _emitted.Append(text, 0, cut);
            return text[..cut];
        }
        int hold = HeldSuffix(text);
        _pending = text[(text.Length - hold)..];
        string ready = text[..(text.Length - hold)];
        _emitted.Append(ready);
        return ready;
    }

    private int FindStop(string text, out string? stop)
    {
        int best = -1;
        stop = null;
        foreach (var s in stopStrings)
        {
            int i = text.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (best < 0 || i < best)) { best = i; stop = s; }
        }
        return best;
    }

    /// <summary>Length of the longest suffix of <paramref name="text"/> that is a proper prefix of some stop string.</summary>
    private int HeldSuffix(string text)
    {
        int hold = 0;
        foreach (var s in stopStrings)
            for (int len = Math.Min(s.Length - 1, text.Length); len > hold; len--)
                if (text.AsSpan(text.Length - len).SequenceEqual(s.AsSpan(0, len))) { hold = len; break; }
        return hold;
    }
}
