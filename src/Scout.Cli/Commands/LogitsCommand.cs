using System.CommandLine;
using System.Text.Json;
using Scout.Model;
using Scout.Tensors;

namespace Scout.Cli.Commands;

/// <summary>`scout logits`: raw float32 logits [n_tokens, vocab] for the ids in a tokens.json.</summary>
public static class LogitsCommand
{
    public static Command Create(CliContext ctx)
    {
        var model = new Option<string>("--model", "-m") { Description = "model folder, .safetensors or .gguf", Required = true };
        var config = new Option<string?>("--config") { Description = "config.json overriding values the weights file does not carry" };
        var tokens = new Option<string>("--tokens") { Description = "JSON file {\"input_ids\": [...]}", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "output file (raw little-endian float32)", Required = true };
        var decode = new Option<bool>("--decode") { Description = "one token at a time through the KV cache instead of one batched forward" };
        var quantize = new Option<string?>("--quantize") { Description = "quantize float weights at load time (Q4_0, Q8_0, Q4_K, Q6_K, ...)" };
        var images = new Option<string[]>("--image") { Description = "image files filling the prompt's <|patch|> runs, in order", AllowMultipleArgumentsPerToken = false };
        var cmd = new Command("logits", "Write the logits of every position for a token sequence") { model, config, tokens, output, decode, images, quantize };
        ctx.SetAction(cmd, p =>
        {
            var ids = ReadTokens(p.GetValue(tokens)!);
            using var m = Llama4Model.Load(p.GetValue(model)!, p.GetValue(config), options: ParseLoadOptions(p.GetValue(quantize)));
            var logits = Compute(m, ids, p.GetValue(decode));
            using (var fs = File.Create(p.GetValue(output)!))
                fs.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(logits.AsSpan()));
            ctx.Err.WriteLine($"wrote {ids.Length} x {m.Config.VocabSize} logits to {p.GetValue(output)}");
            return 0;
        });
        return cmd;
    }

    /// <summary>--quantize TYPE → load options (null when not given).</summary>
    public static LoadOptions? ParseLoadOptions(string? quantize)
    {
        if (quantize is null) return null;
        if (!Enum.TryParse<TensorType>(quantize, ignoreCase: true, out var t) || t.IsFloat() || !Scout.Kernels.Quant.Quantizer.CanEncode(t))
            throw new CliException($"--quantize: unknown or unsupported block type '{quantize}' (expected Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K or Q6_K)");
        return new LoadOptions { Quantize = t };
    }

    public static float[] Compute(Llama4Model m, int[] ids, bool decode)
    {
        int vocab = m.Config.VocabSize;
        var logits = new float[ids.Length * vocab];
        var cache = m.CreateCache(Math.Max(ids.Length, 1));
        if (decode)
        {
            for (int t = 0; t < ids.Length; t++)
                m.Forward(ids.AsSpan(t, 1), cache, logits.AsSpan(t * vocab, vocab), LogitsMode.All);
        }
        else
        {
            m.Forward(ids, cache, logits, LogitsMode.All);
        }
        return logits;
    }

    public static int[] ReadTokens(string path)
    {
        if (!File.Exists(path)) throw new CliException($"tokens file not found: {path}");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            var arr = root.ValueKind == JsonValueKind.Array ? root
                : root.TryGetProperty("input_ids", out var a) ? a
                : throw new CliException($"{path}: expected {{\"input_ids\": [...]}}");
            if (arr.ValueKind != JsonValueKind.Array) throw new CliException($"{path}: input_ids must be an array of integers");
            var ids = arr.EnumerateArray().Select(e => e.TryGetInt32(out int v) ? v : throw new CliException($"{path}: token id {e} is not an integer")).ToArray();
            if (ids.Length == 0) throw new CliException($"{path}: input_ids is empty");
            return ids;
        }
        catch (JsonException e)
        {
            throw new CliException($"{path}: malformed JSON: {e.Message}");
        }
    }
}
