using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Scout.Generation;
using Scout.Tokenization;

namespace Scout.Server;

/// <summary>A parsed POST /v1/responses request.</summary>
public sealed record ResponsesCall
{
    public required string Model { get; init; }
    public required List<ChatMessage> Messages { get; init; }
    public required List<PreparedImage> Images { get; init; }
    public required ChatRequestOptions Options { get; init; }
    public bool Stream { get; init; }
    public string? Instructions { get; init; }
    /// <summary>The request's tools, tool_choice, text and metadata as sent, echoed in the response object.</summary>
    public JsonNode? Tools { get; init; }
    public JsonNode? ToolChoice { get; init; }
    public JsonNode? Text { get; init; }
    public JsonNode? Metadata { get; init; }
    public int? MaxOutputTokens { get; init; }
}

/// <summary>
/// Parses OpenAI Responses API requests (the subset a stateless server can honour): input as a string or as message,
/// function_call and function_call_output items; instructions; function tools; text.format (text, json_object,
/// json_schema); sampling. What cannot be honoured (stored responses, non-function tools, background runs) is a 400.
/// </summary>
public static class ResponsesRequests
{
    public static ResponsesCall Parse(JsonRequest r, ScoutEngine engine, RequestLimits limits)
    {
        if (r.Has("previous_response_id"))
            throw ApiException.BadRequest("'previous_response_id' is not supported: this server stores no responses; send the whole conversation as 'input'", "previous_response_id");
        if (r.Has("conversation"))
            throw ApiException.BadRequest("'conversation' is not supported: this server stores no conversations; send the whole conversation as 'input'", "conversation");
        if (r.Bool("background") == true) throw ApiException.BadRequest("'background' responses are not supported", "background");

        var messages = new List<ChatMessage>();
        var images = new List<PreparedImage>();
        string? instructions = r.String("instructions");
        if (!string.IsNullOrEmpty(instructions)) messages.Add(new ChatMessage("system", instructions));
        var input = r.Get("input") ?? throw ApiException.BadRequest("'input' is required", "input");
        switch (input.ValueKind)
        {
            case JsonValueKind.String:
                if (input.GetString()!.Length == 0) throw ApiException.BadRequest("'input' must not be empty", "input");
                messages.Add(new ChatMessage("user", input.GetString()!));
                break;
            case JsonValueKind.Array:
                if (input.GetArrayLength() == 0) throw ApiException.BadRequest("'input' must hold at least one item", "input");
                int i = 0;
                foreach (var item in input.EnumerateArray()) AddItem(r.Child(item, $"input[{i++}]"), engine, messages, images);
                break;
            default: throw r.WrongType("input", "a string or an array of input items", input);
        }
        if (messages.All(m => m.Role == "system")) throw ApiException.BadRequest("'input' holds no user message", "input");

        var tools = ParseTools(r);
        var (mode, toolName) = CommonRequestFields.ToolChoice(r, tools);
        var schema = ParseFormat(r);
        int? maxOutput = r.Int("max_output_tokens", 1, limits.MaxTokens);
        var sampling = CommonRequestFields.Sampling(r, logitBias: null);

        static JsonNode? Raw(JsonRequest r, string field) => r.Get(field) is { } v ? JsonNode.Parse(v.GetRawText()) : null;
        return new ResponsesCall
        {
            Model = r.String("model") ?? engine.ModelId,
            Messages = messages,
            Images = images,
            Stream = r.Bool("stream") ?? false,
            Instructions = instructions,
            MaxOutputTokens = maxOutput,
            Tools = Raw(r, "tools"),
            ToolChoice = Raw(r, "tool_choice"),
            Text = Raw(r, "text"),
            Metadata = Raw(r, "metadata"),
            Options = new ChatRequestOptions
            {
                Sampling = sampling,
                MaxTokens = maxOutput ?? Math.Min(limits.MaxTokens, engine.MaxContext),
                Tools = tools, ToolMode = mode, ToolName = toolName, ResponseSchema = schema,
            },
        };
    }

