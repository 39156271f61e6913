using Scout.Backends;
using Scout.Formats;
using Scout.Kernels;
using Scout.Kernels.Quant;
using Scout.Tensors;

namespace Scout.Model;

/// <summary>One routed expert: a SwiGLU block down(silu(gate·x) ⊙ up·x).</summary>
public sealed record FeedForward(IWeightMatrix Gate, IWeightMatrix Up, IWeightMatrix Down);

/// <summary>The weights of one decoder layer. Exactly one of <see cref="Dense"/> and (<see cref="Router"/>, <see cref="Experts"/>, <see cref="SharedExpert"/>) is set.</summary>
public sealed class LayerWeights
{
    public required float[] AttentionNorm { get; init; }
    public required float[] FfnNorm { get; init; }
    public required IWeightMatrix Q { get; init; }
    public required IWeightMatrix K { get; init; }
    public required IWeightMatrix V { get; init; }
    public required IWeightMatrix O { get; init; }
    public FeedForward? Dense { get; init; }
    /// <summary>Router [experts, hidden].</summary>
    public IWeightMatrix? Router { get; init; }
    public FeedForward[]? Experts { get; init; }
    public FeedForward? SharedExpert { get; init; }
}

/// <summary>How a model is loaded. <see cref="Quantize"/>: encode float weight matrices to this block type in memory.</summary>
public sealed record LoadOptions
{
    public TensorType? Quantize { get; init; }
    /// <summary>Read every tensor once before use and refuse NaN/infinite values or block scales (<see cref="TensorScan"/>).</summary>
    public bool CheckTensors { get; init; }

    /// <summary>
    /// Layers (from the first) whose routed experts are created on the backend's <see cref="IBackend.Host"/>, so they
    /// stay in system RAM and run on the CPU while attention, the shared expert and the head run on the device
    /// (llama.cpp's <c>--n-cpu-moe N</c>; <see cref="int.MaxValue"/> = <c>--cpu-moe</c>). No effect on a CPU backend.
    /// </summary>
    public int HostExpertLayers { get; init; }

    /// <summary>
    /// Layers on the device (llama.cpp's <c>--gpu-layers</c> / -ngl: the last N layers; more than the layer count
    /// also puts the head there; null: everything). No effect on a CPU backend. See <see cref="Planning.Placement"/>.
    /// </summary>
    public int? GpuLayers { get; init; }
}

/// <summary>All weights of a Llama 4 text model, as zero-copy views over the checkpoint's mapped files.</summary>
public sealed unsafe class Llama4Weights
{
    public required WeightTensor Embedding { get; init; }
    public required float[] FinalNorm { get; init; }
    public required IWeightMatrix Output { get; init; }
    /// <summary>The token embedding as a matrix of the device backend when the lookup runs there (<see cref="Planning.Placement.EmbeddingOnDevice"/>); null otherwise.</summary>
    public IWeightMatrix? EmbeddingMatrix { get; init; }
    public required LayerWeights[] Layers { get; init; }
    /// <summary>Per-frequency RoPE divisors from a GGUF's rope_freqs tensor, when present.</summary>
    public float[]? RopeFreqDivisors { get; init; }
    /// <summary>Memory owned by these weights (load-time quantized copies), freed with the model.</summary>
    public IDisposable? Owned { get; init; }
    /// <summary>Which layers' matrices are the backend's and which its host's (everything on a CPU backend).</summary>
    public Planning.Placement Placement { get; init; } = null!;

    /// <summary>The placement <paramref name="options"/> ask for on <paramref name="backend"/> (everything on one backend when it is the CPU).</summary>
    public static Planning.Placement PlacementFor(Llama4Config c, IBackend backend, LoadOptions? options)
    {
        int hostExperts = options?.HostExpertLayers ?? 0;
        if (hostExperts < 0) throw new ArgumentException($"layers with routed experts in RAM must not be negative, got {hostExperts}");
        if (options?.GpuLayers < 0) throw new ArgumentException($"--gpu-layers must not be negative, got {options.GpuLayers}");
        return ReferenceEquals(backend.Host, backend)
            ? Planning.Placement.All(c.NumLayers)
            : new Planning.Placement(c.NumLayers, options?.GpuLayers ?? int.MaxValue, hostExperts);
    }

