using System.Text;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using Scout.Generation;
using Scout.Tokenization;

namespace Scout.Server;

/// <summary>Several generations of one HTTP request (n choices, or several prompts), submitted together and read as one stream.</summary>
internal sealed class RunSet : IAsyncDisposable
{
    private readonly CancellationTokenSource _cancel;
    private readonly Channel<(int Index, GenerationUpdate Update)> _merged = Channel.CreateUnbounded<(int, GenerationUpdate)>();
    private readonly List<Task> _pumps = new();

    /// <param name="metrics">Where each sequence's time to first token goes, measured from <paramref name="started"/> (a Stopwatch timestamp).</param>
    public RunSet(ScoutEngine engine, IReadOnlyList<GenerationRequest> requests, CancellationToken aborted, ServerMetrics? metrics = null, long started = 0)
    {
        _cancel = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        var streams = new List<IAsyncEnumerable<GenerationUpdate>>();
        try
        {
            foreach (var r in requests) streams.Add(engine.Scheduler.Submit(r, _cancel.Token));
        }
        catch
        {
            _cancel.Cancel(); // the ones already queued leave at once
            throw;
        }
        int remaining = streams.Count;
        for (int i = 0; i < streams.Count; i++)
        {
            int index = i;
            _pumps.Add(Task.Run(async () =>
            {
                try
                {
                    bool first = true;
                    await foreach (var u in streams[index].ConfigureAwait(false))
                    {
                        if (u.Token is not null) metrics?.Token();
                        if (first && metrics is not null && (u.Token is not null || u.Text.Length > 0))
                        {
                            first = false;
                            metrics.FirstToken(System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds);
                        }
                        _merged.Writer.TryWrite((index, u));
                    }
                }
                catch (Exception e)
                {
                    _merged.Writer.TryComplete(e);
                }
                if (Interlocked.Decrement(ref remaining) == 0) _merged.Writer.TryComplete();
            }));
        }
    }

    public IAsyncEnumerable<(int Index, GenerationUpdate Update)> ReadAll(CancellationToken token) => _merged.Reader.ReadAllAsync(token);

    public async ValueTask DisposeAsync()
    {
        _cancel.Cancel();
        try { await Task.WhenAll(_pumps).ConfigureAwait(false); } catch { /* their errors were delivered through the channel */ }
        _cancel.Dispose();
    }
}

/// <summary>Per-choice state while a response is assembled.</summary>
internal sealed class Choice
{
    public readonly StringBuilder Text = new();
    public readonly List<SampledToken> Tokens = new();
    public GenerationUpdate? Final;
    public bool Started;
    /// <summary>With tools offered: null until the reply's start shows whether it is a tool call (buffered) or text (streamed).</summary>
    public bool? StreamsText;
}

internal abstract class EndpointBase(ScoutEngine engine, RequestLimits limits, ServerMetrics metrics)
{
    protected readonly ScoutEngine Engine = engine;
    protected readonly RequestLimits Limits = limits;
    protected readonly ServerMetrics Metrics = metrics;
    protected readonly string Id = Guid.NewGuid().ToString("N")[..24];
    protected readonly long Created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    protected readonly long Started = System.Diagnostics.Stopwatch.GetTimestamp();

    protected RunSet Runs(IReadOnlyList<GenerationRequest> requests, HttpContext ctx) => new(Engine, requests, ctx.RequestAborted, Metrics, Started);

    protected GenerationRequest Checked(GenerationRequest request)
    {
        try
        {
            request.Validate(Engine.Model.Config.VocabSize, Engine.MaxContext);
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest(e.Message, request.Prompt.Length >= Engine.MaxContext ? "messages" : null,
                request.Prompt.Length >= Engine.MaxContext ? "context_length_exceeded" : null);
        }
        return request;
    }

    protected static IEnumerable<GenerationRequest> Seeded(GenerationRequest r, int n)
        => Enumerable.Range(0, n).Select(i => r.Sampling.Seed is { } seed && i > 0 ? r with { Sampling = r.Sampling with { Seed = seed + i } } : r);

    protected static void StartEvents(HttpContext ctx)
    {
        ctx.Response.ContentType = "text/event-stream";
        ctx.Response.Headers.CacheControl = "no-cache";
        ctx.Response.Headers["X-Accel-Buffering"] = "no";
    }

