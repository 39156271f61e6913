using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Scout.Generation;

namespace Scout.Server;

/// <summary>How the server listens and what it accepts.</summary>
public sealed record ServerOptions
{
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>0 picks a free port (see <see cref="ScoutServer.Url"/>).</summary>
    public int Port { get; init; } = 8080;
    /// <summary>Required as "Authorization: Bearer KEY" on every route but /health and /metrics; null = open.</summary>
    public string? ApiKey { get; init; }
    public RequestLimits Limits { get; init; } = new();
    /// <summary>ASP.NET Core's own log output (off by default: the CLI prints what matters).</summary>
    public LogLevel LogLevel { get; init; } = LogLevel.None;
    /// <summary>
    /// Origins whose browser pages may call the API (CORS): exact origins such as "http://localhost:3000", or "*" for
    /// any. Empty (the default) sends no Access-Control-* headers, so browsers allow same-origin pages only.
    /// </summary>
    public IReadOnlyList<string> CorsOrigins { get; init; } = [];
    /// <summary>Where the model was loaded from (a path), reported by GET /v1/models/{id}.</summary>
    public string? ModelSource { get; init; }
    /// <summary>The window over which /metrics' scout_tokens_per_second counts tokens (it reads 0 after this long idle).</summary>
    public TimeSpan TokenRateWindow { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>Serve the chat page at GET / (on by default).</summary>
    public bool WebUi { get; init; } = true;
}

/// <summary>
/// The OpenAI-compatible HTTP server (ASP.NET Core minimal APIs) over a <see cref="ScoutEngine"/>:
/// /v1/chat/completions, /v1/completions, /v1/models, /health, /metrics, /tokenize, /detokenize.
/// </summary>
public sealed class ScoutServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ScoutEngine _engine;
    private readonly ServerOptions _options;
    private readonly ServerMetrics _metrics;

    public string Url { get; private set; } = "";
    public ScoutEngine Engine => _engine;

