using System.Text.Json;
using Scout.Formats;

namespace Scout.Model;

/// <summary>llama3-style RoPE frequency scaling (Llama 4 Scout: factor 16, low 1, high 4, original 8192).</summary>
public sealed record RopeScaling(double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositions);

/// <summary>
/// The text model's hyper-parameters, read from a Hugging Face config.json (Llama4Config with text_config, or a
/// bare llama4_text config) or from a GGUF's llama4.* metadata. Names follow Hugging Face.
/// </summary>
public sealed record Llama4Config
{
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    /// <summary>Width of each routed expert and of the shared expert.</summary>
    public required int IntermediateSize { get; init; }
    /// <summary>Width of the dense FFN of non-MoE layers.</summary>
    public required int IntermediateSizeMlp { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public required int NumKvHeads { get; init; }
    public required int HeadDim { get; init; }
    public double RmsNormEps { get; init; } = 1e-5;
    public double RopeTheta { get; init; } = 500000;
    public RopeScaling? RopeScaling { get; init; }
    public int NumExperts { get; init; }
    public int TopK { get; init; } = 1;
    public int InterleaveMoeLayerStep { get; init; } = 1;
    /// <summary>Per layer: true when the layer is MoE.</summary>
    public required bool[] MoeLayers { get; init; }
    /// <summary>Per layer: true when the layer uses RoPE + chunked attention; false for NoPE/global layers.</summary>
    public required bool[] RopeLayers { get; init; }
    public int AttentionChunkSize { get; init; } = 8192;
    public bool UseQkNorm { get; init; } = true;
    public bool AttnTemperatureTuning { get; init; } = true;
    public double FloorScale { get; init; } = 8192;
    public double AttnScale { get; init; } = 0.1;
    public bool TieWordEmbeddings { get; init; }
    public int MaxPositionEmbeddings { get; init; } = 10485760;
    public int? BosTokenId { get; init; }
    public int[] EosTokenIds { get; init; } = [];
    public int? PadTokenId { get; init; }
    /// <summary>The raw vision_config of a multimodal checkpoint, when present.</summary>
    public JsonElement? VisionConfig { get; init; }

    public int KvDim => NumKvHeads * HeadDim;
    public int QDim => NumHeads * HeadDim;
    public bool IsMoeLayer(int layer) => MoeLayers[layer];
    public bool UsesRope(int layer) => RopeLayers[layer];

    /// <summary>Reads a config.json (a Llama4Config with text_config, or a bare llama4_text config).</summary>
    public static Llama4Config FromJsonFile(string path)
    {
        if (!File.Exists(path))
            throw new ModelLoadException($"config not found: {path}");
        string text = File.ReadAllText(path);
        try
        {
            using var doc = JsonDocument.Parse(text, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
            return FromJson(doc.RootElement, Path.GetFileName(path));
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"{Path.GetFileName(path)}: malformed JSON: {e.Message}");
        }
    }

    public static Llama4Config FromJson(JsonElement root, string source = "config.json")
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new ModelLoadException($"{source}: expected a JSON object");
        JsonElement? vision = null;
        var t = root;
        if (root.TryGetProperty("text_config", out var tc) && tc.ValueKind == JsonValueKind.Object)
        {
            t = tc;
            if (root.TryGetProperty("vision_config", out var vc) && vc.ValueKind == JsonValueKind.Object)
                vision = vc.Clone();
        }
        string? modelType = Str(t, "model_type") ?? Str(root, "model_type");
        if (modelType is not null && modelType is not ("llama4_text" or "llama4"))
            throw new ModelLoadException($"{source}: model_type '{modelType}' is not a Llama 4 model (expected llama4 or llama4_text)");

        int layers = ReqInt(t, "num_hidden_layers", source);
        int hidden = ReqInt(t, "hidden_size", source);
        int heads = ReqInt(t, "num_attention_heads", source);
        int kvHeads = Int(t, "num_key_value_heads") ?? heads;
        int headDim = Int(t, "head_dim") ?? hidden / heads;
        int experts = Int(t, "num_local_experts") ?? 0;
        int step = Int(t, "interleave_moe_layer_step") ?? 1;

        var moe = new bool[layers];
        if (t.TryGetProperty("moe_layers", out var ml) && ml.ValueKind == JsonValueKind.Array && ml.GetArrayLength() > 0)
        {
            foreach (var e in ml.EnumerateArray())
            {
                int i = e.GetInt32();
                if (i < 0 || i >= layers) throw new ModelLoadException($"{source}: moe_layers entry {i} is outside 0..{layers - 1}");
                moe[i] = true;
            }
        }
        else if (experts > 0 && step > 0)
        {
            for (int i = 0; i < layers; i++) moe[i] = (i + 1) % step == 0;
        }

        int interval = Int(t, "no_rope_layer_interval") ?? 4;
        var rope = new bool[layers];
        if (t.TryGetProperty("no_rope_layers", out var nr) && nr.ValueKind == JsonValueKind.Array && nr.GetArrayLength() > 0)
        {
            if (nr.GetArrayLength() != layers)
                throw new ModelLoadException($"{source}: no_rope_layers has {nr.GetArrayLength()} entries for {layers} layers");
            int i = 0;
            foreach (var e in nr.EnumerateArray()) rope[i++] = e.ValueKind == JsonValueKind.True || (e.ValueKind == JsonValueKind.Number && e.GetInt32() != 0);
        }
        else
        {
            for (int i = 0; i < layers; i++) rope[i] = (i + 1) % interval != 0;
        }

        RopeScaling? scaling = null;
        if (t.TryGetProperty("rope_scaling", out var rs) && rs.ValueKind == JsonValueKind.Object)
        {
            string? kind = Str(rs, "rope_type") ?? Str(rs, "type");
            if (kind is not null && kind != "llama3" && kind != "default")
                throw new ModelLoadException($"{source}: rope_scaling type '{kind}' is not supported (llama3 only)");
            if (kind != "default")
                scaling = new RopeScaling(Dbl(rs, "factor") ?? 8, Dbl(rs, "low_freq_factor") ?? 1, Dbl(rs, "high_freq_factor") ?? 4,
                    Int(rs, "original_max_position_embeddings") ?? 8192);
        }

        var eos = new List<int>();
        if (t.TryGetProperty("eos_token_id", out var eosEl) || root.TryGetProperty("eos_token_id", out eosEl))
        {
            if (eosEl.ValueKind == JsonValueKind.Number) eos.Add(eosEl.GetInt32());
            else if (eosEl.ValueKind == JsonValueKind.Array) foreach (var e in eosEl.EnumerateArray()) eos.Add(e.GetInt32());
        }

        var cfg = new Llama4Config
        {
            VocabSize = ReqInt(t, "vocab_size", source),
            HiddenSize = hidden,
            IntermediateSize = Int(t, "intermediate_size") ?? 8192,
            IntermediateSizeMlp = Int(t, "intermediate_size_mlp") ?? 16384,
            NumLayers = layers,
            NumHeads = heads,
            NumKvHeads = kvHeads,
            HeadDim = headDim,
            RmsNormEps = Dbl(t, "rms_norm_eps") ?? 1e-5,
            RopeTheta = Dbl(t, "rope_theta") ?? 500000,
            RopeScaling = scaling,
            NumExperts = experts,
            TopK = Int(t, "num_experts_per_tok") ?? 1,
            InterleaveMoeLayerStep = step,
            MoeLayers = moe,
            RopeLayers = rope,
            AttentionChunkSize = Int(t, "attention_chunk_size") ?? 8192,
            UseQkNorm = Bool(t, "use_qk_norm") ?? true,
            AttnTemperatureTuning = Bool(t, "attn_temperature_tuning") ?? true,
            FloorScale = Dbl(t, "floor_scale") ?? 8192,
            AttnScale = Dbl(t, "attn_scale") ?? 0.1,
            TieWordEmbeddings = Bool(t, "tie_word_embeddings") ?? Bool(root, "tie_word_embeddings") ?? false,
            MaxPositionEmbeddings = Int(t, "max_position_embeddings") ?? 10485760,
            BosTokenId = Int(t, "bos_token_id") ?? Int(root, "bos_token_id"),
            EosTokenIds = eos.ToArray(),
            PadTokenId = Int(t, "pad_token_id") ?? Int(root, "pad_token_id"),
            VisionConfig = vision,
        };
        cfg.Validate(source);
        return cfg;
    }

