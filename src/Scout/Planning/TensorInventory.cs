using Scout.Model;
using Scout.Tensors;

namespace Scout.Planning;

/// <summary>What a tensor is, for grouping, quantization rules and the experts-in-RAM split.</summary>
public enum TensorRole
{
    TokenEmbedding, Output, OutputNorm, RopeFreqs,
    AttentionNorm, AttentionQ, AttentionK, AttentionV, AttentionOutput, FfnNorm,
    Router, RoutedGate, RoutedUp, RoutedDown, SharedGate, SharedUp, SharedDown, DenseGate, DenseUp, DenseDown,
    VisionEncoder, VisionAdapter, VisionProjector,
}

/// <summary>
/// One weight tensor as the planner sees it, in ggml terms: <see cref="RowLength"/> = ne[0] (the contiguous
/// input dimension), <see cref="Rows"/> rows per matrix, <see cref="Matrices"/> stacked matrices (experts).
/// Names are llama.cpp's GGUF names for text tensors and Hugging Face names for vision tensors.
/// </summary>
public sealed record PlannedTensor(string Name, TensorRole Role, int Layer, long RowLength, long Rows, long Matrices = 1)
{
    public long Elements => RowLength * Rows * Matrices;
    public long TotalRows => Rows * Matrices;
    public int Dimensions => Matrices > 1 ? 3 : Rows > 1 ? 2 : 1;
    public bool IsVision => Role is TensorRole.VisionEncoder or TensorRole.VisionAdapter or TensorRole.VisionProjector;
    public bool IsRoutedExpert => Role is TensorRole.RoutedGate or TensorRole.RoutedUp or TensorRole.RoutedDown;
    public bool IsSharedExpert => Role is TensorRole.SharedGate or TensorRole.SharedUp or TensorRole.SharedDown;
    /// <summary>rope_freqs exists only in GGUF files (converted from rope_scaling); it is not a trained parameter.</summary>
    public bool IsParameter => Role != TensorRole.RopeFreqs;
    public string Group => GroupOf(Role);

    public static string GroupOf(TensorRole role) => role switch
    {
        TensorRole.TokenEmbedding => "embeddings",
        TensorRole.Output => "lm_head",
        TensorRole.AttentionQ or TensorRole.AttentionK or TensorRole.AttentionV or TensorRole.AttentionOutput => "attention",
        TensorRole.AttentionNorm or TensorRole.FfnNorm or TensorRole.OutputNorm => "norms",
        TensorRole.RopeFreqs => "rope_freqs",
        TensorRole.Router => "routers",
        TensorRole.RoutedGate or TensorRole.RoutedUp or TensorRole.RoutedDown => "routed experts",
        TensorRole.SharedGate or TensorRole.SharedUp or TensorRole.SharedDown => "shared experts",
        TensorRole.DenseGate or TensorRole.DenseUp or TensorRole.DenseDown => "dense FFN",
        TensorRole.VisionEncoder => "vision encoder",
        TensorRole.VisionAdapter => "vision adapter",
        TensorRole.VisionProjector => "vision projector",
        _ => "other",
    };

    public static IReadOnlyList<string> GroupOrder { get; } =
    [
        "embeddings", "attention", "norms", "routers", "routed experts", "shared experts", "dense FFN", "lm_head", "rope_freqs",
        "vision encoder", "vision adapter", "vision projector",
    ];
}

