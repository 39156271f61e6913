using System.Text.Json;
using Scout.Generation;
using Scout.Tokenization;

namespace Scout.Server;

/// <summary>Limits the server puts on requests.</summary>
public sealed record RequestLimits
{
    public long MaxRequestBytes { get; init; } = 16 << 20;
    public int MaxTokens { get; init; } = 4096;
    public int MaxChoices { get; init; } = 8;
    public int MaxStopStrings { get; init; } = 8;
}

/// <summary>Fields shared by chat and text completion requests.</summary>
public sealed record CompletionCall
{
    public required string Model { get; init; }
    public required ChatRequestOptions Options { get; init; }
    public int N { get; init; } = 1;
    public bool Stream { get; init; }
    public bool IncludeUsage { get; init; }
    /// <summary>llama.cpp's ignore_eos: keep generating past end-of-turn tokens (benchmarks).</summary>
    public bool IgnoreEos { get; init; }
}

/// <summary>Parses OpenAI chat and completion requests into Scout's types, refusing anything malformed with a 400.</summary>
public static class OpenAiRequests
{
    public static (List<ChatMessage> Messages, CompletionCall Call, List<PreparedImage> Images) ParseChat(JsonRequest r, ScoutEngine engine, RequestLimits limits)
    {
        var messagesJson = r.Array("messages", required: true)!.Value;
        if (messagesJson.GetArrayLength() == 0) throw ApiException.BadRequest("'messages' must contain at least one message", "messages");
        var messages = new List<ChatMessage>();
        var images = new List<PreparedImage>();
        int i = 0;
        foreach (var m in messagesJson.EnumerateArray())
            messages.Add(ParseMessage(r.Child(m, $"messages[{i++}]"), engine, images));

        var tools = ParseTools(r);
        var (mode, toolName) = CommonRequestFields.ToolChoice(r, tools);
        var schema = ParseResponseFormat(r);
        bool logprobs = r.Bool("logprobs") ?? false;
        int top = r.Int("top_logprobs", 0, 20) ?? 0;
        if (top > 0 && !logprobs) throw ApiException.BadRequest("'top_logprobs' requires 'logprobs': true", "top_logprobs");
        int maxTokens = r.Int("max_completion_tokens", 1, limits.MaxTokens) ?? r.Int("max_tokens", 1, limits.MaxTokens)
                        ?? Math.Min(limits.MaxTokens, engine.MaxContext);
        var call = Common(r, engine, limits) with { };
        return (messages, call with
        {
            Options = call.Options with
            {
                MaxTokens = maxTokens, Logprobs = logprobs, TopLogprobs = top,
                Tools = tools, ToolMode = mode, ToolName = toolName, ResponseSchema = schema,
            },
        }, images);
    }

