using Scout.Tensors;

namespace Scout.Quantization;

/// <summary>The file-level choices of <c>scout quantize --type</c>, named as llama.cpp names them.</summary>
public enum QuantPreset { F32, F16, BF16, Q8_0, Q4_0, Q4_K_M, Q6_K }

/// <summary>
/// llama.cpp's per-tensor type rules (llama-quantize's tensor-type selection, restricted to the presets Scout
/// writes): which tensors are quantized at all, the output/attn_v/ffn_down/attn_k/attn_output exceptions, and the
/// fallback to 32-block types when a row is not a multiple of 256.
/// </summary>
public static class QuantMix
{
    public static QuantPreset Parse(string text) => text.Trim().ToUpperInvariant() switch
    {
        "F32" => QuantPreset.F32, "F16" => QuantPreset.F16, "BF16" => QuantPreset.BF16,
        "Q8_0" => QuantPreset.Q8_0, "Q4_0" => QuantPreset.Q4_0, "Q4_K_M" => QuantPreset.Q4_K_M, "Q6_K" => QuantPreset.Q6_K,
        _ => throw new ArgumentException($"unknown type '{text}' (expected Q4_0, Q8_0, Q4_K_M, Q6_K, F16, BF16 or F32)"),
    };

    /// <summary>general.file_type (llama_ftype) of each preset.</summary>
    public static uint FileType(QuantPreset p) => p switch
    {
        QuantPreset.F32 => 0, QuantPreset.F16 => 1, QuantPreset.Q4_0 => 2, QuantPreset.Q8_0 => 7,
        QuantPreset.Q4_K_M => 15, QuantPreset.Q6_K => 18, QuantPreset.BF16 => 32,
        _ => throw new ArgumentOutOfRangeException(nameof(p)),
    };

    public static TensorType DefaultType(QuantPreset p) => p switch
    {
        QuantPreset.F32 => TensorType.F32, QuantPreset.F16 => TensorType.F16, QuantPreset.BF16 => TensorType.BF16,
        QuantPreset.Q8_0 => TensorType.Q8_0, QuantPreset.Q4_0 => TensorType.Q4_0,
        QuantPreset.Q4_K_M => TensorType.Q4_K, QuantPreset.Q6_K => TensorType.Q6_K,
        _ => throw new ArgumentOutOfRangeException(nameof(p)),
    };

    public static bool IsQuantized(QuantPreset p) => !DefaultType(p).IsFloat();

    /// <summary>
    /// Tensors that keep F32 in every file: 1-D tensors (norms, rope_freqs), *_norm weights and the MoE router.
    /// </summary>
    public static bool StaysF32(string name, int dims)
        => dims < 2 || name.Contains("_norm.weight", StringComparison.Ordinal) || name.Contains("ffn_gate_inp.weight", StringComparison.Ordinal)
           || !name.EndsWith("weight", StringComparison.Ordinal);

    /// <summary>Whether llama.cpp's quantizer would pick a new type for this tensor at all (2-D+ weights only).</summary>
    public static bool IsQuantizable(string name, int dims) => !StaysF32(name, dims);

    private static bool UseMoreBits(int layer, int layers) => layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

    private static int LayerOf(string name)
    {
        if (!name.StartsWith("blk.", StringComparison.Ordinal)) return -1;
        int dot = name.IndexOf('.', 4);
        return dot > 4 && int.TryParse(name.AsSpan(4, dot - 4), out int l) ? l : -1;
    }

    /// <summary>
    /// The type llama-quantize gives tensor <paramref name="name"/> (ne[0] = <paramref name="rowLength"/>) in a
    /// <paramref name="preset"/> file of a model with <paramref name="layers"/> layers and <paramref name="experts"/>
    /// experts. <paramref name="hasOutput"/> is false when the output projection is tied to token_embd.
    /// Float presets follow the HF converter: F32 for 1-D/norm/router tensors, the preset's type otherwise.
    /// </summary>
    public static TensorType Choose(QuantPreset preset, string name, int dims, long rowLength, int layers, int experts, bool hasOutput = true)
    {
        if (StaysF32(name, dims)) return TensorType.F32;
        var type = DefaultType(preset);
        if (type.IsFloat()) return type;

        if (name == "output.weight" || (!hasOutput && name == "token_embd.weight"))
        {
            if (rowLength % type.BlockElements() != 0) type = TensorType.Q8_0;
            else if (type != TensorType.Q8_0) type = TensorType.Q6_K;
        }
        else if (name.Contains("attn_v.weight", StringComparison.Ordinal))
        {
            if (preset == QuantPreset.Q4_K_M && UseMoreBits(LayerOf(name), layers)) type = TensorType.Q6_K;
            if (experts == 8) type = TensorType.Q8_0; // llama.cpp: "for the 8-expert model, bumping this to Q8_0 trades just ~128MB"
        }
        else if (name.Contains("attn_k.weight", StringComparison.Ordinal))
        {
            if (experts == 8) type = TensorType.Q8_0;
        }
        else if (name.Contains("ffn_down", StringComparison.Ordinal))
        {
            if (preset == QuantPreset.Q4_K_M && UseMoreBits(LayerOf(name), layers)) type = TensorType.Q6_K;
        }
        else if (name.Contains("attn_output.weight", StringComparison.Ordinal))
        {
            if (experts == 8 && preset == QuantPreset.Q4_K_M) type = TensorType.Q5_K;
        }

        if (rowLength % type.BlockElements() != 0)
        {
            type = type switch
            {
                TensorType.Q4_K => TensorType.Q5_0,
                TensorType.Q5_K => TensorType.Q5_1,
                TensorType.Q6_K => TensorType.Q8_0,
                _ => type,
            };
            // llama.cpp gives up on 32-block types here; F16 keeps the file loadable instead.
            if (rowLength % type.BlockElements() != 0) type = TensorType.F16;
        }
        return type;
    }
}
