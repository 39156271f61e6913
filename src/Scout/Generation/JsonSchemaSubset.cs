using System.Text.Json;

namespace Scout.Generation;

/// <summary>JSON value kinds a schema allows.</summary>
[Flags]
public enum JsonKinds
{
    None = 0, Object = 1, Array = 2, String = 4, Number = 8, Integer = 16, Boolean = 32, Null = 64,
    Any = Object | Array | String | Number | Integer | Boolean | Null,
}

/// <summary>
/// The part of JSON Schema that constrained decoding enforces: type, properties, required, additionalProperties,
/// items, min/maxItems, min/maxLength, enum, const, anyOf/oneOf, and local $ref to #/$defs or #/definitions.
/// Other keywords (pattern, format, numeric bounds) are accepted and not enforced.
/// </summary>
public sealed class JsonSchemaSubset
{
    public JsonKinds Kinds { get; private set; } = JsonKinds.Any;
    /// <summary>Declared properties, in declaration order (when additional properties are refused, keys come in this order).</summary>
    public List<(string Name, JsonSchemaSubset Schema)> Properties { get; } = new();
    public HashSet<string> Required { get; } = new();
    public bool AdditionalProperties { get; private set; } = true;
    public JsonSchemaSubset? AdditionalSchema { get; private set; }
    public JsonSchemaSubset? Items { get; private set; }
    public int MinItems { get; private set; }
    public int MaxItems { get; private set; } = int.MaxValue;
    public int MinLength { get; private set; }
    public int MaxLength { get; private set; } = int.MaxValue;
    /// <summary>Allowed values as compact JSON texts (enum / const).</summary>
    public List<byte[]>? Enum { get; private set; }
    public List<JsonSchemaSubset>? AnyOf { get; private set; }

    public static JsonSchemaSubset Any { get; } = new();

    /// <summary>Any JSON object (OpenAI's json_object mode).</summary>
    public static JsonSchemaSubset AnyObject { get; } = new() { Kinds = JsonKinds.Object };

