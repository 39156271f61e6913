using System.Text.Json;

namespace Scout.Generation;

/// <summary>JSON value kinds a schema allows.</summary>
[Flags]
public enum JsonKinds
{
    None = 0, Object = 1, Array = 2, String = 4, Number = 8, Integer = 16, Boolean = 32, Null = 64,
    Any = Object | Array | String | Number | Integer | Boolean | Null,
}

/// <summary>Numeric bounds of a schema (minimum/maximum, inclusive or exclusive), as decimals.</summary>
public sealed record NumberBounds(decimal? Min, bool MinExclusive, decimal? Max, bool MaxExclusive)
{
    public bool Allows(decimal v)
        => (Min is not { } lo || (MinExclusive ? v > lo : v >= lo)) && (Max is not { } hi || (MaxExclusive ? v < hi : v <= hi));

    /// <summary>Whether the closed interval [a, b] meets the bounds (taken as closed: a feasibility test for prefixes).</summary>
    public bool Meets(decimal a, decimal b) => (Max is not { } hi || a <= hi) && (Min is not { } lo || b >= lo);
}

/// <summary>A schema Scout cannot enforce, or one too large or too complex to compile within its limits.</summary>
public sealed class JsonSchemaException(string message, string? keyword = null) : ArgumentException(message)
{
    /// <summary>The schema keyword at fault, when one is.</summary>
    public string? Keyword { get; } = keyword;
}

/// <summary>
/// The part of JSON Schema that constrained decoding enforces: type, properties, required, additionalProperties,
/// items, min/maxItems, min/maxLength, minimum/maximum/exclusiveMinimum/exclusiveMaximum, enum, const, anyOf/oneOf,
/// and local $ref to #/$defs or #/definitions (recursion allowed). Every other validation keyword (pattern, format,
/// allOf, not, multipleOf, ...) is refused with a <see cref="JsonSchemaException"/> naming it, never ignored.
/// Objects that declare properties and say nothing of additionalProperties get exactly those properties, in
/// declaration order (as clients such as Microsoft.Extensions.AI expect of a typed result).
/// Compilation is bounded: schema size, nesting depth, nodes, anyOf alternatives and time.
/// </summary>
public sealed class JsonSchemaSubset
{
    /// <summary>Limits of compilation: bytes of schema text, nesting depth, schema nodes, alternatives of one anyOf (flattened), time.</summary>
    public const int MaxSchemaBytes = 64 * 1024, MaxDepth = 48, MaxNodes = 2048, MaxAlternatives = 64;
    public static readonly TimeSpan MaxCompileTime = TimeSpan.FromMilliseconds(500);

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
    /// <summary>Bounds on numbers and integers (null: unbounded).</summary>
    public NumberBounds? Bounds { get; private set; }
    /// <summary>Allowed values as compact JSON texts (enum / const).</summary>
    public List<byte[]>? Enum { get; private set; }
    /// <summary>The alternatives of anyOf/oneOf, flattened (nested anyOf expanded, duplicates removed; never themselves anyOf).</summary>
    public List<JsonSchemaSubset>? AnyOf { get; private set; }

    public static JsonSchemaSubset Any { get; } = new();

    /// <summary>Any JSON object (OpenAI's json_object mode).</summary>
    public static JsonSchemaSubset AnyObject { get; } = new() { Kinds = JsonKinds.Object };

    private static readonly HashSet<string> Annotations = new(StringComparer.Ordinal)
    {
        "$schema", "$id", "$comment", "$anchor", "title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly",
        "$defs", "definitions", "nullable", "strict", "name",
    };

    private sealed class Context(JsonElement root, bool closed)
    {
        public readonly JsonElement Root = root;
        public readonly bool Closed = closed;
        public readonly Dictionary<string, JsonSchemaSubset> Refs = new(StringComparer.Ordinal);
        public readonly System.Diagnostics.Stopwatch Clock = System.Diagnostics.Stopwatch.StartNew();
        public int Nodes;
        public readonly List<(JsonSchemaSubset Node, List<JsonSchemaSubset> Raw)> PendingAnyOf = new();
    }

