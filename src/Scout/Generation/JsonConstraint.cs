using System.Collections.Immutable;
using System.Runtime.CompilerServices;
using System.Text;
using Scout.Tokenization;

namespace Scout.Generation;

/// <summary>
/// Constrained decoding for JSON: a byte-level pushdown recognizer for JSON restricted by a
/// <see cref="JsonSchemaSubset"/>. Before each token is sampled, every token whose bytes cannot continue a valid
/// document is masked out; once the document is complete only stop tokens remain. Several parse states are kept
/// at once where the grammar is ambiguous (anyOf, an enum value that is a prefix of another, a number that may go on).
/// Whitespace between tokens is limited (per gap) so a model cannot stall in it.
/// </summary>
public sealed class JsonConstraint : ITokenConstraint
{
    private const int MaxNumberLength = 24;
    /// <summary>Integers stop at 18 characters so every one fits a signed 64-bit value (clients bind "integer" to long).</summary>
    private const int MaxIntegerLength = 18;
    /// <summary>Live parse states at most (an ambiguous schema beyond this fails the sequence instead of stalling the batch).</summary>
    public const int MaxStates = 128;
    /// <summary>Recognizer steps one <see cref="Mask"/> may take (the same bound, on the work of one token).</summary>
    public const long MaxStepsPerToken = 20_000_000;
    private long _work;
    private static readonly ConditionalWeakTable<ITokenizer, TokenTable> TokenTables = new();

    /// <summary>
    /// Each token's bytes, and for the common case of a token inside a JSON string: how many characters it adds
    /// if it is plain string content (no quote, backslash or control byte; UTF-8 well formed from a character
    /// boundary), else -1.
    /// </summary>
    private sealed class TokenTable
    {
        public readonly byte[][] Bytes;
        public readonly int[] PlainStringChars;

        public TokenTable(ITokenizer t)
        {
            Bytes = new byte[t.VocabSize][];
            PlainStringChars = new int[t.VocabSize];
            for (int id = 0; id < Bytes.Length; id++)
            {
                Bytes[id] = t.IsSpecial(id) ? [] : t.DecodeBytes([id]);
                PlainStringChars[id] = PlainChars(Bytes[id]);
            }
        }

        private static int PlainChars(byte[] bytes)
        {
            if (bytes.Length == 0) return -1;
            int chars = 0, pending = 0;
            foreach (byte b in bytes)
            {
                if (pending > 0)
                {
                    if ((b & 0xC0) != 0x80) return -1;
                    pending--;
                    continue;
                }
                if (b < 0x20 || b == '"' || b == '\\' || b >= 0xF8 || (b & 0xC0) == 0x80) return -1;
                pending = b < 0x80 ? 0 : b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : 1;
                chars++;
            }
            return chars;
        }
    }

    private readonly ITokenizer _tokenizer;
    private readonly byte[][] _tokenBytes;
    private readonly int[] _plainStringChars;
    private List<Stack> _states;
    private int MaxWhitespace { get; }

    /// <param name="maxWhitespace">Whitespace characters allowed in one gap between tokens of the JSON text
    /// (8 fits pretty-printing a few levels deep; 1 keeps tool calls compact).</param>
    public JsonConstraint(ITokenizer tokenizer, JsonSchemaSubset schema, int maxWhitespace = 8)
    {
        _tokenizer = tokenizer;
        _states = [];
        MaxWhitespace = maxWhitespace;
        var table = TokenTables.GetValue(tokenizer, t => new TokenTable(t));
        _tokenBytes = table.Bytes;
        _plainStringChars = table.PlainStringChars;
        _states = [new Stack(new ValueFrame(schema, 0), new Stack(EndFrame.Instance, null))];
    }

    public bool IsComplete => _states.Any(CanEnd);

    /// <summary>Whether <paramref name="text"/> is accepted (as a complete document when <paramref name="complete"/>).</summary>
    public bool Accepts(string text, bool complete = true)
    {
        var states = _states;
        foreach (byte b in Encoding.UTF8.GetBytes(text))
        {
            states = Advance(states, b);
            if (states.Count == 0) return false;
        }
        return !complete || states.Any(CanEnd);
    }

