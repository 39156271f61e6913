using System.Text.Json;
using Scout.Formats;

namespace Scout.Vision;

/// <summary>The Llama 4 <c>vision_config</c> (Hugging Face names).</summary>
public sealed record VisionConfig
{
    public int HiddenSize { get; init; } = 1408;
    public int IntermediateSize { get; init; } = 5632;
    public int NumLayers { get; init; } = 34;
    public int NumHeads { get; init; } = 16;
    public int NumChannels { get; init; } = 3;
    public int ImageSize { get; init; } = 336;
    public int PatchSize { get; init; } = 14;
    public double NormEps { get; init; } = 1e-5;
    public double PixelShuffleRatio { get; init; } = 0.5;
    public int ProjectorInputDim { get; init; } = 4096;
    public int ProjectorOutputDim { get; init; } = 4096;
    public int VisionOutputDim { get; init; } = 4096;
    public double RopeTheta { get; init; } = 10000;

    public int HeadDim => HiddenSize / NumHeads;
    /// <summary>Patches per side of a tile (24).</summary>
    public int GridSize => ImageSize / PatchSize;
    public int PatchesPerTile => GridSize * GridSize;
    /// <summary>Values per patch: channels·patch² (588).</summary>
    public int PatchValues => NumChannels * PatchSize * PatchSize;
    /// <summary>Pixel-shuffle block side: 1/ratio (2).</summary>
    public int ShuffleFactor => (int)Math.Round(1 / PixelShuffleRatio);
    /// <summary><c>&lt;|patch|&gt;</c> tokens per tile (144).</summary>
    public int TokensPerTile => PatchesPerTile / (ShuffleFactor * ShuffleFactor);

    public static VisionConfig FromJson(JsonElement v, string source = "vision_config")
    {
        int Int(string name, int fallback) => v.TryGetProperty(name, out var e) && e.ValueKind == JsonValueKind.Number ? e.GetInt32() : fallback;
        double Dbl(string name, double fallback) => v.TryGetProperty(name, out var e) && e.ValueKind == JsonValueKind.Number ? e.GetDouble() : fallback;
        var d = new VisionConfig();
        var c = new VisionConfig
        {
            HiddenSize = Int("hidden_size", d.HiddenSize),
            IntermediateSize = Int("intermediate_size", d.IntermediateSize),
            NumLayers = Int("num_hidden_layers", d.NumLayers),
            NumHeads = Int("num_attention_heads", d.NumHeads),
            NumChannels = Int("num_channels", d.NumChannels),
            ImageSize = Int("image_size", d.ImageSize),
            PatchSize = Int("patch_size", d.PatchSize),
            NormEps = Dbl("norm_eps", d.NormEps),
            PixelShuffleRatio = Dbl("pixel_shuffle_ratio", d.PixelShuffleRatio),
            ProjectorInputDim = Int("projector_input_dim", d.ProjectorInputDim),
            ProjectorOutputDim = Int("projector_output_dim", d.ProjectorOutputDim),
            VisionOutputDim = Int("vision_output_dim", d.VisionOutputDim),
            RopeTheta = Dbl("rope_theta", d.RopeTheta),
        };
        c.Validate(source);
        return c;
    }

    public void Validate(string source)
    {
        void Fail(string what) => throw new ModelLoadException($"{source}: {what}");
        if (HiddenSize <= 0 || NumHeads <= 0 || HiddenSize % NumHeads != 0) Fail($"hidden_size {HiddenSize} is not a positive multiple of num_attention_heads {NumHeads}");
        if (HeadDim % 4 != 0) Fail($"vision head dim {HeadDim} must be a multiple of 4 for the 2D RoPE");
        if (PatchSize <= 0 || ImageSize <= 0 || ImageSize % PatchSize != 0) Fail($"image_size {ImageSize} is not a multiple of patch_size {PatchSize}");
        if (NumLayers < 0) Fail($"num_hidden_layers {NumLayers} is negative");
        if (NumChannels != 3) Fail($"num_channels {NumChannels}: only RGB (3) is supported");
        int f = ShuffleFactor;
        if (f < 1 || Math.Abs(1.0 / f - PixelShuffleRatio) > 1e-9 || GridSize % f != 0)
            Fail($"pixel_shuffle_ratio {PixelShuffleRatio} must be 1/k with k dividing the patch grid {GridSize}");
    }
}
