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

        // Counts are checked before anything is sized by them (a config claiming two billion layers must fail at once).
        int layers = Range(ReqInt(t, "num_hidden_layers", source), 1, MaxLayers, "num_hidden_layers", source);
        int hidden = Range(ReqInt(t, "hidden_size", source), 1, MaxWidth, "hidden_size", source);
        int heads = Range(ReqInt(t, "num_attention_heads", source), 1, MaxHeads, "num_attention_heads", source);
        int kvHeads = Range(Int(t, "num_key_value_heads", source) ?? heads, 1, MaxHeads, "num_key_value_heads", source);
        int headDim = Range(Int(t, "head_dim", source) ?? hidden / heads, 1, MaxWidth, "head_dim", source);
        int experts = Range(Int(t, "num_local_experts", source) ?? 0, 0, MaxExperts, "num_local_experts", source);
        int step = Range(Int(t, "interleave_moe_layer_step", source) ?? 1, 0, MaxLayers, "interleave_moe_layer_step", source);

        var moe = new bool[layers];
        if (t.TryGetProperty("moe_layers", out var ml) && ml.ValueKind == JsonValueKind.Array && ml.GetArrayLength() > 0)
        {
            foreach (var e in ml.EnumerateArray())
            {
                if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int i))
                    throw new ModelLoadException($"{source}: moe_layers entries must be layer numbers, got {Raw(e)}");
                if (i < 0 || i >= layers) throw new ModelLoadException($"{source}: moe_layers entry {i} is outside 0..{layers - 1}");
                moe[i] = true;
            }
        }
        else if (t.TryGetProperty("moe_layers", out ml) && ml.ValueKind is not (JsonValueKind.Array or JsonValueKind.Null))
        {
            throw new ModelLoadException($"{source}: moe_layers must be an array of layer numbers, got {Raw(ml)}");
        }
        else if (experts > 0 && step > 0)
        {
            for (int i = 0; i < layers; i++) moe[i] = (i + 1) % step == 0;
        }

        int interval = Range(Int(t, "no_rope_layer_interval", source) ?? 4, 1, int.MaxValue, "no_rope_layer_interval", source);
        var rope = new bool[layers];
        if (t.TryGetProperty("no_rope_layers", out var nr) && nr.ValueKind == JsonValueKind.Array && nr.GetArrayLength() > 0)
        {
            if (nr.GetArrayLength() != layers)
                throw new ModelLoadException($"{source}: no_rope_layers has {nr.GetArrayLength()} entries for {layers} layers");
            int i = 0;
            foreach (var e in nr.EnumerateArray())
            {
                if (e.ValueKind is not (JsonValueKind.True or JsonValueKind.False) && !(e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out _)))
                    throw new ModelLoadException($"{source}: no_rope_layers entries must be 0/1 or booleans, got {Raw(e)}");
                rope[i++] = e.ValueKind == JsonValueKind.True || (e.ValueKind == JsonValueKind.Number && e.GetInt32() != 0);
            }
        }
        else if (t.TryGetProperty("no_rope_layers", out nr) && nr.ValueKind is not (JsonValueKind.Array or JsonValueKind.Null))
        {
            throw new ModelLoadException($"{source}: no_rope_layers must be an array, got {Raw(nr)}");
        }
        else
        {
            for (int i = 0; i < layers; i++) rope[i] = (i + 1) % interval != 0;
        }

        RopeScaling? scaling = null;
        if (t.TryGetProperty("rope_scaling", out var rs) && rs.ValueKind is not (JsonValueKind.Object or JsonValueKind.Null))
            throw new ModelLoadException($"{source}: rope_scaling must be an object, got {Raw(rs)}");
        if (rs.ValueKind == JsonValueKind.Object)
        {
            string? kind = Str(rs, "rope_type") ?? Str(rs, "type");
            if (kind is not null && kind != "llama3" && kind != "default")
                throw new ModelLoadException($"{source}: rope_scaling type '{kind}' is not supported (llama3 only)");
            if (kind != "default")
                scaling = new RopeScaling(Dbl(rs, "factor", source) ?? 8, Dbl(rs, "low_freq_factor", source) ?? 1, Dbl(rs, "high_freq_factor", source) ?? 4,
                    Int(rs, "original_max_position_embeddings", source) ?? 8192);
        }

        var eos = new List<int>();
        if (t.TryGetProperty("eos_token_id", out var eosEl) || root.TryGetProperty("eos_token_id", out eosEl))
        {
            if (eosEl.ValueKind == JsonValueKind.Array)
                foreach (var e in eosEl.EnumerateArray()) eos.Add(TokenId(e, "eos_token_id", source));
            else if (eosEl.ValueKind != JsonValueKind.Null)
                eos.Add(TokenId(eosEl, "eos_token_id", source));
        }

        var cfg = new Llama4Config
        {
            VocabSize = Range(ReqInt(t, "vocab_size", source), 1, MaxVocab, "vocab_size", source),
            HiddenSize = hidden,
            IntermediateSize = Int(t, "intermediate_size", source) ?? 8192,
            IntermediateSizeMlp = Int(t, "intermediate_size_mlp", source) ?? 16384,
            NumLayers = layers,
            NumHeads = heads,
            NumKvHeads = kvHeads,
            HeadDim = headDim,
            RmsNormEps = Dbl(t, "rms_norm_eps", source) ?? 1e-5,
            RopeTheta = Dbl(t, "rope_theta", source) ?? 500000,
            RopeScaling = scaling,
            NumExperts = experts,
            TopK = Int(t, "num_experts_per_tok", source) ?? 1,
            InterleaveMoeLayerStep = step,
            MoeLayers = moe,
            RopeLayers = rope,
            AttentionChunkSize = Int(t, "attention_chunk_size", source) ?? 8192,
            UseQkNorm = Bool(t, "use_qk_norm", source) ?? true,
            AttnTemperatureTuning = Bool(t, "attn_temperature_tuning", source) ?? true,
            FloorScale = Dbl(t, "floor_scale", source) ?? 8192,
            AttnScale = Dbl(t, "attn_scale", source) ?? 0.1,
            TieWordEmbeddings = Bool(t, "tie_word_embeddings", source) ?? Bool(root, "tie_word_embeddings", source) ?? false,
            MaxPositionEmbeddings = Int(t, "max_position_embeddings", source) ?? 10485760,
            BosTokenId = OptTokenId(t, "bos_token_id", source) ?? OptTokenId(root, "bos_token_id", source),
            EosTokenIds = eos.ToArray(),
            PadTokenId = Int(t, "pad_token_id", source) ?? Int(root, "pad_token_id", source),
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
        int Req(string k, int min, int max) => g.GetInt32("llama4." + k, min, max) ?? PerLayerFirst(g, "llama4." + k, min, max)
            ?? throw new ModelLoadException($"{source}: required metadata key llama4.{k} is missing");
        int Opt(string k, int min, int max, int fallback) => g.GetInt32("llama4." + k, min, max) ?? fallback;

        // Counts are checked before anything is sized by them, and against the tensors the file holds.
        int layers = Req("block_count", 1, MaxLayers);
        int present = LayersPresent(g.Tensors.Keys, "blk.");
        if (present > 0 && present != layers)
            throw new ModelLoadException($"{source}: llama4.block_count is {layers} but the file holds tensors for {present} layers (blk.0 .. blk.{present - 1})");
        int hidden = Req("embedding_length", 1, MaxWidth);
        int heads = Req("attention.head_count", 1, MaxHeads);
        int kvHeads = g.GetInt32("llama4.attention.head_count_kv", 1, MaxHeads) ?? PerLayerFirst(g, "llama4.attention.head_count_kv", 1, MaxHeads) ?? heads;
        int headDim = Opt("attention.key_length", 1, MaxWidth, hidden / heads);
        int experts = Opt("expert_count", 0, MaxExperts, 0);
        int step = Opt("interleave_moe_layer_step", 0, MaxLayers, 1);
        long? slidingWindow = g.GetInt("llama4.attention.sliding_window");
        int pattern = Opt("attention.sliding_window_pattern", 1, int.MaxValue, 4);
        bool chunkedOff = slidingWindow == 0;

        var moe = new bool[layers];
        var rope = new bool[layers];
        for (int i = 0; i < layers; i++)
        {
            moe[i] = experts > 0 && step > 0 && (i + 1) % step == 0;
            rope[i] = chunkedOff || (i + 1) % pattern != 0;
        }
        int vocab = g.GetInt32("llama4.vocab_size", 1, MaxVocab)
            ?? (g.GetArray<string>("tokenizer.ggml.tokens") is { Length: > 0 } toks ? toks.Length : (int?)null)
            ?? (g.Tensors.TryGetValue("token_embd.weight", out var emb) ? (int)Math.Min(emb.Shape[0], int.MaxValue) : throw new ModelLoadException($"{source}: cannot tell the vocabulary size"));
        int? TokenKey(string key) => g.GetInt32(key, 0, int.MaxValue);

        var cfg = new Llama4Config
        {
            VocabSize = vocab,
            HiddenSize = hidden,
            IntermediateSize = Opt("expert_feed_forward_length", 0, MaxFfn, 0),
            IntermediateSizeMlp = g.GetInt32("llama4.feed_forward_length", 0, MaxFfn) ?? PerLayerFirst(g, "llama4.feed_forward_length", 0, MaxFfn) ?? 0,
            NumLayers = layers,
            NumHeads = heads,
            NumKvHeads = kvHeads,
            HeadDim = headDim,
            RmsNormEps = g.GetFloat("llama4.attention.layer_norm_rms_epsilon") ?? 1e-5,
            RopeTheta = g.GetFloat("llama4.rope.freq_base") ?? 10000,
            NumExperts = experts,
            TopK = Opt("expert_used_count", 0, MaxExperts, 1),
            InterleaveMoeLayerStep = step,
            MoeLayers = moe,
            RopeLayers = rope,
            AttentionChunkSize = chunkedOff ? int.MaxValue : 8192,
            UseQkNorm = experts != 128,
            AttnTemperatureTuning = true,
            FloorScale = 8192,
            AttnScale = 0.1,
            TieWordEmbeddings = !g.Tensors.ContainsKey("output.weight"),
            MaxPositionEmbeddings = (int)Math.Clamp(g.GetInt("llama4.context_length") ?? 10485760, 0, int.MaxValue),
            BosTokenId = TokenKey("tokenizer.ggml.bos_token_id"),
            EosTokenIds = TokenKey("tokenizer.ggml.eos_token_id") is int e ? [e] : [],
            PadTokenId = TokenKey("tokenizer.ggml.padding_token_id"),
        };
        cfg.Validate(source, "llama4 metadata");
        return cfg;
    }

    /// <summary>Upper bounds on counts, far above any Llama 4 (48 layers, hidden 5120, 40 heads, 128 experts).</summary>
    public const int MaxLayers = 4096, MaxWidth = 1 << 20, MaxHeads = 4096, MaxExperts = 65536, MaxVocab = 1 << 26, MaxFfn = 1 << 24;

    /// <summary>How many layers the tensor names describe (1 + the highest N of names starting PREFIX N.), 0 when none do.</summary>
    public static int LayersPresent(IEnumerable<string> names, string prefix)
    {
        int max = -1;
        foreach (var n in names)
        {
            if (!n.StartsWith(prefix, StringComparison.Ordinal)) continue;
            int i = prefix.Length, v = 0, digits = 0;
            while (i < n.Length && char.IsAsciiDigit(n[i]) && digits < 9) { v = v * 10 + (n[i] - '0'); i++; digits++; }
            if (digits > 0 && i < n.Length && n[i] == '.') max = Math.Max(max, v);
        }
        return max + 1;
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

    private void Validate(string source, string? kind = null)
    {
        void Check(bool ok, string msg) { if (!ok) throw new ModelLoadException($"{source}: {msg}"); }
        bool Pos(double v) => double.IsFinite(v) && v > 0;
        Check(NumLayers > 0, $"num_hidden_layers must be positive, got {NumLayers}");
        Check(HiddenSize > 0, $"hidden_size must be positive, got {HiddenSize}");
        Check(VocabSize > 0, $"vocab_size must be positive, got {VocabSize}");
        Check(NumHeads > 0 && NumKvHeads > 0 && NumHeads % NumKvHeads == 0, $"num_attention_heads ({NumHeads}) must be a positive multiple of num_key_value_heads ({NumKvHeads})");
        Check(HeadDim > 0 && HeadDim % 2 == 0, $"head_dim must be positive and even, got {HeadDim}");
        Check((long)NumHeads * HeadDim <= MaxWidth, $"num_attention_heads × head_dim ({(long)NumHeads * HeadDim}) is out of range");
        Check(AttentionChunkSize > 0, $"attention_chunk_size must be positive, got {AttentionChunkSize}");
        Check(Pos(FloorScale), $"floor_scale must be positive and finite, got {FloorScale}");
        Check(double.IsFinite(AttnScale), $"attn_scale must be finite, got {AttnScale}");
        Check(Pos(RmsNormEps) && RmsNormEps < 1, kind is null
            ? $"rms_norm_eps must be positive, finite and below 1, got {RmsNormEps}"
            : $"llama4.attention.layer_norm_rms_epsilon must be positive, finite and below 1, got {RmsNormEps}");
        Check(Pos(RopeTheta), kind is null ? $"rope_theta must be positive and finite, got {RopeTheta}" : $"llama4.rope.freq_base must be positive and finite, got {RopeTheta}");
        if (RopeScaling is { } rs)
        {
            Check(Pos(rs.Factor), $"rope_scaling.factor must be positive and finite, got {rs.Factor}");
            Check(Pos(rs.LowFreqFactor), $"rope_scaling.low_freq_factor must be positive and finite, got {rs.LowFreqFactor}");
            Check(Pos(rs.HighFreqFactor) && rs.HighFreqFactor >= rs.LowFreqFactor, $"rope_scaling.high_freq_factor must be positive, finite and at least low_freq_factor, got {rs.HighFreqFactor}");
            Check(rs.OriginalMaxPositions > 0, $"rope_scaling.original_max_position_embeddings must be positive, got {rs.OriginalMaxPositions}");
        }
        Check(MaxPositionEmbeddings > 0, $"max_position_embeddings must be positive, got {MaxPositionEmbeddings}");
        Check(MoeLayers.Length == NumLayers && RopeLayers.Length == NumLayers, "per-layer lists must have one entry per layer");
        Check(EosTokenIds.All(e => e >= 0) && BosTokenId is null or >= 0, "token ids (bos/eos) must not be negative");
        bool anyMoe = MoeLayers.Any(m => m);
        Check(!anyMoe || NumExperts > 0, "MoE layers need num_local_experts > 0");
        Check(!anyMoe || (TopK > 0 && TopK <= NumExperts), $"num_experts_per_tok ({TopK}) must be in 1..{NumExperts}");
        Check(!anyMoe || IntermediateSize > 0, "MoE layers need intermediate_size > 0");
        Check(MoeLayers.All(m => m) || IntermediateSizeMlp > 0, "dense layers need intermediate_size_mlp > 0");
    }

    private static int? PerLayerFirst(GgufFile g, string key, int min, int max)
    {
        long? first = g.GetArray<uint>(key) is { Length: > 0 } a ? a[0] : g.GetArray<int>(key) is { Length: > 0 } b ? b[0] : null;
        if (first is long v && (v < min || v > max))
            throw new ModelLoadException($"{Path.GetFileName(g.Path)}: metadata '{key}' is {v}; it must be between {min} and {max}");
        return (int?)first;
    }

    private static string Raw(JsonElement e)
    {
        string t = e.GetRawText();
        return t.Length > 60 ? t[..60] + "…" : t;
    }

    private static int Range(int v, int min, int max, string name, string source)
        => v >= min && v <= max ? v : throw new ModelLoadException($"{source}: '{name}' is {v}; it must be between {min} and {max}");

    private static string? Str(JsonElement e, string name)
        => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static int? Int(JsonElement e, string name, string source = "config.json")
    {
        if (!e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)) return i;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue) return (int)d;
        throw new ModelLoadException($"{source}: field '{name}' must be an integer (32-bit), got {Raw(v)}");
    }

    /// <summary>A token id: a non-negative integer (a float like 2.0 or a string is an error naming the field).</summary>
    private static int TokenId(JsonElement v, string name, string source)
    {
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) && i >= 0) return i;
        throw new ModelLoadException($"{source}: '{name}' must hold token ids (non-negative integers), got {Raw(v)}");
    }

    private static int? OptTokenId(JsonElement e, string name, string source)
        => e.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? TokenId(v, name, source) : null;

    private static int ReqInt(JsonElement e, string name, string source)
        => Int(e, name, source) ?? throw new ModelLoadException($"{source}: required field '{name}' is missing");

    private static double? Dbl(JsonElement e, string name, string source = "config.json")
    {
        if (!e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number) return v.GetDouble();
        throw new ModelLoadException($"{source}: field '{name}' must be a number, got {Raw(v)}");
    }

    private static bool? Bool(JsonElement e, string name, string source = "config.json")
    {
        if (!e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            JsonValueKind.Number => v.GetDouble() != 0, // published Scout configs write attn_temperature_tuning: 4
            _ => throw new ModelLoadException($"{source}: field '{name}' must be a boolean, got {Raw(v)}"),
        };
    }
}
