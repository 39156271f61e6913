using System.Runtime.InteropServices;
using Scout.Formats;
using Scout.Kernels;
using Scout.Kernels.Quant;
using Scout.Model;
using Scout.Tensors;

namespace Scout.Quantization;

/// <summary>One tensor finished by <see cref="Llama4GgufExporter"/>.</summary>
public sealed record ExportProgress(int Index, int Count, string Name, TensorType Type, long Bytes);

/// <summary>What an export wrote.</summary>
public sealed record ExportSummary(string Path, int Tensors, long FileBytes, IReadOnlyDictionary<TensorType, int> TypeCounts);

/// <summary>
/// A tensor to write: its GGUF name and ne, and a producer of float rows (rows of ne[0] values, counted over
/// ne[1]·ne[2]·…). <see cref="RowsPerChunk"/> keeps producers that transpose (HF experts) on whole matrices.
/// </summary>
public sealed class PlannedTensor(string name, long[] ne, Action<long, int, Span<float>> fillRows)
{
    public string Name { get; } = name;
    public long[] Ne { get; } = ne;
    public Action<long, int, Span<float>> FillRows { get; } = fillRows;
    public int RowsPerChunk { get; init; }
    /// <summary>When set and equal to the chosen type, the bytes are copied unchanged (no re-encoding).</summary>
    public TensorType? SourceType { get; init; }
    public unsafe byte* SourceData { get; init; }
    public long Rows => Ne.Skip(1).Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// Writes a Llama 4 checkpoint (Hugging Face folder/.safetensors or GGUF) as a llama.cpp-compatible GGUF of the
/// requested type: llama.cpp's tensor names and layouts (HF gate_up_proj split and transposed as the converter
/// does, rope_freqs from llama3 scaling), its metadata keys and its tensor-type mix. Streams tensor by tensor.
/// </summary>
public static unsafe class Llama4GgufExporter
{
    /// <summary>Floats produced per chunk when a tensor is streamed (~32 MiB).</summary>
    private const long ChunkFloats = 8 << 20;

    public static ExportSummary Export(string modelPath, string outPath, QuantPreset preset, string? configPath = null,
        Action<ExportProgress>? progress = null, Action<int>? planned = null)
    {
        using var ckpt = Checkpoint.Open(modelPath, configPath);
        var c = ckpt.Config;
        // The same checks as loading for inference (every shape against the config, every tensor claimed): a file
        // whose metadata disagrees with its tensors is refused here, not written.
        using (var validation = new Scout.Backends.CpuBackend(threads: 1)) _ = Llama4Weights.Load(ckpt, validation);
        List<PlannedTensor> plan = ckpt.Format == CheckpointFormat.Gguf ? PlanFromGguf(ckpt) : PlanFromHuggingFace(ckpt);
        if (Path.GetFullPath(outPath) == Path.GetFullPath(ckpt.Files[0]))
            throw new ArgumentException($"output {outPath} is the input file");
        using var w = new GgufWriter(outPath);
        if (ckpt.Gguf is { } g)
        {
            w.CopyMetadataFrom(g);
        }
        else
        {
            Llama4Metadata.Write(w, c, Path.GetFileName(Path.GetFullPath(modelPath).TrimEnd(Path.DirectorySeparatorChar)));
            GgufVocab.FromModelFolder(ckpt.Folder, c.VocabSize).WriteTo(w);
        }
        w.SetUInt32("general.file_type", QuantMix.FileType(preset));
        w.SetUInt32("general.quantization_version", 2);
        return WritePlan(w, outPath, plan, preset, c.NumLayers, c.NumExperts, progress, planned);
    }