    protected static async Task Event(HttpContext ctx, JsonNode data)
    {
        await ctx.Response.WriteAsync("data: " + ServerJson.Write(data) + "\n\n", ctx.RequestAborted).ConfigureAwait(false);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted).ConfigureAwait(false);
    }

    protected static Task Done(HttpContext ctx) => ctx.Response.WriteAsync("data: [DONE]\n\n", ctx.RequestAborted);

    protected static string Finish(GenerationUpdate final, bool toolCalls)
        => toolCalls ? "tool_calls" : final.Finish == FinishReason.Length ? "length" : "stop";

    protected static JsonObject Usage(int promptTokens, int cached, int completion) => new()
    {
        ["prompt_tokens"] = promptTokens,
        ["completion_tokens"] = completion,
        ["total_tokens"] = promptTokens + completion,
        ["prompt_tokens_details"] = new JsonObject { ["cached_tokens"] = cached },
    };

    /// <summary>The chosen token (and alternatives) in chat's logprobs form; null for a stop token, which is not output.</summary>
    protected JsonObject? ChatLogprob(SampledToken t, GenerationUpdate u)
    {
        if (u.Stats?.StopTokenId == t.Id) return null;
        JsonObject Entry(int id, float lp) => new()
        {
            ["token"] = Engine.Tokenizer.Decode([id]),
            ["logprob"] = lp,
            ["bytes"] = new JsonArray(Engine.Tokenizer.DecodeBytes([id]).Select(b => (JsonNode)(int)b).ToArray()),
        };
        var e = Entry(t.Id, t.Logprob);
        e["top_logprobs"] = new JsonArray(t.Top.Select(a => (JsonNode)Entry(a.Id, a.Logprob)).ToArray());
        return e;
    }
}

