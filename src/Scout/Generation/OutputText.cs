using System.Text;
using System.Text.Unicode;

namespace Scout.Generation;

/// <summary>
/// Turns token bytes into streamable text: bytes of an unfinished UTF-8 character wait for the rest, and text that
/// could be the start of a stop string is held back until it is known not to be one. A matched stop string and
/// everything after it is dropped.
/// </summary>
/// <param name="keepText">keep the emitted text for <see cref="Text"/>; generation streams the pieces and turns this
/// off, so that appending a token allocates only the piece it returns</param>
public sealed class OutputText(IReadOnlyList<string> stopStrings, bool keepText = true)
{
    private readonly StringBuilder? _emitted = keepText ? new() : null;
    private string _pending = "";
    private char[] _chars = new char[64];
    /// <summary>Bytes to decode: the first <see cref="_carry"/> are an unfinished character left from the last token.</summary>
    private byte[] _bytes = new byte[64];
    private int _carry;

    /// <summary>All text emitted so far.</summary>
    public string Text => _emitted?.ToString() ?? throw new InvalidOperationException("this output was made without keeping its text");
    /// <summary>The stop string that matched, once one has.</summary>
    public string? MatchedStop { get; private set; }

    /// <summary>Adds a token's bytes; returns the text that may be shown now.</summary>
    public string Append(ReadOnlySpan<byte> bytes)
    {
        if (MatchedStop is not null) return "";
        // Utf8.ToUtf16 replaces invalid sequences as UTF8Encoding's decoder does (that decoder calls it), but never
        // allocates: the decoder's fallback path made a byte array per invalid sequence. A trailing incomplete
        // character is not read; it waits, as the decoder's state did, for the next token's bytes.
        int total = _carry + bytes.Length;
        if (_bytes.Length < total) Array.Resize(ref _bytes, Math.Max(total, 2 * _bytes.Length));
        bytes.CopyTo(_bytes.AsSpan(_carry));
        if (_chars.Length < total) _chars = new char[Math.Max(total, 2 * _chars.Length)]; // one char per byte at most
        Utf8.ToUtf16(_bytes.AsSpan(0, total), _chars, out int read, out int got, replaceInvalidSequences: true, isFinalBlock: false);
        _carry = total - read;
        _bytes.AsSpan(read, _carry).CopyTo(_bytes);
        return Release(_pending + new string(_chars, 0, got));
    }

    /// <summary>At the end: releases held-back text (a dangling partial character becomes U+FFFD).</summary>
    public string Flush()
    {
        if (MatchedStop is not null) return "";
        Span<char> tail = stackalloc char[8];
        Utf8.ToUtf16(_bytes.AsSpan(0, _carry), tail, out _, out int got, replaceInvalidSequences: true, isFinalBlock: true);
        _carry = 0;
        string text = _pending + new string(tail[..got]);
        _pending = "";
        int cut = FindStop(text, out string? stop);
        if (stop is not null) { MatchedStop = stop; text = text[..cut]; }
        _emitted?.Append(text);
        return text;
    }

    private string Release(string text)
    {
        int cut = FindStop(text, out string? stop);
        if (stop is not null)
        {
            MatchedStop = stop;
            _pending = "";
            _emitted?.Append(text, 0, cut);
            return text[..cut];
        }
        int hold = HeldSuffix(text);
        _pending = text[(text.Length - hold)..];
        string ready = text[..(text.Length - hold)];
        _emitted?.Append(ready);
        return ready;
    }

    private int FindStop(string text, out string? stop)
    {
        int best = -1;
        stop = null;
        // Indexed loops: a foreach over the interface would allocate an enumerator per token.
        for (int k = 0; k < stopStrings.Count; k++)
        {
            var s = stopStrings[k];
            int i = text.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (best < 0 || i < best)) { best = i; stop = s; }
        }
        return best;
    }

    /// <summary>Length of the longest suffix of <paramref name="text"/> that is a proper prefix of some stop string.</summary>
    private int HeldSuffix(string text)
    {
        int hold = 0;
        for (int k = 0; k < stopStrings.Count; k++)
            for (int len = Math.Min(stopStrings[k].Length - 1, text.Length); len > hold; len--)
                if (text.AsSpan(text.Length - len).SequenceEqual(stopStrings[k].AsSpan(0, len))) { hold = len; break; }
        return hold;
    }
}
