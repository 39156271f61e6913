using System.Text.Json;
using Scout.Formats;
using Scout.Tokenization;

namespace Scout.Tests.Tokenization;

/// <summary>Loads the fixture tokenizer once per test run, in each of the three forms (tokenizer.model, tokenizer.json, GGUF).</summary>
public static class TokenizerFixtures
{
    public static string ModelPath => Fixtures.Tokenizer("llama4/tokenizer.model");

    private static readonly Lazy<Llama4Tokenizer> _tiktoken = new(() => Llama4Tokenizer.Load(ModelPath));
    private static readonly Lazy<string> _derivedDir = new(DeriveFiles);
    private static readonly Lazy<Llama4Tokenizer> _hf = new(() => Llama4Tokenizer.Load(Path.Combine(_derivedDir.Value, "tokenizer.json")));
    private static readonly Lazy<Llama4Tokenizer> _gguf = new(() =>
    {
        using var gguf = GgufFile.Open(Path.Combine(_derivedDir.Value, "tokenizer-only.gguf"));
        return Llama4Tokenizer.FromGguf(gguf);
    });

    public static Llama4Tokenizer Tiktoken => _tiktoken.Value;
    public static Llama4Tokenizer HuggingFace => _hf.Value;
    public static Llama4Tokenizer Gguf => _gguf.Value;
    public static string DerivedJsonPath => Path.Combine(_derivedDir.Value, "tokenizer.json");
    public static string DerivedGgufPath => Path.Combine(_derivedDir.Value, "tokenizer-only.gguf");

    public static Llama4Tokenizer ByLoader(string loader) => loader switch
    {
        "tiktoken" => Tiktoken,
        "hf" => HuggingFace,
        "gguf" => Gguf,
        _ => throw new ArgumentException(loader),
    };

    public static readonly TheoryData<string> Loaders = new() { "tiktoken", "hf", "gguf" };

    public static IEnumerable<JsonElement> ReadJsonl(string file)
    {
        foreach (var line in File.ReadLines(Fixtures.Tokenizer(file)))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            yield return JsonDocument.Parse(line).RootElement;
        }
    }

    public static int[] Ids(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    /// <summary>Writes tokenizer.json and a tokenizer-only GGUF derived from tokenizer.model into a process-wide temp folder.</summary>
    private static string DeriveFiles()
    {
        var dir = Path.Combine(Path.GetTempPath(), "scout-tokenizer-derived-" + Environment.ProcessId);
        Directory.CreateDirectory(dir);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(dir, true); } catch (IOException) { } };
        var ranks = TiktokenConversion.ReadRanks(ModelPath);
        var merges = TiktokenConversion.Merges(ranks);
        TiktokenConversion.WriteHuggingFaceJson(Path.Combine(dir, "tokenizer.json"), ranks, merges, Llama4SpecialTokens.ToIds(ranks.Count));
        TiktokenConversion.WriteGguf(Path.Combine(dir, "tokenizer-only.gguf"), ranks, merges, Llama4SpecialTokens.ToIds(ranks.Count));
        return dir;
    }
}