    public void Mask(Span<float> logits)
    {
        _work = 0;
        bool complete = IsComplete;
        int n = Math.Min(logits.Length, _tokenBytes.Length);
        // Inside free string content (the bulk of most outputs) a plain token is decided without simulating it.
        var inString = _states.Count == 1 && _states[0].Top is StringFrame { Candidates: null, Escape: 0, Utf8Left: 0 } sf ? sf : null;

        // Cheap filters next: which first bytes, and (outside strings) which pairs of first bytes, can continue.
        Span<bool> firstByteOk = stackalloc bool[256];
        var pairOk = new bool[256 * 256];
        for (int b = 0; b < 256; b++)
        {
            var after = Advance(_states, (byte)b);
            if (after.Count == 0) continue;
            firstByteOk[b] = true;
            for (int b2 = 0; b2 < 256; b2++) pairOk[b * 256 + b2] = inString is not null || Advance(after, (byte)b2).Count > 0;
        }
        for (int id = 0; id < n; id++)
        {
            if (float.IsNegativeInfinity(logits[id])) continue;
            if (inString is not null && _plainStringChars[id] >= 0)
            {
                if (inString.Chars + _plainStringChars[id] > inString.MaxLength) logits[id] = float.NegativeInfinity;
                continue;
            }
            var bytes = _tokenBytes[id];
            bool ok = bytes.Length == 0
                ? complete && _tokenizer.StopIds.Contains(id)
                : firstByteOk[bytes[0]] && (bytes.Length == 1 || (pairOk[bytes[0] * 256 + bytes[1]] && Feed(_states, bytes).Count > 0));
            if (!ok) logits[id] = float.NegativeInfinity;
        }
        for (int id = n; id < logits.Length; id++) logits[id] = float.NegativeInfinity;
    }

    public void Accept(int token)
    {
        if (_tokenizer.StopIds.Contains(token)) return;
        var next = Feed(_states, _tokenBytes[token]);
        if (next.Count == 0) throw new InvalidOperationException($"token {token} does not continue the JSON output");
        _states = next;
    }

    private List<Stack> Feed(List<Stack> states, byte[] bytes)
    {
        foreach (byte b in bytes)
        {
            states = Advance(states, b);
            if (states.Count == 0) break;
        }
        return states;
    }

    private List<Stack> Advance(List<Stack> states, byte b)
    {
        _work += states.Count;
        if (_work > MaxStepsPerToken)
            throw new InvalidOperationException($"the output schema needs more than {MaxStepsPerToken:N0} recognizer steps for one token; it is too ambiguous to enforce");
        var next = new List<Stack>(states.Count);
        foreach (var s in states) next.AddRange(Step(s, b));
        if (next.Count > 1) next = next.Distinct().ToList();
        if (next.Count > MaxStates)
            throw new InvalidOperationException($"the output schema is too ambiguous to enforce: more than {MaxStates} ways to read the output so far");
        return next;
    }

    // ---- the recognizer: an immutable stack of frames; Step returns every stack the byte can lead to ----

    private sealed record Stack(Frame Top, Stack? Below);

    private abstract record Frame;
    private sealed record EndFrame : Frame { public static readonly EndFrame Instance = new(); }
    private sealed record ValueFrame(JsonSchemaSubset Schema, int Ws) : Frame;
    private enum ObjPhase { Open, Key, Colon, AfterValue, Comma }
    private sealed record ObjectFrame(JsonSchemaSubset Schema, ObjPhase Phase, int Ws, string? Key, int NextIndex, ImmutableList<string> Used) : Frame;
    private enum ArrPhase { Open, AfterValue, Comma }
    private sealed record ArrayFrame(JsonSchemaSubset Schema, ArrPhase Phase, int Ws, int Count) : Frame;
    private sealed record StringFrame(bool IsKey, ImmutableList<string>? Candidates, int MinLength, int MaxLength, string Text, int Chars, int Escape, int Utf8Left) : Frame;
    /// <summary>A number being read; with <see cref="Bounds"/>, its text so far (exponents are then not offered).</summary>
    private sealed record NumberFrame(bool Integer, int State, int Length, NumberBounds? Bounds = null, string? Text = null) : Frame;
    private sealed record LiteralFrame(byte[][] Candidates, int Pos) : Frame;

    private static bool IsWs(byte b) => b is (byte)' ' or (byte)'\n' or (byte)'\t' or (byte)'\r';

    private static bool CanEnd(Stack s) => s.Top switch
    {
        EndFrame => true,
        NumberFrame n => NumberComplete(n.State) && InBounds(n) && s.Below!.Top is EndFrame,
        LiteralFrame l => l.Candidates.Any(c => c.Length == l.Pos) && s.Below!.Top is EndFrame,
        _ => false,
    };