    /// <summary>The prompts of a /v1/completions request: a string, strings, token ids, or lists of token ids.</summary>
    public static (List<int[]> Prompts, CompletionCall Call, bool Echo, int? Logprobs) ParseCompletion(JsonRequest r, ScoutEngine engine, RequestLimits limits)
    {
        var prompt = r.Get("prompt") ?? throw ApiException.BadRequest("'prompt' is required", "prompt");
        var tok = engine.Tokenizer;
        int[] Text(string s) => tok.BosId is { } bos ? [bos, .. tok.Encode(s)] : tok.Encode(s);
        int[] Ids(JsonElement a) => a.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int v) ? v
            : throw ApiException.BadRequest("'prompt' token ids must be integers", "prompt")).ToArray();
        var prompts = new List<int[]>();
        switch (prompt.ValueKind)
        {
            case JsonValueKind.String: prompts.Add(Text(prompt.GetString()!)); break;
            case JsonValueKind.Array when prompt.GetArrayLength() == 0:
                throw ApiException.BadRequest("'prompt' must not be empty", "prompt");
            case JsonValueKind.Array when prompt[0].ValueKind == JsonValueKind.Number: prompts.Add(Ids(prompt)); break;
            case JsonValueKind.Array:
                foreach (var p in prompt.EnumerateArray())
                    prompts.Add(p.ValueKind switch
                    {
                        JsonValueKind.String => Text(p.GetString()!),
                        JsonValueKind.Array => Ids(p),
                        _ => throw ApiException.BadRequest("'prompt' must be a string, an array of strings or token ids", "prompt"),
                    });
                break;
            default: throw r.WrongType("prompt", "a string or an array", prompt);
        }
        if (prompts.Any(p => p.Length == 0)) throw ApiException.BadRequest("'prompt' must not be empty", "prompt");
        int? logprobs = r.Int("logprobs", 0, 5);
        int maxTokens = r.Int("max_tokens", 1, limits.MaxTokens) ?? 16;
        bool echo = r.Bool("echo") ?? false;
        if (r.Has("suffix")) throw ApiException.BadRequest("'suffix' is not supported", "suffix");
        var call = Common(r, engine, limits);
        return (prompts, call with { Options = call.Options with { MaxTokens = maxTokens, Logprobs = logprobs is not null, TopLogprobs = logprobs ?? 0 } }, echo, logprobs);
    }

    /// <summary>Most entries of logit_bias (OpenAI allows 300).</summary>
    public const int MaxLogitBias = 1024;

    private static CompletionCall Common(JsonRequest r, ScoutEngine engine, RequestLimits limits)
    {
        string model = r.String("model") ?? engine.ModelId;
        int n = r.Int("n", 1, limits.MaxChoices) ?? 1;
        bool stream = r.Bool("stream") ?? false;
        bool includeUsage = r.Object("stream_options")?.Bool("include_usage") ?? false;
        var bias = new Dictionary<int, float>();
        int entries = 0;
        if (r.Object("logit_bias") is { } lb)
            foreach (var p in lb.Element.EnumerateObject())
            {
                if (++entries > MaxLogitBias)
                    throw ApiException.BadRequest($"'logit_bias' may hold at most {MaxLogitBias} tokens", "logit_bias");
                if (!int.TryParse(p.Name, out int id) || id < 0 || id >= engine.Model.Config.VocabSize)
                    throw ApiException.BadRequest($"'logit_bias' key \"{p.Name}\" is not a token id of this model", "logit_bias");
                if (p.Value.ValueKind != JsonValueKind.Number) throw ApiException.BadRequest($"'logit_bias.{p.Name}' must be a number", "logit_bias");
                double value = p.Value.GetDouble();
                if (!(value >= -100 && value <= 100)) throw ApiException.BadRequest($"'logit_bias.{p.Name}' must be between -100 and 100, got {value}", "logit_bias");
                bias[id] = (float)value;
            }
        var sampling = CommonRequestFields.Sampling(r, bias.Count > 0 ? bias : null);
        return new CompletionCall
        {
            Model = model, N = n, Stream = stream, IncludeUsage = includeUsage, IgnoreEos = r.Bool("ignore_eos") ?? false,
            Options = new ChatRequestOptions { Sampling = sampling, Stop = ParseStop(r, limits) },
        };
    }

    private static List<string> ParseStop(JsonRequest r, RequestLimits limits)
    {
        if (r.Get("stop") is not { } stop) return [];
        var list = stop.ValueKind switch
        {
            JsonValueKind.String => [stop.GetString()!],
            JsonValueKind.Array => stop.EnumerateArray().Select(s => s.ValueKind == JsonValueKind.String ? s.GetString()!
                : throw ApiException.BadRequest("'stop' entries must be strings", "stop")).ToList(),
            _ => throw r.WrongType("stop", "a string or an array of strings", stop),
        };
        if (list.Count > limits.MaxStopStrings) throw ApiException.BadRequest($"'stop' holds at most {limits.MaxStopStrings} strings", "stop");
        if (list.Any(s => s.Length == 0)) throw ApiException.BadRequest("'stop' strings must not be empty", "stop");
        return list;
    }

    private static ChatMessage ParseMessage(JsonRequest m, ScoutEngine engine, List<PreparedImage> allImages)
    {
        string role = m.String("role", required: true)!;
        if (role is not ("system" or "developer" or "user" or "assistant" or "tool" or "ipython"))
            throw ApiException.BadRequest($"unknown message role \"{role}\"", "role");
        if (role == "developer") role = "system";
        if (role == "tool") role = "ipython";

        var text = new System.Text.StringBuilder();
        var images = new List<ImageTiling>();
        var content = m.Get("content");
        switch (content?.ValueKind)
        {
            case null: break;
            case JsonValueKind.String: text.Append(content.Value.GetString()); break;
            case JsonValueKind.Array:
                int i = 0;
                foreach (var part in content.Value.EnumerateArray())
                {
                    var p = m.Child(part, $"content[{i++}]");
                    switch (p.String("type", required: true))
                    {
                        case "text": text.Append(p.String("text", required: true)); break;
                        case "image_url":
                            var url = (p.Object("image_url") ?? throw ApiException.BadRequest("'image_url' is required", "image_url")).String("url", required: true)!;
                            var prepared = Images.Prepare(url, engine);
                            images.Add(prepared.Tiling);
                            allImages.Add(prepared);
                            text.Append("<|image|>");
                            break;
                        case var other: throw ApiException.BadRequest($"unsupported content part type \"{other}\"", "content");
                    }
                }
                break;
            default: throw m.WrongType("content", "a string or an array of content parts", content.Value);
        }

        var calls = new List<ToolCall>();
        if (m.Array("tool_calls") is { } tc)
        {
            int i = 0;
            foreach (var c in tc.EnumerateArray())
            {
                var call = m.Child(c, $"tool_calls[{i++}]");
                var fn = call.Object("function") ?? throw ApiException.BadRequest("'function' is required in a tool call", "tool_calls");
                calls.Add(new ToolCall(fn.String("name", required: true)!, fn.String("arguments") ?? "{}", call.String("id")));
            }
        }
        if (text.Length == 0 && calls.Count == 0 && role != "assistant")
            throw ApiException.BadRequest($"a {m.String("role")} message must have content", "content");
        return new ChatMessage(role, text.ToString()) { ToolCalls = calls, Images = images };
    }

    private static List<ToolDefinition> ParseTools(JsonRequest r)
    {
        var tools = new List<ToolDefinition>();
        if (r.Array("tools") is not { } arr) return tools;
        int i = 0;
        foreach (var t in arr.EnumerateArray())
        {
            var tool = r.Child(t, $"tools[{i++}]");
            if (tool.String("type") is { } type && type != "function") throw ApiException.BadRequest($"unsupported tool type \"{type}\"", "tools");
            var fn = tool.Object("function") ?? throw ApiException.BadRequest("'function' is required in a tool", "tools");
            tools.Add(CommonRequestFields.FunctionTool(fn, $"tools[{i - 1}].function.parameters"));
        }
        return tools;
    }

    private static JsonSchemaSubset? ParseResponseFormat(JsonRequest r)
    {
        if (r.Object("response_format") is not { } rf) return null;
        switch (rf.String("type", required: true))
        {
            case "text": return null;
            case "json_object": return JsonSchemaSubset.AnyObject;
            case "json_schema":
                var js = rf.Object("json_schema") ?? throw ApiException.BadRequest("'response_format.json_schema' is required", "response_format");
                var schema = js.Get("schema") ?? throw ApiException.BadRequest("'response_format.json_schema.schema' is required", "response_format");
                return CommonRequestFields.OutputSchema(schema, "response_format.json_schema.schema");
            case var t: throw ApiException.BadRequest($"unknown response_format type \"{t}\"", "response_format");
        }
    }
}

