using System.Text;
using Scout.Tensors;

namespace Scout.Bench;

/// <summary>Shape of a synthetic Scout-pattern model (qk-norm, MoE every layer, rope_freqs factor 16, θ 500000).</summary>
public sealed record SynthShape(string Name, int Hidden, int Layers, int Heads, int KvHeads, int HeadDim, int Experts, int TopK, int ExpertWidth, int Vocab)
{
    public static SynthShape Bench1B => new("bench-1b", 1024, 16, 16, 8, 128, 16, 1, 1024, 32000);
    public static SynthShape Bench4B => new("bench-4b", 2048, 24, 16, 8, 128, 16, 1, 1536, 32000);
    public static SynthShape Tiny => new("tiny", 256, 4, 4, 2, 64, 4, 1, 256, 600);

    public static SynthShape Parse(string name) => name switch
    {
        "bench-1b" => Bench1B,
        "bench-4b" => Bench4B,
        "tiny" => Tiny,
        _ => throw new ArgumentException($"unknown shape '{name}' (bench-1b, bench-4b, tiny)"),
    };
}

/// <summary>
/// A minimal GGUF v3 writer for random-weight llama4 files, standing in for `scout synth` inside the benchmark:
/// random block bytes with small f16 scales (so activations stay finite through the layers), the tensor-type mix
/// llama-quantize uses for Q4_0 / Q8_0 / Q4_K_M (docs/gguf-llama4.md §3), and a byte-level BPE vocabulary with merges
/// that llama.cpp accepts. The token embedding is kept F16 (llama-quantize would make it Q4_0/Q8_0/Q4_K): only one
/// row of it is read per token, so this barely changes the active bytes.
/// </summary>
public static class SyntheticGguf
{
    private const int Alignment = 32;

    public static void Write(string path, SynthShape s, string mix, int seed = 7)
    {
        var tensors = Plan(s, mix);
        var kv = Metadata(s, mix);
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        using var bw = new BinaryWriter(fs, Encoding.UTF8, leaveOpen: true);
        bw.Write(0x46554747u);
        bw.Write(3u);
        bw.Write((ulong)tensors.Count);
        bw.Write((ulong)kv.Count);
        foreach (var (key, write) in kv) { WriteString(bw, key); write(bw); }
        ulong offset = 0;
        foreach (var t in tensors)
        {
            WriteString(bw, t.Name);
            bw.Write((uint)t.Ne.Length);
            foreach (var n in t.Ne) bw.Write((ulong)n);
            bw.Write((uint)t.Type);
            bw.Write(offset);
            offset += Align((ulong)t.Bytes);
        }
        bw.Flush();
        Pad(fs);
        var rng = new Random(seed);
        var buffer = new byte[1 << 22];
        foreach (var t in tensors)
        {
            long remaining = t.Bytes;
            int unit = t.Type.IsFloat() ? (t.Type == TensorType.F32 ? 4 : 2) : t.Type.BlockBytes();
            int chunk = buffer.Length / unit * unit;
            while (remaining > 0)
            {
                int n = (int)Math.Min(chunk, remaining);
                Fill(buffer.AsSpan(0, n), t, rng);
                fs.Write(buffer, 0, n);
                remaining -= n;
            }
            Pad(fs);
        }
    }

    private static ulong Align(ulong v) => (v + Alignment - 1) / Alignment * Alignment;

    private static void Pad(Stream fs)
    {
        long pad = (long)Align((ulong)fs.Position) - fs.Position;
        for (long i = 0; i < pad; i++) fs.WriteByte(0);
    }

    private static void WriteString(BinaryWriter bw, string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        bw.Write((ulong)b.Length);
        bw.Write(b);
    }

    private sealed record TensorPlan(string Name, long[] Ne, TensorType Type, string Role)
    {
        public long Elements => Ne.Aggregate(1L, (a, b) => a * b);
        public long Bytes => Type.ByteCount(Elements);
    }