    private IEnumerable<Stack> Step(Stack s, byte b) => s.Top switch
    {
        ValueFrame v => StepValue(v, s.Below!, b),
        ObjectFrame o => StepObject(o, s.Below!, b),
        ArrayFrame a => StepArray(a, s.Below!, b),
        StringFrame str => StepString(str, s.Below!, b),
        NumberFrame n => StepNumber(n, s.Below!, b),
        LiteralFrame l => StepLiteral(l, s.Below!, b),
        _ => [],
    };

    private IEnumerable<Stack> StepValue(ValueFrame v, Stack below, byte b)
    {
        if (IsWs(b)) return v.Ws < MaxWhitespace ? [new Stack(v with { Ws = v.Ws + 1 }, below)] : [];
        return StartValue(v.Schema, below, b);
    }

    /// <summary>The stacks after the first byte of a value of <paramref name="schema"/> pushed above <paramref name="below"/>.</summary>
    private IEnumerable<Stack> StartValue(JsonSchemaSubset schema, Stack below, byte b)
    {
        if (schema.AnyOf is { } alternatives)
        {
            foreach (var alt in alternatives)
                foreach (var r in StartValue(alt, below, b)) yield return r;
            yield break;
        }
        if (schema.Enum is { } values)
        {
            foreach (var r in StepLiteral(new LiteralFrame(values.ToArray(), 0), below, b)) yield return r;
            yield break;
        }
        var k = schema.Kinds;
        switch ((char)b)
        {
            case '{' when k.HasFlag(JsonKinds.Object):
                yield return new Stack(new ObjectFrame(schema, ObjPhase.Open, 0, null, 0, []), below);
                break;
            case '[' when k.HasFlag(JsonKinds.Array):
                yield return new Stack(new ArrayFrame(schema, ArrPhase.Open, 0, 0), below);
                break;
            case '"' when k.HasFlag(JsonKinds.String):
                yield return new Stack(new StringFrame(false, null, schema.MinLength, schema.MaxLength, "", 0, 0, 0), below);
                break;
            case '-' or (>= '0' and <= '9') when k.HasFlag(JsonKinds.Integer) || k.HasFlag(JsonKinds.Number):
                foreach (var r in StepNumber(new NumberFrame(!k.HasFlag(JsonKinds.Number), 0, 0, schema.Bounds, schema.Bounds is null ? null : ""), below, b)) yield return r;
                break;
            case 't' or 'f' when k.HasFlag(JsonKinds.Boolean):
                foreach (var r in StepLiteral(new LiteralFrame([[.. "true"u8], [.. "false"u8]], 0), below, b)) yield return r;
                break;
            case 'n' when k.HasFlag(JsonKinds.Null):
                foreach (var r in StepLiteral(new LiteralFrame([[.. "null"u8]], 0), below, b)) yield return r;
                break;
        }
    }

    private IEnumerable<Stack> StepObject(ObjectFrame o, Stack below, byte b)
    {
        var schema = o.Schema;
        bool ordered = !schema.AdditionalProperties && schema.Properties.Count > 0;
        if (IsWs(b) && o.Phase != ObjPhase.Key)
            return o.Ws < MaxWhitespace ? [new Stack(o with { Ws = o.Ws + 1 }, below)] : [];
        switch (o.Phase)
        {
            case ObjPhase.Open or ObjPhase.Comma:
                if (b == '}' && o.Phase == ObjPhase.Open && RequiredDone(o)) return [below];
                if (b != '"') return [];
                ImmutableList<string>? candidates = null;
                if (ordered)
                {
                    var names = new List<string>();
                    for (int i = o.NextIndex; i < schema.Properties.Count; i++)
                    {
                        names.Add(schema.Properties[i].Name);
                        if (schema.Required.Contains(schema.Properties[i].Name)) break;
                    }
                    if (names.Count == 0) return [];
                    candidates = [.. names];
                }
                else if (!schema.AdditionalProperties) return [];
                var key = new StringFrame(true, candidates, 0, int.MaxValue, "", 0, 0, 0);
                return [new Stack(key, new Stack(o with { Phase = ObjPhase.Colon, Ws = 0 }, below))];
            case ObjPhase.Colon:
                if (b != ':') return [];
                var valueSchema = schema.PropertySchema(o.Key!);
                int next = ordered ? schema.Properties.FindIndex(p => p.Name == o.Key) + 1 : o.NextIndex;
                var after = o with { Phase = ObjPhase.AfterValue, Ws = 0, NextIndex = next, Used = o.Used.Add(o.Key!), Key = null };
                return [new Stack(new ValueFrame(valueSchema, 0), new Stack(after, below))];
            case ObjPhase.AfterValue:
                if (b == '}' && RequiredDone(o)) return [below];
                if (b == ',' && (!ordered || o.NextIndex < schema.Properties.Count)) return [new Stack(o with { Phase = ObjPhase.Comma, Ws = 0 }, below)];
                return [];
            default:
                return [];
        }
    }

