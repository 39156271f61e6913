using System.CommandLine;
using Scout.Quantization;

namespace Scout.Cli.Commands;

/// <summary>`scout synth`: a random-weight Llama 4 GGUF of any shape, loadable by llama.cpp (for benchmarks and tests).</summary>
public static class SynthCommand
{
    public static Command Create(CliContext ctx)
    {
        var preset = new Option<string?>("--preset") { Description = $"shape preset: {string.Join(", ", SynthShape.Presets.Keys)} (other options override it)" };
        var layers = new Option<int?>("--layers") { Description = "number of layers" };
        var dim = new Option<int?>("--dim") { Description = "hidden size (embedding_length)" };
        var heads = new Option<int?>("--heads") { Description = "query heads" };
        var kvHeads = new Option<int?>("--kv-heads") { Description = "key/value heads" };
        var headDim = new Option<int?>("--head-dim") { Description = "head dimension" };
        var experts = new Option<int?>("--experts") { Description = "routed experts" };
        var topK = new Option<int?>("--top-k") { Description = "experts used per token" };
        var expertFfn = new Option<int?>("--expert-ffn") { Description = "per-expert (and shared expert) FFN width" };
        var denseFfn = new Option<int?>("--dense-ffn") { Description = "dense FFN width (layers that are not MoE)" };
        var vocab = new Option<int?>("--vocab") { Description = "vocabulary size (synthetic tokenizer)" };
        var interleave = new Option<int?>("--interleave") { Description = "MoE every N-th layer (1 = every layer)" };
        var type = new Option<string>("--type", "-t") { Description = "Q4_0, Q8_0, Q4_K_M, Q6_K, F16, BF16 or F32", DefaultValueFactory = _ => "Q4_K_M" };
        var realVocab = new Option<string?>("--real-vocab") { Description = "Meta's tokenizer.model (with special_tokens.json next to it): write the real 202,048-token vocabulary" };
        var seed = new Option<int>("--seed") { Description = "random seed", DefaultValueFactory = _ => 1 };
        var output = new Option<string>("--out", "-o") { Description = "output .gguf file", Required = true };
        var cmd = new Command("synth", "Write a random-weight Llama 4 GGUF of any shape (valid for llama.cpp)")
        {
            preset, layers, dim, heads, kvHeads, headDim, experts, topK, expertFfn, denseFfn, vocab, interleave, type, realVocab, seed, output,
        };
        ctx.SetAction(cmd, p =>
        {
            var shape = new SynthShape();
            if (p.GetValue(preset) is { } name && !SynthShape.Presets.TryGetValue(name, out shape!))
                throw new CliException($"unknown preset '{name}' (expected {string.Join(", ", SynthShape.Presets.Keys)})");
            shape = shape with
            {
                Layers = p.GetValue(layers) ?? shape.Layers,
                Dim = p.GetValue(dim) ?? shape.Dim,
                Heads = p.GetValue(heads) ?? shape.Heads,
                KvHeads = p.GetValue(kvHeads) ?? shape.KvHeads,
                HeadDim = p.GetValue(headDim) ?? shape.HeadDim,
                Experts = p.GetValue(experts) ?? shape.Experts,
                TopK = p.GetValue(topK) ?? shape.TopK,
                ExpertFfn = p.GetValue(expertFfn) ?? shape.ExpertFfn,
                DenseFfn = p.GetValue(denseFfn) ?? shape.DenseFfn,
                Vocab = p.GetValue(vocab) ?? shape.Vocab,
                Interleave = p.GetValue(interleave) ?? shape.Interleave,
            };
            var quant = QuantMix.Parse(p.GetValue(type)!);
            ctx.Err.WriteLine($"synth: {shape.Layers} layers, dim {shape.Dim}, heads {shape.Heads}/{shape.KvHeads}x{shape.HeadDim}, {shape.Experts} experts top-{shape.TopK} x {shape.ExpertFfn}, vocab {(p.GetValue(realVocab) != null ? "real" : shape.Vocab.ToString())}, {shape.TotalParameters():N0} parameters, {quant}");
            var summary = QuantizeCommand.RunWithProgress(ctx, $"synth {quant}", (progress, planned) =>
                SyntheticModel.Write(p.GetValue(output)!, shape, quant, p.GetValue(seed), p.GetValue(realVocab), progress, planned));
            ctx.Out.WriteLine($"wrote {summary.Path}: {summary.Tensors} tensors, {summary.FileBytes:N0} bytes ({string.Join(", ", summary.TypeCounts.OrderBy(k => k.Key).Select(k => $"{k.Value} {k.Key}"))})");
            return 0;
        });
        return cmd;
    }
}
