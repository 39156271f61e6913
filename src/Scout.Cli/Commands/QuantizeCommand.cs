using System.CommandLine;
using Scout.Quantization;
using Spectre.Console;

namespace Scout.Cli.Commands;

/// <summary>`scout quantize`: write a checkpoint as a llama.cpp-compatible GGUF of a given type.</summary>
public static class QuantizeCommand
{
    public static Command Create(CliContext ctx)
    {
        var model = new Option<string>("--model", "-m") { Description = "Hugging Face folder, .safetensors or .gguf", Required = true };
        var config = new Option<string?>("--config") { Description = "config.json (for a .safetensors file, or values a GGUF does not carry)" };
        var type = new Option<string>("--type", "-t") { Description = "Q4_0, Q8_0, Q4_K_M, Q6_K, F16, BF16 or F32", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "output .gguf file", Required = true };
        var cmd = new Command("quantize", "Write a model as a llama.cpp-compatible GGUF (llama.cpp's names, layouts and type mixes)") { model, config, type, output };
        ctx.SetAction(cmd, p =>
        {
            var preset = QuantMix.Parse(p.GetValue(type)!);
            string outPath = p.GetValue(output)!;
            var summary = RunWithProgress(ctx, $"quantize {preset}", (progress, planned) =>
                Llama4GgufExporter.Export(p.GetValue(model)!, outPath, preset, p.GetValue(config), progress, planned));
            ctx.Out.WriteLine($"wrote {summary.Path}: {summary.Tensors} tensors, {summary.FileBytes:N0} bytes ({string.Join(", ", summary.TypeCounts.OrderBy(k => k.Key).Select(k => $"{k.Value} {k.Key}"))})");
            return 0;
        });
        return cmd;
    }

    /// <summary>Runs an export with a Spectre progress bar on a terminal, one plain line per tensor otherwise.</summary>
    public static ExportSummary RunWithProgress(CliContext ctx, string title, Func<Action<ExportProgress>, Action<int>, ExportSummary> run)
    {
        bool terminal = ReferenceEquals(ctx.Out, Console.Out) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
        if (!terminal)
        {
            return run(e => ctx.Out.WriteLine($"[{e.Index}/{e.Count}] {e.Name} {e.Type} {e.Bytes:N0} bytes"), _ => { });
        }
        ExportSummary? result = null;
        AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(pc =>
            {
                var task = pc.AddTask(title, maxValue: 1);
                result = run(e =>
                {
                    task.Description = $"{title}: {e.Name} → {e.Type}";
                    task.Value = e.Index;
                }, count => task.MaxValue = count);
                task.Description = title;
            });
        return result!;
    }
}
