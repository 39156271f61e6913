using System.Text.Json;
using Scout.Formats;
using Scout.Model;

namespace Scout.Vision;

/// <summary>Merging image embeddings into a prompt (Meta's <c>MaskedEmbedding</c>): the k-th <c>&lt;|patch|&gt;</c> token gets row k.</summary>
public static class MultimodalPrompt
{
    public static int CountPatchTokens(ReadOnlySpan<int> tokens, int patchTokenId)
    {
        int count = 0;
        foreach (int t in tokens) if (t == patchTokenId) count++;
        return count;
    }

    /// <summary>
    /// Token embeddings [n, hidden] with the rows at <c>&lt;|patch|&gt;</c> positions replaced, in order, by
    /// <paramref name="imageEmbeddings"/> [patches, hidden]. The counts must be equal (Meta silently ignores extra rows; we refuse).
    /// </summary>
    public static float[] Embed(Llama4Model text, ReadOnlySpan<int> tokens, ReadOnlySpan<float> imageEmbeddings, int patchTokenId)
    {
        int d = text.Config.HiddenSize;
        if (imageEmbeddings.Length % d != 0)
            throw new ArgumentException($"image embeddings hold {imageEmbeddings.Length} floats, not a multiple of the hidden size {d}");
        int rows = imageEmbeddings.Length / d;
        int patches = CountPatchTokens(tokens, patchTokenId);
        if (patches != rows)
            throw new ArgumentException($"the prompt has {patches} <|patch|> tokens but the images give {rows} embedding rows ({rows / 144.0:0.##} tiles of 144); the prompt's image layout does not match the images");
        var h = new float[tokens.Length * d];
        int next = 0;
        for (int t = 0; t < tokens.Length; t++)
        {
            var dst = h.AsSpan(t * d, d);
            if (tokens[t] == patchTokenId)
            {
                imageEmbeddings.Slice(next * d, d).CopyTo(dst);
                next++;
            }
            else
            {
                text.Weights.Embed(tokens[t], dst);
            }
        }
        return h;
    }
}

/// <summary>The Llama 4 text model plus its vision path, loaded from one Hugging Face folder.</summary>
public sealed class VisionLanguageModel : IDisposable
{
    private readonly bool _ownsText;

    public Llama4Model Text { get; }
    public VisionEncoder Vision { get; }
    /// <summary>The ids of the image part of a prompt in this model's vocabulary (patch = config's image_token_index).</summary>
    public ImageTokenIds ImageTokens { get; }

    public VisionLanguageModel(Llama4Model text, VisionEncoder vision, ImageTokenIds imageTokens, bool ownsText = false)
    {
        if (vision.OutputDim != text.Config.HiddenSize)
            throw new ArgumentException($"the vision projector gives {vision.OutputDim} features, the text model needs {text.Config.HiddenSize}");
        Text = text;
        Vision = vision;
        ImageTokens = imageTokens;
        _ownsText = ownsText;
    }

    /// <summary>Loads text and vision weights from a folder (or .safetensors); see <see cref="Checkpoint.Open"/>.</summary>
    public static VisionLanguageModel Load(string path, string? configPath = null)
    {
        var text = Llama4Model.Load(path, configPath);
        try
        {
            var ckpt = text.Checkpoint ?? throw new ModelLoadException($"{path}: the model has no checkpoint to read vision weights from");
            var vision = VisionEncoder.Load(ckpt, text.Backend.HostPool);
            return new VisionLanguageModel(text, vision, ReadImageTokenIds(configPath ?? Path.Combine(ckpt.Folder, "config.json")), ownsText: true);
        }
        catch
        {
            text.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The image token ids from a config.json's boi_token_index / image_token_index (Llama 4 places the image
    /// specials at fixed offsets from the first special token); the published ids when the file does not say.
    /// </summary>
    public static ImageTokenIds ReadImageTokenIds(string configPath)
    {
        if (!File.Exists(configPath)) return ImageTokenIds.Llama4;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(configPath));
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException($"{Path.GetFileName(configPath)}: expected a JSON object, got {root.ValueKind}");
            int? Int(string name) => root.TryGetProperty(name, out var e) && e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int v) ? v : null;
            int? boi = Int("boi_token_index"), patch = Int("image_token_index");
            var ids = boi is { } b ? ImageTokenIds.ForFirstSpecialId(b - 80) : patch is { } p ? ImageTokenIds.ForFirstSpecialId(p - 92) : ImageTokenIds.Llama4;
            if (patch is { } pt && pt != ids.Patch) ids = ids with { Patch = pt };
            if (Int("eoi_token_index") is { } eoi && eoi != ids.ImageEnd) ids = ids with { ImageEnd = eoi };
            return ids;
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"{configPath}: malformed JSON: {e.Message}");
        }
    }

    /// <summary>Projected embeddings of several images, concatenated in order (the rows for the prompt's patch tokens).</summary>
    public float[] EmbedImages(IReadOnlyList<PreprocessedImage> images)
    {
        var parts = images.Select(Vision.EmbedImage).ToList();
        var all = new float[parts.Sum(p => p.Length)];
        int o = 0;
        foreach (var part in parts) { part.CopyTo(all, o); o += part.Length; }
        return all;
    }

    /// <summary>Token embeddings with the images merged in: [tokens, hidden].</summary>
    public float[] EmbedPrompt(ReadOnlySpan<int> tokens, IReadOnlyList<PreprocessedImage> images)
    {
        int expected = MultimodalPrompt.CountPatchTokens(tokens, ImageTokens.Patch);
        int given = images.Sum(i => i.TileCount * Vision.Config.TokensPerTile);
        if (expected != given)
            throw new ArgumentException($"the prompt has {expected} <|patch|> tokens, but the {images.Count} image(s) give {given} ({string.Join(" + ", images.Select(i => $"{i.TileCount} tiles"))} of {Vision.Config.TokensPerTile})");
        return MultimodalPrompt.Embed(Text, tokens, EmbedImages(images), ImageTokens.Patch);
    }

    /// <summary>Runs a prompt with images at positions cache.Length.. (one batched forward, like Meta's first forward).</summary>
    public void Forward(ReadOnlySpan<int> tokens, IReadOnlyList<PreprocessedImage> images, Model.KvCache cache, Span<float> logits, LogitsMode mode = LogitsMode.All)
    {
        var h = EmbedPrompt(tokens, images);
        Text.ForwardEmbeddings(h, tokens.Length, cache, logits, mode);
    }

    public void Dispose()
    {
        if (_ownsText) Text.Dispose();
    }
}