/// <summary>Every weight tensor of a Llama 4 model, derived from its config (no files needed).</summary>
public static class TensorInventory
{
    /// <summary>
    /// The text tensors in llama.cpp's order (non-layer tensors, then layer by layer), plus the vision tensors when
    /// <paramref name="vision"/> is given. <paramref name="includeRopeFreqs"/> adds GGUF's rope_freqs when the model
    /// has llama3 rope scaling, or when <paramref name="ropeFreqsPresent"/> says a file carries it.
    /// </summary>
    public static List<PlannedTensor> FromConfig(Llama4Config c, VisionGeometry? vision = null, bool includeRopeFreqs = false, bool? ropeFreqsPresent = null)
    {
        long d = c.HiddenSize, v = c.VocabSize, q = c.QDim, kv = c.KvDim, f = c.IntermediateSize, fd = c.IntermediateSizeMlp, e = c.NumExperts;
        var list = new List<PlannedTensor>
        {
            new("token_embd.weight", TensorRole.TokenEmbedding, -1, d, v),
            new("output_norm.weight", TensorRole.OutputNorm, -1, d, 1),
        };
        if (!c.TieWordEmbeddings) list.Add(new("output.weight", TensorRole.Output, -1, d, v));
        if (includeRopeFreqs && (ropeFreqsPresent ?? c.RopeScaling is not null)) list.Add(new("rope_freqs.weight", TensorRole.RopeFreqs, -1, c.HeadDim / 2, 1));
        for (int i = 0; i < c.NumLayers; i++)
        {
            string p = $"blk.{i}.";
            list.Add(new(p + "attn_norm.weight", TensorRole.AttentionNorm, i, d, 1));
            list.Add(new(p + "attn_q.weight", TensorRole.AttentionQ, i, d, q));
            list.Add(new(p + "attn_k.weight", TensorRole.AttentionK, i, d, kv));
            list.Add(new(p + "attn_v.weight", TensorRole.AttentionV, i, d, kv));
            list.Add(new(p + "attn_output.weight", TensorRole.AttentionOutput, i, q, d));
            list.Add(new(p + "ffn_norm.weight", TensorRole.FfnNorm, i, d, 1));
            if (c.IsMoeLayer(i))
            {
                list.Add(new(p + "ffn_gate_inp.weight", TensorRole.Router, i, d, e));
                list.Add(new(p + "ffn_gate_exps.weight", TensorRole.RoutedGate, i, d, f, e));
                list.Add(new(p + "ffn_up_exps.weight", TensorRole.RoutedUp, i, d, f, e));
                list.Add(new(p + "ffn_down_exps.weight", TensorRole.RoutedDown, i, f, d, e));
                list.Add(new(p + "ffn_gate_shexp.weight", TensorRole.SharedGate, i, d, f));
                list.Add(new(p + "ffn_up_shexp.weight", TensorRole.SharedUp, i, d, f));
                list.Add(new(p + "ffn_down_shexp.weight", TensorRole.SharedDown, i, f, d));
            }
            else
            {
                list.Add(new(p + "ffn_gate.weight", TensorRole.DenseGate, i, d, fd));
                list.Add(new(p + "ffn_up.weight", TensorRole.DenseUp, i, d, fd));
                list.Add(new(p + "ffn_down.weight", TensorRole.DenseDown, i, fd, d));
            }
        }
        if (vision is not null) list.AddRange(Vision(vision, c.HiddenSize));
        return list;
    }

    /// <summary>
    /// The image path's tensors with Hugging Face names (Meta's layout: patch linear without bias, class token
    /// last, 577 learned positions, biased attention/MLP in every encoder layer, bias-free adapter and projector).
    /// </summary>
    public static List<PlannedTensor> Vision(VisionGeometry g, int textHidden)
    {
        long h = g.HiddenSize, im = g.IntermediateSize;
        const string enc = "vision_model.";
        var list = new List<PlannedTensor>
        {
            new(enc + "patch_embedding.linear.weight", TensorRole.VisionEncoder, -1, (long)g.NumChannels * g.PatchSize * g.PatchSize, h),
            new(enc + "class_embedding", TensorRole.VisionEncoder, -1, h, 1),
            new(enc + "positional_embedding_vlm", TensorRole.VisionEncoder, -1, h, g.TokensPerTile),
            new(enc + "layernorm_pre.weight", TensorRole.VisionEncoder, -1, h, 1),
            new(enc + "layernorm_pre.bias", TensorRole.VisionEncoder, -1, h, 1),
            new(enc + "layernorm_post.weight", TensorRole.VisionEncoder, -1, h, 1),
            new(enc + "layernorm_post.bias", TensorRole.VisionEncoder, -1, h, 1),
        };
        for (int i = 0; i < g.NumLayers; i++)
        {
            string p = $"{enc}model.layers.{i}.";
            foreach (var proj in new[] { "q_proj", "k_proj", "v_proj", "o_proj" })
            {
                list.Add(new(p + $"self_attn.{proj}.weight", TensorRole.VisionEncoder, i, h, h));
                list.Add(new(p + $"self_attn.{proj}.bias", TensorRole.VisionEncoder, i, h, 1));
            }
            list.Add(new(p + "mlp.fc1.weight", TensorRole.VisionEncoder, i, h, im));
            list.Add(new(p + "mlp.fc1.bias", TensorRole.VisionEncoder, i, im, 1));
            list.Add(new(p + "mlp.fc2.weight", TensorRole.VisionEncoder, i, im, h));
            list.Add(new(p + "mlp.fc2.bias", TensorRole.VisionEncoder, i, h, 1));
            foreach (var norm in new[] { "input_layernorm", "post_attention_layernorm" })
            {
                list.Add(new(p + norm + ".weight", TensorRole.VisionEncoder, i, h, 1));
                list.Add(new(p + norm + ".bias", TensorRole.VisionEncoder, i, h, 1));
            }
        }
        list.Add(new(enc + "vision_adapter.mlp.fc1.weight", TensorRole.VisionAdapter, -1, g.ShuffledWidth, g.ProjectorInputDim));
        list.Add(new(enc + "vision_adapter.mlp.fc2.weight", TensorRole.VisionAdapter, -1, g.ProjectorInputDim, g.ProjectorOutputDim));
        list.Add(new("multi_modal_projector.linear_1.weight", TensorRole.VisionProjector, -1, g.VisionOutputDim, textHidden));
        return list;
    }