    /// <summary>Chooses each planned tensor's type, declares them, then encodes and writes them one by one.</summary>
    public static ExportSummary WritePlan(GgufWriter w, string outPath, List<PlannedTensor> plan, QuantPreset preset, int layers, int experts,
        Action<ExportProgress>? progress = null, Action<int>? planned = null)
    {
        bool hasOutput = plan.Any(t => t.Name == "output.weight");
        var types = plan.Select(t => QuantMix.Choose(preset, t.Name, t.Ne.Length, t.Ne[0], layers, experts, hasOutput)).ToArray();
        for (int i = 0; i < plan.Count; i++) w.AddTensor(plan[i].Name, plan[i].Ne, types[i]);
        planned?.Invoke(plan.Count);
        var counts = new Dictionary<TensorType, int>();
        using var pool = new WorkerPool(Environment.ProcessorCount);   // this export's encoding threads
        for (int i = 0; i < plan.Count; i++)
        {
            var t = plan[i];
            var type = types[i];
            counts[type] = counts.GetValueOrDefault(type) + 1;
            long rowBytes = type.RowBytes(t.Ne[0]);
            if (t.SourceType == type && t.SourceData != null)
            {
                long total = rowBytes * t.Rows;
                for (long off = 0; off < total; off += int.MaxValue / 2)
                    w.WriteTensorPart(t.Name, new ReadOnlySpan<byte>(t.SourceData + off, (int)Math.Min(int.MaxValue / 2, total - off)));
            }
            else
            {
                int cols = checked((int)t.Ne[0]);
                long rows = t.Rows;
                int chunkRows = t.RowsPerChunk > 0 ? t.RowsPerChunk : (int)Math.Clamp(ChunkFloats / cols, 1, rows);
                var floats = new float[(long)chunkRows * cols];
                var bytes = new byte[rowBytes * chunkRows];
                for (long r = 0; r < rows; r += chunkRows)
                {
                    int n = (int)Math.Min(chunkRows, rows - r);
                    var f = floats.AsSpan(0, n * cols);
                    t.FillRows(r, n, f);
                    var b = bytes.AsSpan(0, (int)(rowBytes * n));
                    Quantizer.QuantizeRows(type, f, n, cols, b, pool);
                    w.WriteTensorPart(t.Name, b);
                }
            }
            progress?.Invoke(new ExportProgress(i + 1, plan.Count, t.Name, type, rowBytes * t.Rows));
        }
        w.Finish();
        return new ExportSummary(outPath, plan.Count, new FileInfo(outPath).Length, counts);
    }

    /// <summary>Rows of a row-major tensor in any stored type, decoded to float.</summary>
    public static Action<long, int, Span<float>> RowReader(WeightTensor t, long cols)
    {
        long rowBytes = t.Type.RowBytes(cols);
        byte* data = t.Data;
        var type = t.Type;
        return (first, count, dst) =>
        {
            fixed (float* pd = dst)
            {
                float* d = pd;
                ParallelRows.For(count, Math.Max(1, (int)(65536 / cols)), (r0, r1) =>
                {
                    for (long i = r0; i < r1; i++)
                        Dequantize.ToFloat(type, new ReadOnlySpan<byte>(data + (first + i) * rowBytes, (int)rowBytes), new Span<float>(d + i * cols, (int)cols));
                });
            }
        };
    }

    private static List<PlannedTensor> PlanFromGguf(Checkpoint ckpt)
    {
        var g = ckpt.Gguf!;
        var plan = new List<PlannedTensor>();
        foreach (var info in g.TensorInfos)
        {
            var t = g.Tensors[info.Name];
            plan.Add(new PlannedTensor(info.Name, info.Ne, RowReader(t, info.Ne[0])) { SourceType = info.Type, SourceData = t.Data });
        }
        return plan;
    }

