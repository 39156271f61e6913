using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using ScoutMessage = Scout.Tokenization.ChatMessage;
using ScoutToolCall = Scout.Tokenization.ToolCall;
using ToolDefinition = Scout.Tokenization.ToolDefinition;

namespace Scout.Generation;

/// <summary>
/// <see cref="IChatClient"/> over a <see cref="ScoutEngine"/>, in process:
/// <code>
/// using var engine = ScoutEngine.Load("models/scout");
/// IChatClient chat = engine.AsChatClient();
/// await foreach (var update in chat.GetStreamingResponseAsync("Why is the sky blue?"))
///     Console.Write(update.Text);
/// </code>
/// ChatOptions map to sampling (temperature, top-p, top-k, seed, penalties), max tokens, stop sequences, response
/// format (JSON / JSON schema, enforced by constrained decoding) and tools. The last streamed update carries usage
/// and the finish reason.
/// </summary>
public sealed class ScoutChatClient(ScoutEngine engine) : IChatClient
{
    public ScoutEngine Engine => engine;

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<Microsoft.Extensions.AI.ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false)) updates.Add(u);
        return updates.ToChatResponse();
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<Microsoft.Extensions.AI.ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var images = new List<PreparedImage>();
        var dialog = ToDialog(messages, options?.Instructions, images);
        var requestOptions = ToRequestOptions(options);
        var request = engine.ChatRequest(dialog, requestOptions, images);
        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        string model = engine.ModelId;
        bool toolsOffered = requestOptions.Tools.Count > 0 && requestOptions.ToolMode != ToolMode.None;
        // With tools offered, the reply is held back only while it may be a tool call.
        bool? streamsText = toolsOffered ? null : true;
        var text = new StringBuilder();

        await foreach (var u in engine.Scheduler.Submit(request, cancellationToken).ConfigureAwait(false))
        {
            text.Append(u.Text);
            string now = u.Text;
            if (streamsText is null)
            {
                streamsText = ScoutEngine.LooksLikeText(text.ToString());
                now = streamsText == true ? text.ToString() : "";
            }
            if (streamsText == true && now.Length > 0)
                yield return new ChatResponseUpdate(ChatRole.Assistant, now) { ResponseId = id, MessageId = id, ModelId = model };
            if (!u.IsFinal) continue;

            var contents = new List<AIContent>();
            var finish = u.Finish == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop;
            if (streamsText != true)
            {
                var reply = engine.ChatFormat.ParseAssistant(text.ToString());
                if (reply.Content.Length > 0) contents.Add(new TextContent(reply.Content));
                foreach (var call in reply.ToolCalls)
                    contents.Add(new FunctionCallContent(call.Id ?? "call_" + Guid.NewGuid().ToString("N")[..24], call.Name, ParseArguments(call.ArgumentsJson)));
                if (reply.ToolCalls.Count > 0) finish = ChatFinishReason.ToolCalls;
            }
            var stats = u.Stats!;
            contents.Add(new UsageContent(new UsageDetails
            {
                InputTokenCount = stats.PromptTokens,
                OutputTokenCount = stats.CompletionTokens,
                TotalTokenCount = stats.PromptTokens + stats.CompletionTokens,
                CachedInputTokenCount = stats.CachedPromptTokens,
            }));
            yield return new ChatResponseUpdate(ChatRole.Assistant, contents)
            {
                ResponseId = id, MessageId = id, ModelId = model, FinishReason = finish, CreatedAt = DateTimeOffset.UtcNow,
            };
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return new ChatClientMetadata("scout", null, engine.ModelId);
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType.IsInstanceOfType(engine)) return engine;
        return null;
    }

    public void Dispose() { }

    /// <summary>ChatOptions → Scout's request options.</summary>
    public static ChatRequestOptions ToRequestOptions(ChatOptions? o)
    {
        if (o is null) return new ChatRequestOptions();
        var tools = (o.Tools ?? []).OfType<AIFunctionDeclaration>()
            .Select(f => new ToolDefinition(f.Name, f.Description, f.JsonSchema.GetRawText())).ToList();
        var (mode, name) = o.ToolMode switch
        {
            NoneChatToolMode => (ToolMode.None, null),
            RequiredChatToolMode r => (ToolMode.Required, r.RequiredFunctionName),
            _ => (ToolMode.Auto, (string?)null),
        };
        JsonSchemaSubset? schema = o.ResponseFormat switch
        {
            ChatResponseFormatJson { Schema: { } s } => JsonSchemaSubset.Parse(s),
            ChatResponseFormatJson => JsonSchemaSubset.AnyObject,
            _ => null,
        };
        return new ChatRequestOptions
        {
            Sampling = new SamplingOptions
            {
                Temperature = o.Temperature ?? 1f,
                TopP = o.TopP ?? 1f,
                TopK = o.TopK ?? 0,
                Seed = o.Seed,
                PresencePenalty = o.PresencePenalty ?? 0,
                FrequencyPenalty = o.FrequencyPenalty ?? 0,
            },
            MaxTokens = o.MaxOutputTokens ?? 512,
            Stop = o.StopSequences?.ToList() ?? [],
            Tools = tools,
            ToolMode = tools.Count == 0 ? ToolMode.None : mode,
            ToolName = name,
            ResponseSchema = schema,
        };
    }

    private List<ScoutMessage> ToDialog(IEnumerable<Microsoft.Extensions.AI.ChatMessage> messages, string? instructions, List<PreparedImage> allImages)
    {
        var dialog = new List<ScoutMessage>();
        if (!string.IsNullOrEmpty(instructions)) dialog.Add(new ScoutMessage("system", instructions));
        foreach (var m in messages)
        {
            string role = m.Role == ChatRole.Tool ? "ipython" : m.Role.Value;
            var text = new StringBuilder();
            var calls = new List<ScoutToolCall>();
            var images = new List<Scout.Tokenization.ImageTiling>();
            foreach (var c in m.Contents)
            {
                switch (c)
                {
                    case TextContent t: text.Append(t.Text); break;
                    case FunctionCallContent f: calls.Add(new ScoutToolCall(f.Name, JsonSerializer.Serialize(f.Arguments ?? new Dictionary<string, object?>()), f.CallId)); break;
                    case FunctionResultContent r: text.Append(r.Result is string s ? s : JsonSerializer.Serialize(r.Result)); break;
                    case DataContent d when d.HasTopLevelMediaType("image"):
                        var encoder = engine.Images ?? throw new NotSupportedException("this model has no vision encoder loaded: images are not supported");
                        var prepared = encoder.Prepare(d.Data, d.MediaType);
                        images.Add(prepared.Tiling);
                        allImages.Add(prepared);
                        break;
                    case UriContent u:
                        throw new NotSupportedException($"remote content ({u.Uri}) is not fetched; pass the bytes as DataContent");
                }
            }
            dialog.Add(new ScoutMessage(role, text.ToString()) { ToolCalls = calls, Images = images });
        }
        return dialog;
    }

    private static Dictionary<string, object?> ParseArguments(string json)
    {
        try
        {
            return JsonSerializer.Deserialize<Dictionary<string, object?>>(json) ?? new();
        }
        catch (JsonException)
        {
            return new() { ["arguments"] = json };
        }
    }
}

public static class ScoutEngineChatExtensions
{
    /// <summary>The engine as a Microsoft.Extensions.AI chat client.</summary>
    public static IChatClient AsChatClient(this ScoutEngine engine) => new ScoutChatClient(engine);
}