    /// <param name="closedObjects">Objects that declare properties but say nothing of additionalProperties refuse
    /// others (right for tool arguments: a call should only carry declared parameters).</param>
    public static JsonSchemaSubset Parse(string schemaJson, bool closedObjects = false)
    {
        try
        {
            using var doc = JsonDocument.Parse(schemaJson);
            return Parse(doc.RootElement, doc.RootElement, 0, closedObjects);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"the JSON schema is not valid JSON: {e.Message}");
        }
    }

    public static JsonSchemaSubset Parse(JsonElement schema, bool closedObjects = false) => Parse(schema, schema, 0, closedObjects);

    private static JsonSchemaSubset Parse(JsonElement e, JsonElement root, int depth, bool closed)
    {
        if (depth > 32) throw new ArgumentException("the JSON schema nests too deeply (or its $ref loops)");
        if (e.ValueKind == JsonValueKind.True) return Any;
        if (e.ValueKind != JsonValueKind.Object) throw new ArgumentException($"a JSON schema must be an object, got {e.ValueKind}");
        var s = new JsonSchemaSubset();
        if (e.TryGetProperty("$ref", out var r))
        {
            string path = r.GetString() ?? "";
            string[] prefixes = ["#/$defs/", "#/definitions/"];
            var prefix = prefixes.FirstOrDefault(path.StartsWith)
                         ?? throw new ArgumentException($"only local $ref to #/$defs/... is supported, got \"{path}\"");
            var defs = root.GetProperty(prefix[2..^1]);
            if (!defs.TryGetProperty(path[prefix.Length..], out var target))
                throw new ArgumentException($"$ref \"{path}\" points to nothing");
            return Parse(target, root, depth + 1, closed);
        }
        if (e.TryGetProperty("type", out var type))
        {
            s.Kinds = type.ValueKind == JsonValueKind.Array
                ? type.EnumerateArray().Aggregate(JsonKinds.None, (k, t) => k | Kind(t.GetString()))
                : Kind(type.GetString());
            if (s.Kinds.HasFlag(JsonKinds.Number)) s.Kinds |= JsonKinds.Integer;
        }
        if (e.TryGetProperty("properties", out var props) && props.ValueKind == JsonValueKind.Object)
            foreach (var p in props.EnumerateObject()) s.Properties.Add((p.Name, Parse(p.Value, root, depth + 1, closed)));
        if (e.TryGetProperty("required", out var req) && req.ValueKind == JsonValueKind.Array)
            foreach (var n in req.EnumerateArray()) s.Required.Add(n.GetString() ?? "");
        if (e.TryGetProperty("additionalProperties", out var ap))
        {
            if (ap.ValueKind == JsonValueKind.False) s.AdditionalProperties = false;
            else if (ap.ValueKind == JsonValueKind.Object) s.AdditionalSchema = Parse(ap, root, depth + 1, closed);
        }
        else if (closed && s.Properties.Count > 0)
        {
            s.AdditionalProperties = false;
        }
        if (!s.AdditionalProperties)
            foreach (var name in s.Required)
                if (!s.Properties.Any(p => p.Name == name))
                    throw new ArgumentException($"the schema requires property \"{name}\" but does not declare it and refuses additional properties");
        if (e.TryGetProperty("items", out var items) && items.ValueKind is JsonValueKind.Object or JsonValueKind.True)
            s.Items = Parse(items, root, depth + 1, closed);
        s.MinItems = Int(e, "minItems", 0);
        s.MaxItems = Int(e, "maxItems", int.MaxValue);
        s.MinLength = Int(e, "minLength", 0);
        s.MaxLength = Int(e, "maxLength", int.MaxValue);
        if (e.TryGetProperty("enum", out var en) && en.ValueKind == JsonValueKind.Array)
            s.Enum = en.EnumerateArray().Select(v => JsonSerializer.SerializeToUtf8Bytes(v)).ToList();
        if (e.TryGetProperty("const", out var c)) s.Enum = [JsonSerializer.SerializeToUtf8Bytes(c)];
        foreach (var key in new[] { "anyOf", "oneOf" })
            if (e.TryGetProperty(key, out var alts) && alts.ValueKind == JsonValueKind.Array)
                s.AnyOf = alts.EnumerateArray().Select(a => Parse(a, root, depth + 1, closed)).ToList();
        if (s.Enum is { Count: 0 } || s.AnyOf is { Count: 0 } || s.Kinds == JsonKinds.None)
            throw new ArgumentException("the JSON schema allows no value at all");
        return s;
    }

    /// <summary>A schema from parts (tool-call grammars are built this way).</summary>
    public static JsonSchemaSubset Object(IEnumerable<(string Name, JsonSchemaSubset Schema)> properties)
    {
        var s = new JsonSchemaSubset { Kinds = JsonKinds.Object, AdditionalProperties = false };
        foreach (var p in properties) { s.Properties.Add(p); s.Required.Add(p.Name); }
        return s;
    }

    public static JsonSchemaSubset Const(string value) => new() { Kinds = JsonKinds.String, Enum = [JsonSerializer.SerializeToUtf8Bytes(value)] };

    public static JsonSchemaSubset OneOf(IEnumerable<JsonSchemaSubset> alternatives) => new() { AnyOf = alternatives.ToList() };

    private static int Int(JsonElement e, string name, int fallback)
        => e.TryGetProperty(name, out var v) && v.TryGetInt32(out int i) && i >= 0 ? i : fallback;

    private static JsonKinds Kind(string? name) => name switch
    {
        "object" => JsonKinds.Object,
        "array" => JsonKinds.Array,
        "string" => JsonKinds.String,
        "number" => JsonKinds.Number,
        "integer" => JsonKinds.Integer,
        "boolean" => JsonKinds.Boolean,
        "null" => JsonKinds.Null,
        _ => throw new ArgumentException($"unknown JSON schema type \"{name}\""),
    };

    public JsonSchemaSubset PropertySchema(string key)
        => Properties.FirstOrDefault(p => p.Name == key).Schema ?? AdditionalSchema ?? Any;
}