/// <summary>POST /v1/chat/completions.</summary>
internal sealed class ChatEndpoint(ScoutEngine engine, RequestLimits limits, ServerMetrics metrics) : EndpointBase(engine, limits, metrics)
{
    public async Task Handle(HttpContext ctx)
    {
        var r = await ScoutServer.ReadJson(ctx, Limits).ConfigureAwait(false);
        var (messages, call, images) = OpenAiRequests.ParseChat(r, Engine, Limits);
        GenerationRequest request;
        try { request = Engine.ChatRequest(messages, call.Options, images) with { IgnoreStopIds = call.IgnoreEos }; }
        catch (ArgumentException e) { throw ApiException.BadRequest(e.Message); }
        catch (NotSupportedException e) { throw ApiException.BadRequest(e.Message, "messages", e.Message.Contains("image") ? "images_not_supported" : "chat_format_unavailable"); }
        Checked(request);
        bool parseTools = call.Options.ToolMode != ToolMode.None && call.Options.Tools.Count > 0;
        string id = "chatcmpl-" + Id;

        await using var runs = Runs(Seeded(request, call.N).ToList(), ctx);
        var choices = Enumerable.Range(0, call.N).Select(_ => new Choice()).ToArray();

        if (!call.Stream)
        {
            await foreach (var (i, u) in runs.ReadAll(ctx.RequestAborted).ConfigureAwait(false))
            {
                choices[i].Text.Append(u.Text);
                if (u.Token is { } t && call.Options.Logprobs) choices[i].Tokens.Add(t);
                if (u.IsFinal) choices[i].Final = u;
            }
            var array = new JsonArray();
            for (int i = 0; i < choices.Length; i++)
            {
                var c = choices[i];
                var message = new JsonObject { ["role"] = "assistant" };
                bool hasCalls = false;
                if (parseTools && Engine.ChatFormat.ParseAssistant(c.Text.ToString()) is { ToolCalls.Count: > 0 } reply)
                {
                    message["content"] = reply.Content.Length > 0 ? reply.Content : null;
                    message["tool_calls"] = ToolCallsJson(reply.ToolCalls, withIndex: false);
                    hasCalls = true;
                }
                else message["content"] = c.Text.ToString();
                array.Add(new JsonObject
                {
                    ["index"] = i,
                    ["message"] = message,
                    ["logprobs"] = call.Options.Logprobs
                        ? new JsonObject { ["content"] = new JsonArray(c.Tokens.Select(t => (JsonNode?)ChatLogprob(t, c.Final!)).Where(x => x is not null).ToArray()) }
                        : null,
                    ["finish_reason"] = Finish(c.Final!, hasCalls),
                });
            }
            var stats = choices[0].Final!.Stats!;
            await ScoutServer.Json(ctx, new JsonObject
            {
                ["id"] = id, ["object"] = "chat.completion", ["created"] = Created, ["model"] = call.Model,
                ["choices"] = array,
                ["usage"] = Usage(request.Prompt.Length, stats.CachedPromptTokens, choices.Sum(c => c.Final!.Stats!.CompletionTokens)),
                ["system_fingerprint"] = "scout",
            }).ConfigureAwait(false);
            return;
        }

        StartEvents(ctx);
        JsonObject Chunk(int index, JsonObject delta, string? finish, JsonObject? logprobs = null) => new()
        {
            ["id"] = id, ["object"] = "chat.completion.chunk", ["created"] = Created, ["model"] = call.Model, ["system_fingerprint"] = "scout",
            ["choices"] = new JsonArray(new JsonObject { ["index"] = index, ["delta"] = delta, ["logprobs"] = logprobs, ["finish_reason"] = finish }),
        };
        await foreach (var (i, u) in runs.ReadAll(ctx.RequestAborted).ConfigureAwait(false))
        {
            var c = choices[i];
            if (!c.Started)
            {
                c.Started = true;
                await Event(ctx, Chunk(i, new JsonObject { ["role"] = "assistant", ["content"] = "" }, null)).ConfigureAwait(false);
            }
            c.Text.Append(u.Text);
            JsonObject? logprobs = call.Options.Logprobs && u.Token is { } t && ChatLogprob(t, u) is { } lp
                ? new JsonObject { ["content"] = new JsonArray(lp) } : null;
            string streamNow = u.Text;
            if (parseTools && c.StreamsText is null)
            {
                c.StreamsText = ScoutEngine.LooksLikeText(c.Text.ToString());
                streamNow = c.StreamsText == true ? c.Text.ToString() : "";
            }
            if ((!parseTools || c.StreamsText == true) && (streamNow.Length > 0 || logprobs is not null))
                await Event(ctx, Chunk(i, new JsonObject { ["content"] = streamNow }, null, logprobs)).ConfigureAwait(false);
            if (!u.IsFinal) continue;

            c.Final = u;
            bool hasCalls = false;
            if (parseTools && c.StreamsText != true)
            {
                var reply = Engine.ChatFormat.ParseAssistant(c.Text.ToString());
                if (reply.ToolCalls.Count > 0)
                {
                    hasCalls = true;
                    var delta = new JsonObject { ["tool_calls"] = ToolCallsJson(reply.ToolCalls, withIndex: true) };
                    if (reply.Content.Length > 0) delta["content"] = reply.Content;
                    await Event(ctx, Chunk(i, delta, null)).ConfigureAwait(false);
                }
                else if (c.Text.Length > 0)
                {
                    await Event(ctx, Chunk(i, new JsonObject { ["content"] = c.Text.ToString() }, null)).ConfigureAwait(false);
                }
            }
            await Event(ctx, Chunk(i, new JsonObject(), Finish(u, hasCalls))).ConfigureAwait(false);
        }
        if (call.IncludeUsage)
        {
            var stats = choices[0].Final!.Stats!;
            await Event(ctx, new JsonObject
            {
                ["id"] = id, ["object"] = "chat.completion.chunk", ["created"] = Created, ["model"] = call.Model, ["system_fingerprint"] = "scout",
                ["choices"] = new JsonArray(),
                ["usage"] = Usage(request.Prompt.Length, stats.CachedPromptTokens, choices.Sum(c => c.Final!.Stats!.CompletionTokens)),
            }).ConfigureAwait(false);
        }
        await Done(ctx).ConfigureAwait(false);
    }

    private static JsonArray ToolCallsJson(IReadOnlyList<ToolCall> calls, bool withIndex)
    {
        var array = new JsonArray();
        for (int i = 0; i < calls.Count; i++)
        {
            var o = new JsonObject();
            if (withIndex) o["index"] = i;
            o["id"] = calls[i].Id ?? "call_" + Guid.NewGuid().ToString("N")[..24];
            o["type"] = "function";
            o["function"] = new JsonObject { ["name"] = calls[i].Name, ["arguments"] = calls[i].ArgumentsJson };
            array.Add(o);
        }
        return array;
    }
}

