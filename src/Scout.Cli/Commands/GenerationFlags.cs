using System.CommandLine;
using Scout.Generation;
using Scout.Model;

namespace Scout.Cli.Commands;

/// <summary>Model, tokenizer and sampling flags shared by run, chat and serve.</summary>
public sealed class GenerationFlags
{
    public readonly Option<string> Model = new("--model", "-m") { Description = "model folder, .safetensors or .gguf", Required = true };
    public readonly Option<string?> Tokenizer = new("--tokenizer") { Description = "tokenizer.model / tokenizer.json (default: next to the model, or the GGUF's own)" };
    public readonly Option<int> Context = new("--context", "-c") { Description = "context length in tokens", DefaultValueFactory = _ => 4096 };
    public readonly Option<float> Temperature = new("--temperature", "-t") { Description = "sampling temperature; 0 = greedy", DefaultValueFactory = _ => 0.6f };
    public readonly Option<int> TopK = new("--top-k") { Description = "keep the k most likely tokens (0 = off)", DefaultValueFactory = _ => 0 };
    public readonly Option<float> TopP = new("--top-p") { Description = "nucleus sampling threshold (1 = off)", DefaultValueFactory = _ => 0.9f };
    public readonly Option<float> MinP = new("--min-p") { Description = "drop tokens below min-p × the best one's probability", DefaultValueFactory = _ => 0f };
    public readonly Option<float> RepeatPenalty = new("--repeat-penalty") { Description = "repetition penalty over the last 64 tokens (1 = off)", DefaultValueFactory = _ => 1f };
    public readonly Option<float> PresencePenalty = new("--presence-penalty") { Description = "OpenAI presence penalty", DefaultValueFactory = _ => 0f };
    public readonly Option<float> FrequencyPenalty = new("--frequency-penalty") { Description = "OpenAI frequency penalty", DefaultValueFactory = _ => 0f };
    public readonly Option<long?> Seed = new("--seed") { Description = "random seed (same seed + prompt = same output)" };
    public readonly Option<int> MaxTokens = new("--max-tokens", "-n") { Description = "most tokens to generate", DefaultValueFactory = _ => 512 };
    public readonly Option<bool> CheckTensors = new("--check-tensors") { Description = "read every weight once at load and refuse NaN/infinite values or block scales" };
    public readonly Option<string[]> Stop = new("--stop") { Description = "stop string (repeatable)", AllowMultipleArgumentsPerToken = false };

    /// <summary>K/V cache element types (--cache-type-k/-v, --kv-type; f16 by default).</summary>
    public readonly KvCacheFlags Kv = new();
    public readonly DeviceFlags Device = new();

    public IEnumerable<Option> ModelOptions => [Model, Tokenizer, Context, CheckTensors, .. Kv.All, .. Device.Options];
    public IEnumerable<Option> SamplingFlags => [Temperature, TopK, TopP, MinP, RepeatPenalty, PresencePenalty, FrequencyPenalty, Seed, MaxTokens, Stop];

    public SamplingOptions Sampling(ParseResult p) => new()
    {
        Temperature = p.GetValue(Temperature),
        TopK = p.GetValue(TopK),
        TopP = p.GetValue(TopP),
        MinP = p.GetValue(MinP),
        RepetitionPenalty = p.GetValue(RepeatPenalty),
        PresencePenalty = p.GetValue(PresencePenalty),
        FrequencyPenalty = p.GetValue(FrequencyPenalty),
        Seed = p.GetValue(Seed),
    };

    public IReadOnlyList<string> StopStrings(ParseResult p) => p.GetValue(Stop) ?? [];

    /// <summary>Loads the tokenizer first (cheap, fails fast), then the weights with a progress bar on stderr.</summary>
    public (Llama4Model Model, TokenizerBundle Tokens) Load(ParseResult p, CliContext ctx)
    {
        string path = p.GetValue(Model)!;
        if (!File.Exists(path) && !Directory.Exists(path)) throw new CliException($"--model: {path} does not exist");
        if (p.GetValue(Context) < 2) throw new CliException($"--context must be at least 2, got {p.GetValue(Context)}");
        var tokens = TokenizerSource.Resolve(path, p.GetValue(Tokenizer));
        var model = CliModelLoader.Load(ctx, path, null, Device.Create(p), Device.LoadOptions(p, new LoadOptions { CheckTensors = p.GetValue(CheckTensors) }));
        if (tokens.Tokenizer.VocabSize > model.Config.VocabSize)
        {
            model.Dispose();
            throw new CliException($"the tokenizer has {tokens.Tokenizer.VocabSize} tokens but the model's vocabulary only {model.Config.VocabSize}: wrong --tokenizer?");
        }
        return (model, tokens);
    }
}
