using Scout.Formats;
using Scout.Kernels;
using Scout.Model;

namespace Scout.Quantization;

/// <summary>The shape of a synthetic Llama 4 model (names as in llama.cpp's llama4.* keys).</summary>
public sealed record SynthShape
{
    public int Layers { get; init; } = 4;
    public int Dim { get; init; } = 256;
    public int Heads { get; init; } = 4;
    public int KvHeads { get; init; } = 2;
    public int HeadDim { get; init; } = 64;
    public int Experts { get; init; } = 4;
    public int TopK { get; init; } = 1;
    public int ExpertFfn { get; init; } = 256;
    public int DenseFfn { get; init; } = 512;
    public int Vocab { get; init; } = 512;
    public int Interleave { get; init; } = 1;

    public static readonly IReadOnlyDictionary<string, SynthShape> Presets = new Dictionary<string, SynthShape>(StringComparer.OrdinalIgnoreCase)
    {
        ["tiny"] = new(),
        ["bench-1b"] = new() { Layers = 16, Dim = 1024, Heads = 16, KvHeads = 8, HeadDim = 128, Experts = 16, ExpertFfn = 1024, DenseFfn = 4096, Vocab = 32000 },
        ["bench-4b"] = new() { Layers = 24, Dim = 2048, Heads = 16, KvHeads = 8, HeadDim = 128, Experts = 16, ExpertFfn = 1536, DenseFfn = 6144, Vocab = 32000 },
        ["scout-shape"] = new() { Layers = 48, Dim = 5120, Heads = 40, KvHeads = 8, HeadDim = 128, Experts = 16, ExpertFfn = 8192, DenseFfn = 16384, Vocab = 202048 },
        ["maverick-shape"] = new() { Layers = 48, Dim = 5120, Heads = 40, KvHeads = 8, HeadDim = 128, Experts = 128, ExpertFfn = 8192, DenseFfn = 16384, Vocab = 202048, Interleave = 2 },
    };

    public bool IsMoeLayer(int i) => Experts > 0 && (i + 1) % Interleave == 0;

    public void Validate()
    {
        if (Layers < 1 || Dim < 1 || Heads < 1 || KvHeads < 1 || HeadDim < 2 || HeadDim % 2 != 0 || Vocab < 1 || Interleave < 1)
            throw new ArgumentException($"invalid shape {this}");
        if (Heads % KvHeads != 0) throw new ArgumentException($"heads ({Heads}) must be a multiple of kv heads ({KvHeads})");
        if (Experts < 1) throw new ArgumentException("llama4 needs at least one expert (llama.cpp rejects expert_count 0)");
        if (TopK < 1 || TopK > Experts) throw new ArgumentException($"top-k {TopK} must be in 1..{Experts}");
        if (ExpertFfn < 1 || (Interleave > 1 && DenseFfn < 1)) throw new ArgumentException("FFN widths must be positive");
    }

    public Llama4Config ToConfig() => new()
    {
        VocabSize = Vocab, HiddenSize = Dim, IntermediateSize = ExpertFfn, IntermediateSizeMlp = DenseFfn, NumLayers = Layers,
        NumHeads = Heads, NumKvHeads = KvHeads, HeadDim = HeadDim, NumExperts = Experts, TopK = TopK, InterleaveMoeLayerStep = Interleave,
        MoeLayers = Enumerable.Range(0, Layers).Select(IsMoeLayer).ToArray(),
        RopeLayers = Enumerable.Range(0, Layers).Select(i => (i + 1) % 4 != 0).ToArray(),
        RopeScaling = new RopeScaling(16, 1, 4, 8192),
        RopeTheta = 500000, RmsNormEps = 1e-5,
        MaxPositionEmbeddings = 10485760,
    };

    /// <summary>Total parameters (every tensor's elements).</summary>
    public long TotalParameters()
    {
        long attn = (long)Dim * Heads * HeadDim * 2 + (long)Dim * KvHeads * HeadDim * 2 + 2L * Dim;
        long moe = (long)Experts * 3 * Dim * ExpertFfn + 3L * Dim * ExpertFfn + (long)Dim * Experts;
        long dense = 3L * Dim * DenseFfn;
        long layers = 0;
        for (int i = 0; i < Layers; i++) layers += attn + (IsMoeLayer(i) ? moe : dense);
        return layers + 2L * Vocab * Dim + Dim + HeadDim / 2;
    }
}

/// <summary>
/// Random-weight Llama 4 GGUFs of any shape for benchmarks and tests: weights N(0, 1/√fan_in) (so activations stay
/// O(1)), norms 1, llama3 rope_freqs (factor 16), a byte-level tokenizer section llama.cpp accepts (synthetic, or
/// Meta's real 202,048-token vocabulary). Deterministic for a seed; generated and quantized in parallel.
/// </summary>
public static class SyntheticModel
{
    public static ExportSummary Write(string outPath, SynthShape shape, QuantPreset preset, int seed, string? realVocabPath = null,
        Action<ExportProgress>? progress = null, Action<int>? planned = null)
    {
        GgufVocab? vocab = null;
        if (realVocabPath != null)
        {
            vocab = GgufVocab.FromTiktoken(realVocabPath);
            shape = shape with { Vocab = vocab.Tokens.Length };
        }
        shape.Validate();
        vocab ??= GgufVocab.Synthetic(shape.Vocab);
        var config = shape.ToConfig();
        using var w = new GgufWriter(outPath);
        Llama4Metadata.Write(w, config, $"synthetic-{shape.Layers}L-{shape.Dim}d-{shape.Experts}x{shape.ExpertFfn}");
        vocab.WriteTo(w);
        w.SetUInt32("general.file_type", QuantMix.FileType(preset));
        w.SetUInt32("general.quantization_version", 2);
        return Llama4GgufExporter.WritePlan(w, outPath, Plan(shape, config, seed), preset, shape.Layers, shape.Experts, progress, planned);
    }

