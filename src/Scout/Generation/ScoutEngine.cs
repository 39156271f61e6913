using Scout.Model;
using Scout.Tokenization;

namespace Scout.Generation;

/// <summary>Whether and how the model must call a tool.</summary>
public enum ToolMode { Auto, None, Required }

/// <summary>Options of one chat request, shared by the HTTP server and <see cref="ScoutChatClient"/>.</summary>
public sealed record ChatRequestOptions
{
    public SamplingOptions Sampling { get; init; } = new();
    public int MaxTokens { get; init; } = 512;
    public IReadOnlyList<string> Stop { get; init; } = [];
    public bool Logprobs { get; init; }
    public int TopLogprobs { get; init; }
    public IReadOnlyList<ToolDefinition> Tools { get; init; } = [];
    public ToolMode ToolMode { get; init; } = ToolMode.Auto;
    /// <summary>With <see cref="ToolMode.Required"/>: the one tool to call, or null for any.</summary>
    public string? ToolName { get; init; }
    /// <summary>The reply must be JSON matching this schema (json_object: <see cref="JsonSchemaSubset.AnyObject"/>).</summary>
    public JsonSchemaSubset? ResponseSchema { get; init; }
}

/// <summary>An image decoded and tiled for a prompt; <see cref="Tiling"/> goes into the chat message.</summary>
public sealed record PreparedImage(ImageTiling Tiling, object Pixels);

/// <summary>
/// The image path of a prompt, implemented over the vision encoder (<see cref="VisionPromptEncoder"/>); null on an
/// engine means text only, and image requests are refused.
/// </summary>
public interface IImagePromptEncoder
{
    /// <summary>Decodes and tiles an image; throws ArgumentException for an unreadable or unsupported one.</summary>
    PreparedImage Prepare(ReadOnlyMemory<byte> image, string mediaType);

    /// <summary>Input rows [prompt × hidden] for a rendered prompt, the images' features at its &lt;|patch|&gt; tokens.</summary>
    float[] EmbedPrompt(int[] prompt, IReadOnlyList<PreparedImage> images);
}

/// <summary>
/// A loaded model ready to serve: weights, tokenizer and chat format, and the batching scheduler every request
/// goes through. The HTTP server, <see cref="ScoutChatClient"/> and the CLI's serve command share it.
/// </summary>
public sealed class ScoutEngine : IDisposable
{
    public Llama4Model Model { get; }
    public ITokenizer Tokenizer { get; }
    public IChatFormat ChatFormat { get; }
    public BatchScheduler Scheduler { get; }
    public string ModelId { get; }
    public DateTimeOffset Created { get; } = DateTimeOffset.UtcNow;
    /// <summary>Hook for image inputs; null while no vision encoder is loaded (image requests are then refused).</summary>
    public IImagePromptEncoder? Images { get; set; }
    private readonly bool _ownsModel;

    public ScoutEngine(Llama4Model model, TokenizerBundle tokens, SchedulerOptions? options = null, string? modelId = null, bool ownsModel = false)
    {
        if (tokens.Tokenizer.VocabSize > model.Config.VocabSize)
            throw new ArgumentException($"the tokenizer has {tokens.Tokenizer.VocabSize} tokens but the model only {model.Config.VocabSize}");
        Model = model;
        Tokenizer = tokens.Tokenizer;
        ChatFormat = tokens.ChatFormat;
        Scheduler = new BatchScheduler(model, Tokenizer, options);
        ModelId = modelId ?? "scout";
        _ownsModel = ownsModel;
    }

