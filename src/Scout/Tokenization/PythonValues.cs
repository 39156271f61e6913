using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Scout.Tokenization;

/// <summary>
/// The few Python value semantics Meta's chat code relies on: <c>json.dumps</c> (", " and ": " separators,
/// ensure_ascii), <c>str()</c> of ints, floats, bools and None, and <c>ast.literal_eval</c> of the literals a
/// python-list tool call holds. Values are string, <see cref="PyInt"/>, double, bool, null, List&lt;object?&gt; or <see cref="PyDict"/>.
/// </summary>
internal static class PythonValues
{
    internal sealed record PyInt(string Digits);

    internal sealed class PyDict : List<KeyValuePair<object, object?>>;

    // ------------------------------------------------------------------ from JSON (json.loads)

    public static object? FromJson(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Number => NumberFromJson(e.GetRawText()),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Null => null,
        JsonValueKind.Array => e.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.Object => ToDict(e),
        _ => throw new FormatException($"unexpected JSON value {e.ValueKind}"),
    };

    private static PyDict ToDict(JsonElement e)
    {
        var d = new PyDict();
        foreach (var p in e.EnumerateObject())
        {
            int existing = d.FindIndex(kv => kv.Key is string s && s == p.Name);
            if (existing >= 0) d[existing] = new(p.Name, FromJson(p.Value)); // json.loads: the last duplicate wins, first position kept
            else d.Add(new(p.Name, FromJson(p.Value)));
        }
        return d;
    }

    private static object NumberFromJson(string raw)
        => raw.IndexOfAny(['.', 'e', 'E']) < 0 ? new PyInt(raw) : double.Parse(raw, NumberStyles.Float, CultureInfo.InvariantCulture);

    // ------------------------------------------------------------------ json.dumps

    public static string JsonDumps(object? value)
    {
        var sb = new StringBuilder();
        WriteJson(sb, value);
        return sb.ToString();
    }

    private static void WriteJson(StringBuilder sb, object? v)
    {
        switch (v)
        {
            case null: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case PyInt i: sb.Append(i.Digits); break;
            case double d:
                sb.Append(double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : FloatRepr(d));
                break;
            case string s: WriteJsonString(sb, s); break;
            case PyDict dict:
                sb.Append('{');
                for (int k = 0; k < dict.Count; k++)
                {
                    if (k > 0) sb.Append(", ");
                    WriteJsonString(sb, dict[k].Key switch { string s => s, bool b => b ? "true" : "false", null => "null", var o => Str(o) });
                    sb.Append(": ");
                    WriteJson(sb, dict[k].Value);
                }
                sb.Append('}');
                break;
            case List<object?> list:
                sb.Append('[');
                for (int k = 0; k < list.Count; k++)
                {
                    if (k > 0) sb.Append(", ");
                    WriteJson(sb, list[k]);
                }
                sb.Append(']');
                break;
            default: throw new ArgumentException($"cannot serialise {v.GetType().Name}");
        }
    }