    private static void AddItem(JsonRequest item, ScoutEngine engine, List<ChatMessage> messages, List<PreparedImage> images)
    {
        string type = item.String("type") ?? (item.Has("role") ? "message" : throw ApiException.BadRequest("an input item needs a 'type' or a 'role'", "input"));
        switch (type)
        {
            case "message":
                string role = item.String("role", required: true)!;
                if (role is not ("user" or "system" or "developer" or "assistant"))
                    throw ApiException.BadRequest($"unknown message role \"{role}\"", "input");
                if (role == "developer") role = "system";
                var text = new StringBuilder();
                var tilings = new List<ImageTiling>();
                var content = item.Get("content") ?? throw ApiException.BadRequest("a message item needs 'content'", "input");
                if (content.ValueKind == JsonValueKind.String) text.Append(content.GetString());
                else if (content.ValueKind == JsonValueKind.Array)
                {
                    int i = 0;
                    foreach (var part in content.EnumerateArray())
                    {
                        var p = item.Child(part, $"content[{i++}]");
                        switch (p.String("type", required: true))
                        {
                            case "input_text" or "output_text" or "text": text.Append(p.String("text", required: true)); break;
                            case "refusal": text.Append(p.String("refusal")); break;
                            case "input_image":
                                string url = p.Get("image_url") is { ValueKind: JsonValueKind.Object }
                                    ? p.Object("image_url")!.Value.String("url", required: true)!
                                    : p.String("image_url") ?? throw ApiException.BadRequest(p.Has("file_id")
                                        ? "'file_id' images are not supported (this server has no file store); send the image as a data: URL in 'image_url'"
                                        : "an input_image part needs 'image_url'", "image_url");
                                var prepared = Images.Prepare(url, engine);
                                tilings.Add(prepared.Tiling);
                                images.Add(prepared);
                                text.Append("<|image|>");
                                break;
                            case var other: throw ApiException.BadRequest($"unsupported content part type \"{other}\"", "input");
                        }
                    }
                }
                else throw item.WrongType("content", "a string or an array of content parts", content);
                if (text.Length == 0 && role != "assistant") throw ApiException.BadRequest($"a {role} message must have content", "input");
                messages.Add(new ChatMessage(role, text.ToString()) { Images = tilings });
                break;
            case "function_call":
                var call = new ToolCall(item.String("name", required: true)!, item.String("arguments") ?? "{}", item.String("call_id"));
                // Consecutive calls belong to one assistant turn.
                if (messages.Count > 0 && messages[^1] is { Role: "assistant", ToolCalls.Count: > 0 } last)
                    messages[^1] = last with { ToolCalls = [.. last.ToolCalls, call] };
                else messages.Add(new ChatMessage("assistant", "") { ToolCalls = [call] });
                break;
            case "function_call_output":
                var output = item.Get("output") ?? throw ApiException.BadRequest("a function_call_output item needs 'output'", "input");
                string result = output.ValueKind switch
                {
                    JsonValueKind.String => output.GetString()!,
                    JsonValueKind.Array => string.Concat(output.EnumerateArray().Select(p =>
                        p.ValueKind == JsonValueKind.Object && p.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()
                        : throw ApiException.BadRequest("function_call_output 'output' parts must be text parts", "input"))),
                    _ => throw item.WrongType("output", "a string", output),
                };
                messages.Add(new ChatMessage("ipython", result));
                break;
            case "reasoning": break; // a reasoning model's summary: nothing for this model to read
            default: throw ApiException.BadRequest($"unsupported input item type \"{type}\"", "input");
        }
    }

