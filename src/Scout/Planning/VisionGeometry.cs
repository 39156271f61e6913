using System.Text.Json;
using Scout.Formats;

namespace Scout.Planning;

/// <summary>
/// Shape of Llama 4's image path (Hugging Face <c>vision_config</c> names): the ViT encoder, the pixel-shuffle
/// adapter MLP and the projector into the text model's hidden size.
/// </summary>
public sealed record VisionGeometry
{
    public required int HiddenSize { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    /// <summary>Encoder MLP width.</summary>
    public required int IntermediateSize { get; init; }
    public int NumChannels { get; init; } = 3;
    public int ImageSize { get; init; } = 336;
    public int PatchSize { get; init; } = 14;
    public double PixelShuffleRatio { get; init; } = 0.5;
    /// <summary>Adapter fc1 output width.</summary>
    public required int ProjectorInputDim { get; init; }
    /// <summary>Adapter fc2 output width.</summary>
    public required int ProjectorOutputDim { get; init; }
    /// <summary>Projector input width (the adapter's output).</summary>
    public required int VisionOutputDim { get; init; }

    public int PatchesPerSide => ImageSize / PatchSize;
    /// <summary>Encoder tokens per tile: the patch grid plus the class token.</summary>
    public int TokensPerTile => PatchesPerSide * PatchesPerSide + 1;
    /// <summary>Adapter input width: pixel shuffle folds 1/ratio² patches into one token (Meta: hidden / ratio²).</summary>
    public int ShuffledWidth => (int)Math.Round(HiddenSize / (PixelShuffleRatio * PixelShuffleRatio));
    /// <summary>Text tokens (&lt;|patch|&gt;) one 336×336 tile becomes.</summary>
    public int TextTokensPerTile => (int)Math.Round(PatchesPerSide * PatchesPerSide * PixelShuffleRatio * PixelShuffleRatio);

    public static VisionGeometry FromJson(JsonElement v, string source = "vision_config")
    {
        if (v.ValueKind != JsonValueKind.Object) throw new ModelLoadException($"{source}: vision_config must be an object");
        int Req(string name)
        {
            if (!v.TryGetProperty(name, out var e) || e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int i))
                throw new ModelLoadException($"{source}: vision_config.{name} is missing or not an integer");
            if (i <= 0) throw new ModelLoadException($"{source}: vision_config.{name} must be positive, got {i}");
            return i;
        }
        int Opt(string name, int fallback) => v.TryGetProperty(name, out var e) && e.ValueKind == JsonValueKind.Number ? Req(name) : fallback;
        double ratio = v.TryGetProperty("pixel_shuffle_ratio", out var r) && r.ValueKind == JsonValueKind.Number ? r.GetDouble() : 0.5;
        if (!(ratio > 0 && ratio <= 1)) throw new ModelLoadException($"{source}: vision_config.pixel_shuffle_ratio must be in (0, 1], got {ratio}");
        var g = new VisionGeometry
        {
            HiddenSize = Req("hidden_size"),
            NumLayers = Req("num_hidden_layers"),
            NumHeads = Req("num_attention_heads"),
            IntermediateSize = Req("intermediate_size"),
            NumChannels = Opt("num_channels", 3),
            ImageSize = Opt("image_size", 336),
            PatchSize = Opt("patch_size", 14),
            PixelShuffleRatio = ratio,
            ProjectorInputDim = Req("projector_input_dim"),
            ProjectorOutputDim = Req("projector_output_dim"),
            VisionOutputDim = Req("vision_output_dim"),
        };
        if (g.ImageSize % g.PatchSize != 0)
            throw new ModelLoadException($"{source}: image_size {g.ImageSize} is not a multiple of patch_size {g.PatchSize}");
        return g;
    }
}