    /// <param name="closedObjects">Objects that declare properties but say nothing of additionalProperties refuse
    /// others (the default: a typed result must carry its declared properties, not arbitrary keys).</param>
    public static JsonSchemaSubset Parse(string schemaJson, bool closedObjects = true)
    {
        if (System.Text.Encoding.UTF8.GetByteCount(schemaJson) > MaxSchemaBytes)
            throw new JsonSchemaException($"the JSON schema is {System.Text.Encoding.UTF8.GetByteCount(schemaJson)} bytes; at most {MaxSchemaBytes} are accepted");
        try
        {
            using var doc = JsonDocument.Parse(schemaJson, new JsonDocumentOptions { MaxDepth = 2 * MaxDepth });
            return Parse(doc.RootElement, closedObjects);
        }
        catch (JsonException e)
        {
            throw new JsonSchemaException($"the JSON schema is not valid JSON: {e.Message}");
        }
    }

    public static JsonSchemaSubset Parse(JsonElement schema, bool closedObjects = true)
    {
        var ctx = new Context(schema, closedObjects);
        JsonSchemaSubset result;
        try
        {
            result = Parse(schema, ctx, 0, "#");
        }
        catch (InvalidOperationException e)
        {
            // A value of the wrong JSON kind somewhere the checks above did not foresee: still the client's schema.
            throw new JsonSchemaException($"the JSON schema is malformed: {e.Message}");
        }
        foreach (var (node, raw) in ctx.PendingAnyOf)
        {
            var flat = new List<JsonSchemaSubset>();
            Flatten(raw, flat, new HashSet<JsonSchemaSubset>(ReferenceEqualityComparer.Instance), 0);
            if (flat.Count == 0) throw new JsonSchemaException("the JSON schema allows no value at all (an anyOf/oneOf refers only to itself)", "anyOf");
            node.AnyOf = flat;
        }
        return result;
    }

    private static void Flatten(List<JsonSchemaSubset> alternatives, List<JsonSchemaSubset> flat, HashSet<JsonSchemaSubset> seen, int depth)
    {
        if (depth > MaxDepth) throw new JsonSchemaException($"anyOf/oneOf nest more than {MaxDepth} levels", "anyOf");
        foreach (var a in alternatives)
        {
            if (!seen.Add(a)) continue;
            if (a._rawAnyOf is { } inner) Flatten(inner, flat, seen, depth + 1);
            else flat.Add(a);
            if (flat.Count > MaxAlternatives)
                throw new JsonSchemaException($"anyOf/oneOf expands to more than {MaxAlternatives} distinct alternatives; the schema is too complex to enforce", "anyOf");
        }
    }

    private List<JsonSchemaSubset>? _rawAnyOf;

    private static JsonSchemaException Bad(string where, string message, string? keyword = null) => new($"{where}: {message}", keyword);

