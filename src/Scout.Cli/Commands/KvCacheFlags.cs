using System.CommandLine;
using Scout.Planning;

namespace Scout.Cli.Commands;

/// <summary>
/// K/V cache element types, as llama.cpp's <c>-ctk/-ctv</c>: f32, f16, bf16, q8_0, q4_0. The default is f16
/// (llama.cpp's too): half of f32's memory and bandwidth, logits within the bound the tests state.
/// </summary>
/// <param name="defaultType">the type when no flag is given (f16; `scout logits` uses f32, the exact reference)</param>
public sealed class KvCacheFlags(KvType? defaultType = null)
{
    private readonly KvType _default = defaultType ?? KvType.Default;

    public Option<string?> KeyType { get; } = new("--cache-type-k", "-ctk") { Description = $"K cache type: f32, f16, bf16, q8_0, q4_0 (default {(defaultType ?? KvType.Default).Name}, or --kv-type)" };
    public Option<string?> ValueType { get; } = new("--cache-type-v", "-ctv") { Description = $"V cache type: f32, f16, bf16, q8_0, q4_0 (default {(defaultType ?? KvType.Default).Name}, or --kv-type)" };
    public Option<string?> Both { get; } = new("--kv-type") { Description = $"K and V cache type at once (default {(defaultType ?? KvType.Default).Name})" };

    public IEnumerable<Option> All => [KeyType, ValueType, Both];

    public (KvType Key, KvType Value) Types(ParseResult p)
    {
        var both = Parse(p.GetValue(Both), "--kv-type") ?? _default;
        return (Parse(p.GetValue(KeyType), "--cache-type-k") ?? both, Parse(p.GetValue(ValueType), "--cache-type-v") ?? both);
    }

    private static KvType? Parse(string? name, string flag)
    {
        if (name is null) return null;
        try { return KvType.Parse(name); }
        catch (ArgumentException e) { throw new CliException($"{flag}: {e.Message}"); }
    }
}
