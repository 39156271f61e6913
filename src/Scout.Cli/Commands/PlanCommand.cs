using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Scout.Planning;
using Spectre.Console;

namespace Scout.Cli.Commands;

/// <summary>`scout plan`: what a Llama 4 model needs in memory (weights per scheme, KV cache, buffers) and what fits where.</summary>
public static class PlanCommand
{
    public static Command Create(CliContext ctx)
    {
        var model = new Option<string>("--model", "-m") { Description = "scout | maverick | config.json | Hugging Face folder | .safetensors | .gguf", DefaultValueFactory = _ => "scout" };
        var config = new Option<string?>("--config") { Description = "config.json with the values a GGUF does not carry (chunk size, qk-norm)" };
        var context = new Option<string>("--context", "-c") { Description = "context length per sequence: 1024, 8k, 128k, 1M, 10M (k = 1024, M = 1024²)", DefaultValueFactory = _ => "1024" };
        var parallel = new Option<int>("--parallel", "-p") { Description = "sequences served side by side, each with its own KV cache", DefaultValueFactory = _ => 1 };
        var batch = new Option<int>("--batch", "-b") { Description = "tokens per forward pass (prefill piece); sizes the activation buffers", DefaultValueFactory = _ => 512 };
        var kvType = new Option<string>("--kv-type") { Description = "KV cache type for the fit table: bf16, f16, q8_0, q4_0, f32", DefaultValueFactory = _ => "bf16" };
        var scheme = new Option<string[]>("--scheme", "-s") { Description = "weight schemes to show (default: all): BF16, F16, FP8, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, INT4, Q3_K_M, Q2_K, F32", AllowMultipleArgumentsPerToken = true };
        var device = new Option<string?>("--device", "-d") { Description = "only devices whose name contains this (e.g. \"H100\", \"Mac\", \"4090\")" };
        var memory = new Option<string?>("--memory") { Description = "plan for a device with this much memory, e.g. 80GiB or 192GB" };
        var withVision = new Option<bool>("--with-vision") { Description = "count the vision encoder in the fit table (needed for images)" };
        var images = new Option<int>("--images") { Description = "images per prompt: adds their tokens to the context and the vision weights and buffers to the plan", DefaultValueFactory = _ => 0 };
        var imageSize = new Option<string?>("--image-size") { Description = "pixel size of each image, WxH (default: the worst case, 16 tiles + thumbnail)" };
        var threads = new Option<int>("--threads") { Description = "worker threads (sizes the attention score rows); default: all cores", DefaultValueFactory = _ => 0 };
        var json = new Option<bool>("--json") { Description = "print every number as JSON" };
        var tensors = new Option<bool>("--tensors") { Description = "list every tensor: shape, parameters, type and bytes per scheme" };
        var placement = new DeviceFlags();
        var cmd = new Command("plan", "Memory plan for Llama 4: parameters, weights per quantization, KV cache, buffers, and what fits on which device")
        {
            model, config, context, parallel, batch, kvType, scheme, device, memory, withVision, images, imageSize, threads, json, tensors,
            placement.GpuLayers, placement.CpuMoe, placement.NCpuMoe,
        };
        ctx.SetAction(cmd, p =>
        {
            var schemes = (p.GetValue(scheme) ?? [])
                .SelectMany(s => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                .Select(QuantScheme.Parse).Distinct().ToList();
            var devices = new List<Device>();
            if (p.GetValue(device) is { } filter) devices.AddRange(Devices.Matching(filter));
            if (p.GetValue(memory) is { } mem) devices.Add(Devices.Custom(SizeParsing.ParseMemory(mem)));
            int threadCount = p.GetValue(threads);
            if (threadCount < 0) throw new ArgumentException($"--threads must be positive, got {threadCount}");
            var options = new PlanOptions
            {
                Model = p.GetValue(model),
                ConfigPath = p.GetValue(config),
                Context = SizeParsing.ParseContext(p.GetValue(context) ?? "1024"),
                Parallel = p.GetValue(parallel),
                Batch = p.GetValue(batch),
                KvType = KvType.Parse(p.GetValue(kvType) ?? "bf16"),
                Schemes = schemes.Count > 0 ? schemes : null,
                Devices = devices.Count > 0 ? devices : null,
                WithVision = p.GetValue(withVision),
                Threads = threadCount,
                IncludeTensors = p.GetValue(tensors),
                Images = p.GetValue(images),
                ImageSize = p.GetValue(imageSize) is { } sizeText ? SizeParsing.ParseImageSize(sizeText) : null,
                GpuLayers = p.GetValue(placement.GpuLayers),
                HostExpertLayers = placement.HostExpertLayers(p),
                DeviceUploads = Scout.Gpu.GpuBackend.Uploads,
            };
            var report = MemoryPlanner.Plan(options);
            if (p.GetValue(json))
                ctx.Out.WriteLine(JsonSerializer.Serialize(report, JsonOptions));
            else
                Render(report, CreateConsole(ctx.Out));
            return 0;
        });
        return cmd;
    }

    private static string M(long bytes) => (bytes / 1048576.0).ToString("F1", System.Globalization.CultureInfo.InvariantCulture);

    internal static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    private static IAnsiConsole CreateConsole(TextWriter output)
    {
        bool terminal = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected;
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = terminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(output),
        });
        if (!terminal) console.Profile.Width = 160;
        return console;
    }

    private static string G(long bytes) => (bytes / (double)(1L << 30)).ToString("N2", CultureInfo.InvariantCulture);
    private static string N(long n) => n.ToString("N0", CultureInfo.InvariantCulture);
    private static string B(double count) => count >= 1e9
        ? (count / 1e9).ToString("N2", CultureInfo.InvariantCulture) + "B"
        : (count / 1e6).ToString("N2", CultureInfo.InvariantCulture) + "M";

    private static void Render(PlanReport r, IAnsiConsole con)
    {
        var m = r.Model;
        con.Write(new Rule($"[bold]{Markup.Escape(m.Name)}[/] ({m.Source})").LeftJustified());
        con.WriteLine($"hidden {m.HiddenSize}, {m.Layers} layers ({m.MoeLayers} MoE, {m.GlobalLayers} global NoPE), {m.Heads} heads / {m.KvHeads} KV heads x {m.HeadDim}, " +
                      $"vocab {N(m.Vocab)}, {m.Experts} experts top-{m.TopK} x {m.ExpertWidth}" + (m.DenseWidth > 0 ? $", dense FFN {m.DenseWidth}" : "") +
                      $", chunk {N(m.ChunkSize)}, qk-norm {(m.QkNorm ? "on" : "off")}, max context {N(m.MaxContext)}");
        con.WriteLine();

        // Parameters
        var pr = r.Parameters;
        var pt = new Table().Title("Parameters").AddColumn("group").AddColumn(new TableColumn("parameters").RightAligned()).AddColumn(new TableColumn("tensors").RightAligned());
        foreach (var g in pr.Groups) pt.AddRow(g.Group, N(g.Parameters), N(g.Tensors));
        pt.AddRow("[bold]text total[/]", $"[bold]{N(pr.Text)}[/]", "");
        if (pr.Vision > 0) pt.AddRow("[bold]vision total[/]", $"[bold]{N(pr.Vision)}[/]", "");
        pt.AddRow("[bold]total[/]", $"[bold]{N(pr.Total)}[/] ({B(pr.Total)})", "");
        pt.AddRow("active per token (text)", $"{N(pr.ActivePerToken)} ({B(pr.ActivePerToken)})", "");
        con.Write(pt);

        // Weights per scheme
        var wt = new Table().Title("Weights by scheme (GiB; exact bytes in --json)")
            .AddColumn("scheme").AddColumn(new TableColumn("bits/w").RightAligned()).AddColumn(new TableColumn("text GiB").RightAligned())
            .AddColumn(new TableColumn("text bytes").RightAligned()).AddColumn(new TableColumn("routed experts").RightAligned())
            .AddColumn(new TableColumn("rest").RightAligned()).AddColumn(new TableColumn("vision").RightAligned()).AddColumn("layout");
        foreach (var s in r.Schemes)
        {
            if (s.Error is not null) { wt.AddRow(s.Name, "", "n/a", "", "", "", "", Markup.Escape(s.Error)); continue; }
            wt.AddRow(s.Name, s.BitsPerWeight.ToString("0.00", CultureInfo.InvariantCulture), G(s.TextBytes), N(s.TextBytes), G(s.RoutedExpertBytes),
                G(s.NonRoutedBytes), s.VisionBytes > 0 ? G(s.VisionBytes) : "-", Markup.Escape(s.Description));
        }
        con.Write(wt);
        con.WriteLine("Kept above the base type (norms, routers and rope_freqs stay F32 in every GGUF):");
        foreach (var s in r.Schemes.Where(s => s.HigherPrecision.Count > 0))
            foreach (var line in s.HigherPrecision)
                con.WriteLine($"  {s.Name,-7} {line}");
        con.WriteLine();

        if (r.Checkpoint is { } ck)
        {
            con.WriteLine($"Checkpoint: {ck.Format}, {ck.Tensors} tensors ({string.Join(", ", ck.TypeCounts)}), tensor bytes {N(ck.TensorBytes)}, files {N(ck.FileBytes)} bytes");
            foreach (var f in ck.Files) con.WriteLine($"  {Markup.Escape(f)}");
            con.WriteLine(ck.MatchingScheme is { } ms
                ? $"  matches the planner's {ms} layout exactly ({N(ck.MatchingSchemeBytes!.Value)} bytes)"
                : "  no standard scheme reproduces its bytes exactly (custom mix); the 'file' rows below use its real sizes");
            con.WriteLine();
        }

        if (r.Tensors is { } lines)
        {
            var names = r.Schemes.Select(s => s.Name).ToList();
            var tt = new Table().Title(Markup.Escape("Tensors (ggml shape, ne[0] first; type and bytes per scheme)")).AddColumn("tensor").AddColumn("shape").AddColumn(new TableColumn("parameters").RightAligned());
            foreach (var n in names) tt.AddColumn(new TableColumn(n).RightAligned());
            foreach (var t in lines)
                tt.AddRow(new[] { Markup.Escape(t.Name), string.Join("x", t.Ne), N(t.Parameters) }
                    .Concat(names.Select(n => t.Schemes.TryGetValue(n, out var v) ? Markup.Escape(v) : "-")).ToArray());
            con.Write(tt);
            con.WriteLine();
        }

        // KV cache
        var kv = r.Kv.Requested;
        var kt = new Table().Title($"KV cache ({N(kv.Sequences)} sequence{(kv.Sequences > 1 ? "s" : "")}; {kv.ChunkedLayers} chunked layers hold <= {N(m.ChunkSize)} tokens, {kv.GlobalLayers} global layers the whole context)")
            .AddColumn("type").AddColumn(new TableColumn("context").RightAligned()).AddColumn(new TableColumn("chunk-aware GiB").RightAligned())
            .AddColumn(new TableColumn("bytes").RightAligned()).AddColumn(new TableColumn("naive all-layers GiB").RightAligned());
        foreach (var row in r.Kv.Table)
            kt.AddRow(row.Type, SizeParsing.Tokens(row.Context), G(row.ChunkAwareBytes), N(row.ChunkAwareBytes), G(row.NaiveBytes));
        con.Write(kt);
        con.WriteLine($"Requested: {kv.Type} at {N(kv.Context)} tokens = {G(kv.Bytes)} GiB ({N(kv.Bytes)} bytes) chunk-aware, {G(kv.NaiveBytes)} GiB naive.");
        con.WriteLine($"Scout engine ({kv.Type} KvCache pages, ring of {N(m.ChunkSize)} slots in chunked layers): {G(r.Kv.EngineBytes)} GiB ({N(r.Kv.EngineBytes)} bytes).");
        con.WriteLine();

        if (r.Images is { } im)
        {
            var it = new Table().Title($"Images: {im.Images} of {im.Width}x{im.Height} ({im.TilesX}x{im.TilesY} tiles{(im.EncodedTiles > 1 ? " + thumbnail" : "")}, {N(im.TokensPerImage)} tokens each)")
                .AddColumn("item").AddColumn(new TableColumn("value").RightAligned()).AddColumn(new TableColumn("MiB").RightAligned());
            string M(long bytes) => (bytes / 1048576.0).ToString("N1", CultureInfo.InvariantCulture);
            it.AddRow("text context (tokens)", N(im.TextContext), "");
            it.AddRow("image tokens", N(im.ImageTokens), "");
            it.AddRow("[bold]context with images[/]", $"[bold]{N(im.Context)}[/]", "");
            it.AddRow("vision encoder scratch (one tile at a time)", N(im.EncoderScratchBytes), M(im.EncoderScratchBytes));
            it.AddRow("one image's stage buffers (pixels, encoder, adapter, projected rows)", N(im.ImageBufferBytes), M(im.ImageBufferBytes));
            it.AddRow("finished images held until the prompt is merged", N(im.HeldImageBytes), M(im.HeldImageBytes));
            it.AddRow("merged prompt rows (context x hidden)", N(im.PromptRowBytes), M(im.PromptRowBytes));
            it.AddRow("[bold]image buffers in the fit table[/]", $"[bold]{N(im.ScratchBytes)}[/]", $"[bold]{M(im.ScratchBytes)}[/]");
            con.Write(it);
            con.WriteLine();
        }

        // Engine buffers
        var eb = r.EngineBuffers;
        var bt = new Table().Title($"Scout engine activation buffers, {eb.Tokens} tokens per forward, {eb.Threads} threads")
            .AddColumn("buffer").AddColumn("phase").AddColumn(new TableColumn("floats").RightAligned()).AddColumn(new TableColumn("MiB").RightAligned());
        foreach (var b in eb.Buffers) bt.AddRow(Markup.Escape(b.Name), b.Phase, N(b.Floats), (b.Bytes / 1048576.0).ToString("N1", CultureInfo.InvariantCulture));
        bt.AddRow("[bold]peak held at once[/]", "", "", $"[bold]{(eb.PeakBytes / 1048576.0).ToString("N1", CultureInfo.InvariantCulture)}[/]");
        con.Write(bt);
        con.WriteLine();

        // Fit matrix: devices x schemes, cell = largest context that fits (or ✗).
        var schemeNames = r.Fit.Select(f => f.Scheme).Distinct().ToList();
        var ft = new Table().Title($"Fits? Largest context per sequence with {r.Inputs.KvType} KV, {r.Inputs.Parallel} sequence(s) (x = weights do not fit; * = requested {SizeParsing.Tokens(r.Inputs.Context)} does not fit)")
            .AddColumn("device").AddColumn(new TableColumn("usable GiB").RightAligned());
        foreach (var s in schemeNames) ft.AddColumn(new TableColumn(s).RightAligned());
        foreach (var dev in r.Fit.GroupBy(f => f.Device))
        {
            var cells = new List<string> { Markup.Escape(dev.Key), G(dev.First().UsableBytes) };
            foreach (var s in schemeNames)
            {
                var f = dev.First(x => x.Scheme == s);
                cells.Add(f.MaxContext == 0 ? "x" : SizeParsing.TokensApprox(f.MaxContext) + (f.Fits ? "" : "*"));
            }
            ft.AddRow(cells.ToArray());
        }
        con.Write(ft);

        if (r.Device is { } dp)
        {
            var dt = new Table().Title($"GPU backend placement of this file ({Markup.Escape(dp.Placement.Describe())}), as the engine allocates it")
                .AddColumn("what").AddColumn(new TableColumn("device bytes").RightAligned()).AddColumn(new TableColumn("MiB").RightAligned());
            dt.AddRow("weight matrices (stored blocks)", dp.WeightBytes.ToString("N0", System.Globalization.CultureInfo.InvariantCulture), M(dp.WeightBytes));
            dt.AddRow("norm vectors (f32)", dp.VectorBytes.ToString("N0", System.Globalization.CultureInfo.InvariantCulture), M(dp.VectorBytes));
            dt.AddRow($"workspace ({Math.Min(r.Inputs.Batch, r.Inputs.Context)} tokens per forward)", dp.WorkspaceBytes.ToString("N0", System.Globalization.CultureInfo.InvariantCulture), M(dp.WorkspaceBytes));
            dt.AddRow($"K/V ({r.Inputs.Parallel} × {SizeParsing.Tokens(r.Inputs.Context)})", dp.KvBytes.ToString("N0", System.Globalization.CultureInfo.InvariantCulture), M(dp.KvBytes));
            dt.AddRow("[bold]total on the device[/]", dp.TotalBytes.ToString("N0", System.Globalization.CultureInfo.InvariantCulture), M(dp.TotalBytes));
            dt.AddRow("weights left in RAM (mapped)", dp.HostWeightBytes.ToString("N0", System.Globalization.CultureInfo.InvariantCulture), M(dp.HostWeightBytes));
            con.Write(dt);
        }

        // Expert offload: routed experts in system RAM, the rest on the GPU.
        var gpuRows = r.Fit.Where(f => f.Kind == nameof(DeviceKind.Gpu)).ToList();
        if (gpuRows.Count > 0)
        {
            var st = new Table().Title($"Routed experts in system RAM, everything else on the GPU (at {SizeParsing.Tokens(r.Inputs.Context)} context)")
                .AddColumn("scheme").AddColumn(new TableColumn("GPU GiB").RightAligned()).AddColumn(new TableColumn("RAM GiB").RightAligned()).AddColumn("fits on (largest context)");
            foreach (var s in schemeNames)
            {
                var rows = gpuRows.Where(f => f.Scheme == s).ToList();
                var first = rows[0];
                string fits = string.Join(", ", rows.Where(f => f.FitsExpertsInRam).Select(f => $"{f.Device} ({SizeParsing.TokensApprox(f.MaxContextExpertsInRam)})"));
                st.AddRow(s, G(first.GpuBytesExpertsInRam), G(first.RamBytesExpertsInRam), fits.Length > 0 ? Markup.Escape(fits) : "none listed");
            }
            con.Write(st);
        }

        con.WriteLine();
        con.WriteLine("Notes:");
        foreach (var n in r.Notes) con.WriteLine($"- {n}");
    }
}