    private static JsonSchemaSubset Parse(JsonElement e, Context ctx, int depth, string where)
    {
        if (depth > MaxDepth) throw Bad(where, $"the JSON schema nests more than {MaxDepth} levels");
        if (++ctx.Nodes > MaxNodes) throw new JsonSchemaException($"the JSON schema has more than {MaxNodes} subschemas; it is too complex to compile");
        if (ctx.Clock.Elapsed > MaxCompileTime) throw new JsonSchemaException($"the JSON schema took more than {MaxCompileTime.TotalMilliseconds} ms to compile; it is too complex");
        if (e.ValueKind == JsonValueKind.True) return Any;
        if (e.ValueKind == JsonValueKind.False) throw Bad(where, "the schema false allows no value at all");
        if (e.ValueKind != JsonValueKind.Object) throw Bad(where, $"a JSON schema must be an object, got {e.ValueKind}");
        if (e.TryGetProperty("$ref", out var r)) return Ref(e, r, ctx, depth, where);

        var s = new JsonSchemaSubset();
        foreach (var p in e.EnumerateObject())
        {
            switch (p.Name)
            {
                case "type" or "properties" or "required" or "additionalProperties" or "items" or "minItems" or "maxItems"
                    or "minLength" or "maxLength" or "enum" or "const" or "anyOf" or "oneOf"
                    or "minimum" or "maximum" or "exclusiveMinimum" or "exclusiveMaximum":
                    break;
                case "uniqueItems" when p.Value.ValueKind == JsonValueKind.False:
                    break;
                case var name when Annotations.Contains(name):
                    break;
                default:
                    throw Bad(where, $"the schema keyword \"{p.Name}\" is not supported by constrained decoding (Scout enforces type, properties, required, additionalProperties, items, minItems/maxItems, minLength/maxLength, minimum/maximum/exclusiveMinimum/exclusiveMaximum, enum, const, anyOf/oneOf and $ref); remove it or use json_object", p.Name);
            }
        }
        if (e.TryGetProperty("type", out var type))
        {
            if (type.ValueKind == JsonValueKind.String) s.Kinds = Kind(type.GetString(), where);
            else if (type.ValueKind == JsonValueKind.Array)
            {
                s.Kinds = JsonKinds.None;
                foreach (var t in type.EnumerateArray())
                    s.Kinds |= t.ValueKind == JsonValueKind.String ? Kind(t.GetString(), where) : throw Bad(where, $"'type' entries must be type names, got {t.ValueKind}", "type");
            }
            else throw Bad(where, $"'type' must be a type name or an array of them, got {type.ValueKind}", "type");
            if (s.Kinds.HasFlag(JsonKinds.Number)) s.Kinds |= JsonKinds.Integer;
        }
        if (e.TryGetProperty("properties", out var props))
        {
            if (props.ValueKind != JsonValueKind.Object) throw Bad(where, $"'properties' must be an object, got {props.ValueKind}", "properties");
            foreach (var p in props.EnumerateObject()) s.Properties.Add((p.Name, Parse(p.Value, ctx, depth + 1, $"{where}/properties/{p.Name}")));
        }
        if (e.TryGetProperty("required", out var req))
        {
            if (req.ValueKind != JsonValueKind.Array) throw Bad(where, $"'required' must be an array of property names, got {req.ValueKind}", "required");
            foreach (var n in req.EnumerateArray())
                s.Required.Add(n.ValueKind == JsonValueKind.String ? n.GetString()! : throw Bad(where, $"'required' entries must be property names (strings), got {n.ValueKind}", "required"));
        }
        if (e.TryGetProperty("additionalProperties", out var ap))
        {
            if (ap.ValueKind == JsonValueKind.False) s.AdditionalProperties = false;
            else if (ap.ValueKind == JsonValueKind.Object) s.AdditionalSchema = Parse(ap, ctx, depth + 1, where + "/additionalProperties");
            else if (ap.ValueKind != JsonValueKind.True) throw Bad(where, $"'additionalProperties' must be a boolean or a schema, got {ap.ValueKind}", "additionalProperties");
        }
        else if (ctx.Closed && s.Properties.Count > 0)
        {
            s.AdditionalProperties = false;
        }
        if (!s.AdditionalProperties)
            foreach (var name in s.Required)
                if (!s.Properties.Any(p => p.Name == name))
                    throw Bad(where, $"the schema requires property \"{name}\" but does not declare it and refuses additional properties", "required");
        if (e.TryGetProperty("items", out var items))
        {
            if (items.ValueKind is JsonValueKind.Object or JsonValueKind.True) s.Items = Parse(items, ctx, depth + 1, where + "/items");
            else throw Bad(where, $"'items' must be a schema, got {items.ValueKind} (tuple forms are not supported)", "items");
        }
        s.MinItems = Count(e, "minItems", 0, where);
        s.MaxItems = Count(e, "maxItems", int.MaxValue, where);
        s.MinLength = Count(e, "minLength", 0, where);
        s.MaxLength = Count(e, "maxLength", int.MaxValue, where);
        if (s.MinItems > s.MaxItems) throw Bad(where, $"minItems {s.MinItems} exceeds maxItems {s.MaxItems}: no array is allowed", "minItems");
        if (s.MinLength > s.MaxLength) throw Bad(where, $"minLength {s.MinLength} exceeds maxLength {s.MaxLength}: no string is allowed", "minLength");
        s.Bounds = ParseBounds(e, where);
        if (e.TryGetProperty("enum", out var en))
        {
            if (en.ValueKind != JsonValueKind.Array) throw Bad(where, $"'enum' must be an array, got {en.ValueKind}", "enum");
            s.Enum = en.EnumerateArray().Select(v => JsonSerializer.SerializeToUtf8Bytes(v)).ToList();
        }
        if (e.TryGetProperty("const", out var c)) s.Enum = [JsonSerializer.SerializeToUtf8Bytes(c)];
        foreach (var key in new[] { "anyOf", "oneOf" })
        {
            if (!e.TryGetProperty(key, out var alts)) continue;
            if (alts.ValueKind != JsonValueKind.Array) throw Bad(where, $"'{key}' must be an array of schemas, got {alts.ValueKind}", key);
            if (s._rawAnyOf is not null) throw Bad(where, "a schema may not carry both anyOf and oneOf", key);
            int i = 0;
            s._rawAnyOf = alts.EnumerateArray().Select(a => Parse(a, ctx, depth + 1, $"{where}/{key}/{i++}")).ToList();
            if (s._rawAnyOf.Count == 0) throw Bad(where, $"'{key}' is empty: the schema allows no value at all", key);
            if (s.Properties.Count > 0 || s.Enum is not null || e.TryGetProperty("type", out _))
                throw Bad(where, $"'{key}' next to type/properties/enum is not supported; put those inside each alternative", key);
            ctx.PendingAnyOf.Add((s, s._rawAnyOf));
        }
        if (s.Enum is { Count: 0 } || s.Kinds == JsonKinds.None)
            throw Bad(where, "the JSON schema allows no value at all");
        return s;
    }