    /// <summary>The weights of <paramref name="ckpt"/> as matrices of <paramref name="backend"/> (views over the mapped files on the CPU).</summary>
    public static Llama4Weights Load(Checkpoint ckpt, IBackend backend, LoadOptions? options = null)
    {
        if (options?.CheckTensors == true && TensorScan.Scan(ckpt) is { Count: > 0 } problems)
            throw new NonFiniteException($"--check-tensors: {problems.Count} tensor(s) hold NaN or infinity: " + string.Join("; ", problems.Take(8)) + (problems.Count > 8 ? "; …" : ""));
        LoadTimeQuantizer? q = options?.Quantize is { } t ? new LoadTimeQuantizer(t, backend) : null;
        try
        {
            var place = PlacementFor(ckpt.Config, backend, options);
            var w = ckpt.Format == CheckpointFormat.Gguf ? LoadGguf(ckpt, backend, q, place) : LoadHuggingFace(ckpt, backend, q, place);
            ckpt.CheckAllClaimed();
            return new Llama4Weights
            {
                Embedding = w.Embedding, FinalNorm = w.FinalNorm, Output = w.Output, Layers = w.Layers, RopeFreqDivisors = w.RopeFreqDivisors, Owned = q,
                Placement = place, EmbeddingMatrix = w.EmbeddingMatrix,
            };
        }
        catch
        {
            q?.Dispose();
            throw;
        }
    }

    private static void ExpectShape(WeightTensor t, params long[] shape)
    {
        if (!t.Shape.SequenceEqual(shape))
            throw new ModelLoadException($"tensor '{t.Name}' in {t.Source} has shape {t.ShapeText}, but the config implies [{string.Join(", ", shape)}]");
    }

    private static IWeightMatrix Matrix(IBackend backend, WeightTensor t, long rows, long cols, LoadTimeQuantizer? q = null)
    {
        ExpectShape(t, rows, cols);
        return q?.RowMajor(t.Type, t.Data, (int)rows, (int)cols, backend) ?? backend.RowMajor(t.Type, t.Data, (int)rows, (int)cols);
    }

    private static float[] Vector(WeightTensor t, long n)
    {
        ExpectShape(t, n);
        var v = t.ToFloatArray();
        int bad = TensorScan.FirstNonFinite(v);
        if (bad >= 0)
            throw new ModelLoadException($"tensor '{t.Name}' in {t.Source} holds a non-finite value ({v[bad]}) at element {bad}");
        return v;
    }

    private static LayerWeights LayerCommon(IBackend backend, Llama4Config c, Func<string, WeightTensor> get, string norm1, string q, string k, string v, string o, string norm2,
        FeedForward? dense, IWeightMatrix? router, FeedForward[]? experts, FeedForward? shared, LoadTimeQuantizer? lq) => new()
    {
        AttentionNorm = Vector(get(norm1), c.HiddenSize),
        FfnNorm = Vector(get(norm2), c.HiddenSize),
        Q = Matrix(backend, get(q), c.QDim, c.HiddenSize, lq),
        K = Matrix(backend, get(k), c.KvDim, c.HiddenSize, lq),
        V = Matrix(backend, get(v), c.KvDim, c.HiddenSize, lq),
        O = Matrix(backend, get(o), c.HiddenSize, c.QDim, lq),
        Dense = dense, Router = router, Experts = experts, SharedExpert = shared,
    };

