using Scout.Model;

namespace Scout.Planning;

/// <summary>Where a scheme's files come from, which decides the layout of the small tensors and of vision.</summary>
public enum SchemeFamily
{
    /// <summary>Hugging Face safetensors: every tensor in one float type.</summary>
    HuggingFace,
    /// <summary>llama.cpp GGUF (text file; vision ships separately as an mmproj file).</summary>
    Gguf,
    /// <summary>Meta's quantized checkpoints (llama-models fp8_mixed / int4_mixed): some FFN weights quantized, the rest bf16.</summary>
    Meta,
}

/// <summary>
/// A weight-storage scheme: which <see cref="StorageType"/> each tensor gets. For llama.cpp's schemes this follows
/// llama-quantize (llama_model_quantize_impl + llama_tensor_get_type): 1-D tensors, norms and the router stay F32;
/// the "_M" K-quant mixes and the output tensor get higher types; a row that is not a whole number of blocks falls
/// back to a 32-wide type.
/// </summary>
public sealed class QuantScheme
{
    private enum Kind { F32, BF16, F16, Fp8, Int4, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, Q3_K_M, Q2_K }

    private readonly Kind _kind;
    public string Name { get; }
    public SchemeFamily Family { get; }
    /// <summary>The type most weights get.</summary>
    public StorageType BaseType { get; }
    public string Description { get; }

    private QuantScheme(Kind kind, string name, SchemeFamily family, StorageType baseType, string description)
    {
        _kind = kind; Name = name; Family = family; BaseType = baseType; Description = description;
    }

    public static readonly QuantScheme F32 = new(Kind.F32, "F32", SchemeFamily.HuggingFace, StorageType.F32, "float32 everywhere (the test fixtures; what the engine computes in)");
    public static readonly QuantScheme BF16 = new(Kind.BF16, "BF16", SchemeFamily.HuggingFace, StorageType.BF16, "bfloat16 safetensors as published by Meta");
    public static readonly QuantScheme F16 = new(Kind.F16, "F16", SchemeFamily.Gguf, StorageType.F16, "GGUF F16: matrices f16; norms, routers, rope_freqs f32");
    public static readonly QuantScheme Fp8 = new(Kind.Fp8, "FP8", SchemeFamily.Meta, StorageType.Fp8RowWise,
        "Meta fp8_mixed: routed experts float8-e4m3 with one f32 scale per output row, except the first and last layer; everything else bf16");
    public static readonly QuantScheme Q8_0 = new(Kind.Q8_0, "Q8_0", SchemeFamily.Gguf, StorageType.Q8_0, "llama.cpp Q8_0 (34 bytes / 32 weights)");
    public static readonly QuantScheme Q6_K = new(Kind.Q6_K, "Q6_K", SchemeFamily.Gguf, StorageType.Q6_K, "llama.cpp Q6_K (210 bytes / 256 weights)");
    public static readonly QuantScheme Q5_K_M = new(Kind.Q5_K_M, "Q5_K_M", SchemeFamily.Gguf, StorageType.Q5_K, "llama.cpp Q5_K_M (Q5_K 176/256, some tensors Q6_K)");
    public static readonly QuantScheme Q4_K_M = new(Kind.Q4_K_M, "Q4_K_M", SchemeFamily.Gguf, StorageType.Q4_K, "llama.cpp Q4_K_M (Q4_K 144/256, some tensors Q6_K)");
    public static readonly QuantScheme Q4_0 = new(Kind.Q4_0, "Q4_0", SchemeFamily.Gguf, StorageType.Q4_0, "llama.cpp Q4_0 (18 bytes / 32 weights)");
    public static readonly QuantScheme Int4 = new(Kind.Int4, "INT4", SchemeFamily.Meta, StorageType.Int4G128,
        "Meta int4_mixed: routed and shared experts int4 with a bf16 scale per 128 weights; everything else bf16");
    public static readonly QuantScheme Q3_K_M = new(Kind.Q3_K_M, "Q3_K_M", SchemeFamily.Gguf, StorageType.Q3_K, "llama.cpp Q3_K_M (Q3_K 110/256, some tensors Q4_K/Q5_K)");
    public static readonly QuantScheme Q2_K = new(Kind.Q2_K, "Q2_K", SchemeFamily.Gguf, StorageType.Q2_K, "llama.cpp Q2_K (Q2_K 84/256, some tensors Q3_K/Q4_K)");

    /// <summary>The schemes a plan shows by default, largest first (F32 only on request).</summary>
    public static IReadOnlyList<QuantScheme> Standard { get; } = [BF16, F16, Fp8, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, Int4, Q3_K_M, Q2_K];
    public static IReadOnlyList<QuantScheme> All { get; } = [F32, .. Standard];

    public static QuantScheme Parse(string name)
    {
        string n = name.Trim().ToUpperInvariant().Replace('-', '_');
        return n switch
        {
            "FP16" => F16,
            "BFLOAT16" => BF16,
            "FLOAT32" or "FP32" => F32,
            "FP8" or "FP8_MIXED" or "F8" => Fp8,
            "INT4" or "INT4_MIXED" or "INT4_G128" or "W4A16" => Int4,
            _ => All.FirstOrDefault(s => s.Name == n)
                 ?? throw new ArgumentException($"unknown scheme '{name}' (known: {string.Join(", ", All.Select(s => s.Name))})"),
        };
    }