/// <summary>Request fields the chat-completions and Responses endpoints share: function tools, tool_choice, output schemas (size, kind, bounded parse) and sampling, with the same 400s.</summary>
internal static class CommonRequestFields
{
    /// <summary>A function tool (name, description, parameters) from the object that holds them; <paramref name="field"/> names its parameters in errors.</summary>
    public static ToolDefinition FunctionTool(JsonRequest fn, string field)
    {
        string name = fn.String("name", required: true)!;
        string parameters = fn.Get("parameters") is { } p ? p.GetRawText() : """{"type":"object","properties":{}}""";
        if (parameters.Length > JsonSchemaSubset.MaxSchemaBytes)
            throw ApiException.BadRequest($"tool \"{name}\": the parameters schema exceeds {JsonSchemaSubset.MaxSchemaBytes} bytes", field);
        try { JsonSchemaSubset.Parse(parameters); }
        catch (ArgumentException e) { throw ApiException.BadRequest($"tool \"{name}\": {e.Message}", field); }
        return new ToolDefinition(name, fn.String("description"), parameters);
    }

    /// <summary>
    /// tool_choice of either API: "none" | "auto" | "required", or an object naming one function — chat completions'
    /// <c>{"type":"function","function":{"name":…}}</c> or the Responses API's <c>{"type":"function","name":…}</c>.
    /// </summary>
    public static (ToolMode, string?) ToolChoice(JsonRequest r, List<ToolDefinition> tools)
    {
        var offered = tools.Count > 0 ? ToolMode.Auto : ToolMode.None;
        if (r.Get("tool_choice") is not { } choice) return (offered, null);
        if (choice.ValueKind == JsonValueKind.String)
            return choice.GetString() switch
            {
                "none" => (ToolMode.None, null),
                "auto" => (offered, null),
                "required" when tools.Count > 0 => (ToolMode.Required, null),
                "required" => throw ApiException.BadRequest("'tool_choice' is \"required\" but no tools were given", "tool_choice"),
                var s => throw ApiException.BadRequest($"unknown tool_choice \"{s}\"", "tool_choice"),
            };
        var obj = r.Object("tool_choice")!.Value;
        if (obj.String("type") is { } type && type != "function")
            throw ApiException.BadRequest($"tool_choice type \"{type}\" is not supported; only \"function\"", "tool_choice");
        string name = obj.String("name") ?? obj.Object("function")?.String("name", required: true)
                      ?? throw ApiException.BadRequest("'tool_choice' must name a function ('function.name', or 'name' in the Responses API)", "tool_choice");
        if (tools.All(t => t.Name != name)) throw ApiException.BadRequest($"'tool_choice' names \"{name}\", which is not among the tools", "tool_choice");
        return (ToolMode.Required, name);
    }