    private static bool RequiredDone(ObjectFrame o) => o.Schema.Required.All(o.Used.Contains);

    private IEnumerable<Stack> StepArray(ArrayFrame a, Stack below, byte b)
    {
        if (IsWs(b)) return a.Ws < MaxWhitespace ? [new Stack(a with { Ws = a.Ws + 1 }, below)] : [];
        var items = a.Schema.Items ?? JsonSchemaSubset.Any;
        switch (a.Phase)
        {
            case ArrPhase.Open or ArrPhase.Comma:
                if (b == ']' && a.Phase == ArrPhase.Open && a.Schema.MinItems == 0) return [below];
                if (a.Count >= a.Schema.MaxItems) return [];
                return StartValue(items, new Stack(a with { Phase = ArrPhase.AfterValue, Ws = 0, Count = a.Count + 1 }, below), b);
            case ArrPhase.AfterValue:
                if (b == ']' && a.Count >= a.Schema.MinItems) return [below];
                if (b == ',' && a.Count < a.Schema.MaxItems) return [new Stack(a with { Phase = ArrPhase.Comma, Ws = 0 }, below)];
                return [];
            default:
                return [];
        }
    }

    private IEnumerable<Stack> StepString(StringFrame s, Stack below, byte b)
    {
        if (s.Utf8Left > 0)
            return (b & 0xC0) == 0x80 ? [new Stack(s with { Utf8Left = s.Utf8Left - 1, Text = Tracks(s) ? s.Text + (char)b : s.Text }, below)] : [];
        if (s.Escape > 0)
        {
            if (s.Escape == 1)
            {
                if (b == 'u') return [new Stack(s with { Escape = 2 }, below)];
                return "\"\\/bfnrt".Contains((char)b) && s.Candidates is null ? [new Stack(s with { Escape = 0, Chars = s.Chars + 1 }, below)] : [];
            }
            // \uXXXX: Escape counts 2..5 through the hex digits; 10 = after a first digit D, where surrogates
            // (D800-DFFF) are refused: a lone one is not valid Unicode text.
            if (!Uri.IsHexDigit((char)b)) return [];
            if (s.Escape == 2 && b is (byte)'d' or (byte)'D') return [new Stack(s with { Escape = 10 }, below)];
            if (s.Escape == 10) return b is >= (byte)'0' and <= (byte)'7' ? [new Stack(s with { Escape = 4 }, below)] : [];
            return [new Stack(s.Escape == 5 ? s with { Escape = 0, Chars = s.Chars + 1 } : s with { Escape = s.Escape + 1 }, below)];
        }
        if (b == '"')
        {
            if (s.Candidates is not null && !s.Candidates.Any(c => Latin1Prefix(c, s.Text) && Encoding.UTF8.GetByteCount(c) == s.Text.Length)) return [];
            if (s.Chars < s.MinLength) return [];
            if (s.IsKey) return [new Stack(((ObjectFrame)below.Top) with { Key = Encoding.UTF8.GetString(Encoding.Latin1.GetBytes(s.Text)) }, below.Below)];
            return [below];
        }
        if (b < 0x20 || b >= 0xF8 || (b & 0xC0) == 0x80) return [];
        if (s.Chars >= s.MaxLength) return [];
        // Keys are kept free of escapes so their text is known exactly (it picks the value's schema).
        if (b == '\\') return Tracks(s) ? [] : [new Stack(s with { Escape = 1 }, below)];
        int left = b < 0x80 ? 0 : b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : 1;
        if (s.Candidates is not null)
        {
            // Keys drawn from a list: the text must stay a prefix of one of them (names are matched byte by byte).
            string text = s.Text + (char)b;
            if (!s.Candidates.Any(c => Latin1Prefix(c, text))) return [];
            return [new Stack(s with { Text = text, Chars = s.Chars + 1, Utf8Left = left }, below)];
        }
        return [new Stack(s with { Chars = s.Chars + 1, Utf8Left = left, Text = Tracks(s) ? s.Text + (char)b : s.Text }, below)];
    }

    /// <summary>Keys keep their text (one char per byte) to pick the value's schema; other strings need not.</summary>
    private static bool Tracks(StringFrame s) => s.IsKey || s.Candidates is not null;

