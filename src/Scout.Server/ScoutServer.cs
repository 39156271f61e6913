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
    private readonly ServerMetrics _metrics = new();

    public string Url { get; private set; } = "";
    public ScoutEngine Engine => _engine;

    public ScoutServer(ScoutEngine engine, ServerOptions options)
    {
        _engine = engine;
        _options = options;
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
    }

    /// <summary>API key, then the route; refusals and unexpected failures become OpenAI-style error bodies.</summary>
    private async Task Guard(HttpContext ctx, Func<Task> next)
    {
        try
        {
            var path = ctx.Request.Path;
            if (_options.ApiKey is { } key && !path.StartsWithSegments("/health") && !path.StartsWithSegments("/metrics") && !KeyMatches(ctx, key))
                throw new ApiException(401, "Incorrect API key provided. Pass it as 'Authorization: Bearer KEY'.", null, "invalid_api_key");
            await next().ConfigureAwait(false);
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
                    await SafeWrite(ctx, $"data: {body.ToJsonString()}\n\n").ConfigureAwait(false);
                return;
            }
            ctx.Response.Clear();
            ctx.Response.StatusCode = status;
            await Json(ctx, body).ConfigureAwait(false);
        }
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
        app.MapMethods("/health", ["GET", "HEAD"], () => Results.Json(new { status = "ok", model = _engine.ModelId }));
        app.MapGet("/metrics", () => Results.Text(_metrics.Prometheus(_engine), "text/plain; version=0.0.4"));
        app.MapGet("/v1/models", () => Results.Json(new
        {
            @object = "list",
            data = new[] { new { id = _engine.ModelId, @object = "model", created = _engine.Created.ToUnixTimeSeconds(), owned_by = "scout" } },
        }));
        app.MapGet("/v1/models/{id}", (string id) => id == _engine.ModelId
            ? Results.Json(new { id, @object = "model", created = _engine.Created.ToUnixTimeSeconds(), owned_by = "scout" })
            : throw new ApiException(404, $"The model '{id}' does not exist", "model", "model_not_found"));
        app.MapPost("/v1/chat/completions", ctx => new ChatEndpoint(_engine, _options.Limits, _metrics).Handle(ctx));
        app.MapPost("/v1/completions", ctx => new CompletionEndpoint(_engine, _options.Limits, _metrics).Handle(ctx));
        app.MapPost("/tokenize", Tokenize);
        app.MapPost("/detokenize", Detokenize);
        string[] routes = ["/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize", "/v1/models", "/health", "/metrics"];
        app.MapFallback(ctx => throw (routes.Contains(ctx.Request.Path.Value?.TrimEnd('/'))
            ? new ApiException(405, $"{ctx.Request.Method} is not allowed on {ctx.Request.Path}", null, "method_not_allowed")
            : new ApiException(404, $"no route {ctx.Request.Method} {ctx.Request.Path}", null, "not_found")));
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
        ctx.Response.ContentType = "application/json";
        return ctx.Response.WriteAsync(body.ToJsonString(), ctx.RequestAborted);
    }
}