    private static JsonSchemaSubset Ref(JsonElement e, JsonElement r, Context ctx, int depth, string where)
    {
        if (r.ValueKind != JsonValueKind.String) throw Bad(where, $"'$ref' must be a string, got {r.ValueKind}", "$ref");
        string path = r.GetString()!;
        if (ctx.Refs.TryGetValue(path, out var known)) return known;
        string[] prefixes = ["#/$defs/", "#/definitions/"];
        var prefix = prefixes.FirstOrDefault(path.StartsWith)
                     ?? throw Bad(where, $"only local $ref to #/$defs/NAME or #/definitions/NAME is supported, got \"{path}\"", "$ref");
        string defsName = prefix[2..^1];
        if (ctx.Root.ValueKind != JsonValueKind.Object || !ctx.Root.TryGetProperty(defsName, out var defs) || defs.ValueKind != JsonValueKind.Object)
            throw Bad(where, $"$ref \"{path}\" needs a \"{defsName}\" object at the schema's root, which it lacks", "$ref");
        if (!defs.TryGetProperty(path[prefix.Length..], out var target))
            throw Bad(where, $"$ref \"{path}\" points to nothing", "$ref");
        if (target.ValueKind == JsonValueKind.Object && target.TryGetProperty("$ref", out _))
        {
            // A chain of references: follow it (a loop of pure references allows nothing).
            var seen = new HashSet<string>(StringComparer.Ordinal) { path };
            while (target.ValueKind == JsonValueKind.Object && target.TryGetProperty("$ref", out var next))
            {
                if (next.ValueKind != JsonValueKind.String) throw Bad(path, $"'$ref' must be a string, got {next.ValueKind}", "$ref");
                string np = next.GetString()!;
                if (!seen.Add(np)) throw Bad(where, $"$ref \"{path}\" loops through references only", "$ref");
                if (ctx.Refs.TryGetValue(np, out var k)) { ctx.Refs[path] = k; return k; }
                var pf = prefixes.FirstOrDefault(np.StartsWith) ?? throw Bad(path, $"only local $ref is supported, got \"{np}\"", "$ref");
                if (!ctx.Root.TryGetProperty(pf[2..^1], out var d2) || d2.ValueKind != JsonValueKind.Object || !d2.TryGetProperty(np[pf.Length..], out target))
                    throw Bad(path, $"$ref \"{np}\" points to nothing", "$ref");
            }
        }
        // Each definition compiles once (a DAG, not a tree: a schema referring to the next level several times stays
        // linear), and a recursive one refers to itself.
        var node = new JsonSchemaSubset();
        ctx.Refs[path] = node;
        var compiled = Parse(target, ctx, depth + 1, path);
        node.CopyFrom(compiled);
        if (compiled._rawAnyOf is not null)
        {
            int i = ctx.PendingAnyOf.FindIndex(x => ReferenceEquals(x.Node, compiled));
            ctx.PendingAnyOf[i] = (node, compiled._rawAnyOf);
        }
        return node;
    }