    /// <summary>Reads llama4.* GGUF metadata. Values the converter does not store take llama.cpp's defaults.</summary>
    public static Llama4Config FromGguf(GgufFile g)
    {
        string source = Path.GetFileName(g.Path);
        string? arch = g.GetString("general.architecture");
        if (arch is null)
            throw new ModelLoadException($"{source}: general.architecture is missing");
        if (arch != "llama4")
            throw new ModelLoadException($"{source}: architecture '{arch}' is not supported (Scout runs llama4)");
        long Req(string k) => g.GetInt("llama4." + k) ?? PerLayerFirst(g, "llama4." + k)
            ?? throw new ModelLoadException($"{source}: required metadata key llama4.{k} is missing");

        int layers = (int)Req("block_count");
        int hidden = (int)Req("embedding_length");
        int heads = (int)Req("attention.head_count");
        int kvHeads = (int)(g.GetInt("llama4.attention.head_count_kv") ?? PerLayerFirst(g, "llama4.attention.head_count_kv") ?? heads);
        int headDim = (int)(g.GetInt("llama4.attention.key_length") ?? hidden / heads);
        int experts = (int)(g.GetInt("llama4.expert_count") ?? 0);
        int step = (int)(g.GetInt("llama4.interleave_moe_layer_step") ?? 1);
        long? slidingWindow = g.GetInt("llama4.attention.sliding_window");
        int pattern = (int)(g.GetInt("llama4.attention.sliding_window_pattern") ?? 4);
        bool chunkedOff = slidingWindow == 0;

        var moe = new bool[layers];
        var rope = new bool[layers];
        for (int i = 0; i < layers; i++)
        {
            moe[i] = experts > 0 && step > 0 && (i + 1) % step == 0;
            rope[i] = chunkedOff || (i + 1) % pattern != 0;
        }
        int vocab = (int)(g.GetInt("llama4.vocab_size")
            ?? g.GetArray<string>("tokenizer.ggml.tokens")?.Length
            ?? (g.Tensors.TryGetValue("token_embd.weight", out var emb) ? emb.Shape[0] : throw new ModelLoadException($"{source}: cannot tell the vocabulary size")));

        var cfg = new Llama4Config
        {
            VocabSize = vocab,
            HiddenSize = hidden,
            IntermediateSize = (int)(g.GetInt("llama4.expert_feed_forward_length") ?? 0),
            IntermediateSizeMlp = (int)(g.GetInt("llama4.feed_forward_length") ?? PerLayerFirst(g, "llama4.feed_forward_length") ?? 0),
            NumLayers = layers,
            NumHeads = heads,
            NumKvHeads = kvHeads,
            HeadDim = headDim,
            RmsNormEps = g.GetFloat("llama4.attention.layer_norm_rms_epsilon") ?? 1e-5,
            RopeTheta = g.GetFloat("llama4.rope.freq_base") ?? 10000,
            NumExperts = experts,
            TopK = (int)(g.GetInt("llama4.expert_used_count") ?? 1),
            InterleaveMoeLayerStep = step,
            MoeLayers = moe,
            RopeLayers = rope,
            AttentionChunkSize = chunkedOff ? int.MaxValue : 8192,
            UseQkNorm = experts != 128,
            AttnTemperatureTuning = true,
            FloorScale = 8192,
            AttnScale = 0.1,
            TieWordEmbeddings = !g.Tensors.ContainsKey("output.weight"),
            MaxPositionEmbeddings = (int)Math.Min(int.MaxValue, g.GetInt("llama4.context_length") ?? 10485760),
            BosTokenId = (int?)g.GetInt("tokenizer.ggml.bos_token_id"),
            EosTokenIds = g.GetInt("tokenizer.ggml.eos_token_id") is long e ? [(int)e] : [],
            PadTokenId = (int?)g.GetInt("tokenizer.ggml.padding_token_id"),
        };
        cfg.Validate(source);
        return cfg;
    }

