using System.CommandLine;
using Scout.Generation;
using Scout.Server;

namespace Scout.Cli.Commands;

/// <summary>`scout serve`: the OpenAI-compatible HTTP server.</summary>
public static class ServeCommand
{
    public static Command Create(CliContext ctx)
    {
        var flags = new GenerationFlags();
        var host = new Option<string>("--host") { Description = "address to listen on", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "port (0 = any free port)", DefaultValueFactory = _ => 8080 };
        var parallel = new Option<int>("--parallel", "-np") { Description = "sequences decoded together", DefaultValueFactory = _ => 4 };
        var queue = new Option<int>("--queue") { Description = "requests that may wait for a slot; more get 429", DefaultValueFactory = _ => 64 };
        var apiKey = new Option<string?>("--api-key") { Description = "required bearer token (default: $SCOUT_API_KEY; none = open)" };
        var name = new Option<string?>("--name") { Description = "model id reported by /v1/models (default: the file or folder name)" };
        var maxTokens = new Option<int>("--max-tokens-limit") { Description = "largest max_tokens a request may ask for", DefaultValueFactory = _ => 4096 };
        var maxBody = new Option<long>("--max-request-bytes") { Description = "largest request body", DefaultValueFactory = _ => 16L << 20 };
        var prefixCache = new Option<int>("--prefix-cache-mib") { Description = "memory for KV caches kept for prefix reuse (0 = off)", DefaultValueFactory = _ => 1024 };
        var cors = new Option<string[]>("--cors-origin") { Description = "let browser pages from this origin call the API (repeatable; \"*\" = any; default: none)", AllowMultipleArgumentsPerToken = false };
        var noWebUi = new Option<bool>("--no-webui") { Description = "do not serve the chat page at /" };
        var cmd = new Command("serve", "Serve the model over an OpenAI-compatible HTTP API and a chat page") { host, port, parallel, queue, apiKey, name, maxTokens, maxBody, prefixCache, cors, noWebUi };
        foreach (var o in flags.ModelOptions) cmd.Options.Add(o);
        ctx.SetAction(cmd, p =>
        {
            if (p.GetValue(parallel) < 1) throw new CliException("--parallel must be at least 1");
            if (p.GetValue(queue) < 0) throw new CliException("--queue must be 0 or more");
            if (p.GetValue(port) is < 0 or > 65535) throw new CliException($"--port must be 0..65535, got {p.GetValue(port)}");
            var (model, tokens) = flags.Load(p, ctx);
            var schedulerOptions = new SchedulerOptions
            {
                Parallel = p.GetValue(parallel),
                QueueLimit = p.GetValue(queue),
                MaxContext = p.GetValue(flags.Context),
                KeyType = flags.Kv.Types(p).Key,
                ValueType = flags.Kv.Types(p).Value,
                PrefixCacheBytes = (long)p.GetValue(prefixCache) << 20,
            };
            string modelPath = p.GetValue(flags.Model)!;
            using var engine = new ScoutEngine(model, tokens, schedulerOptions,
                p.GetValue(name) ?? Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(modelPath)), ownsModel: true);
            if (model.Checkpoint is { } ckpt && ckpt.Tensors.Keys.Any(k => k.StartsWith("vision_model.", StringComparison.Ordinal)))
            {
                // Weights with a vision tower: image_url parts of chat messages go through it.
                engine.Images = RunCommand.VisionFor(model);
                ctx.Err.WriteLine("vision encoder loaded: images accepted as data: URLs");
            }
            string? key = p.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("SCOUT_API_KEY");
            ScoutServer server;
            try
            {
                server = new ScoutServer(engine, new ServerOptions
                {
                    Host = p.GetValue(host)!,
                    Port = p.GetValue(port),
                    ApiKey = string.IsNullOrEmpty(key) ? null : key,
                    CorsOrigins = p.GetValue(cors) ?? [],
                    ModelSource = Path.GetFullPath(modelPath),
                    WebUi = !p.GetValue(noWebUi),
                    Limits = new RequestLimits { MaxTokens = p.GetValue(maxTokens), MaxRequestBytes = p.GetValue(maxBody) },
                });
            }
            catch (ArgumentException e)
            {
                throw new CliException(e.Message);
            }
            try
            {
                server.StartAsync().GetAwaiter().GetResult();
            }
            catch (IOException e)
            {
                throw new CliException($"cannot listen on {p.GetValue(host)}:{p.GetValue(port)}: {e.Message}");
            }
            ctx.Err.WriteLine($"serving {engine.ModelId} at {server.Url} (parallel {schedulerOptions.Parallel}, queue {schedulerOptions.QueueLimit}, context {schedulerOptions.MaxContext}{(key is null ? "" : ", API key required")})");
            ctx.Err.WriteLine($"POST /v1/chat/completions, /v1/completions, /v1/responses; GET /v1/models, /health, /metrics{(p.GetValue(noWebUi) ? "" : $"; chat page at {server.Url}/")}; Ctrl+C stops");
            using var stop = new CancellationTokenSource();
            Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
            try { server.WaitForShutdownAsync(stop.Token).GetAwaiter().GetResult(); } catch (OperationCanceledException) { }
            server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            return 0;
        });
        return cmd;
    }
}