    private static List<ToolDefinition> ParseTools(JsonRequest r)
    {
        var tools = new List<ToolDefinition>();
        if (r.Array("tools") is not { } arr) return tools;
        int i = 0;
        foreach (var t in arr.EnumerateArray())
        {
            var tool = r.Child(t, $"tools[{i++}]");
            string type = tool.String("type", required: true)!;
            if (type != "function")
                throw ApiException.BadRequest($"tool type \"{type}\" is not supported by this server; only \"function\" tools are", "tools");
            tools.Add(CommonRequestFields.FunctionTool(tool, $"tools[{i - 1}].parameters"));
        }
        return tools;
    }

    private static JsonSchemaSubset? ParseFormat(JsonRequest r)
    {
        if (r.Object("text")?.Object("format") is not { } f) return null;
        switch (f.String("type", required: true))
        {
            case "text": return null;
            case "json_object": return JsonSchemaSubset.AnyObject;
            case "json_schema":
                var schema = f.Get("schema") ?? throw ApiException.BadRequest("'text.format.schema' is required", "text.format.schema");
                return CommonRequestFields.OutputSchema(schema, "text.format.schema");
            case var t: throw ApiException.BadRequest($"unknown text.format type \"{t}\"", "text.format.type");
        }
    }
}

/// <summary>POST /v1/responses: the OpenAI Responses API over the chat format, streamed as typed events or answered whole.</summary>
internal sealed class ResponsesEndpoint(ScoutEngine engine, RequestLimits limits, ServerMetrics metrics) : EndpointBase(engine, limits, metrics)
{
    private int _sequence;