    private static Llama4Weights LoadHuggingFace(Checkpoint ckpt, IBackend device, LoadTimeQuantizer? lq, Planning.Placement place)
    {
        var c = ckpt.Config;
        string prefix = ckpt.Find("language_model.model.embed_tokens.weight") != null ? "language_model.model." : "model.";
        string headName = prefix == "model." ? "lm_head.weight" : "language_model.lm_head.weight";
        var embedding = ckpt.Get(prefix + "embed_tokens.weight");
        ExpectShape(embedding, c.VocabSize, c.HiddenSize);
        var output = c.TieWordEmbeddings && ckpt.Find(headName) is null ? embedding : ckpt.Get(headName);

        var layers = new LayerWeights[c.NumLayers];
        for (int i = 0; i < c.NumLayers; i++)
        {
            string p = $"{prefix}layers.{i}.";
            string ff = p + "feed_forward.";
            var backend = place.LayerOnDevice(i) ? device : device.Host;
            var expertBackend = place.ExpertsOnDevice(i) ? device : device.Host;
            FeedForward? dense = null, shared = null;
            IWeightMatrix? router = null;
            FeedForward[]? experts = null;
            if (c.IsMoeLayer(i))
            {
                int e = c.NumExperts, d = c.HiddenSize, f = c.IntermediateSize;
                router = Matrix(backend, ckpt.Get(ff + "router.weight"), e, d);
                var gateUp = ckpt.Get(ff + "experts.gate_up_proj");
                var down = ckpt.Get(ff + "experts.down_proj");
                ExpectShape(gateUp, e, d, 2L * f);
                ExpectShape(down, e, f, d);
                if (!gateUp.Type.IsFloat() || !down.Type.IsFloat())
                    throw new ModelLoadException($"expert tensors of layer {i} must be F32/BF16/F16");
                int eb = gateUp.Type == TensorType.F32 ? 4 : 2;
                experts = new FeedForward[e];
                for (int x = 0; x < e; x++)
                {
                    byte* gu = gateUp.Data + (long)x * d * 2 * f * eb;
                    byte* dn = down.Data + (long)x * f * d * eb;
                    experts[x] = lq is null
                        ? new FeedForward(
                            expertBackend.InputMajor(gateUp.Type, gu, d, f, 2 * f, 0),
                            expertBackend.InputMajor(gateUp.Type, gu, d, f, 2 * f, f),
                            expertBackend.InputMajor(down.Type, dn, f, d, d, 0))
                        : new FeedForward(
                            lq.InputMajor(gateUp.Type, gu, d, f, 2 * f, 0, expertBackend),
                            lq.InputMajor(gateUp.Type, gu, d, f, 2 * f, f, expertBackend),
                            lq.InputMajor(down.Type, dn, f, d, d, 0, expertBackend));
                }
                shared = new FeedForward(
                    Matrix(backend, ckpt.Get(ff + "shared_expert.gate_proj.weight"), f, d, lq),
                    Matrix(backend, ckpt.Get(ff + "shared_expert.up_proj.weight"), f, d, lq),
                    Matrix(backend, ckpt.Get(ff + "shared_expert.down_proj.weight"), d, f, lq));
            }
            else
            {
                int d = c.HiddenSize, f = c.IntermediateSizeMlp;
                dense = new FeedForward(
                    Matrix(backend, ckpt.Get(ff + "gate_proj.weight"), f, d, lq),
                    Matrix(backend, ckpt.Get(ff + "up_proj.weight"), f, d, lq),
                    Matrix(backend, ckpt.Get(ff + "down_proj.weight"), d, f, lq));
            }
            layers[i] = LayerCommon(backend, c, ckpt.Get, p + "input_layernorm.weight", p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
                p + "self_attn.v_proj.weight", p + "self_attn.o_proj.weight", p + "post_attention_layernorm.weight", dense, router, experts, shared, lq);
        }
        var head = Matrix(place.OutputOnDevice ? device : device.Host, output, c.VocabSize, c.HiddenSize, lq);
        return new Llama4Weights
        {
            Embedding = embedding,
            FinalNorm = Vector(ckpt.Get(prefix + "norm.weight"), c.HiddenSize),
            Output = head,
            EmbeddingMatrix = DeviceEmbedding(device, place, embedding, output, head, lq),
            Layers = layers,
        };
    }

