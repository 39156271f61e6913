using System.Text.Json;
using Scout.Formats;
using Scout.Model;

namespace Scout.Planning;

/// <summary>A model the planner knows without any files: its text config and its vision geometry.</summary>
public sealed record ModelPreset(string Key, string DisplayName, Llama4Config Text, VisionGeometry Vision, string Notes);

/// <summary>
/// Built-in presets with the published configurations of meta-llama/Llama-4-Scout-17B-16E-Instruct and
/// Llama-4-Maverick-17B-128E-Instruct (config.json as shipped on Hugging Face, trimmed to the fields that shape
/// memory). Parsed with <see cref="Llama4Config.FromJson"/> so presets and real files go through one reader.
/// </summary>
public static class ModelPresets
{
    // Shared by both models: the published vision_config (ViT-H/14-style encoder, 336 px tiles, pixel shuffle 0.5).
    private const string VisionJson = """
        {
          "model_type": "llama4_vision_model",
          "hidden_size": 1408, "num_hidden_layers": 34, "num_attention_heads": 16, "intermediate_size": 5632,
          "num_channels": 3, "image_size": 336, "patch_size": 14, "pixel_shuffle_ratio": 0.5,
          "projector_input_dim": 4096, "projector_output_dim": 4096, "vision_output_dim": 4096,
          "multi_modal_projector_bias": false, "norm_eps": 1e-05, "rope_theta": 10000, "hidden_act": "gelu"
        }
        """;

    public const string ScoutJson = """
        {
          "architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
          "boi_token_index": 200080, "eoi_token_index": 200081, "image_token_index": 200092,
          "tie_word_embeddings": false,
          "text_config": {
            "model_type": "llama4_text", "vocab_size": 202048, "hidden_size": 5120,
            "intermediate_size": 8192, "intermediate_size_mlp": 16384, "num_hidden_layers": 48,
            "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128,
            "num_local_experts": 16, "num_experts_per_tok": 1, "interleave_moe_layer_step": 1,
            "max_position_embeddings": 10485760, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
            "rope_scaling": { "rope_type": "llama3", "factor": 16.0, "low_freq_factor": 1.0, "high_freq_factor": 1.0,
                              "original_max_position_embeddings": 8192 },
            "no_rope_layer_interval": 4, "attention_chunk_size": 8192, "use_qk_norm": true,
            "attn_temperature_tuning": 4, "floor_scale": 8192, "attn_scale": 0.1,
            "bos_token_id": 200000, "eos_token_id": [200001, 200007, 200008], "pad_token_id": 200018,
            "tie_word_embeddings": false
          },
          "vision_config": VISION
        }
        """;

    public const string MaverickJson = """
        {
          "architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
          "boi_token_index": 200080, "eoi_token_index": 200081, "image_token_index": 200092,
          "tie_word_embeddings": false,
          "text_config": {
            "model_type": "llama4_text", "vocab_size": 202048, "hidden_size": 5120,
            "intermediate_size": 8192, "intermediate_size_mlp": 16384, "num_hidden_layers": 48,
            "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128,
            "num_local_experts": 128, "num_experts_per_tok": 1, "interleave_moe_layer_step": 2,
            "max_position_embeddings": 1048576, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
            "rope_scaling": null,
            "no_rope_layer_interval": 4, "attention_chunk_size": 8192, "use_qk_norm": false,
            "attn_temperature_tuning": true, "floor_scale": 8192, "attn_scale": 0.1,
            "bos_token_id": 200000, "eos_token_id": [200001, 200007, 200008], "pad_token_id": 200018,
            "tie_word_embeddings": false
          },
          "vision_config": VISION
        }
        """;

    private static readonly Lazy<ModelPreset> _scout = new(() => Build("scout", "Llama-4-Scout-17B-16E-Instruct", ScoutJson,
        "16 routed experts + 1 shared in every layer, top-1; 10M-token context (max_position_embeddings 10,485,760)"));
    private static readonly Lazy<ModelPreset> _maverick = new(() => Build("maverick", "Llama-4-Maverick-17B-128E-Instruct", MaverickJson,
        "128 routed experts + 1 shared on every other layer (dense 16384-wide FFN between), top-1, no QK-norm; 1M-token context"));

    public static ModelPreset Scout => _scout.Value;
    public static ModelPreset Maverick => _maverick.Value;
    public static IReadOnlyList<string> Names { get; } = ["scout", "maverick"];

    /// <summary>Finds a preset by name ("scout", "maverick", or a full model id); null when the name is not a preset.</summary>
    public static ModelPreset? Find(string name)
    {
        string n = name.Trim().ToLowerInvariant();
        if (n.Contains('/')) n = n[(n.LastIndexOf('/') + 1)..];
        return n switch
        {
            "scout" or "llama-4-scout" or "llama4-scout" or "llama-4-scout-17b-16e" or "llama-4-scout-17b-16e-instruct" => Scout,
            "maverick" or "llama-4-maverick" or "llama4-maverick" or "llama-4-maverick-17b-128e" or "llama-4-maverick-17b-128e-instruct" => Maverick,
            _ => null,
        };
    }

    private static ModelPreset Build(string key, string display, string json, string notes)
    {
        using var doc = JsonDocument.Parse(json.Replace("VISION", VisionJson));
        var text = Llama4Config.FromJson(doc.RootElement, display);
        var vision = VisionGeometry.FromJson(doc.RootElement.GetProperty("vision_config"), display);
        return new ModelPreset(key, display, text, vision, notes);
    }

    /// <summary>The vision geometry of a config that carries a vision_config, or null.</summary>
    public static VisionGeometry? VisionOf(Llama4Config config, string source)
        => config.VisionConfig is { } v ? VisionGeometry.FromJson(v, source) : null;

    internal static ModelLoadException Unknown(string name)
        => new($"unknown model '{name}': use a preset ({string.Join(", ", Names)}), a config.json, a Hugging Face folder or a .gguf file");
}