    public ScoutServer(ScoutEngine engine, ServerOptions options)
    {
        _engine = engine;
        _options = options;
        foreach (var origin in options.CorsOrigins)
            if (origin != "*" && !Uri.TryCreate(origin, UriKind.Absolute, out _))
                throw new ArgumentException($"--cors-origin must be \"*\" or an origin such as http://localhost:3000, got \"{origin}\"");
        _metrics = new ServerMetrics(engine, options.TokenRateWindow);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        if (options.LogLevel != LogLevel.None) builder.Logging.AddConsole().SetMinimumLevel(options.LogLevel);
        builder.WebHost.UseKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = options.Limits.MaxRequestBytes;
            k.AddServerHeader = false;
            if (options.Host is "localhost") k.ListenLocalhost(options.Port);
            else if (IPAddress.TryParse(options.Host, out var ip)) k.Listen(ip, options.Port);
            else throw new ArgumentException($"--host must be an IP address or localhost, got \"{options.Host}\"");
        });
        _app = builder.Build();
        _app.Use(Guard);
        Map(_app);
    }

    public async Task StartAsync(CancellationToken cancellation = default)
    {
        // Decoding keeps the cores busy (the batch thread and the spinning kernel workers), so the thread pool would
        // otherwise grow one thread per ~0.5 s while requests wait: start it with enough threads to answer at once.
        ThreadPool.GetMinThreads(out int workers, out int io);
        ThreadPool.SetMinThreads(Math.Max(workers, 16), Math.Max(io, 16));
        await _app.StartAsync(cancellation).ConfigureAwait(false);
        var addresses = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        Url = addresses.First().Replace("[::]", "localhost", StringComparison.Ordinal);
    }

    public Task WaitForShutdownAsync(CancellationToken cancellation = default) => _app.WaitForShutdownAsync(cancellation);

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        _metrics.Dispose();
    }

    /// <summary>API key, then the route; refusals and unexpected failures become OpenAI-style error bodies.</summary>
    private async Task Guard(HttpContext ctx, Func<Task> next)
    {
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            var path = ctx.Request.Path;
            if (Cors(ctx)) return; // a preflight, answered
            if (_options.ApiKey is { } key && !IsPublic(path) && !KeyMatches(ctx, key))
                throw new ApiException(401, "Incorrect API key provided. Pass it as 'Authorization: Bearer KEY'.", null, "invalid_api_key");
            await next().ConfigureAwait(false);
            if (ctx.Request.Method == "POST" && IsGeneration(path))
                _metrics.RequestDone(System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds);
            if (ctx.Response.StatusCode >= 400 && !ctx.Response.HasStarted)
            {
                // Routing's own refusals (405 wrong method, ...) get a body in the same format.
                int status = ctx.Response.StatusCode;
                string message = status == 405 ? $"{ctx.Request.Method} is not allowed on {ctx.Request.Path}" : $"request failed with status {status}";
                await Json(ctx, ApiException.ErrorBody(message, "invalid_request_error", null, status == 405 ? "method_not_allowed" : null)).ConfigureAwait(false);
            }
            _metrics.Http(ctx.Response.StatusCode);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            _metrics.Disconnect();
        }
        catch (Exception e)
        {
            var (status, body) = e switch
            {
                ApiException a => (a.Status, a.Body()),
                BadHttpRequestException { StatusCode: 413 } => (413, ApiException.ErrorBody(
                    $"the request body exceeds the limit of {_options.Limits.MaxRequestBytes} bytes", "invalid_request_error", null, "request_too_large")),
                BadHttpRequestException b => (b.StatusCode, ApiException.ErrorBody(b.Message, "invalid_request_error", null, null)),
                QueueFullException q => (429, ApiException.ErrorBody(q.Message, "rate_limit_error", null, "rate_limit_exceeded")),
                _ => (500, ApiException.ErrorBody($"internal error: {e.Message}", "server_error", null, null)),
            };
            _metrics.Http(status);
            if (ctx.Response.HasStarted)
            {
                // Mid-stream: an error event, then the stream ends.
                if (ctx.Response.ContentType?.StartsWith("text/event-stream", StringComparison.Ordinal) == true)
                    await SafeWrite(ctx, $"data: {ServerJson.Write(body)}\n\n").ConfigureAwait(false);
                return;
            }
            ctx.Response.Clear();
            Cors(ctx); // Clear dropped the Access-Control-* headers: a browser page must be able to read the error
            ctx.Response.StatusCode = status;
            await Json(ctx, body).ConfigureAwait(false);
        }
    }

    /// <summary>The page and its assets, /health and /metrics need no key (the page asks for it and sends it itself).</summary>
    private static bool IsPublic(PathString path)
        => path.StartsWithSegments("/health") || path.StartsWithSegments("/metrics") || (path.Value is "/" or "" or "/index.html");

    private static bool IsGeneration(PathString path)
        => path.StartsWithSegments("/v1/chat/completions") || path.StartsWithSegments("/v1/completions") || path.StartsWithSegments("/v1/responses");

    /// <summary>
    /// CORS: with an allowed Origin, the Access-Control-Allow-Origin header on every answer, and preflights (OPTIONS with
    /// Access-Control-Request-Method) answered here with 204 and the methods and headers allowed. True when answered.
    /// </summary>
    private bool Cors(HttpContext ctx)
    {
        var origins = _options.CorsOrigins;
        string? origin = ctx.Request.Headers.Origin;
        bool preflight = HttpMethods.IsOptions(ctx.Request.Method) && ctx.Request.Headers.ContainsKey("Access-Control-Request-Method");
        if (origins.Count == 0 || string.IsNullOrEmpty(origin)) return false;
        bool any = origins.Contains("*");
        if (!any && !origins.Any(o => string.Equals(o.TrimEnd('/'), origin, StringComparison.OrdinalIgnoreCase)))
        {
            if (!preflight) return false;
            // A preflight from an origin not allowed: answered without the headers, so the browser refuses the call.
            ctx.Response.StatusCode = 204;
            _metrics.Http(204);
            return true;
        }
        var h = ctx.Response.Headers;
        h.AccessControlAllowOrigin = any ? "*" : origin;
        if (!any) h.Vary = "Origin";
        h.AccessControlExposeHeaders = "Content-Type";
        if (!preflight) return false;
        h.AccessControlAllowMethods = "GET, POST, OPTIONS";
        string? asked = ctx.Request.Headers.AccessControlRequestHeaders;
        h.AccessControlAllowHeaders = string.IsNullOrWhiteSpace(asked) ? "Authorization, Content-Type" : asked;
        h.AccessControlMaxAge = "600";
        ctx.Response.StatusCode = 204;
        _metrics.Http(204);
        return true;
    }

    private static async Task SafeWrite(HttpContext ctx, string text)
    {
        try { await ctx.Response.WriteAsync(text, ctx.RequestAborted).ConfigureAwait(false); }
        catch (Exception e) when (e is OperationCanceledException or IOException) { }
    }

    private static bool KeyMatches(HttpContext ctx, string key)
    {
        string? header = ctx.Request.Headers.Authorization;
        if (header is null || !header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return false;
        var given = Encoding.UTF8.GetBytes(header[7..].Trim());
        return CryptographicOperations.FixedTimeEquals(given, Encoding.UTF8.GetBytes(key));
    }

    private void Map(WebApplication app)
    {
        app.MapMethods("/health", ["GET", "HEAD"], ctx => Json(ctx, new JsonObject { ["status"] = "ok", ["model"] = _engine.ModelId }));
        app.MapGet("/metrics", () => Results.Text(_metrics.Prometheus(), "text/plain; version=0.0.4"));
        app.MapGet("/v1/models", ctx => Json(ctx, new JsonObject { ["object"] = "list", ["data"] = new JsonArray(ModelJson(details: false)) }));
        app.MapGet("/v1/models/{**id}", ctx => ctx.Request.RouteValues["id"] as string is var id && id == _engine.ModelId
            ? Json(ctx, ModelJson(details: true))
            : throw new ApiException(404, $"The model '{id}' does not exist; this server serves '{_engine.ModelId}'", "model", "model_not_found"));
        app.MapPost("/v1/chat/completions", ctx => new ChatEndpoint(_engine, _options.Limits, _metrics).Handle(ctx));
        app.MapPost("/v1/completions", ctx => new CompletionEndpoint(_engine, _options.Limits, _metrics).Handle(ctx));
        app.MapPost("/v1/responses", ctx => new ResponsesEndpoint(_engine, _options.Limits, _metrics).Handle(ctx));
        app.MapGet("/v1/responses/{id}", ctx => throw new ApiException(404,
            $"responses are not stored by this server (store is not supported), so '{ctx.Request.RouteValues["id"]}' cannot be retrieved", "id", "not_found"));
        if (_options.WebUi)
        {
            app.MapGet("/", WebUi.Serve);
            app.MapGet("/index.html", WebUi.Serve);
        }
        app.MapPost("/tokenize", Tokenize);
        app.MapPost("/detokenize", Detokenize);
        string[] routes = ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/tokenize", "/detokenize", "/v1/models", "/health", "/metrics"];
        app.MapFallback(ctx => throw (routes.Contains(ctx.Request.Path.Value?.TrimEnd('/'))
            ? new ApiException(405, $"{ctx.Request.Method} is not allowed on {ctx.Request.Path}", null, "method_not_allowed")
            : new ApiException(404, $"no route {ctx.Request.Method} {ctx.Request.Path}", null, "not_found")));
    }

    /// <summary>The served model: its id, and with details what it was loaded from and how it is served.</summary>
    private JsonObject ModelJson(bool details)
    {
        var o = new JsonObject
        {
            ["id"] = _engine.ModelId, ["object"] = "model", ["created"] = _engine.Created.ToUnixTimeSeconds(), ["owned_by"] = "scout",
        };
        var c = _engine.Model.Config;
        var meta = new JsonObject
        {
            ["context_length"] = _engine.MaxContext,
            ["vocab_size"] = c.VocabSize,
            ["layers"] = c.NumLayers,
            ["experts"] = c.NumExperts,
            ["vision"] = _engine.Images is not null,
            ["parallel"] = _engine.Scheduler.Options.Parallel,
        };
        if (details)
        {
            var ckpt = _engine.Model.Checkpoint;
            o["source"] = _options.ModelSource ?? (ckpt is null ? null : ckpt.Files.Count == 1 ? ckpt.Files[0] : ckpt.Folder);
            if (ckpt is not null)
            {
                meta["format"] = ckpt.Format.ToString();
                meta["files"] = new JsonArray(ckpt.Files.Select(f => (JsonNode)f).ToArray());
                meta["file_bytes"] = ckpt.FileBytes;
            }
        }
        o["meta"] = meta;
        return o;
    }

    private async Task Tokenize(HttpContext ctx)
    {
        var r = await ReadJson(ctx, _options.Limits).ConfigureAwait(false);
        string text = r.String("content") ?? r.String("text") ?? r.String("prompt") ?? throw ApiException.BadRequest("'content' is required", "content");
        bool special = r.Bool("add_special") ?? false;
        var ids = _engine.Tokenizer.Encode(text, allowSpecial: r.Bool("parse_special") ?? false);
        if (special && _engine.Tokenizer.BosId is { } bos) ids = [bos, .. ids];
        await Json(ctx, new JsonObject { ["tokens"] = new JsonArray(ids.Select(i => (JsonNode)i).ToArray()) }).ConfigureAwait(false);
    }

    private async Task Detokenize(HttpContext ctx)
    {
        var r = await ReadJson(ctx, _options.Limits).ConfigureAwait(false);
        var arr = r.Array("tokens", required: true)!.Value;
        var ids = arr.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int v) && v >= 0 && v < _engine.Tokenizer.VocabSize ? v
            : throw ApiException.BadRequest($"'tokens' must hold token ids between 0 and {_engine.Tokenizer.VocabSize - 1}", "tokens")).ToArray();
        await Json(ctx, new JsonObject { ["content"] = _engine.Tokenizer.Decode(ids) }).ConfigureAwait(false);
    }

    /// <summary>Reads and parses the body; size, JSON syntax and a non-object root are 4xx errors.</summary>
    public static async Task<JsonRequest> ReadJson(HttpContext ctx, RequestLimits limits)
    {
        if (ctx.Request.ContentLength > limits.MaxRequestBytes)
            throw new ApiException(413, $"the request body exceeds the limit of {limits.MaxRequestBytes} bytes", null, "request_too_large");
        using var buffer = new MemoryStream();
        await ctx.Request.Body.CopyToAsync(buffer, ctx.RequestAborted).ConfigureAwait(false);
        if (buffer.Length == 0) throw ApiException.BadRequest("the request body is empty; send a JSON object");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(buffer.ToArray(), new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"the request body is not valid JSON: {e.Message}", null, "invalid_json");
        }
        ctx.Response.RegisterForDispose(doc);
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest("the request body must be a JSON object");
        JsonRequest.CheckText(doc.RootElement);
        return new JsonRequest(doc.RootElement);
    }

    public static Task Json(HttpContext ctx, JsonNode body)
    {
        ctx.Response.ContentType = "application/json; charset=utf-8";
        return ctx.Response.WriteAsync(ServerJson.Write(body), ctx.RequestAborted);
    }
}