    /// <summary>The storage type of one text tensor of a model with config <paramref name="c"/>.</summary>
    public StorageType TypeFor(PlannedTensor t, Llama4Config c)
    {
        if (t.IsVision) return VisionTypeFor(t);
        switch (_kind)
        {
            case Kind.F32: return StorageType.F32;
            case Kind.BF16: return StorageType.BF16;
            case Kind.Fp8:
                // llama-models should_quantize_block(fp8_mixed): MoE blocks only, skipping layer 0 and the last layer.
                bool fp8 = t.IsRoutedExpert && t.Layer != 0 && t.Layer != c.NumLayers - 1;
                return fp8 ? StorageType.Fp8RowWise : StorageType.BF16;
            case Kind.Int4:
                bool int4 = (t.IsRoutedExpert || t.IsSharedExpert) && StorageType.Int4G128.FitsRow(t.RowLength);
                return int4 ? StorageType.Int4G128 : StorageType.BF16;
            default:
                return GgufType(t, c);
        }
    }

    /// <summary>Vision weights: bf16/f32 safetensors for Hugging Face and Meta schemes; a GGUF mmproj file (F16 matrices, F32 vectors) otherwise.</summary>
    public StorageType VisionTypeFor(PlannedTensor t) => Family switch
    {
        SchemeFamily.Gguf => t.Dimensions >= 2 ? StorageType.F16 : StorageType.F32,
        _ => _kind == Kind.F32 ? StorageType.F32 : StorageType.BF16,
    };

    /// <summary>llama-quantize's choice for one tensor (own implementation of the rules, see the class summary).</summary>
    private StorageType GgufType(PlannedTensor t, Llama4Config c)
    {
        // Not quantized at all: 1-D tensors, *_norm, the expert router. The converter writes those as F32.
        if (t.Dimensions < 2 || t.Role is TensorRole.Router or TensorRole.AttentionNorm or TensorRole.FfnNorm or TensorRole.OutputNorm or TensorRole.RopeFreqs)
            return StorageType.F32;
        if (_kind == Kind.F16) return StorageType.F16;

        StorageType type = BaseType;
        int layers = c.NumLayers;
        int experts = c.NumExperts;
        bool outputLike = t.Role == TensorRole.Output || (c.TieWordEmbeddings && t.Role == TensorRole.TokenEmbedding);
        if (outputLike)
        {
            // Output projection: Q6_K unless the scheme is Q8_0, Q8_0 when a row is not whole blocks.
            if (t.RowLength % BaseType.BlockElements != 0) type = StorageType.Q8_0;
            else if (BaseType != StorageType.Q8_0) type = StorageType.Q6_K;
        }
        else if (t.Role == TensorRole.AttentionV)
        {
            // attn_v tensors are counted in file order, one per layer, so their index is the layer index.
            int gqa = c.NumHeads / c.NumKvHeads;
            type = _kind switch
            {
                Kind.Q2_K => gqa >= 4 ? StorageType.Q4_K : StorageType.Q3_K,
                Kind.Q3_K_M => t.Layer < 2 ? StorageType.Q5_K : StorageType.Q4_K,
                Kind.Q4_K_M or Kind.Q5_K_M when UseMoreBits(t.Layer, layers) => StorageType.Q6_K,
                _ => type,
            };
            if (experts == 8) type = StorageType.Q8_0;
        }
        else if (t.Role == TensorRole.AttentionK)
        {
            if (experts == 8) type = StorageType.Q8_0;
        }
        else if (t.Role is TensorRole.RoutedDown or TensorRole.SharedDown or TensorRole.DenseDown)
        {
            // Every "ffn_down*" tensor; the layer comes from the name, the count is n_layer.
            type = _kind switch
            {
                Kind.Q2_K => StorageType.Q3_K,
                Kind.Q3_K_M => t.Layer < layers / 16 ? StorageType.Q5_K : StorageType.Q4_K,
                Kind.Q4_K_M or Kind.Q5_K_M when UseMoreBits(t.Layer, layers) => StorageType.Q6_K,
                _ => type,
            };
        }
        else if (t.Role == TensorRole.AttentionOutput)
        {
            if (experts == 8)
            {
                if (_kind is Kind.Q2_K or Kind.Q3_K_M or Kind.Q4_K_M) type = StorageType.Q5_K;
            }
            else
            {
                type = _kind switch { Kind.Q2_K => StorageType.Q3_K, Kind.Q3_K_M => StorageType.Q4_K, _ => type };
            }
        }
        return Fallback(type, t);
    }

    /// <summary>llama.cpp's use_more_bits: the first and last eighth of the layers and every third layer between.</summary>
    public static bool UseMoreBits(int layer, int layers)
        => layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

    private static StorageType Fallback(StorageType type, PlannedTensor t)
    {
        if (type.FitsRow(t.RowLength)) return type;
        StorageType fallback =
            type == StorageType.Q2_K || type == StorageType.Q3_K ? StorageType.IQ4_NL
            : type == StorageType.Q4_K ? StorageType.Q5_0
            : type == StorageType.Q5_K ? StorageType.Q5_1
            : type == StorageType.Q6_K ? StorageType.Q8_0
            : throw new InvalidDataException($"llama.cpp cannot store {t.Name} as {type}: its rows of {t.RowLength} weights are not a multiple of {type.BlockElements}");
        return fallback.FitsRow(t.RowLength) ? fallback : StorageType.F16;
    }

    public override string ToString() => Name;
}
