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
                    ProgressTask? upload = null;
                    if (backend is Scout.Gpu.GpuBackend gpu)
                    {
                        // Weights go up once, as they are loaded: the file's size bounds the bytes uploaded.
                        long fileBytes = File.Exists(path) ? new FileInfo(path).Length
                            : Directory.Exists(path) ? Directory.EnumerateFiles(path, "*.safetensors").Sum(f => new FileInfo(f).Length) : 1;
                        upload = p.AddTask($"uploading to {Markup.Escape(gpu.DeviceName)}", maxValue: Math.Max(1, fileBytes));
                        var bar = upload;
                        gpu.UploadProgress = bytes => bar.Value = Math.Min(bytes, bar.MaxValue);
                    }
                    loaded = Llama4Model.Load(path, configPath, (done, total) => task.Value = (double)done / total * 0.9, options, backend, ownsBackend: true);
                    task.Value = 1;
                    if (upload is not null) upload.Value = upload.MaxValue;
                    if (backend is Scout.Gpu.GpuBackend g) g.UploadProgress = null;
                });
            model = loaded!;
        }
        else
        {
            model = Llama4Model.Load(path, configPath, options: options, backend: backend, ownsBackend: true);
        }
        var c = model.Config;
        long bytes = model.Checkpoint?.FileBytes ?? 0;
        if (model.Checkpoint is { } ckpt && bytes >= PrefetchThreshold && bytes < GC.GetGCMemoryInfo().TotalAvailableMemoryBytes * 0.9)
            Prefetch(ctx, ckpt.Files, bytes, interactive);
        ctx.Err.WriteLine($"loaded {Path.GetFileName(Path.TrimEndingDirectorySeparator(path))}: {c.NumLayers} layers, {c.NumExperts} experts, {bytes / 1048576.0:F1} MiB mapped in {watch.Elapsed.TotalSeconds:F2} s on {model.Backend.Name}");
        if (model.Backend is Scout.Gpu.GpuBackend gpu)
        {
            ctx.Err.WriteLine($"{gpu.DeviceName}: {gpu.DeviceMatrices} matrices ({gpu.UploadedBytes / 1048576.0:F1} MiB) uploaded, {gpu.HostMatrices} kept on the CPU");
            ctx.Err.WriteLine($"placement: {model.Weights.Placement.Describe()}");
        }
        return model;
    }

    /// <summary>Weight files at least this big are read through once at load, with progress shown.</summary>
    public const long PrefetchThreshold = 1L << 30;

    /// <summary>
    /// Reads the mapped weight files through the page cache once, in order, showing progress: the weights are mapped,
    /// not copied, so without this a big file would be read from disk page by page during the first request, with
    /// nothing on screen. Only when the files fit in memory (otherwise the read would evict itself). A 4 MiB buffer is
    /// reused; nothing is kept.
    /// </summary>
    public static void Prefetch(CliContext ctx, IReadOnlyList<string> files, long total, bool interactive)
    {
        var buffer = new byte[4 << 20];
        long done = 0;
        int lastTenth = -1;
        var watch = System.Diagnostics.Stopwatch.StartNew();
        void ReadAll(Action<long> report)
        {
            foreach (var f in files)
            {
                using var fs = new FileStream(f, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
                int n;
                while ((n = fs.Read(buffer, 0, buffer.Length)) > 0)
                {
                    done += n;
                    report(done);
                }
            }
        }
        if (interactive)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
                .Start(p =>
                {
                    var task = p.AddTask($"reading weights ({total / 1073741824.0:F1} GiB)", maxValue: total);
                    ReadAll(d => task.Value = d);
                });
        }
        else
        {
            ReadAll(d =>
            {
                int tenth = (int)(d * 10 / total);
                if (tenth == lastTenth) return;
                lastTenth = tenth;
                ctx.Err.WriteLine($"reading weights: {tenth * 10}% ({d / 1073741824.0:F1} of {total / 1073741824.0:F1} GiB, {watch.Elapsed.TotalSeconds:F0} s)");
            });
        }
    }
}
