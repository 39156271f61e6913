using System.CommandLine;
using Scout.Model;
using Scout.Tensors;

namespace Scout.Cli.Commands;

/// <summary>`scout inspect`: config, tensors, dtypes, parameter counts and file sizes of a checkpoint.</summary>
public static class InspectCommand
{
    public static Command Create(CliContext ctx)
    {
        var model = new Option<string>("--model", "-m") { Description = "model folder, .safetensors or .gguf", Required = true };
        var config = new Option<string?>("--config") { Description = "config.json overriding values the weights file does not carry" };
        var tensors = new Option<bool>("--tensors") { Description = "list every tensor" };
        var cmd = new Command("inspect", "Show a checkpoint's configuration, tensors and sizes") { model, config, tensors };
        ctx.SetAction(cmd, p =>
        {
            using var ckpt = Checkpoint.Open(p.GetValue(model)!, p.GetValue(config));
            var c = ckpt.Config;
            var o = ctx.Out;
            o.WriteLine($"format:        {ckpt.Format}");
            foreach (var f in ckpt.Files) o.WriteLine($"file:          {f} ({new FileInfo(f).Length:N0} bytes)");
            o.WriteLine($"layers:        {c.NumLayers} ({c.MoeLayers.Count(m => m)} MoE, {c.RopeLayers.Count(r => !r)} NoPE/global)");
            o.WriteLine($"hidden:        {c.HiddenSize}, heads {c.NumHeads}, kv heads {c.NumKvHeads}, head_dim {c.HeadDim}");
            o.WriteLine($"vocab:         {c.VocabSize}");
            o.WriteLine($"experts:       {c.NumExperts} (top-{c.TopK}) width {c.IntermediateSize}; dense width {c.IntermediateSizeMlp}");
            o.WriteLine($"rope:          theta {c.RopeTheta}, scaling {(c.RopeScaling is { } s ? $"llama3 x{s.Factor} (low {s.LowFreqFactor}, high {s.HighFreqFactor}, orig {s.OriginalMaxPositions})" : "none")}");
            o.WriteLine($"attention:     chunk {c.AttentionChunkSize}, qk-norm {(c.UseQkNorm ? "on" : "off")}, temperature tuning {(c.AttnTemperatureTuning ? $"floor {c.FloorScale} scale {c.AttnScale}" : "off")}");
            var counts = ParameterCount.Of(ckpt);
            o.WriteLine($"tensors:       {ckpt.Tensors.Count} ({string.Join(", ", ckpt.Tensors.Values.GroupBy(t => t.Type).OrderBy(g => g.Key).Select(g => $"{g.Count()} {g.Key}"))})");
            o.WriteLine($"parameters:    {counts.Total:N0} total, {counts.ActivePerToken:N0} active per token");
            o.WriteLine($"weight bytes:  {ckpt.Tensors.Values.Sum(t => t.ByteLength):N0} (files {ckpt.FileBytes:N0})");
            if (p.GetValue(tensors))
                foreach (var t in ckpt.Tensors.Values.OrderBy(t => t.Name, StringComparer.Ordinal))
                    o.WriteLine($"  {t.Name,-60} {t.Type,-5} {t.ShapeText}");
            return 0;
        });
        return cmd;
    }
}
