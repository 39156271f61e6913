using System.Text.RegularExpressions;
using Scout.Backends;
using Scout.Model;
using Scout.Tensors;

namespace Scout.Planning;

/// <summary>
/// What a device backend allocates for one checkpoint under a <see cref="Placement"/>, by the rules the engine
/// loads with: weight matrices of the device's layers in their stored form (when the device has a kernel for the
/// type), norm vectors as f32, the device half of the forward workspace (<see cref="ForwardWorkspace.Layout"/>),
/// and the K/V copy of each sequence's cache for the device's layers. <see cref="HostWeightBytes"/> is what stays
/// in RAM (mapped from the file). Kernel scratch of the backend (a few small staging buffers) is not counted.
/// </summary>
public sealed record DevicePlan(Placement Placement, long WeightBytes, long VectorBytes, long WorkspaceBytes, long KvBytesPerSequence, int Sequences, long HostWeightBytes)
{
    public long KvBytes => KvBytesPerSequence * Sequences;
    public long TotalBytes => WeightBytes + VectorBytes + WorkspaceBytes + KvBytes;

    private static readonly Regex LayerName = new(@"(?:^|\.)(?:blk|layers)\.(\d+)\.", RegexOptions.Compiled);

    /// <param name="tensors">the checkpoint's tensors (vision tensors are skipped: the text model does not load them)</param>
    /// <param name="uploads">whether the device uploads a row-major matrix of this type with rows of this many values</param>
    /// <param name="rows">tokens per forward the workspace is sized for</param>
    /// <param name="context">context length of each sequence's cache</param>
    public static DevicePlan For(Llama4Config c, IEnumerable<WeightTensor> tensors, Placement place, Func<TensorType, long, bool> uploads,
        int rows, int context, int sequences, KvType keyType, KvType valueType)
        => For(c, tensors.Select(CheckpointTensor.Of), place, uploads, rows, context, sequences, keyType, valueType);

    /// <summary>The same from the planner's description of a checkpoint's tensors.</summary>
    public static DevicePlan For(Llama4Config c, IEnumerable<CheckpointTensor> tensors, Placement place, Func<TensorType, long, bool> uploads,
        int rows, int context, int sequences, KvType keyType, KvType valueType)
    {
        long weights = 0, vectors = 0, host = 0;
        foreach (var t in tensors)
        {
            if (Checkpoint.SeparatelyLoaded.Any(p => t.Name.StartsWith(p, StringComparison.Ordinal))) continue;
            string n = t.Name;
            bool onDevice;
            if (n.EndsWith("token_embd.weight", StringComparison.Ordinal) || n.EndsWith("embed_tokens.weight", StringComparison.Ordinal))
            {
                onDevice = place.EmbeddingOnDevice;
            }
            else if (n.EndsWith("output.weight", StringComparison.Ordinal) && !LayerName.IsMatch(n) || n.EndsWith("lm_head.weight", StringComparison.Ordinal))
            {
                onDevice = place.OutputOnDevice;
            }
            else if (LayerName.Match(n) is { Success: true } m)
            {
                int layer = int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
                // Stacked GGUF experts are row-major per expert; Hugging Face experts are input-major and stay on the host.
                bool experts = n.Contains("_exps.", StringComparison.Ordinal) || n.Contains(".experts.", StringComparison.Ordinal);
                onDevice = experts
                    ? place.ExpertsOnDevice(layer) && n.Contains("_exps.", StringComparison.Ordinal)
                    : place.LayerOnDevice(layer);
            }
            else if (n.EndsWith("output_norm.weight", StringComparison.Ordinal) || n.EndsWith("model.norm.weight", StringComparison.Ordinal))
            {
                if (place.OutputOnDevice) vectors += t.Elements * 4;
                continue;
            }
            else
            {
                host += t.Bytes;   // rope_freqs and the like: read on the host
                continue;
            }
            if (t.Shape.Length == 1)
            {
                if (onDevice) vectors += t.Elements * 4;
                continue;
            }
            if (onDevice && uploads(t.Type, t.Shape[^1])) weights += t.Bytes;
            else host += t.Bytes;
        }
        // A tied head (no output tensor) is the embedding's device matrix: uploaded once (counted above), as the engine does.
        long workspace = ForwardWorkspace.Layout(c, rows).Sum(b => b.BytesOn(device: true));
        return new DevicePlan(place, weights, vectors, workspace, KvBytesFor(c, place, context, keyType, valueType), sequences, host);
    }

    /// <summary>Device K/V of one sequence: each device layer keeps capacity × kv_dim keys and values (a ring of one chunk
    /// for chunked layers shorter than the context, as the host cache), f32, f16 or bf16.</summary>
    public static long KvBytesFor(Llama4Config c, Placement place, int context, KvType key, KvType value)
    {
        long sum = 0;
        for (int i = 0; i < c.NumLayers; i++)
        {
            if (!place.LayerOnDevice(i)) continue;
            sum += Capacity(c, i, context) * c.KvDim * (DeviceWidth(key) + DeviceWidth(value));
        }
        return sum;
    }

    /// <summary>Positions one layer's cache holds: a ring of one chunk for chunked layers shorter than the context.</summary>
    public static int Capacity(Llama4Config c, int layer, int context)
        => c.UsesRope(layer) && c.AttentionChunkSize < context ? c.AttentionChunkSize : context;

    /// <summary>Bytes per value of a K or V type on the device (f16, bf16: 2; f32: 4).</summary>
    public static int DeviceWidth(KvType t) => t == KvType.F16 || t == KvType.BF16 ? 2 : 4;
}