    private static List<TensorPlan> Plan(SynthShape s, string mix)
    {
        var (main, output) = mix switch
        {
            "Q4_0" => (TensorType.Q4_0, TensorType.Q6_K),
            "Q8_0" => (TensorType.Q8_0, TensorType.Q8_0),
            "Q4_K_M" => (TensorType.Q4_K, TensorType.Q6_K),
            "F16" => (TensorType.F16, TensorType.F16),
            "Q4_K" => (TensorType.Q4_K, TensorType.Q4_K),
            "Q6_K" => (TensorType.Q6_K, TensorType.Q6_K),
            _ => throw new ArgumentException($"unknown type mix '{mix}' (Q4_0, Q8_0, Q4_K_M, F16)"),
        };
        int L = s.Layers, E = s.Hidden, F = s.ExpertWidth, X = s.Experts, qd = s.Heads * s.HeadDim, kvd = s.KvHeads * s.HeadDim;
        bool UseQ6(int i) => mix == "Q4_K_M" && (i < L / 8 || i >= 7 * L / 8 || (i - L / 8) % 3 == 2);
        var list = new List<TensorPlan>
        {
            new("token_embd.weight", [E, s.Vocab], TensorType.F16, "embed"),
            new("rope_freqs.weight", [s.HeadDim / 2], TensorType.F32, "rope"),
            new("output_norm.weight", [E], TensorType.F32, "norm"),
            new("output.weight", [E, s.Vocab], output, "w"),
        };
        for (int i = 0; i < L; i++)
        {
            string p = $"blk.{i}.";
            var vType = UseQ6(i) ? TensorType.Q6_K : main;
            list.Add(new(p + "attn_norm.weight", [E], TensorType.F32, "norm"));
            list.Add(new(p + "attn_q.weight", [E, qd], main, "w"));
            list.Add(new(p + "attn_k.weight", [E, kvd], main, "w"));
            list.Add(new(p + "attn_v.weight", [E, kvd], vType, "w"));
            list.Add(new(p + "attn_output.weight", [qd, E], main, "w"));
            list.Add(new(p + "ffn_norm.weight", [E], TensorType.F32, "norm"));
            list.Add(new(p + "ffn_gate_inp.weight", [E, X], TensorType.F32, "router"));
            list.Add(new(p + "ffn_gate_exps.weight", [E, F, X], main, "w"));
            list.Add(new(p + "ffn_up_exps.weight", [E, F, X], main, "w"));
            list.Add(new(p + "ffn_down_exps.weight", [F, E, X], vType, "w"));
            list.Add(new(p + "ffn_gate_shexp.weight", [E, F], main, "w"));
            list.Add(new(p + "ffn_up_shexp.weight", [E, F], main, "w"));
            list.Add(new(p + "ffn_down_shexp.weight", [F, E], vType, "w"));
        }
        return list;
    }

    private static void Fill(Span<byte> dst, TensorPlan t, Random rng)
    {
        switch (t.Role)
        {
            case "norm":
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(dst).Fill(1f);
                return;
            case "rope":
            {
                var f = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(dst);
                for (int j = 0; j < f.Length; j++) f[j] = RopeDivisor(j, f.Length * 2);
                return;
            }
            case "router":
            {
                var f = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(dst);
                for (int j = 0; j < f.Length; j++) f[j] = (float)(rng.NextDouble() * 2 - 1) * 0.05f;
                return;
            }
        }
        if (t.Type is TensorType.F16)
        {
            var h = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(dst);
            for (int j = 0; j < h.Length; j++) h[j] = (Half)((rng.NextDouble() * 2 - 1) * 0.05);
            return;
        }
        rng.NextBytes(dst);
        int bb = t.Type.BlockBytes();
        // Scales chosen so a weight's spread is ~0.02-0.03, like a trained model's.
        for (int o = 0; o + bb <= dst.Length; o += bb)
        {
            var blk = dst.Slice(o, bb);
            switch (t.Type)
            {
                case TensorType.Q4_0: SetHalf(blk, 0, 0.004 + 0.004 * rng.NextDouble()); break;
                case TensorType.Q8_0: SetHalf(blk, 0, 0.0002 + 0.0003 * rng.NextDouble()); break;
                case TensorType.Q4_K:
                    SetHalf(blk, 0, 0.00012 + 0.0001 * rng.NextDouble());
                    SetHalf(blk, 2, 0.0008 + 0.0006 * rng.NextDouble());
                    break;
                case TensorType.Q6_K: SetHalf(blk, 208, 0.00002 + 0.00002 * rng.NextDouble()); break;
            }
        }
    }

    private static void SetHalf(Span<byte> blk, int at, double v) => BitConverter.TryWriteBytes(blk[at..], BitConverter.HalfToUInt16Bits((Half)v));

    /// <summary>Llama 3 style divisors (factor 16, low 1, high 4, original context 8192), θ = 500000.</summary>
    private static float RopeDivisor(int j, int headDim)
    {
        double freq = Math.Pow(500000, -2.0 * j / headDim);
        double wavelen = 2 * Math.PI / freq;
        const double factor = 16, low = 1, high = 4, orig = 8192;
        if (wavelen < orig / high) return 1;
        if (wavelen > orig / low) return (float)factor;
        double smooth = (orig / wavelen - low) / (high - low);
        return (float)(1 / ((1 - smooth) / factor + smooth));
    }

