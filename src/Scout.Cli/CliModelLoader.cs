using Scout.Model;
using Spectre.Console;

namespace Scout.Cli;

/// <summary>Loads a model for a command, with a progress bar on an interactive terminal and a one-line summary otherwise.</summary>
public static class CliModelLoader
{
    /// <param name="backend">where the model runs; owned by the loaded model (disposed with it, or here when loading fails)</param>
    public static Llama4Model Load(CliContext ctx, string path, string? configPath, Scout.Backends.IBackend? backend = null, LoadOptions? options = null)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        Llama4Model model;
        bool interactive = ReferenceEquals(ctx.Err, Console.Error) && !Console.IsErrorRedirected && AnsiConsole.Profile.Capabilities.Interactive;
        if (interactive)
        {
            Llama4Model? loaded = null;
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .Start(p =>
                {
                    var task = p.AddTask($"loading {Path.GetFileName(Path.TrimEndingDirectorySeparator(path))}", maxValue: 1);
                    loaded = Llama4Model.Load(path, configPath, (done, total) => task.Value = (double)done / total * 0.9, options, backend, ownsBackend: true);
                    task.Value = 1;
                });
            model = loaded!;
        }
        else
        {
            model = Llama4Model.Load(path, configPath, options: options, backend: backend, ownsBackend: true);
        }
        var c = model.Config;
        long bytes = model.Checkpoint?.FileBytes ?? 0;
        ctx.Err.WriteLine($"loaded {Path.GetFileName(Path.TrimEndingDirectorySeparator(path))}: {c.NumLayers} layers, {c.NumExperts} experts, {bytes / 1048576.0:F1} MiB mapped in {watch.Elapsed.TotalSeconds:F2} s on {model.Backend.Name}");
        if (model.Backend is Scout.Gpu.GpuBackend gpu)
            ctx.Err.WriteLine($"{gpu.DeviceName}: {gpu.DeviceMatrices} matrices ({gpu.UploadedBytes / 1048576.0:F1} MiB) uploaded, {gpu.HostMatrices} kept on the CPU");
        return model;
    }
}