    private static void WriteJsonString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || c > 0x7E) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    /// <summary>Python's <c>repr(float)</c>: shortest round-trip digits, scientific below 1e-4 and from 1e16.</summary>
    public static string FloatRepr(double d)
    {
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";
        // shortest round-trip digits
        string shortest = d.ToString("R", CultureInfo.InvariantCulture);
        bool negative = d < 0;
        // Decompose "shortest" into digits and a decimal exponent.
        string s = negative ? shortest[1..] : shortest;
        int exp = 0;
        int ePos = s.IndexOfAny(['E', 'e']);
        if (ePos >= 0)
        {
            exp = int.Parse(s[(ePos + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            s = s[..ePos];
        }
        int dot = s.IndexOf('.');
        string digits = dot >= 0 ? s.Remove(dot, 1) : s;
        int pointPos = (dot >= 0 ? dot : s.Length) + exp; // decimal point position within digits
        int lead = 0;
        while (lead < digits.Length - 1 && digits[lead] == '0') { lead++; pointPos--; }
        digits = digits[lead..].TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        int sciExp = pointPos - 1;
        string body;
        if (sciExp < -4 || sciExp >= 16)
        {
            string mant = digits.Length == 1 ? digits : digits[0] + "." + digits[1..];
            body = mant + "e" + (sciExp < 0 ? "-" : "+") + Math.Abs(sciExp).ToString("00", CultureInfo.InvariantCulture);
        }
        else if (pointPos <= 0)
            body = "0." + new string('0', -pointPos) + digits;
        else if (pointPos >= digits.Length)
            body = digits + new string('0', pointPos - digits.Length) + ".0";
        else
            body = digits[..pointPos] + "." + digits[pointPos..];
        return negative ? "-" + body : body;
    }

    // ------------------------------------------------------------------ str()

    /// <summary>Python <c>str(v)</c> for the scalar types (True, None, 0.92, 42).</summary>
    public static string Str(object? v) => v switch
    {
        null => "None",
        bool b => b ? "True" : "False",
        PyInt i => i.Digits,
        double d => double.IsNaN(d) ? "nan" : double.IsInfinity(d) ? (d > 0 ? "inf" : "-inf") : FloatRepr(d),
        string s => s,
        _ => v.ToString() ?? "",
    };

    // ------------------------------------------------------------------ python-list tool calls

    /// <summary>
    /// Parses <c>[name(k=v, ...), ...]</c> as Meta's <c>is_valid_python_list</c> + <c>parse_python_list_for_function_calls</c>:
    /// a non-empty list of calls to plain names with keyword arguments only. Returns null when the text is not such a list.
    /// </summary>
    public static List<(string Name, PyDict Args)>? ParseCallList(string text)
    {
        var p = new LiteralParser(text);
        try
        {
            p.SkipSpace(true);
            if (!p.Eat('[')) return null;
            var calls = new List<(string, PyDict)>();
            p.SkipSpace(true);
            if (p.Peek() == ']') return null; // empty list is not a call list
            while (true)
            {
                p.SkipSpace(true);
                string? name = p.Identifier();
                if (name == null || p.IsKeyword(name)) return null;
                p.SkipSpace(false);
                while (p.Peek() == '.') return null; // attribute calls are not plain names
                if (!p.Eat('(')) return null;
                var args = new PyDict();
                p.SkipSpace(true);
                if (!p.Eat(')'))
                {
                    while (true)
                    {
                        p.SkipSpace(true);
                        string? key = p.Identifier();
                        if (key == null) return null;
                        p.SkipSpace(true);
                        if (!p.Eat('=') || p.Peek() == '=') return null; // positional args or comparisons
                        p.SkipSpace(true);
                        object? value = p.ValueOrExpression();
                        if (args.Any(kv => (string)kv.Key == key)) return null; // SyntaxError in Python
                        args.Add(new(key, value));
                        p.SkipSpace(true);
                        if (p.Eat(')')) break;
                        if (!p.Eat(',')) return null;
                        p.SkipSpace(true);
                        if (p.Eat(')')) break;
                    }
                }
                calls.Add((name, args));
                p.SkipSpace(true);
                if (p.Eat(']')) break;
                if (!p.Eat(',')) return null;
                p.SkipSpace(true);
                if (p.Eat(']')) break;
            }
            p.SkipSpace(true);
            return p.AtEnd ? calls : null;
        }
        catch (FormatException)
        {
            return null;
        }
    }

    private sealed class LiteralParser(string s)
    {
        private int _pos;
        public bool AtEnd => _pos >= s.Length;
        public char Peek() => _pos < s.Length ? s[_pos] : '\0';
        public bool Eat(char c) { if (Peek() == c && !AtEnd) { _pos++; return true; } return false; }
        public bool IsKeyword(string id) => id is "True" or "False" or "None" or "and" or "or" or "not" or "in" or "is" or "lambda" or "if" or "else" or "for";

        public void SkipSpace(bool newlines)
        {
            while (_pos < s.Length && (s[_pos] is ' ' or '\t' || (newlines && s[_pos] is '\n' or '\r'))) _pos++;
        }

        public string? Identifier()
        {
            int start = _pos;
            if (_pos < s.Length && (char.IsLetter(s[_pos]) || s[_pos] == '_')) _pos++;
            else return null;
            while (_pos < s.Length && (char.IsLetterOrDigit(s[_pos]) || s[_pos] == '_')) _pos++;
            return s[start.._pos];
        }

        /// <summary>
        /// A literal (ast.literal_eval). Meta's parser raises on anything else; for a bare or dotted name Scout keeps its
        /// source text as a string instead of failing the whole reply.
        /// </summary>
        public object? ValueOrExpression()
        {
            int start = _pos;
            if (Peek() is var c && (char.IsLetter(c) || c == '_'))
            {
                string id = Identifier()!;
                switch (id)
                {
                    case "True": return true;
                    case "False": return false;
                    case "None": return null;
                }
                if (Peek() is '\'' or '"') { _pos = start; return StringLiteral(); } // prefixed string such as r"..."
                while (Eat('.')) { if (Identifier() == null) throw new FormatException(); }
                return s[start.._pos];
            }
            return Literal();
        }

        public object? Literal()
        {
            SkipSpace(true);
            char c = Peek();
            if (c is '\'' or '"') return ConcatStrings();
            if (c == '[' || c == '(')
            {
                char close = c == '[' ? ']' : ')';
                _pos++;
                var list = new List<object?>();
                SkipSpace(true);
                while (!Eat(close))
                {
                    list.Add(Literal());
                    SkipSpace(true);
                    if (Eat(close)) break;
                    if (!Eat(',')) throw new FormatException();
                    SkipSpace(true);
                }
                return list;
            }
            if (c == '{')
            {
                _pos++;
                var d = new PyDict();
                SkipSpace(true);
                while (!Eat('}'))
                {
                    var key = Literal() ?? throw new FormatException();
                    SkipSpace(true);
                    if (!Eat(':')) throw new FormatException();
                    var value = Literal();
                    int existing = d.FindIndex(kv => Equals(kv.Key, key));
                    if (existing >= 0) d[existing] = new(key, value); else d.Add(new(key, value));
                    SkipSpace(true);
                    if (Eat('}')) break;
                    if (!Eat(',')) throw new FormatException();
                    SkipSpace(true);
                }
                return d;
            }
            if (c is '-' or '+' || char.IsAsciiDigit(c) || c == '.') return Number();
            string? id = Identifier();
            return id switch
            {
                "True" => true,
                "False" => false,
                "None" => null,
                _ => throw new FormatException(),
            };
        }

        private object Number()
        {
            bool negative = false;
            while (Peek() is '-' or '+') { if (s[_pos] == '-') negative = !negative; _pos++; SkipSpace(false); }
            int start = _pos;
            while (_pos < s.Length && (char.IsAsciiDigit(s[_pos]) || s[_pos] is '.' or '_' or 'e' or 'E'
                   || (s[_pos] is '+' or '-' && s[_pos - 1] is 'e' or 'E'))) _pos++;
            string text = s[start.._pos].Replace("_", "");
            if (text.Length == 0) throw new FormatException();
            if (text.IndexOfAny(['.', 'e', 'E']) < 0)
            {
                if (!text.All(char.IsAsciiDigit)) throw new FormatException();
                string digits = text.TrimStart('0');
                if (digits.Length == 0) digits = "0";
                return new PyInt(negative && digits != "0" ? "-" + digits : digits);
            }
            double d = double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
            return negative ? -d : d;
        }

        private string ConcatStrings()
        {
            var sb = new StringBuilder();
            do
            {
                sb.Append(StringLiteral());
                SkipSpace(false);
            } while (Peek() is '\'' or '"');
            return sb.ToString();
        }

        public string StringLiteral()
        {
            bool raw = false;
            while (Peek() is 'r' or 'R' or 'u' or 'U') { raw |= Peek() is 'r' or 'R'; _pos++; }
            char q = Peek();
            if (q is not ('\'' or '"')) throw new FormatException();
            bool triple = _pos + 2 < s.Length && s[_pos + 1] == q && s[_pos + 2] == q;
            _pos += triple ? 3 : 1;
            var sb = new StringBuilder();
            while (true)
            {
                if (_pos >= s.Length) throw new FormatException();
                char c = s[_pos];
                if (c == q && (!triple || (_pos + 2 < s.Length && s[_pos + 1] == q && s[_pos + 2] == q)))
                {
                    _pos += triple ? 3 : 1;
                    return sb.ToString();
                }
                if (!triple && c is '\n' or '\r') throw new FormatException();
                if (c == '\\' && !raw && _pos + 1 < s.Length)
                {
                    char e = s[_pos + 1];
                    _pos += 2;
                    switch (e)
                    {
                        case 'n': sb.Append('\n'); break;
                        case 't': sb.Append('\t'); break;
                        case 'r': sb.Append('\r'); break;
                        case '0': sb.Append('\0'); break;
                        case 'b': sb.Append('\b'); break;
                        case 'f': sb.Append('\f'); break;
                        case 'v': sb.Append('\v'); break;
                        case 'a': sb.Append('\a'); break;
                        case '\\': sb.Append('\\'); break;
                        case '\'': sb.Append('\''); break;
                        case '"': sb.Append('"'); break;
                        case '\n': break;
                        case 'x': sb.Append((char)Convert.ToInt32(Take(2), 16)); break;
                        case 'u': sb.Append((char)Convert.ToInt32(Take(4), 16)); break;
                        case 'U': sb.Append(char.ConvertFromUtf32(Convert.ToInt32(Take(8), 16))); break;
                        default: sb.Append('\\').Append(e); break;
                    }
                    continue;
                }
                sb.Append(c);
                _pos++;
            }
        }

        private string Take(int n)
        {
            if (_pos + n > s.Length) throw new FormatException();
            var t = s.Substring(_pos, n);
            _pos += n;
            return t;
        }
    }
}
