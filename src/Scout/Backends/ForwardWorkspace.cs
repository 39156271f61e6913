using Scout.Model;

namespace Scout.Backends;

/// <summary>Where a workspace buffer lives.</summary>
public enum BufferPlace
{
    /// <summary>Allocated by the backend: device memory on a GPU, a managed array on the CPU.</summary>
    Backend,
    /// <summary>A host table the model fills and the host reads (positions, the batch plan, the CPU's expert grouping).</summary>
    Host,
    /// <summary>Only a device backend allocates it (empty on the CPU backend, which writes straight into the caller's memory).</summary>
    DeviceOnly,
}

/// <summary>One buffer of the forward pass: element count and element size, for the planner and the allocation alike.</summary>
public sealed record WorkspaceBuffer(string Name, string Phase, long Elements, int ElementBytes, BufferPlace Place = BufferPlace.Backend, bool Integers = false)
{
    public long Bytes => Elements * ElementBytes;

    /// <summary>Bytes this buffer takes on a backend that is (<paramref name="device"/>) or is not a device.</summary>
    public long BytesOn(bool device) => Place switch
    {
        BufferPlace.Backend => Bytes,
        BufferPlace.Host => device ? 0 : Bytes,
        _ => device ? Bytes : 0,
    };
}

/// <summary>
/// Every activation buffer of <see cref="Llama4Model"/>'s forward pass, allocated once for a largest batch of
/// <see cref="Rows"/> rows (as llama2.c's RunState) by the <see cref="IBackend"/> that runs it, and reused by every
/// step, so decoding allocates nothing. On a GPU backend the buffers are device memory and a second workspace on
/// the host backend (<see cref="Host"/>) serves the layers and experts placed in RAM.
/// <see cref="Layout"/> is the single description of these sizes: the workspace allocates from it and
/// <c>scout plan</c> (<see cref="Planning.EngineBuffers"/>) prints it.
/// </summary>
public sealed class ForwardWorkspace
{
    public Llama4Config Config { get; }
    /// <summary>Largest number of rows (tokens of all sequences together) one forward may carry.</summary>
    public int Rows { get; }
    /// <summary>The backend that allocated the buffers.</summary>
    public IBackend Backend { get; }
    /// <summary>The workspace of <see cref="IBackend.Host"/> (this one on the CPU backend).</summary>
    public ForwardWorkspace Host { get; }

    // forward: residual stream, norms' output, each block's output, position tables.
    public BufferView Input { get; }
    public BufferView Normed { get; }
    public BufferView Delta { get; }
    public BufferView RopeCos { get; }
    public BufferView RopeSin { get; }
    public BufferView Temperature { get; }
    /// <summary>Logit rows of the head before they are copied to the caller (device backends only).</summary>
    public BufferView HeadOutput { get; }
    // host tables
    public int[] Positions { get; }
    public int[] LogitRows { get; }
    public BatchRows Batch { get; }
    /// <summary>A reusable segment list for single-token batch steps.</summary>
    public List<BatchSegment> Segments { get; }
    // attention
    public BufferView Q { get; }
    public BufferView K { get; }
    public BufferView V { get; }
    public BufferView Attn { get; }
    // SwiGLU blocks (dense FFN, shared expert, routed experts)
    public BufferView Gate { get; }
    public BufferView Up { get; }
    // MoE: router logits, each row's top-k experts and gates, the routed rows' inputs and outputs
    public BufferView RouterLogits { get; }
    public BufferView Choice { get; }
    public BufferView SlotGates { get; }
    public BufferView ExpertIn { get; }
    public BufferView ExpertOut { get; }
    // MoE grouping on the host (counting sort by expert)
    public int[] SlotRows { get; }
    public int[] FirstSlot { get; }
    public int[] Fill { get; }

    /// <summary>Rows of <see cref="HeadOutput"/>: the head runs in pieces of this many rows on a device.</summary>
    public const int HeadRows = 8;

    private readonly long _bytes;
    private readonly List<ActivationBuffer> _allocated = new();