    private static List<PlannedTensor> Plan(SynthShape s, Llama4Config c, int seed)
    {
        var plan = new List<PlannedTensor>();
        int index = 0;
        void Random(string name, long[] ne, double std) => plan.Add(new PlannedTensor(name, ne, Gaussian(seed, index++, ne[0], std)));
        void Ones(string name, long n) { index++; plan.Add(new PlannedTensor(name, [n], (_, _, dst) => dst.Fill(1f))); }

        var divisors = Llama4GgufExporter.RopeFreqDivisors(s.HeadDim, c.RopeTheta, c.RopeScaling!);
        index++;
        plan.Add(new PlannedTensor("rope_freqs.weight", [divisors.Length], (_, _, dst) => divisors.CopyTo(dst)));
        Random("token_embd.weight", [s.Dim, s.Vocab], 1.0);
        for (int i = 0; i < s.Layers; i++)
        {
            string p = $"blk.{i}.";
            Ones(p + "attn_norm.weight", s.Dim);
            Random(p + "attn_q.weight", [s.Dim, s.Heads * s.HeadDim], 1 / Math.Sqrt(s.Dim));
            Random(p + "attn_k.weight", [s.Dim, s.KvHeads * s.HeadDim], 1 / Math.Sqrt(s.Dim));
            Random(p + "attn_v.weight", [s.Dim, s.KvHeads * s.HeadDim], 1 / Math.Sqrt(s.Dim));
            Random(p + "attn_output.weight", [s.Heads * s.HeadDim, s.Dim], 1 / Math.Sqrt(s.Heads * s.HeadDim));
            Ones(p + "ffn_norm.weight", s.Dim);
            if (s.IsMoeLayer(i))
            {
                Random(p + "ffn_gate_inp.weight", [s.Dim, s.Experts], 1 / Math.Sqrt(s.Dim));
                Random(p + "ffn_gate_exps.weight", [s.Dim, s.ExpertFfn, s.Experts], 1 / Math.Sqrt(s.Dim));
                Random(p + "ffn_up_exps.weight", [s.Dim, s.ExpertFfn, s.Experts], 1 / Math.Sqrt(s.Dim));
                Random(p + "ffn_down_exps.weight", [s.ExpertFfn, s.Dim, s.Experts], 1 / Math.Sqrt(s.ExpertFfn));
                Random(p + "ffn_gate_shexp.weight", [s.Dim, s.ExpertFfn], 1 / Math.Sqrt(s.Dim));
                Random(p + "ffn_up_shexp.weight", [s.Dim, s.ExpertFfn], 1 / Math.Sqrt(s.Dim));
                Random(p + "ffn_down_shexp.weight", [s.ExpertFfn, s.Dim], 1 / Math.Sqrt(s.ExpertFfn));
            }
            else
            {
                Random(p + "ffn_gate.weight", [s.Dim, s.DenseFfn], 1 / Math.Sqrt(s.Dim));
                Random(p + "ffn_up.weight", [s.Dim, s.DenseFfn], 1 / Math.Sqrt(s.Dim));
                Random(p + "ffn_down.weight", [s.DenseFfn, s.Dim], 1 / Math.Sqrt(s.DenseFfn));
            }
        }
        Ones("output_norm.weight", s.Dim);
        Random("output.weight", [s.Dim, s.Vocab], 1 / Math.Sqrt(s.Dim));
        return plan;
    }

    /// <summary>Normal rows; each row's stream depends only on (seed, tensor, row), so parallel fills are deterministic.</summary>
    private static Action<long, int, Span<float>> Gaussian(int seed, int tensor, long cols, double std) => (first, count, dst) =>
    {
        unsafe
        {
            fixed (float* p = dst)
            {
                float* d = p;
                ParallelRows.For(count, Math.Max(1, (int)(65536 / cols)), (r0, r1) =>
                {
                    for (long r = r0; r < r1; r++)
                        FillRow(new Span<float>(d + r * cols, (int)cols), Mix((ulong)seed, (ulong)tensor, (ulong)(first + r)), (float)std);
                });
            }
        }
    };

    private static ulong Mix(ulong a, ulong b, ulong c)
    {
        ulong x = a * 0x9E3779B97F4A7C15UL ^ (b + 0x632BE59BD9B4E019UL) * 0xBF58476D1CE4E5B9UL ^ (c + 1) * 0x94D049BB133111EBUL;
        return SplitMix(ref x);
    }

    private static ulong SplitMix(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static void FillRow(Span<float> row, ulong state, float std)
    {
        // Box–Muller: two normals per pair of uniforms.
        for (int i = 0; i < row.Length; i += 2)
        {
            double u1 = ((SplitMix(ref state) >> 11) + 1.0) / 9007199254740993.0;
            double u2 = (SplitMix(ref state) >> 11) / 9007199254740992.0;
            double radius = Math.Sqrt(-2 * Math.Log(u1)) * std;
            row[i] = (float)(radius * Math.Cos(2 * Math.PI * u2));
            if (i + 1 < row.Length) row[i + 1] = (float)(radius * Math.Sin(2 * Math.PI * u2));
        }
    }
}