/// <summary>POST /v1/completions (plain text completion, no chat format).</summary>
internal sealed class CompletionEndpoint(ScoutEngine engine, RequestLimits limits, ServerMetrics metrics) : EndpointBase(engine, limits, metrics)
{
    public async Task Handle(HttpContext ctx)
    {
        var r = await ScoutServer.ReadJson(ctx, Limits).ConfigureAwait(false);
        var (prompts, call, echo, logprobs) = OpenAiRequests.ParseCompletion(r, Engine, Limits);
        if (prompts.Count * call.N > Limits.MaxChoices)
            throw ApiException.BadRequest($"at most {Limits.MaxChoices} completions per request (prompts × n)", "n");
        var o = call.Options;
        var requests = new List<GenerationRequest>();
        foreach (var p in prompts)
        {
            var request = Checked(new GenerationRequest
            {
                Prompt = p, MaxTokens = o.MaxTokens, Sampling = o.Sampling, StopStrings = o.Stop, Logprobs = o.Logprobs, TopLogprobs = o.TopLogprobs,
                IgnoreStopIds = call.IgnoreEos,
            });
            requests.AddRange(Seeded(request, call.N));
        }
        string id = "cmpl-" + Id;
        await using var runs = Runs(requests, ctx);
        var choices = requests.Select(_ => new Choice()).ToArray();
        string EchoText(int i) => echo ? Engine.Tokenizer.Decode(requests[i].Prompt.AsSpan(Engine.Tokenizer.BosId == requests[i].Prompt[0] ? 1 : 0)) : "";

        JsonObject LogprobsJson(IEnumerable<(SampledToken T, GenerationUpdate U)> tokens, int offset)
        {
            var toks = new JsonArray(); var lps = new JsonArray(); var tops = new JsonArray(); var offsets = new JsonArray();
            foreach (var (t, u) in tokens)
            {
                if (u.Stats?.StopTokenId == t.Id) continue;
                string s = Engine.Tokenizer.Decode([t.Id]);
                toks.Add(s); lps.Add(t.Logprob); offsets.Add(offset);
                offset += s.Length;
                var top = new JsonObject();
                foreach (var a in t.Top) top[Engine.Tokenizer.Decode([a.Id])] = a.Logprob;
                tops.Add(top);
            }
            return new JsonObject { ["tokens"] = toks, ["token_logprobs"] = lps, ["top_logprobs"] = tops, ["text_offset"] = offsets };
        }

        if (!call.Stream)
        {
            var tokens = requests.Select(_ => new List<(SampledToken, GenerationUpdate)>()).ToArray();
            await foreach (var (i, u) in runs.ReadAll(ctx.RequestAborted).ConfigureAwait(false))
            {
                choices[i].Text.Append(u.Text);
                if (u.Token is { } t && o.Logprobs) tokens[i].Add((t, u));
                if (u.IsFinal) choices[i].Final = u;
            }
            await ScoutServer.Json(ctx, new JsonObject
            {
                ["id"] = id, ["object"] = "text_completion", ["created"] = Created, ["model"] = call.Model,
                ["choices"] = new JsonArray(choices.Select((c, i) => (JsonNode)new JsonObject
                {
                    ["text"] = EchoText(i) + c.Text,
                    ["index"] = i,
                    ["logprobs"] = o.Logprobs ? LogprobsJson(tokens[i], EchoText(i).Length) : null,
                    ["finish_reason"] = Finish(c.Final!, false),
                }).ToArray()),
                ["usage"] = Usage(requests.Sum(q => q.Prompt.Length) / call.N, choices.Sum(c => c.Final!.Stats!.CachedPromptTokens) / call.N,
                                  choices.Sum(c => c.Final!.Stats!.CompletionTokens)),
            }).ConfigureAwait(false);
            return;
        }

        StartEvents(ctx);
        await foreach (var (i, u) in runs.ReadAll(ctx.RequestAborted).ConfigureAwait(false))
        {
            var c = choices[i];
            string text = (c.Started ? "" : EchoText(i)) + u.Text;
            c.Started = true;
            if (u.IsFinal) c.Final = u;
            var lp = o.Logprobs && u.Token is { } t ? LogprobsJson([(t, u)], c.Text.Length) : null;
            c.Text.Append(text);
            if (text.Length == 0 && !u.IsFinal && lp is null) continue;
            await Event(ctx, new JsonObject
            {
                ["id"] = id, ["object"] = "text_completion", ["created"] = Created, ["model"] = call.Model,
                ["choices"] = new JsonArray(new JsonObject
                {
                    ["text"] = text, ["index"] = i, ["logprobs"] = lp, ["finish_reason"] = u.IsFinal ? Finish(u, false) : null,
                }),
            }).ConfigureAwait(false);
        }
        if (call.IncludeUsage)
            await Event(ctx, new JsonObject
            {
                ["id"] = id, ["object"] = "text_completion", ["created"] = Created, ["model"] = call.Model, ["choices"] = new JsonArray(),
                ["usage"] = Usage(requests.Sum(q => q.Prompt.Length) / call.N, choices.Sum(c => c.Final!.Stats!.CachedPromptTokens) / call.N,
                                  choices.Sum(c => c.Final!.Stats!.CompletionTokens)),
            }).ConfigureAwait(false);
        await Done(ctx).ConfigureAwait(false);
    }
}
