using Scout.Model;

namespace Scout.Backends;

/// <summary>One buffer of the forward pass: element count and element size, for the planner and the allocation alike.</summary>
public sealed record WorkspaceBuffer(string Name, string Phase, long Elements, int ElementBytes)
{
    public long Bytes => Elements * ElementBytes;
}

/// <summary>
/// Every activation buffer of <see cref="Llama4Model"/>'s forward pass, allocated once for a largest batch of
/// <see cref="Rows"/> rows (as llama2.c's RunState) and reused by every step, so decoding allocates nothing.
/// <see cref="Layout"/> is the single description of these sizes: the workspace allocates from it and
/// <c>scout plan</c> (<see cref="Planning.EngineBuffers"/>) prints it.
/// </summary>
public sealed class ForwardWorkspace
{
    public Llama4Config Config { get; }
    /// <summary>Largest number of rows (tokens of all sequences together) one forward may carry.</summary>
    public int Rows { get; }

    // forward: residual input (for callers that embed into the workspace), norms' output, each block's output.
    public float[] Input { get; }
    public float[] Normed { get; }
    public float[] Delta { get; }
    public float[] RopeCos { get; }
    public float[] RopeSin { get; }
    public float[] Temperature { get; }
    public int[] Positions { get; }
    public int[] LogitRows { get; }
    public BatchRows Batch { get; }
    /// <summary>A reusable segment list for single-token batch steps.</summary>
    public List<BatchSegment> Segments { get; }
    // attention
    public float[] Q { get; }
    public float[] K { get; }
    public float[] V { get; }
    public float[] Attn { get; }
    // SwiGLU blocks (dense FFN, shared expert, each routed expert in turn)
    public float[] Gate { get; }
    public float[] Up { get; }
    // MoE
    public float[] RouterLogits { get; }
    public float[] SlotGates { get; }
    public int[] SlotRows { get; }
    public int[] Choice { get; }
    public int[] FirstSlot { get; }
    public int[] Fill { get; }
    public float[] ExpertIn { get; }
    public float[] ExpertOut { get; }

    public ForwardWorkspace(Llama4Config config, int rows)
    {
        if (rows <= 0) throw new ArgumentException($"a workspace needs room for at least one row, got {rows}");
        Config = config;
        Rows = rows;
        var sizes = Layout(config, rows).ToDictionary(b => b.Name, b => checked((int)b.Elements));
        float[] F(string name) => new float[sizes[name]];
        int[] I(string name) => new int[sizes[name]];
        Input = F("input rows");
        Normed = F("normed");
        Delta = F("delta");
        RopeCos = F("rope cos");
        RopeSin = F("rope sin");
        Temperature = F("temperature");
        Positions = I("positions");
        LogitRows = I("logit rows");
        Batch = new BatchRows(sizes["batch rows"] / 3);
        Segments = new List<BatchSegment>(rows);
        Q = F("q");
        K = F("k");
        V = F("v");
        Attn = F("attn");
        Gate = F("gate");
        Up = F("up");
        if (sizes.ContainsKey("router logits"))
        {
            RouterLogits = F("router logits");
            SlotGates = F("slot gates");
            SlotRows = I("slot rows");
            Choice = I("top-k choices");
            FirstSlot = I("expert slots");
            Fill = I("expert fill");
            ExpertIn = F("expert input");
            ExpertOut = F("expert output");
        }
        else
        {
            RouterLogits = SlotGates = ExpertIn = ExpertOut = [];
            SlotRows = Choice = FirstSlot = Fill = [];
        }
    }

    /// <summary>Bytes this workspace holds.</summary>
    public long Bytes => Layout(Config, Rows).Sum(b => b.Bytes);

    /// <summary>The buffers of a workspace for <paramref name="rows"/> rows, in allocation order.</summary>
    public static IReadOnlyList<WorkspaceBuffer> Layout(Llama4Config c, int rows)
    {
        if (rows <= 0) throw new ArgumentException($"tokens per forward must be positive, got {rows}");
        long n = rows, d = c.HiddenSize;
        bool anyMoe = c.MoeLayers.Any(m => m), anyDense = c.MoeLayers.Any(m => !m);
        long ffn = Math.Max(anyMoe ? c.IntermediateSize : 0, anyDense ? c.IntermediateSizeMlp : 0);
        var list = new List<WorkspaceBuffer>
        {
            new("input rows", "forward", n * d, 4),
            new("normed", "forward", n * d, 4),
            new("delta", "forward", n * d, 4),
            new("rope cos", "forward", n * (c.HeadDim / 2), 4),
            new("rope sin", "forward", n * (c.HeadDim / 2), 4),
            new("temperature", "forward", n, 4),
            new("positions", "forward", n, 4),
            new("logit rows", "forward", n, 4),
            new("batch rows", "forward", 3 * n, 4),   // segment offsets, starts, segment of each row
            new("q", "attention", n * c.QDim, 4),
            new("k", "attention", n * c.KvDim, 4),
            new("v", "attention", n * c.KvDim, 4),
            new("attn", "attention", n * c.QDim, 4),
            new("gate", "ffn", n * ffn, 4),
            new("up", "ffn", n * ffn, 4),
        };
        if (anyMoe)
        {
            long k = c.TopK, e = c.NumExperts;
            list.Add(new("router logits", "moe", n * e, 4));
            list.Add(new("slot gates", "moe", n * k, 4));
            list.Add(new("slot rows", "moe", n * k, 4));
            list.Add(new("top-k choices", "moe", n * k, 4));
            list.Add(new("expert slots", "moe", e + 1, 4));
            list.Add(new("expert fill", "moe", e, 4));
            // An expert sees each row at most once, so n rows bound its input and output.
            list.Add(new("expert input", "moe", n * d, 4));
            list.Add(new("expert output", "moe", n * d, 4));
        }
        return list;
    }
}