    /// <summary>Role of a tensor from its name in a GGUF or Hugging Face checkpoint (null: not recognised).</summary>
    public static TensorRole? RoleOf(string name)
    {
        if (name.StartsWith("vision_model.vision_adapter.", StringComparison.Ordinal)) return TensorRole.VisionAdapter;
        if (name.StartsWith("vision_model.", StringComparison.Ordinal) || name.StartsWith("v.", StringComparison.Ordinal)) return TensorRole.VisionEncoder;
        if (name.StartsWith("multi_modal_projector.", StringComparison.Ordinal) || name.StartsWith("mm.", StringComparison.Ordinal)) return TensorRole.VisionProjector;
        if (name == "output.weight") return TensorRole.Output;
        // Order matters: the more specific keys first.
        (string Key, TensorRole Role)[] rules =
        [
            ("token_embd.", TensorRole.TokenEmbedding), ("embed_tokens.", TensorRole.TokenEmbedding),
            ("output_norm.", TensorRole.OutputNorm), ("model.norm.", TensorRole.OutputNorm),
            ("rope_freqs.", TensorRole.RopeFreqs),
            ("lm_head.", TensorRole.Output),
            ("attn_norm.", TensorRole.AttentionNorm), ("input_layernorm.", TensorRole.AttentionNorm),
            ("ffn_norm.", TensorRole.FfnNorm), ("post_attention_layernorm.", TensorRole.FfnNorm),
            ("attn_q.", TensorRole.AttentionQ), ("q_proj.", TensorRole.AttentionQ),
            ("attn_k.", TensorRole.AttentionK), ("k_proj.", TensorRole.AttentionK),
            ("attn_v.", TensorRole.AttentionV), ("v_proj.", TensorRole.AttentionV),
            ("attn_output.", TensorRole.AttentionOutput), ("o_proj.", TensorRole.AttentionOutput),
            ("ffn_gate_inp.", TensorRole.Router), ("feed_forward.router.", TensorRole.Router),
            ("ffn_gate_exps.", TensorRole.RoutedGate), ("experts.gate_up_proj", TensorRole.RoutedGate),
            ("ffn_up_exps.", TensorRole.RoutedUp), ("ffn_down_exps.", TensorRole.RoutedDown), ("experts.down_proj", TensorRole.RoutedDown),
            ("ffn_gate_shexp.", TensorRole.SharedGate), ("shared_expert.gate_proj.", TensorRole.SharedGate),
            ("ffn_up_shexp.", TensorRole.SharedUp), ("shared_expert.up_proj.", TensorRole.SharedUp),
            ("ffn_down_shexp.", TensorRole.SharedDown), ("shared_expert.down_proj.", TensorRole.SharedDown),
            ("ffn_gate.", TensorRole.DenseGate), ("feed_forward.gate_proj.", TensorRole.DenseGate),
            ("ffn_up.", TensorRole.DenseUp), ("feed_forward.up_proj.", TensorRole.DenseUp),
            ("ffn_down.", TensorRole.DenseDown), ("feed_forward.down_proj.", TensorRole.DenseDown),
        ];
        foreach (var (key, role) in rules)
            if (name.Contains(key, StringComparison.Ordinal)) return role;
        return null;
    }

    /// <summary>Layer index parsed from "blk.N." or "layers.N." (−1 when absent).</summary>
    public static int LayerOf(string name)
    {
        foreach (var marker in new[] { "blk.", "layers." })
        {
            int at = name.IndexOf(marker, StringComparison.Ordinal);
            if (at < 0) continue;
            int s = at + marker.Length, e = s;
            while (e < name.Length && char.IsAsciiDigit(name[e])) e++;
            if (e > s && int.TryParse(name.AsSpan(s, e - s), out int layer)) return layer;
        }
        return -1;
    }
}

/// <summary>One tensor of an actual checkpoint: its role and its bytes as stored.</summary>
public sealed record CheckpointTensor(string Name, TensorRole? Role, int Layer, TensorType Type, long[] Shape, long Elements, long Bytes)
{
    public static CheckpointTensor Of(WeightTensor t)
        => new(t.Name, TensorInventory.RoleOf(t.Name), TensorInventory.LayerOf(t.Name), t.Type, t.Shape, t.ElementCount, t.ByteLength);
}