    /// <summary>
    /// Takes the values a GGUF cannot carry (chunk size, temperature tuning, qk-norm, NoPE layout) from a
    /// config.json, as the fixtures and non-default checkpoints need.
    /// </summary>
    public Llama4Config WithOverridesFrom(Llama4Config other)
    {
        if (other.NumLayers != NumLayers || other.HiddenSize != HiddenSize || other.NumHeads != NumHeads)
            throw new ModelLoadException($"the config given ({other.NumLayers} layers, hidden {other.HiddenSize}, {other.NumHeads} heads) does not describe this model ({NumLayers} layers, hidden {HiddenSize}, {NumHeads} heads)");
        return this with
        {
            AttentionChunkSize = other.AttentionChunkSize,
            UseQkNorm = other.UseQkNorm,
            AttnTemperatureTuning = other.AttnTemperatureTuning,
            FloorScale = other.FloorScale,
            AttnScale = other.AttnScale,
            RopeLayers = other.RopeLayers,
            BosTokenId = BosTokenId ?? other.BosTokenId,
            EosTokenIds = EosTokenIds.Length > 0 ? EosTokenIds : other.EosTokenIds,
        };
    }

    private void Validate(string source)
    {
        void Check(bool ok, string msg) { if (!ok) throw new ModelLoadException($"{source}: {msg}"); }
        Check(NumLayers > 0, $"num_hidden_layers must be positive, got {NumLayers}");
        Check(HiddenSize > 0, $"hidden_size must be positive, got {HiddenSize}");
        Check(VocabSize > 0, $"vocab_size must be positive, got {VocabSize}");
        Check(NumHeads > 0 && NumKvHeads > 0 && NumHeads % NumKvHeads == 0, $"num_attention_heads ({NumHeads}) must be a positive multiple of num_key_value_heads ({NumKvHeads})");
        Check(HeadDim > 0 && HeadDim % 2 == 0, $"head_dim must be positive and even, got {HeadDim}");
        Check(AttentionChunkSize > 0, $"attention_chunk_size must be positive, got {AttentionChunkSize}");
        Check(FloorScale > 0, $"floor_scale must be positive, got {FloorScale}");
        Check(MoeLayers.Length == NumLayers && RopeLayers.Length == NumLayers, "per-layer lists must have one entry per layer");
        bool anyMoe = MoeLayers.Any(m => m);
        Check(!anyMoe || NumExperts > 0, "MoE layers need num_local_experts > 0");
        Check(!anyMoe || (TopK > 0 && TopK <= NumExperts), $"num_experts_per_tok ({TopK}) must be in 1..{NumExperts}");
        Check(!anyMoe || IntermediateSize > 0, "MoE layers need intermediate_size > 0");
        Check(MoeLayers.All(m => m) || IntermediateSizeMlp > 0, "dense layers need intermediate_size_mlp > 0");
    }

    private static long? PerLayerFirst(GgufFile g, string key)
    {
        var a = g.GetArray<uint>(key);
        if (a is { Length: > 0 }) return a[0];
        var b = g.GetArray<int>(key);
        return b is { Length: > 0 } ? b[0] : null;
    }

    private static string? Str(JsonElement e, string name)
        => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static int? Int(JsonElement e, string name)
    {
        if (!e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)) return i;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue) return (int)d;
        throw new ModelLoadException($"config field '{name}' must be an integer, got {v.GetRawText()}");
    }

    private static int ReqInt(JsonElement e, string name, string source)
        => Int(e, name) ?? throw new ModelLoadException($"{source}: required field '{name}' is missing");

    private static double? Dbl(JsonElement e, string name)
    {
        if (!e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number) return v.GetDouble();
        throw new ModelLoadException($"config field '{name}' must be a number, got {v.GetRawText()}");
    }

    private static bool? Bool(JsonElement e, string name)
    {
        if (!e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            JsonValueKind.Number => v.GetDouble() != 0, // published Scout configs write attn_temperature_tuning: 4
            _ => throw new ModelLoadException($"config field '{name}' must be a boolean, got {v.GetRawText()}"),
        };
    }
}