    /// <summary>The sampling fields both APIs share, range-checked, with their 400s.</summary>
    public static SamplingOptions Sampling(JsonRequest r, Dictionary<int, float>? logitBias)
    {
        var sampling = new SamplingOptions
        {
            Temperature = (float)(r.Number("temperature", 0, 2) ?? 1),
            TopP = (float)(r.Number("top_p", 0, 1) ?? 1),
            TopK = r.Int("top_k", 0, 1 << 20) ?? 0,
            MinP = (float)(r.Number("min_p", 0, 1) ?? 0),
            RepetitionPenalty = (float)(r.Number("repetition_penalty", 0.01, 10) ?? 1),
            PresencePenalty = (float)(r.Number("presence_penalty", -2, 2) ?? 0),
            FrequencyPenalty = (float)(r.Number("frequency_penalty", -2, 2) ?? 0),
            LogitBias = logitBias,
            Seed = r.Long("seed"),
        };
        if (sampling.TopP <= 0) throw ApiException.BadRequest("'top_p' must be greater than 0", "top_p");
        try { sampling.Validate(); }
        catch (ArgumentException e) { throw ApiException.BadRequest(e.Message); }
        return sampling;
    }

    /// <summary>The schema an answer must follow (response_format / text.format), refused with a 400 naming <paramref name="field"/>.</summary>
    public static JsonSchemaSubset OutputSchema(JsonElement schema, string field)
    {
        if (schema.ValueKind != JsonValueKind.Object)
            throw ApiException.BadRequest($"'{field}' must be an object, got {JsonRequest.Kind(schema)}", field);
        if (schema.GetRawText().Length > JsonSchemaSubset.MaxSchemaBytes)
            throw ApiException.BadRequest($"{field}: the schema exceeds {JsonSchemaSubset.MaxSchemaBytes} bytes", field, "schema_too_complex");
        try { return JsonSchemaSubset.Parse(schema); }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest($"{field}: {e.Message}", field,
                e is JsonSchemaException { Keyword: { } k } ? $"unsupported_schema_{k.TrimStart('$')}" : "invalid_schema");
        }
    }
}

/// <summary>Image parts of messages: data: URLs only, handed to the engine's image hook.</summary>
public static class Images
{
    public static PreparedImage Prepare(string url, ScoutEngine engine)
    {
        if (url.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || url.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
            throw ApiException.BadRequest("remote image URLs are not fetched by this server; send the image inline as a data: URL (data:image/png;base64,...)", "image_url");
        if (!url.StartsWith("data:", StringComparison.OrdinalIgnoreCase))
            throw ApiException.BadRequest("'image_url.url' must be a data: URL", "image_url");
        int comma = url.IndexOf(',');
        if (comma < 0 || !url[..comma].EndsWith(";base64", StringComparison.OrdinalIgnoreCase))
            throw ApiException.BadRequest("image data: URLs must be base64 (data:image/png;base64,...)", "image_url");
        string mediaType = url[5..(comma - 7)];
        byte[] bytes;
        try { bytes = Convert.FromBase64String(url[(comma + 1)..]); }
        catch (FormatException) { throw ApiException.BadRequest("the image data: URL is not valid base64", "image_url"); }
        var encoder = engine.Images ?? throw ApiException.BadRequest("this model has no vision encoder loaded: images are not supported", "image_url", "images_not_supported");
        try { return encoder.Prepare(bytes, mediaType); }
        catch (ArgumentException e) { throw ApiException.BadRequest($"image: {e.Message}", "image_url"); }
    }
}