    private static List<(string, Action<BinaryWriter>)> Metadata(SynthShape s, string mix)
    {
        var kv = new List<(string, Action<BinaryWriter>)>();
        void Str(string k, string v) => kv.Add((k, w => { w.Write(8u); WriteString(w, v); }));
        void U32(string k, uint v) => kv.Add((k, w => { w.Write(4u); w.Write(v); }));
        void F32(string k, float v) => kv.Add((k, w => { w.Write(6u); w.Write(v); }));
        void Bool(string k, bool v) => kv.Add((k, w => { w.Write(7u); w.Write((byte)(v ? 1 : 0)); }));
        void StrArr(string k, IReadOnlyList<string> v) => kv.Add((k, w => { w.Write(9u); w.Write(8u); w.Write((ulong)v.Count); foreach (var x in v) WriteString(w, x); }));
        void I32Arr(string k, IReadOnlyList<int> v) => kv.Add((k, w => { w.Write(9u); w.Write(5u); w.Write((ulong)v.Count); foreach (var x in v) w.Write(x); }));

        Str("general.architecture", "llama4");
        Str("general.name", $"{s.Name}-synthetic");
        U32("general.file_type", mix switch { "Q4_0" => 2u, "Q8_0" => 7u, "Q4_K_M" => 15u, _ => 1u });
        U32("general.quantization_version", 2);
        U32("general.alignment", Alignment);
        U32("llama4.context_length", 131072);
        U32("llama4.embedding_length", (uint)s.Hidden);
        U32("llama4.block_count", (uint)s.Layers);
        U32("llama4.feed_forward_length", (uint)s.ExpertWidth * 2);
        U32("llama4.attention.head_count", (uint)s.Heads);
        U32("llama4.attention.head_count_kv", (uint)s.KvHeads);
        U32("llama4.attention.key_length", (uint)s.HeadDim);
        U32("llama4.attention.value_length", (uint)s.HeadDim);
        U32("llama4.rope.dimension_count", (uint)s.HeadDim);
        F32("llama4.rope.freq_base", 500000f);
        F32("llama4.attention.layer_norm_rms_epsilon", 1e-5f);
        U32("llama4.expert_count", (uint)s.Experts);
        U32("llama4.expert_used_count", (uint)s.TopK);
        U32("llama4.expert_feed_forward_length", (uint)s.ExpertWidth);
        U32("llama4.interleave_moe_layer_step", 1);
        U32("llama4.vocab_size", (uint)s.Vocab);

        var (tokens, types, merges) = Vocabulary(s.Vocab);
        Str("tokenizer.ggml.model", "gpt2");
        Str("tokenizer.ggml.pre", "llama4");
        StrArr("tokenizer.ggml.tokens", tokens);
        I32Arr("tokenizer.ggml.token_type", types);
        StrArr("tokenizer.ggml.merges", merges);
        U32("tokenizer.ggml.bos_token_id", (uint)(s.Vocab - 3));
        U32("tokenizer.ggml.eos_token_id", (uint)(s.Vocab - 1));
        U32("tokenizer.ggml.padding_token_id", (uint)(s.Vocab - 2));
        Bool("tokenizer.ggml.add_bos_token", true);
        return kv;
    }

    /// <summary>256 byte tokens (GPT-2 byte alphabet), two-byte merges up to the vocabulary size, three control tokens.</summary>
    private static (List<string> Tokens, List<int> Types, List<string> Merges) Vocabulary(int vocab)
    {
        var alphabet = ByteAlphabet();
        var tokens = new List<string>(vocab);
        var types = new List<int>(vocab);
        var merges = new List<string>();
        foreach (var c in alphabet) { tokens.Add(c); types.Add(1); }
        int pairs = vocab - 256 - 3;
        for (int i = 0; i < 256 && merges.Count < pairs; i++)
            for (int j = 0; j < 256 && merges.Count < pairs; j++)
            {
                merges.Add(alphabet[i] + " " + alphabet[j]);
                tokens.Add(alphabet[i] + alphabet[j]);
                types.Add(1);
            }
        foreach (var special in new[] { "<|begin_of_text|>", "<|finetune_right_pad|>", "<|eot|>" }) { tokens.Add(special); types.Add(3); }
        return (tokens, types, merges);
    }

    private static string[] ByteAlphabet()
    {
        var map = new string[256];
        var direct = new HashSet<int>();
        for (int b = '!'; b <= '~'; b++) direct.Add(b);
        for (int b = 0xA1; b <= 0xAC; b++) direct.Add(b);
        for (int b = 0xAE; b <= 0xFF; b++) direct.Add(b);
        int n = 0;
        for (int b = 0; b < 256; b++) map[b] = direct.Contains(b) ? ((char)b).ToString() : ((char)(256 + n++)).ToString();
        return map;
    }
}