    private void CopyFrom(JsonSchemaSubset o)
    {
        Kinds = o.Kinds;
        Properties.AddRange(o.Properties);
        Required.UnionWith(o.Required);
        AdditionalProperties = o.AdditionalProperties;
        AdditionalSchema = o.AdditionalSchema;
        Items = o.Items;
        MinItems = o.MinItems; MaxItems = o.MaxItems; MinLength = o.MinLength; MaxLength = o.MaxLength;
        Bounds = o.Bounds;
        Enum = o.Enum;
        AnyOf = o.AnyOf;
        _rawAnyOf = o._rawAnyOf;
    }

    private static NumberBounds? ParseBounds(JsonElement e, string where)
    {
        decimal? Num(string key)
        {
            if (!e.TryGetProperty(key, out var v)) return null;
            if (v.ValueKind != JsonValueKind.Number) throw Bad(where, $"'{key}' must be a number, got {v.ValueKind}", key);
            double d = v.GetDouble();
            if (!double.IsFinite(d)) throw Bad(where, $"'{key}' is out of range", key);
            // Scout's numbers have at most 24 characters, so bounds past ±1e27 cannot bind: clamp them there.
            return v.TryGetDecimal(out var m) ? m : (decimal)Math.Clamp(d, -1e27, 1e27);
        }
        decimal? min = Num("minimum"), max = Num("maximum");
        bool minEx = false, maxEx = false;
        foreach (var (key, isMin) in new[] { ("exclusiveMinimum", true), ("exclusiveMaximum", false) })
        {
            if (!e.TryGetProperty(key, out var v)) continue;
            if (v.ValueKind is JsonValueKind.True or JsonValueKind.False)
            {
                // Draft 4: a flag on minimum/maximum.
                if (v.ValueKind == JsonValueKind.True && (isMin ? min : max) is null)
                    throw Bad(where, $"'{key}': true needs '{(isMin ? "minimum" : "maximum")}'", key);
                if (isMin) minEx = v.ValueKind == JsonValueKind.True; else maxEx = v.ValueKind == JsonValueKind.True;
                continue;
            }
            var x = Num(key)!.Value;
            if (isMin) { if (min is null || x >= min) { min = x; minEx = true; } }
            else if (max is null || x <= max) { max = x; maxEx = true; }
        }
        if (min is null && max is null) return null;
        if (min is { } lo && max is { } hi && (lo > hi || (lo == hi && (minEx || maxEx))))
            throw Bad(where, $"the bounds minimum {lo} / maximum {hi} allow no number", "minimum");
        return new NumberBounds(min, minEx, max, maxEx);
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

    private static int Count(JsonElement e, string name, int fallback, string where)
    {
        if (!e.TryGetProperty(name, out var v)) return fallback;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long l) || l < 0)
            throw Bad(where, $"'{name}' must be a non-negative integer, got {v.GetRawText()}", name);
        return (int)Math.Min(l, int.MaxValue);
    }

    private static JsonKinds Kind(string? name, string where) => name switch
    {
        "object" => JsonKinds.Object,
        "array" => JsonKinds.Array,
        "string" => JsonKinds.String,
        "number" => JsonKinds.Number,
        "integer" => JsonKinds.Integer,
        "boolean" => JsonKinds.Boolean,
        "null" => JsonKinds.Null,
        _ => throw Bad(where, $"unknown JSON schema type \"{name}\"", "type"),
    };

    public JsonSchemaSubset PropertySchema(string key)
        => Properties.FirstOrDefault(p => p.Name == key).Schema ?? AdditionalSchema ?? Any;
}