    private static Llama4Weights LoadGguf(Checkpoint ckpt, IBackend device, LoadTimeQuantizer? lq, Planning.Placement place)
    {
        var c = ckpt.Config;
        var embedding = ckpt.Get("token_embd.weight");
        ExpectShape(embedding, c.VocabSize, c.HiddenSize);
        var output = ckpt.Find("output.weight") ?? embedding;
        var layers = new LayerWeights[c.NumLayers];
        for (int i = 0; i < c.NumLayers; i++)
        {
            string p = $"blk.{i}.";
            var backend = place.LayerOnDevice(i) ? device : device.Host;
            FeedForward? dense = null, shared = null;
            IWeightMatrix? router = null;
            FeedForward[]? experts = null;
            int d = c.HiddenSize;
            if (c.IsMoeLayer(i))
            {
                int e = c.NumExperts, f = c.IntermediateSize;
                router = Matrix(backend, ckpt.Get(p + "ffn_gate_inp.weight"), e, d); // the router stays float, as in llama.cpp files
                var gate = ckpt.Get(p + "ffn_gate_exps.weight");
                var up = ckpt.Get(p + "ffn_up_exps.weight");
                var down = ckpt.Get(p + "ffn_down_exps.weight");
                ExpectShape(gate, e, f, d);
                ExpectShape(up, e, f, d);
                ExpectShape(down, e, d, f);
                var eb = place.ExpertsOnDevice(i) ? device : device.Host;
                long gBytes = gate.Type.ByteCount((long)f * d), uBytes = up.Type.ByteCount((long)f * d), dBytes = down.Type.ByteCount((long)d * f);
                experts = lq is null ? eb.StackedExperts(gate.Type, gate.Data, up.Type, up.Data, down.Type, down.Data, e, f, d) : new FeedForward[e];
                for (int x = 0; lq is not null && x < e; x++)
                    experts[x] = new FeedForward(
                        lq?.RowMajor(gate.Type, gate.Data + x * gBytes, f, d, eb) ?? eb.RowMajor(gate.Type, gate.Data + x * gBytes, f, d),
                        lq?.RowMajor(up.Type, up.Data + x * uBytes, f, d, eb) ?? eb.RowMajor(up.Type, up.Data + x * uBytes, f, d),
                        lq?.RowMajor(down.Type, down.Data + x * dBytes, d, f, eb) ?? eb.RowMajor(down.Type, down.Data + x * dBytes, d, f));
                shared = new FeedForward(
                    Matrix(backend, ckpt.Get(p + "ffn_gate_shexp.weight"), f, d, lq),
                    Matrix(backend, ckpt.Get(p + "ffn_up_shexp.weight"), f, d, lq),
                    Matrix(backend, ckpt.Get(p + "ffn_down_shexp.weight"), d, f, lq));
            }
            else
            {
                int f = c.IntermediateSizeMlp;
                dense = new FeedForward(
                    Matrix(backend, ckpt.Get(p + "ffn_gate.weight"), f, d, lq),
                    Matrix(backend, ckpt.Get(p + "ffn_up.weight"), f, d, lq),
                    Matrix(backend, ckpt.Get(p + "ffn_down.weight"), d, f, lq));
            }
            layers[i] = LayerCommon(backend, c, ckpt.Get, p + "attn_norm.weight", p + "attn_q.weight", p + "attn_k.weight",
                p + "attn_v.weight", p + "attn_output.weight", p + "ffn_norm.weight", dense, router, experts, shared, lq);
        }
        float[]? ropeFreqs = null;
        if (ckpt.Find("rope_freqs.weight") is { } rf)
            ropeFreqs = Vector(rf, c.HeadDim / 2);
        var head = Matrix(place.OutputOnDevice ? device : device.Host, output, c.VocabSize, c.HiddenSize, lq);
        return new Llama4Weights
        {
            Embedding = embedding,
            FinalNorm = Vector(ckpt.Get("output_norm.weight"), c.HiddenSize),
            Output = head,
            EmbeddingMatrix = DeviceEmbedding(device, place, embedding, output, head, lq),
            Layers = layers,
            RopeFreqDivisors = ropeFreqs,
        };
    }

    /// <summary>The embedding on the device when the lookup runs there: the head's matrix when the head is the same tensor (tied), else its own upload.</summary>
    private static IWeightMatrix? DeviceEmbedding(IBackend device, Planning.Placement place, WeightTensor embedding, WeightTensor output, IWeightMatrix head, LoadTimeQuantizer? lq)
    {
        if (!place.EmbeddingOnDevice || ReferenceEquals(device.Host, device)) return null;
        if (ReferenceEquals(embedding, output) && lq is null) return head;
        return device.RowMajor(embedding.Type, embedding.Data, (int)embedding.Shape[0], (int)embedding.Shape[1]);
    }

    /// <summary>Writes the embedding of <paramref name="token"/> into <paramref name="dst"/> (ids outside the vocabulary are refused).</summary>
    public void Embed(int token, Span<float> dst)
    {
        long vocab = Embedding.Shape[0];
        if ((uint)token >= (ulong)vocab)
            throw new ArgumentException($"token id {token} is outside the vocabulary (0..{vocab - 1})");
        long rowBytes = Embedding.Type.RowBytes(dst.Length);
        Dequantize.ToFloat(Embedding.Type, new ReadOnlySpan<byte>(Embedding.Data + token * rowBytes, (int)rowBytes), dst);
        int bad = TensorScan.FirstNonFinite(dst);
        if (bad >= 0)
            throw new NonFiniteException($"the embedding of token {token} ('{Embedding.Name}' row {token}, element {bad}) is {dst[bad]}: the weights are corrupt");
    }
}
