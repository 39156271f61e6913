using System.CommandLine;
using System.Text.Json;
using Scout.Model;
using Scout.Tensors;
using Scout.Vision;

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
        var check = new Option<bool>("--check-tensors") { Description = "read every weight once at load and refuse NaN/infinite values or block scales" };
        var images = new Option<string[]>("--image") { Description = "image files filling the prompt's <|patch|> runs, in order", AllowMultipleArgumentsPerToken = false };
        var kv = new KvCacheFlags(Scout.Planning.KvType.F32);
        var deviceFlags = new DeviceFlags();
        var cmd = new Command("logits", "Write the logits of every position for a token sequence") { model, config, tokens, output, decode, images, quantize, check, kv.KeyType, kv.ValueType, kv.Both };
        foreach (var o in deviceFlags.Options) cmd.Options.Add(o);
        ctx.SetAction(cmd, p =>
        {
            var ids = ReadTokens(p.GetValue(tokens)!);
            var (keyType, valueType) = kv.Types(p);
            var imagePaths = p.GetValue(images) ?? [];
            float[] logits;
            int vocab;
            if (imagePaths.Length > 0 || ids.Contains(ImageTokenIds.Llama4.Patch) || PromptHasPatchTokens(p.GetValue(model)!, p.GetValue(config), ids))
            {
                // Images first: a bad file fails before the (slow) model load.
                var prepared = PrepareImages(imagePaths);
                using var vlm = VisionLanguageModel.Load(p.GetValue(model)!, p.GetValue(config));
                logits = ComputeWithImages(vlm, ids, prepared, p.GetValue(decode));
                vocab = vlm.Text.Config.VocabSize;
            }
            else
            {
                using var m = Llama4Model.Load(p.GetValue(model)!, p.GetValue(config),
                    options: deviceFlags.LoadOptions(p, ParseLoadOptions(p.GetValue(quantize), p.GetValue(check))),
                    backend: deviceFlags.Create(p), ownsBackend: true);
                logits = Compute(m, ids, p.GetValue(decode), keyType, valueType);
                vocab = m.Config.VocabSize;
            }
            CheckFinite(logits, vocab);
            using (var fs = File.Create(p.GetValue(output)!))
                fs.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(logits.AsSpan()));
            ctx.Err.WriteLine($"wrote {ids.Length} x {vocab} logits to {p.GetValue(output)}");
            return 0;
        });
        return cmd;
    }

    /// <summary>--quantize TYPE → load options (null when not given).</summary>
    public static LoadOptions? ParseLoadOptions(string? quantize, bool checkTensors = false)
    {
        if (quantize is null) return checkTensors ? new LoadOptions { CheckTensors = true } : null;
        if (!Enum.TryParse<TensorType>(quantize, ignoreCase: true, out var t) || t.IsFloat() || !Scout.Kernels.Quant.Quantizer.CanEncode(t))
            throw new CliException($"--quantize: unknown or unsupported block type '{quantize}' (expected Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K or Q6_K)");
        return new LoadOptions { Quantize = t, CheckTensors = checkTensors };
    }

    /// <summary>Refuses logits holding NaN/infinity, naming the first position (exit 1, nothing written).</summary>
    public static void CheckFinite(float[] logits, int vocab)
    {
        int bad = TensorScan.FirstNonFinite(logits);
        if (bad >= 0)
            throw new NonFiniteException($"the model produced a non-finite logit ({logits[bad]}) at position {bad / vocab} (token id {bad % vocab}): the weights or the model's metadata are corrupt (try --check-tensors)");
    }

    /// <summary>Logits of every position, K/V cached as f32 unless told.</summary>
    public static float[] Compute(Llama4Model m, int[] ids, bool decode, Scout.Planning.KvType? keyType = null, Scout.Planning.KvType? valueType = null)
    {
        int vocab = m.Config.VocabSize;
        if (ids.Length > m.Config.MaxPositionEmbeddings)
            throw new CliException($"{ids.Length} tokens exceed the model's context length (max_position_embeddings / context_length {m.Config.MaxPositionEmbeddings})");
        var logits = new float[ids.Length * vocab];
        using var cache = m.CreateCache(Math.Max(ids.Length, 1), keyType, valueType);
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

    /// <summary>Whether the ids hold the model's &lt;|patch|&gt; token (read from its config.json), so images are required.</summary>
    private static bool PromptHasPatchTokens(string model, string? config, int[] ids)
    {
        string cfg = config ?? (Directory.Exists(model) ? Path.Combine(model, "config.json") : Path.Combine(Path.GetDirectoryName(Path.GetFullPath(model)) ?? ".", "config.json"));
        if (!File.Exists(cfg)) return false;
        int patch = VisionLanguageModel.ReadImageTokenIds(cfg).Patch;
        return ids.Contains(patch);
    }

    /// <summary>Logits for a prompt whose &lt;|patch|&gt; runs are filled with the images' embeddings, in order.</summary>
    public static float[] ComputeWithImages(VisionLanguageModel vlm, int[] ids, string[] imagePaths, bool decode)
        => ComputeWithImages(vlm, ids, PrepareImages(imagePaths), decode);

    /// <summary>Decodes and tiles image files (or data URLs) in order.</summary>
    public static List<PreprocessedImage> PrepareImages(IEnumerable<string> paths)
        => paths.Select(path => ImagePreprocessor.Preprocess(ImageInput.Load(path))).ToList();

    public static float[] ComputeWithImages(VisionLanguageModel vlm, int[] ids, IReadOnlyList<PreprocessedImage> prepared, bool decode)
    {
        int patches = MultimodalPrompt.CountPatchTokens(ids, vlm.ImageTokens.Patch);
        if (patches > 0 && prepared.Count == 0)
            throw new CliException($"the prompt has {patches} <|patch|> tokens (id {vlm.ImageTokens.Patch}); pass the images with --image, in prompt order");
        if (patches == 0 && prepared.Count > 0)
            throw new CliException($"{prepared.Count} image(s) given, but the prompt has no <|patch|> tokens (id {vlm.ImageTokens.Patch}) to fill");
        int runs = CountImageStarts(ids, vlm.ImageTokens.ImageStart);
        if (runs != 0 && runs != prepared.Count)
            throw new CliException($"the prompt has {runs} image(s) (<|image_start|> tokens) but {prepared.Count} --image file(s) were given");
        var h = vlm.EmbedPrompt(ids, prepared);
        int vocab = vlm.Text.Config.VocabSize, d = vlm.Text.Config.HiddenSize;
        var logits = new float[ids.Length * vocab];
        var cache = vlm.Text.CreateCache(Math.Max(ids.Length, 1));
        if (decode)
        {
            for (int t = 0; t < ids.Length; t++)
                vlm.Text.ForwardEmbeddings(h.AsSpan(t * d, d).ToArray(), 1, cache, logits.AsSpan(t * vocab, vocab), LogitsMode.All);
        }
        else
        {
            vlm.Text.ForwardEmbeddings(h, ids.Length, cache, logits, LogitsMode.All);
        }
        return logits;
    }

    private static int CountImageStarts(int[] ids, int imageStart) => ids.Count(t => t == imageStart);

    public static int[] ReadTokens(string path)
    {
        if (!File.Exists(path)) throw new CliException($"tokens file not found: {path}");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            var arr = root.ValueKind == JsonValueKind.Array ? root
                : root.ValueKind == JsonValueKind.Object && root.TryGetProperty("input_ids", out var a) ? a
                : throw new CliException($"{path}: expected {{\"input_ids\": [...]}} (or an array of ids), got {root.ValueKind}");
            if (arr.ValueKind != JsonValueKind.Array) throw new CliException($"{path}: input_ids must be an array of integers, got {arr.ValueKind}");
            int index = 0;
            var ids = arr.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int v) && v >= 0 ? (index++ >= 0 ? v : v)
                : throw new CliException($"{path}: input_ids[{index}] = {(e.ValueKind == JsonValueKind.String ? $"\"{e.GetRawText().Trim('"')}\"" : e.GetRawText())} is not a token id (a non-negative integer)")).ToArray();
            if (ids.Length == 0) throw new CliException($"{path}: input_ids is empty");
            return ids;
        }
        catch (JsonException e)
        {
            throw new CliException($"{path}: malformed JSON: {e.Message}");
        }
    }
}