    public ForwardWorkspace(Llama4Config config, int rows, IBackend backend)
    {
        if (rows <= 0) throw new ArgumentException($"a workspace needs room for at least one row, got {rows}");
        Config = config;
        Rows = rows;
        Backend = backend;
        bool device = !ReferenceEquals(backend.Host, backend);
        var layout = Layout(config, rows).ToDictionary(b => b.Name);
        _bytes = layout.Values.Sum(b => b.BytesOn(device));
        BufferView B(string name)
        {
            if (!layout.TryGetValue(name, out var b)) return new HostBuffer(Array.Empty<float>()).All;
            if (b.Place == BufferPlace.DeviceOnly && !device) return new HostBuffer(Array.Empty<float>()).All;
            var buffer = backend.Allocate(b);
            _allocated.Add(buffer);
            return buffer.All;
        }
        // A device workspace shares the host tables of its host workspace.
        Host = device ? new ForwardWorkspace(config, rows, backend.Host) : this;
        int[] I(string name) => layout.TryGetValue(name, out var b) ? new int[checked((int)b.Elements)] : [];
        Input = B("input rows");
        Normed = B("normed");
        Delta = B("delta");
        RopeCos = B("rope cos");
        RopeSin = B("rope sin");
        Temperature = B("temperature");
        HeadOutput = B("head output");
        Positions = device ? Host.Positions : I("positions");
        LogitRows = device ? Host.LogitRows : I("logit rows");
        Batch = device ? Host.Batch : new BatchRows(checked((int)layout["batch rows"].Elements) / 3);
        Segments = device ? Host.Segments : new List<BatchSegment>(rows);
        Q = B("q");
        K = B("k");
        V = B("v");
        Attn = B("attn");
        Gate = B("gate");
        Up = B("up");
        RouterLogits = B("router logits");
        Choice = B("top-k choices");
        SlotGates = B("slot gates");
        ExpertIn = B("expert input");
        ExpertOut = B("expert output");
        SlotRows = device ? Host.SlotRows : I("slot rows");
        FirstSlot = device ? Host.FirstSlot : I("expert slots");
        Fill = device ? Host.Fill : I("expert fill");
    }

    /// <summary>Frees the buffers that hold memory outside the managed heap (a device's) — the workspace is not used after.</summary>
    public void Release()
    {
        foreach (var b in _allocated) (b as IDisposable)?.Dispose();
        _allocated.Clear();
        if (!ReferenceEquals(Host, this)) Host.Release();
    }

    /// <summary>Bytes this workspace holds on its backend (a device workspace's <see cref="Host"/> counts its own).</summary>
    public long Bytes => _bytes;

    /// <summary>The buffers of a workspace for <paramref name="rows"/> rows, in allocation order.</summary>
    public static IReadOnlyList<WorkspaceBuffer> Layout(Llama4Config c, int rows)
    {
        if (rows <= 0) throw new ArgumentException($"tokens per forward must be positive, got {rows}");
        long n = rows, d = c.HiddenSize, half = c.HeadDim / 2;
        bool anyMoe = c.MoeLayers.Any(m => m), anyDense = c.MoeLayers.Any(m => !m);
        long k = anyMoe ? c.TopK : 0;
        // SwiGLU blocks run over n rows (dense, shared expert) or n·k routed rows (all experts at once on a device).
        long ffn = Math.Max(anyMoe ? Math.Max(n, n * k) * c.IntermediateSize : 0, anyDense ? n * c.IntermediateSizeMlp : 0);
        var list = new List<WorkspaceBuffer>
        {
            new("input rows", "forward", n * d, 4),
            new("normed", "forward", n * d, 4),
            new("delta", "forward", n * d, 4),
            new("rope cos", "forward", n * half, 4),
            new("rope sin", "forward", n * half, 4),
            new("temperature", "forward", n, 4),
            new("head output", "forward", Math.Min(n, HeadRows) * c.VocabSize, 4, BufferPlace.DeviceOnly),
            new("positions", "forward", n, 4, BufferPlace.Host, true),
            new("logit rows", "forward", n, 4, BufferPlace.Host, true),
            new("batch rows", "forward", 3 * n, 4, BufferPlace.Host, true),   // segment offsets, starts, segment of each row
            new("q", "attention", n * c.QDim, 4),
            new("k", "attention", n * c.KvDim, 4),
            new("v", "attention", n * c.KvDim, 4),
            new("attn", "attention", n * c.QDim, 4),
            new("gate", "ffn", ffn, 4),
            new("up", "ffn", ffn, 4),
        };
        if (anyMoe)
        {
            long e = c.NumExperts;
            list.Add(new("router logits", "moe", n * e, 4));
            list.Add(new("top-k choices", "moe", n * k, 4, Integers: true));
            list.Add(new("slot gates", "moe", n * k, 4));
            // One routed row per (row, choice); on the CPU an expert sees each row at most once.
            list.Add(new("expert input", "moe", n * k * d, 4));
            list.Add(new("expert output", "moe", n * k * d, 4));
            list.Add(new("slot rows", "moe", n * k, 4, BufferPlace.Host, true));
            list.Add(new("expert slots", "moe", e + 1, 4, BufferPlace.Host, true));
            list.Add(new("expert fill", "moe", e, 4, BufferPlace.Host, true));
        }
        return list;
    }
}