    private static List<PlannedTensor> PlanFromHuggingFace(Checkpoint ckpt)
    {
        var c = ckpt.Config;
        var plan = new List<PlannedTensor>();
        if (c.RopeScaling is { } rs)
        {
            var divisors = RopeFreqDivisors(c.HeadDim, c.RopeTheta, rs);
            plan.Add(new PlannedTensor("rope_freqs.weight", [divisors.Length], (_, _, dst) => divisors.CopyTo(dst))); // one row: the whole vector
        }
        string prefix = ckpt.Find("language_model.model.embed_tokens.weight") != null ? "language_model.model." : "model.";
        string head = prefix == "model." ? "lm_head.weight" : "language_model.lm_head.weight";
        foreach (var name in ckpt.Tensors.Keys.Order(StringComparer.Ordinal))
        {
            var t = ckpt.Tensors[name];
            if (name == head)
            {
                plan.Add(Direct("output.weight", t));
                continue;
            }
            if (!name.StartsWith(prefix, StringComparison.Ordinal)) continue; // vision tower and projector: not part of the text GGUF
            string rest = name[prefix.Length..];
            if (rest == "embed_tokens.weight") plan.Add(Direct("token_embd.weight", t));
            else if (rest == "norm.weight") plan.Add(Direct("output_norm.weight", t));
            else if (rest.StartsWith("layers.", StringComparison.Ordinal))
            {
                int dot = rest.IndexOf('.', 7);
                string layer = rest[7..dot];
                string local = rest[(dot + 1)..];
                string blk = $"blk.{layer}.";
                switch (local)
                {
                    case "input_layernorm.weight": plan.Add(Direct(blk + "attn_norm.weight", t)); break;
                    case "post_attention_layernorm.weight": plan.Add(Direct(blk + "ffn_norm.weight", t)); break;
                    case "self_attn.q_proj.weight": plan.Add(Direct(blk + "attn_q.weight", t)); break;
                    case "self_attn.k_proj.weight": plan.Add(Direct(blk + "attn_k.weight", t)); break;
                    case "self_attn.v_proj.weight": plan.Add(Direct(blk + "attn_v.weight", t)); break;
                    case "self_attn.o_proj.weight": plan.Add(Direct(blk + "attn_output.weight", t)); break;
                    case "feed_forward.router.weight": plan.Add(Direct(blk + "ffn_gate_inp.weight", t)); break;
                    case "feed_forward.shared_expert.gate_proj.weight": plan.Add(Direct(blk + "ffn_gate_shexp.weight", t)); break;
                    case "feed_forward.shared_expert.up_proj.weight": plan.Add(Direct(blk + "ffn_up_shexp.weight", t)); break;
                    case "feed_forward.shared_expert.down_proj.weight": plan.Add(Direct(blk + "ffn_down_shexp.weight", t)); break;
                    case "feed_forward.gate_proj.weight": plan.Add(Direct(blk + "ffn_gate.weight", t)); break;
                    case "feed_forward.up_proj.weight": plan.Add(Direct(blk + "ffn_up.weight", t)); break;
                    case "feed_forward.down_proj.weight": plan.Add(Direct(blk + "ffn_down.weight", t)); break;
                    case "feed_forward.experts.down_proj":
                        // [E, F, D] used as h·W: output d of expert e is column d → ggml ne [F, D, E].
                        plan.Add(InputMajorExperts(blk + "ffn_down_exps.weight", t, 0, (int)t.Shape[2]));
                        break;
                    case "feed_forward.experts.gate_up_proj":
                    {
                        // [E, D, 2F]: gate = columns [0, F), up = columns [F, 2F) → ne [D, F, E] each.
                        int f = (int)(t.Shape[2] / 2);
                        plan.Add(InputMajorExperts(blk + "ffn_gate_exps.weight", t, 0, f));
                        plan.Add(InputMajorExperts(blk + "ffn_up_exps.weight", t, f, f));
                        break;
                    }
                    default:
                        throw new ModelLoadException($"tensor '{name}' has no GGUF mapping (unexpected Llama 4 layer tensor)");
                }
            }
            else
            {
                throw new ModelLoadException($"tensor '{name}' has no GGUF mapping");
            }
        }
        return plan;
    }

    /// <summary>A tensor whose row-major layout already is ggml's (ne = reversed shape).</summary>
    private static PlannedTensor Direct(string ggufName, WeightTensor t)
    {
        if (!t.Type.IsFloat()) throw new ModelLoadException($"tensor '{t.Name}' has type {t.Type}; Hugging Face checkpoints must be F32, F16 or BF16");
        var ne = t.Shape.Reverse().ToArray();
        return new PlannedTensor(ggufName, ne, RowReader(t, ne[0])) { SourceType = t.Type, SourceData = t.Data };
    }