    /// <summary>Whether <paramref name="bytesAsChars"/> (one char per UTF-8 byte) is a prefix of <paramref name="name"/>'s UTF-8.</summary>
    private static bool Latin1Prefix(string name, string bytesAsChars)
    {
        var utf8 = Encoding.UTF8.GetBytes(name);
        if (bytesAsChars.Length > utf8.Length) return false;
        for (int i = 0; i < bytesAsChars.Length; i++) if (utf8[i] != bytesAsChars[i]) return false;
        return true;
    }

    // Number states: 0 start, 1 after '-', 2 after leading 0, 3 in integer digits, 4 after '.', 5 in fraction,
    // 6 after e/E, 7 after exponent sign, 8 in exponent digits. Complete in 2, 3, 5, 8.
    private static bool NumberComplete(int state) => state is 2 or 3 or 5 or 8;

    private IEnumerable<Stack> StepNumber(NumberFrame n, Stack below, byte b)
    {
        int next = (n.State, (char)b) switch
        {
            (0, '-') => 1,
            (0 or 1, '0') => 2,
            (0 or 1, >= '1' and <= '9') => 3,
            (3, >= '0' and <= '9') => 3,
            (2 or 3, '.') when !n.Integer => 4,
            (4 or 5, >= '0' and <= '9') => 5,
            (2 or 3 or 5, 'e' or 'E') when !n.Integer => 6,
            (6, '+' or '-') => 7,
            (6 or 7 or 8, >= '0' and <= '9') => 8,
            _ => -1,
        };
        int maxLength = n.Integer ? MaxIntegerLength : MaxNumberLength;
        if (n.Bounds is not null && next is 6 or 7 or 8) next = -1; // bounded numbers are written without exponents
        if (next >= 0 && n.Length < maxLength)
        {
            if (n.Bounds is null) return [new Stack(n with { State = next, Length = n.Length + 1 }, below)];
            string text = n.Text + (char)b;
            if (Feasible(n.Bounds, text, next, n.Integer, maxLength - text.Length))
                return [new Stack(n with { State = next, Length = n.Length + 1, Text = text }, below)];
            return [];
        }
        // The number ends here: the byte belongs to whatever follows it.
        return NumberComplete(n.State) && InBounds(n) ? Step(below, b) : [];
    }

    private static bool InBounds(NumberFrame n)
        => n.Bounds is null || (decimal.TryParse(n.Text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v) && n.Bounds.Allows(v));

    private const decimal Huge = 1e27m;

    /// <summary>Whether some number starting with <paramref name="text"/> (at most <paramref name="left"/> more characters) meets the bounds.</summary>
    private static bool Feasible(NumberBounds bounds, string text, int state, bool integer, int left)
    {
        bool neg = text[0] == '-';
        string body = neg ? text[1..] : text;
        bool Meets(decimal a, decimal b) => neg ? bounds.Meets(-b, -a) : bounds.Meets(a, b);
        if (state == 1) return bounds.Meets(-Huge, 0);
        if (state == 2) return Meets(0, integer || left == 0 ? 0 : 1);
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        if (state is 3 or 4)
        {
            decimal v = decimal.Parse(body.TrimEnd('.'), inv);
            if (state == 4) return Meets(v, v + 1);
            if (Meets(v, integer || left < 2 ? v : v + 1)) return true;
            decimal lo = v, hi = v + 1;
            for (int k = 1; k <= left; k++)
            {
                if (lo >= Huge / 10) return Meets(lo, Huge);
                lo *= 10; hi *= 10;
                if (Meets(lo, integer ? hi - 1 : hi)) return true;
            }
            return false;
        }
        // state 5: digits after the point; more digits can add less than one unit of the last place.
        decimal x = decimal.Parse(body, inv);
        int fraction = body.Length - body.IndexOf('.') - 1;
        decimal unit = 1m;
        for (int i = 0; i < fraction && i < 27; i++) unit /= 10;
        return Meets(x, left > 0 ? x + unit : x);
    }

    private IEnumerable<Stack> StepLiteral(LiteralFrame l, Stack below, byte b)
    {
        var continuing = l.Candidates.Where(c => c.Length > l.Pos && c[l.Pos] == b).ToArray();
        var results = new List<Stack>();
        if (continuing.Length > 0)
        {
            // A candidate that is now complete and has no longer sibling pops at once.
            if (continuing.All(c => c.Length == l.Pos + 1)) results.Add(below);
            else results.Add(new Stack(new LiteralFrame(continuing, l.Pos + 1), below));
        }
        if (l.Pos > 0 && l.Candidates.Any(c => c.Length == l.Pos)) results.AddRange(Step(below, b));
        return results;
    }
}