    public async Task Handle(HttpContext ctx)
    {
        var r = await ScoutServer.ReadJson(ctx, Limits).ConfigureAwait(false);
        var call = ResponsesRequests.Parse(r, Engine, Limits);
        GenerationRequest request;
        try { request = Engine.ChatRequest(call.Messages, call.Options, call.Images); }
        catch (ArgumentException e) { throw ApiException.BadRequest(e.Message); }
        catch (NotSupportedException e) { throw ApiException.BadRequest(e.Message, "input", e.Message.Contains("image") ? "images_not_supported" : "chat_format_unavailable"); }
        Checked(request);
        bool parseTools = call.Options.ToolMode != ToolMode.None && call.Options.Tools.Count > 0;
        string id = "resp_" + Id;
        string messageId = "msg_" + Id;

        await using var runs = Runs([request], ctx);
        var text = new StringBuilder();
        GenerationUpdate? final = null;

        if (!call.Stream)
        {
            await foreach (var (_, u) in runs.ReadAll(ctx.RequestAborted).ConfigureAwait(false))
            {
                text.Append(u.Text);
                if (u.IsFinal) final = u;
            }
            var output = new JsonArray();
            foreach (var item in OutputItems(text.ToString(), parseTools, messageId)) output.Add(item);
            await ScoutServer.Json(ctx, ResponseObject(call, id, final!, output, request.Prompt.Length)).ConfigureAwait(false);
            return;
        }

        StartEvents(ctx);
        var pending = ResponseObject(call, id, null, new JsonArray(), request.Prompt.Length);
        await Emit(ctx, "response.created", new JsonObject { ["response"] = pending.DeepClone() }).ConfigureAwait(false);
        await Emit(ctx, "response.in_progress", new JsonObject { ["response"] = pending }).ConfigureAwait(false);
        bool? streamsText = parseTools ? null : true;
        bool opened = false;
        await foreach (var (_, u) in runs.ReadAll(ctx.RequestAborted).ConfigureAwait(false))
        {
            text.Append(u.Text);
            string now = u.Text;
            if (streamsText is null)
            {
                streamsText = ScoutEngine.LooksLikeText(text.ToString());
                now = text.ToString();
            }
            if (streamsText == true && now.Length > 0)
            {
                if (!opened)
                {
                    opened = true;
                    await OpenMessage(ctx, messageId, 0).ConfigureAwait(false);
                }
                await Emit(ctx, "response.output_text.delta", new JsonObject
                {
                    ["item_id"] = messageId, ["output_index"] = 0, ["content_index"] = 0, ["delta"] = now, ["logprobs"] = new JsonArray(),
                }).ConfigureAwait(false);
            }
            if (u.IsFinal) final = u;
        }

        var items = streamsText == true ? [MessageItem(messageId, text.ToString())] : OutputItems(text.ToString(), parseTools, messageId);
        for (int index = 0; index < items.Count; index++)
        {
            var item = items[index];
            if (item["type"]!.GetValue<string>() == "message")
            {
                string full = item["content"]![0]!["text"]!.GetValue<string>();
                if (!opened)
                {
                    await OpenMessage(ctx, messageId, index).ConfigureAwait(false);
                    if (full.Length > 0)
                        await Emit(ctx, "response.output_text.delta", new JsonObject
                        {
                            ["item_id"] = messageId, ["output_index"] = index, ["content_index"] = 0, ["delta"] = full, ["logprobs"] = new JsonArray(),
                        }).ConfigureAwait(false);
                }
                opened = false;
                await Emit(ctx, "response.output_text.done", new JsonObject
                {
                    ["item_id"] = messageId, ["output_index"] = index, ["content_index"] = 0, ["text"] = full, ["logprobs"] = new JsonArray(),
                }).ConfigureAwait(false);
                await Emit(ctx, "response.content_part.done", new JsonObject
                {
                    ["item_id"] = messageId, ["output_index"] = index, ["content_index"] = 0, ["part"] = item["content"]![0]!.DeepClone(),
                }).ConfigureAwait(false);
            }
            else
            {
                string fcId = item["id"]!.GetValue<string>();
                string arguments = item["arguments"]!.GetValue<string>();
                var added = item.DeepClone();
                added["arguments"] = "";
                added["status"] = "in_progress";
                await Emit(ctx, "response.output_item.added", new JsonObject { ["output_index"] = index, ["item"] = added }).ConfigureAwait(false);
                await Emit(ctx, "response.function_call_arguments.delta", new JsonObject
                {
                    ["item_id"] = fcId, ["output_index"] = index, ["delta"] = arguments,
                }).ConfigureAwait(false);
                await Emit(ctx, "response.function_call_arguments.done", new JsonObject
                {
                    ["item_id"] = fcId, ["output_index"] = index, ["name"] = item["name"]!.DeepClone(), ["arguments"] = arguments,
                }).ConfigureAwait(false);
            }
            await Emit(ctx, "response.output_item.done", new JsonObject { ["output_index"] = index, ["item"] = item.DeepClone() }).ConfigureAwait(false);
        }
        var done = ResponseObject(call, id, final!, new JsonArray(items.Select(i => (JsonNode)i).ToArray()), request.Prompt.Length);
        await Emit(ctx, done["status"]!.GetValue<string>() == "completed" ? "response.completed" : "response.incomplete",
            new JsonObject { ["response"] = done }).ConfigureAwait(false);
    }

    private async Task OpenMessage(HttpContext ctx, string messageId, int index)
    {
        await Emit(ctx, "response.output_item.added", new JsonObject
        {
            ["output_index"] = index,
            ["item"] = new JsonObject
            {
                ["id"] = messageId, ["type"] = "message", ["status"] = "in_progress", ["role"] = "assistant", ["content"] = new JsonArray(),
            },
        }).ConfigureAwait(false);
        await Emit(ctx, "response.content_part.added", new JsonObject
        {
            ["item_id"] = messageId, ["output_index"] = index, ["content_index"] = 0,
            ["part"] = new JsonObject { ["type"] = "output_text", ["text"] = "", ["annotations"] = new JsonArray(), ["logprobs"] = new JsonArray() },
        }).ConfigureAwait(false);
    }