    /// <summary>
    /// HF expert tensors [E, in, ld] used as x·W[e][:, offset..offset+out): transposed per expert to ggml's
    /// [in, out, E] (row o of expert e = column offset+o).
    /// </summary>
    private static PlannedTensor InputMajorExperts(string ggufName, WeightTensor t, int columnOffset, int outputs)
    {
        if (t.Rank != 3 || !t.Type.IsFloat()) throw new ModelLoadException($"expert tensor '{t.Name}' must be a 3-D F32/F16/BF16 tensor, got {t.Type} {t.ShapeText}");
        int experts = (int)t.Shape[0], inputs = (int)t.Shape[1], ld = (int)t.Shape[2];
        int elem = t.Type == TensorType.F32 ? 4 : 2;
        byte* data = t.Data;
        var type = t.Type;
        return new PlannedTensor(ggufName, [inputs, outputs, experts], (first, count, dst) =>
        {
            if (first % outputs != 0 || count % outputs != 0)
                throw new InvalidOperationException("expert tensors are produced whole experts at a time");
            var row = new float[outputs];
            for (int k = 0; k < count / outputs; k++)
            {
                long e = first / outputs + k;
                var block = dst.Slice(k * outputs * inputs, outputs * inputs);
                for (int i = 0; i < inputs; i++)
                {
                    byte* p = data + ((e * inputs + i) * ld + columnOffset) * elem;
                    Dequantize.ToFloat(type, new ReadOnlySpan<byte>(p, outputs * elem), row);
                    for (int o = 0; o < outputs; o++) block[o * inputs + i] = row[o];
                }
            }
        }) { RowsPerChunk = outputs };
    }

    /// <summary>llama.cpp's converter: per-pair divisors 1, factor, or the smooth-band value (float32 frequencies).</summary>
    public static float[] RopeFreqDivisors(int headDim, double theta, RopeScaling s)
    {
        var result = new float[headDim / 2];
        double lowWavelen = s.OriginalMaxPositions / s.LowFreqFactor;
        double highWavelen = s.OriginalMaxPositions / s.HighFreqFactor;
        for (int j = 0; j < result.Length; j++)
        {
            float freq = 1.0f / MathF.Pow((float)theta, (float)(2 * j) / headDim);
            double wavelen = 2 * Math.PI / freq;
            if (wavelen < highWavelen) result[j] = 1;
            else if (wavelen > lowWavelen) result[j] = (float)s.Factor;
            else
            {
                double smooth = (s.OriginalMaxPositions / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                result[j] = (float)(1 / ((1 - smooth) / s.Factor + smooth));
            }
        }
        return result;
    }
}

/// <summary>The general.* and llama4.* keys llama.cpp's converter writes for a Llama 4 text model.</summary>
public static class Llama4Metadata
{
    public static void Write(GgufWriter w, Llama4Config c, string name)
    {
        w.SetString("general.architecture", "llama4");
        w.SetString("general.type", "model");
        w.SetString("general.name", name);
        w.SetUInt32("llama4.block_count", (uint)c.NumLayers);
        w.SetUInt32("llama4.context_length", (uint)c.MaxPositionEmbeddings);
        w.SetUInt32("llama4.embedding_length", (uint)c.HiddenSize);
        w.SetUInt32("llama4.feed_forward_length", (uint)c.IntermediateSizeMlp);
        w.SetUInt32("llama4.attention.head_count", (uint)c.NumHeads);
        w.SetUInt32("llama4.attention.head_count_kv", (uint)c.NumKvHeads);
        w.SetFloat32("llama4.rope.freq_base", (float)c.RopeTheta);
        w.SetFloat32("llama4.attention.layer_norm_rms_epsilon", (float)c.RmsNormEps);
        w.SetUInt32("llama4.expert_count", (uint)c.NumExperts);
        w.SetUInt32("llama4.expert_used_count", (uint)c.TopK);
        w.SetUInt32("llama4.attention.key_length", (uint)c.HeadDim);
        w.SetUInt32("llama4.attention.value_length", (uint)c.HeadDim);
        w.SetUInt32("general.file_type", 0);
        w.SetUInt32("llama4.vocab_size", (uint)c.VocabSize);
        w.SetUInt32("llama4.rope.dimension_count", (uint)c.HeadDim);
        w.SetUInt32("llama4.interleave_moe_layer_step", (uint)c.InterleaveMoeLayerStep);
        w.SetUInt32("llama4.expert_feed_forward_length", (uint)c.IntermediateSize);
        w.SetUInt32("general.quantization_version", 2);
    }
}