    /// <summary>Loads weights and the tokenizer found for them (see <see cref="TokenizerSource"/>).</summary>
    /// <param name="backend">where the model runs; the caller keeps ownership (default: a CPU backend on every core, owned by the engine's model).
    /// A GPU backend: <c>Scout.Gpu.DeviceSelection.Create("cuda")</c>.</param>
    /// <param name="loadOptions">placement on a device backend (<see cref="LoadOptions.GpuLayers"/>, <see cref="LoadOptions.HostExpertLayers"/>) and load checks</param>
    public static ScoutEngine Load(string modelPath, string? tokenizerPath = null, SchedulerOptions? options = null,
        string? modelId = null, Action<int, int>? progress = null, Backends.IBackend? backend = null, LoadOptions? loadOptions = null)
    {
        var tokens = TokenizerSource.Resolve(modelPath, tokenizerPath);
        var model = Llama4Model.Load(modelPath, null, progress, loadOptions, backend: backend);
        try
        {
            return new ScoutEngine(model, tokens, options, modelId ?? Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(modelPath)), ownsModel: true);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public int MaxContext => Scheduler.Options.MaxContext;

    /// <summary>The generation request for a dialog: prompt in the chat format, stops, and any output grammar.</summary>
    /// <param name="images">The images of the messages in prompt order (their tilings are in the messages' Images).</param>
    public GenerationRequest ChatRequest(IReadOnlyList<ChatMessage> messages, ChatRequestOptions options, IReadOnlyList<PreparedImage>? images = null)
    {
        if (messages.Count == 0) throw new ArgumentException("messages must not be empty");
        var tools = options.ToolMode == ToolMode.None ? [] : options.Tools;
        var prompt = ChatFormat.EncodeDialog(messages, addGenerationPrompt: true, tools.Count > 0 ? tools : null);
        Func<ITokenConstraint>? constraint = null;
        if (options.ToolMode == ToolMode.Required)
        {
            var schema = ToolCallSchema(tools, options.ToolName);
            constraint = () => new JsonConstraint(Tokenizer, schema, maxWhitespace: 1);
        }
        else if (options.ResponseSchema is { } rs)
        {
            constraint = () => new JsonConstraint(Tokenizer, rs);
        }
        float[]? rows = null;
        if (images is { Count: > 0 })
        {
            var encoder = Images ?? throw new NotSupportedException("this model has no vision encoder loaded: images are not supported");
            rows = encoder.EmbedPrompt(prompt, images);
        }
        return new GenerationRequest
        {
            Prompt = prompt,
            PromptEmbeddings = rows,
            MaxTokens = options.MaxTokens,
            Sampling = options.Sampling,
            StopStrings = options.Stop,
            Logprobs = options.Logprobs,
            TopLogprobs = options.TopLogprobs,
            Constraint = constraint,
        };
    }

    /// <summary>
    /// The grammar of one tool call in Llama 4's JSON form, {"type": "function", "name": ..., "parameters": {...}},
    /// with the parameters following that tool's schema.
    /// </summary>
    public static JsonSchemaSubset ToolCallSchema(IReadOnlyList<ToolDefinition> tools, string? name)
    {
        var chosen = name is null ? tools : tools.Where(t => t.Name == name).ToList();
        if (chosen.Count == 0)
            throw new ArgumentException(name is null ? "tool_choice requires a tool call but no tools were given" : $"tool_choice names \"{name}\", which is not among the tools");
        return JsonSchemaSubset.OneOf(chosen.Select(t => JsonSchemaSubset.Object(
        [
            ("type", JsonSchemaSubset.Const("function")),
            ("name", JsonSchemaSubset.Const(t.Name)),
            ("parameters", string.IsNullOrWhiteSpace(t.ParametersJsonSchema) ? JsonSchemaSubset.AnyObject : JsonSchemaSubset.Parse(t.ParametersJsonSchema, closedObjects: true)),
        ])));
    }

    private static readonly string[] ToolCallStarts = ["[", "{", "<function", "<|python_start|>"];

    /// <summary>
    /// With tools offered: whether a reply that has begun with <paramref name="text"/> is plain text (stream it) rather
    /// than a tool call in one of Llama 4's forms (buffer it and parse it at the end); null while too little is known.
    /// </summary>
    public static bool? LooksLikeText(string text)
    {
        string t = text.TrimStart();
        if (t.Length == 0) return null;
        if (ToolCallStarts.Any(m => t.StartsWith(m, StringComparison.Ordinal))) return false;
        if (ToolCallStarts.Any(m => m.StartsWith(t, StringComparison.Ordinal))) return null;
        return true;
    }

    public void Dispose()
    {
        Scheduler.Dispose();
        if (_ownsModel) Model.Dispose();
    }
}
