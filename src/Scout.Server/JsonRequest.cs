using System.Text.Json;

namespace Scout.Server;

/// <summary>Typed access to a request's JSON fields; a missing required field or a wrong type is a 400 naming the field.</summary>
public readonly struct JsonRequest(JsonElement element, string path = "")
{
    public JsonElement Element => element;

    private string Name(string field) => path.Length == 0 ? field : $"{path}.{field}";

    public bool Has(string field) => element.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null;

    public JsonElement? Get(string field) => element.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public string? String(string field, bool required = false)
    {
        if (Get(field) is not { } v)
            return required ? throw ApiException.BadRequest($"'{Name(field)}' is required", Name(field)) : null;
        if (v.ValueKind != JsonValueKind.String) throw WrongType(field, "a string", v);
        return v.GetString();
    }

    public bool? Bool(string field)
    {
        if (Get(field) is not { } v) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw WrongType(field, "a boolean", v),
        };
    }

    public double? Number(string field, double min = double.MinValue, double max = double.MaxValue)
    {
        if (Get(field) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number) throw WrongType(field, "a number", v);
        double d = v.GetDouble();
        if (d < min || d > max) throw ApiException.BadRequest($"'{Name(field)}' must be between {min} and {max}, got {d}", Name(field));
        return d;
    }

    public int? Int(string field, int min = int.MinValue, int max = int.MaxValue)
    {
        if (Get(field) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long l)) throw WrongType(field, "an integer", v);
        if (l < min || l > max) throw ApiException.BadRequest($"'{Name(field)}' must be between {min} and {max}, got {l}", Name(field));
        return (int)l;
    }

    public long? Long(string field)
    {
        if (Get(field) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long l)) throw WrongType(field, "an integer", v);
        return l;
    }

    public JsonElement? Array(string field, bool required = false)
    {
        if (Get(field) is not { } v)
            return required ? throw ApiException.BadRequest($"'{Name(field)}' is required", Name(field)) : null;
        if (v.ValueKind != JsonValueKind.Array) throw WrongType(field, "an array", v);
        return v;
    }

    public JsonRequest? Object(string field)
    {
        if (Get(field) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Object) throw WrongType(field, "an object", v);
        return new JsonRequest(v, Name(field));
    }

    public JsonRequest Child(JsonElement e, string name)
    {
        if (e.ValueKind != JsonValueKind.Object)
            throw ApiException.BadRequest($"'{Name(name)}' must be an object, got {Kind(e)}", Name(name));
        return new JsonRequest(e, Name(name));
    }

    /// <summary>
    /// Refuses a body whose strings are not valid Unicode (invalid UTF-8 bytes, a lone surrogate escape such as
    /// \ud800) with a 400 naming the field, before anything reads them.
    /// </summary>
    public static void CheckText(JsonElement e, string path = "")
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var p in e.EnumerateObject())
                {
                    string name;
                    try { name = p.Name; }
                    catch (InvalidOperationException) { throw ApiException.BadRequest($"a key in '{(path.Length == 0 ? "the request body" : path)}' is not valid UTF-8/Unicode text", path.Length == 0 ? null : path, "invalid_text"); }
                    if (!IsWellFormed(name))
                        throw ApiException.BadRequest($"a key in '{(path.Length == 0 ? "the request body" : path)}' holds a lone surrogate (not valid Unicode text)", path.Length == 0 ? null : path, "invalid_text");
                    CheckText(p.Value, path.Length == 0 ? name : $"{path}.{name}");
                }
                break;
            case JsonValueKind.Array:
                int i = 0;
                foreach (var item in e.EnumerateArray()) CheckText(item, $"{path}[{i++}]");
                break;
            case JsonValueKind.String:
                string? s;
                try { s = e.GetString(); }
                catch (InvalidOperationException) { throw ApiException.BadRequest($"'{path}' is not valid UTF-8/Unicode text", path, "invalid_text"); }
                if (s is not null && !IsWellFormed(s))
                    throw ApiException.BadRequest($"'{path}' holds a lone surrogate escape (e.g. \\ud800), which is not valid Unicode text", path, "invalid_text");
                break;
        }
    }

    private static bool IsWellFormed(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { i++; continue; }
            if (char.IsSurrogate(c)) return false;
        }
        return true;
    }

    public ApiException WrongType(string field, string expected, JsonElement got)
        => ApiException.BadRequest($"'{Name(field)}' must be {expected}, got {Kind(got)}", Name(field));

    public static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        _ => "null",
    };
}