    /// <summary>One typed server-sent event: "event: TYPE" and the data with its type and sequence number.</summary>
    private async Task Emit(HttpContext ctx, string type, JsonObject data)
    {
        var body = new JsonObject { ["type"] = type, ["sequence_number"] = _sequence++ };
        foreach (var (k, v) in data.ToList())
        {
            data.Remove(k);
            body[k] = v;
        }
        await ctx.Response.WriteAsync("event: " + type + "\ndata: " + ServerJson.Write(body) + "\n\n", ctx.RequestAborted).ConfigureAwait(false);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted).ConfigureAwait(false);
    }

    private static JsonObject MessageItem(string id, string text) => new()
    {
        ["id"] = id, ["type"] = "message", ["status"] = "completed", ["role"] = "assistant",
        ["content"] = new JsonArray(new JsonObject
        {
            ["type"] = "output_text", ["text"] = text, ["annotations"] = new JsonArray(), ["logprobs"] = new JsonArray(),
        }),
    };

    /// <summary>The reply as output items: function_call items when it is a tool call (any text before them as a message), else one message.</summary>
    private List<JsonObject> OutputItems(string text, bool parseTools, string messageId)
    {
        if (parseTools && Engine.ChatFormat.ParseAssistant(text) is { ToolCalls.Count: > 0 } reply)
        {
            var items = new List<JsonObject>();
            if (reply.Content.Trim().Length > 0) items.Add(MessageItem(messageId, reply.Content));
            foreach (var c in reply.ToolCalls)
            {
                string suffix = Guid.NewGuid().ToString("N")[..24];
                items.Add(new JsonObject
                {
                    ["id"] = "fc_" + suffix, ["type"] = "function_call", ["status"] = "completed",
                    ["call_id"] = c.Id ?? "call_" + suffix, ["name"] = c.Name, ["arguments"] = c.ArgumentsJson,
                });
            }
            return items;
        }
        return [MessageItem(messageId, text)];
    }

    /// <summary>The response object; <paramref name="final"/> null while it is in progress.</summary>
    private JsonObject ResponseObject(ResponsesCall call, string id, GenerationUpdate? final, JsonArray output, int promptTokens)
    {
        bool incomplete = final?.Finish == FinishReason.Length;
        var stats = final?.Stats;
        var o = call.Options;
        return new JsonObject
        {
            ["id"] = id,
            ["object"] = "response",
            ["created_at"] = Created,
            ["status"] = final is null ? "in_progress" : incomplete ? "incomplete" : "completed",
            ["completed_at"] = final is null || incomplete ? null : DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            ["error"] = null,
            ["incomplete_details"] = incomplete ? new JsonObject { ["reason"] = "max_output_tokens" } : null,
            ["instructions"] = call.Instructions,
            ["max_output_tokens"] = call.MaxOutputTokens,
            ["model"] = call.Model,
            ["output"] = output,
            ["parallel_tool_calls"] = false,
            ["previous_response_id"] = null,
            ["reasoning"] = new JsonObject { ["effort"] = null, ["summary"] = null },
            ["store"] = false,
            ["temperature"] = o.Sampling.Temperature,
            ["text"] = call.Text?.DeepClone() ?? new JsonObject { ["format"] = new JsonObject { ["type"] = "text" } },
            ["tool_choice"] = call.ToolChoice?.DeepClone() ?? (JsonNode)(o.Tools.Count > 0 ? "auto" : "none"),
            ["tools"] = call.Tools?.DeepClone() ?? new JsonArray(),
            ["top_p"] = o.Sampling.TopP,
            ["truncation"] = "disabled",
            ["usage"] = stats is null ? null : new JsonObject
            {
                ["input_tokens"] = promptTokens,
                ["input_tokens_details"] = new JsonObject { ["cached_tokens"] = stats.CachedPromptTokens },
                ["output_tokens"] = stats.CompletionTokens,
                ["output_tokens_details"] = new JsonObject { ["reasoning_tokens"] = 0 },
                ["total_tokens"] = promptTokens + stats.CompletionTokens,
            },
            ["metadata"] = call.Metadata?.DeepClone() ?? new JsonObject(),
        };
    }
}
