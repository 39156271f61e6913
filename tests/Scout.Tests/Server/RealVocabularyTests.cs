using System.ClientModel;
using System.Diagnostics;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;
using Scout.Cli;
using Scout.Generation;
using Scout.Model;
using Scout.Server;
using Scout.Tokenization;
using Xunit.Abstractions;
using OaChatFinishReason = OpenAI.Chat.ChatFinishReason;
using OaChatResponseFormat = OpenAI.Chat.ChatResponseFormat;

namespace Scout.Tests.Server;

/// <summary>
/// A tiny random-weight Llama 4 GGUF carrying Meta's real 202,048-token vocabulary, written once by `scout synth
/// --real-vocab`, served by the real server on a loopback port: the model's own tokenizer (read from the GGUF) drives
/// the chat format, tools and constrained decoding end to end.
/// </summary>
public sealed class RealVocabularyFixture : IAsyncLifetime
{
    public const string Key = "real-vocab-key";
    private readonly Fixtures.TempDir _dir = new();
    public string ModelPath => _dir.File("real-vocab.gguf");
    public static string TokenizerModel => Fixtures.Tokenizer("llama4/tokenizer.model");
    /// <summary>Meta's tokenizer from its own files (not from the GGUF): the reference the GGUF's copy must equal.</summary>
    public Llama4Tokenizer Reference { get; } = Llama4Tokenizer.Load(TokenizerModel);
    public Llama4Model Model { get; private set; } = null!;
    public ScoutEngine Engine { get; private set; } = null!;
    public ScoutServer Server { get; private set; } = null!;
    public HttpClient Http { get; private set; } = null!;
    public TimeSpan SynthTime { get; private set; }

    public async Task InitializeAsync()
    {
        var clock = Stopwatch.StartNew();
        var err = new StringWriter();
        int rc = Program.Run(["synth", "--layers", "2", "--dim", "64", "--heads", "4", "--kv-heads", "2", "--head-dim", "16",
            "--experts", "4", "--expert-ffn", "64", "--dense-ffn", "128", "--type", "Q8_0", "--seed", "7",
            "--real-vocab", TokenizerModel, "--out", ModelPath], new StringWriter(), err);
        if (rc != 0) throw new InvalidOperationException($"scout synth failed: {err}");
        SynthTime = clock.Elapsed;

        Model = Llama4Model.Load(ModelPath);
        Engine = new ScoutEngine(Model, TokenizerSource.ResolveFromFiles(ModelPath),
            new SchedulerOptions { Parallel = 2, QueueLimit = 8, MaxContext = 1024 }, "real-vocab");
        Server = new ScoutServer(Engine, new ServerOptions { Port = 0, ApiKey = Key });
        await Server.StartAsync();
        Http = TestHttp.Client(new Uri(Server.Url), TimeSpan.FromSeconds(60));
        Http.DefaultRequestHeaders.Authorization = new("Bearer", Key);
    }

    public ChatClient Chat() => new("real-vocab", new ApiKeyCredential(Key), new OpenAIClientOptions { Endpoint = new Uri(Server.Url + "/v1") });

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        Engine.Dispose();
        Model.Dispose();
        _dir.Dispose();
    }
}

/// <summary>`scout run` and `scout serve`'s routes with the real Llama 4 tokenizer (issue 5's "real vocabulary" case).</summary>
public class RealVocabularyTests(RealVocabularyFixture f, ITestOutputHelper output) : IClassFixture<RealVocabularyFixture>
{
    private static ChatCompletionOptions Greedy(int maxTokens) => new() { MaxOutputTokenCount = maxTokens, Temperature = 0 };

    private (int Code, string Out, string Err) Cli(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e, new StringReader(""));
        output.WriteLine($"$ scout {string.Join(' ', args)}\n{o}{e}");
        return (code, o.ToString(), e.ToString());
    }

    private static int[] Ids(JsonElement array) => array.EnumerateArray().Select(t => t.GetInt32()).ToArray();

    [Fact]
    public void TheGgufCarriesTheRealVocabulary()
    {
        output.WriteLine($"synth with the real vocabulary: {f.SynthTime.TotalSeconds:F2} s, {new FileInfo(f.ModelPath).Length:N0} bytes");
        Assert.Equal(202048, f.Model.Config.VocabSize);
        var fromGguf = Llama4Tokenizer.Load(f.ModelPath);
        Assert.Equal(f.Reference.VocabSize, fromGguf.VocabSize);
        const string text = "Hello, wörld! 12345 <|eot|> 你好";
        Assert.Equal(f.Reference.Encode(text), fromGguf.Encode(text));
        Assert.Equal(f.Reference.Encode(text, allowSpecial: true), fromGguf.Encode(text, allowSpecial: true));
    }

    [Fact]
    public void RunRendersTheLlama4ChatFormatWithTheGgufsTokenizer()
    {
        var (code, stdout, _) = Cli("run", "--model", f.ModelPath, "-p", "Hello", "-n", "8", "-t", "0", "--json");
        Assert.Equal(0, code);
        var json = JsonDocument.Parse(stdout).RootElement;
        var prompt = new Llama4ChatFormat(f.Reference).EncodeDialog([new Scout.Tokenization.ChatMessage("user", "Hello")]);
        Assert.Equal(prompt.Length, json.GetProperty("prompt_tokens").GetInt32());
        Assert.Contains(json.GetProperty("finish_reason").GetString(), new[] { "length", "stop" });

        // Same tokens as the generator given exactly that rendering: run used the chat format, not some other prompt.
        var expected = new Generator(f.Model, f.Reference, 1024)
            .Generate(new GenerationRequest { Prompt = prompt, MaxTokens = 8, Sampling = SamplingOptions.Greedy }).ToList();
        Assert.Equal(expected.Where(u => u.Token is not null).Select(u => u.Token!.Id), Ids(json.GetProperty("token_ids")));
        Assert.Equal(string.Concat(expected.Select(u => u.Text)), json.GetProperty("text").GetString());
        Assert.Equal(expected[^1].Stats!.CompletionTokens, json.GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task TokenizeRouteUsesTheRealTokenizer()
    {
        const string text = "The quick brown fox — ünïcödé, 2024 tokens!";
        using var response = await f.Http.PostAsJsonAsync("/tokenize", new { content = text });
        response.EnsureSuccessStatusCode();
        var ids = Ids(JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("tokens"));
        Assert.Equal(f.Reference.Encode(text), ids);

        using var back = await f.Http.PostAsJsonAsync("/detokenize", new { tokens = ids });
        Assert.Equal(text, JsonDocument.Parse(await back.Content.ReadAsStringAsync()).RootElement.GetProperty("content").GetString());
    }

    [Fact]
    public async Task StreamingAndNonStreamingChatAgreeAndStopStringsCut()
    {
        var chat = f.Chat();
        var whole = (await chat.CompleteChatAsync([new UserChatMessage("Tell me a story")], Greedy(24))).Value;
        string text = whole.Content.Count > 0 ? whole.Content[0].Text : "";
        Assert.Equal(new Llama4ChatFormat(f.Reference).EncodeDialog([new Scout.Tokenization.ChatMessage("user", "Tell me a story")]).Length,
            whole.Usage.InputTokenCount);

        var streamed = new StringBuilder();
        OaChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        await foreach (var u in chat.CompleteChatStreamingAsync([new UserChatMessage("Tell me a story")], Greedy(24)))
        {
            foreach (var part in u.ContentUpdate) streamed.Append(part.Text);
            finish ??= u.FinishReason;
            usage ??= u.Usage;
        }
        Assert.Equal(text, streamed.ToString());
        Assert.Equal(whole.FinishReason, finish);
        Assert.Equal(whole.Usage.OutputTokenCount, usage!.OutputTokenCount);

        // A stop string taken from the middle of the greedy reply (random weights: whatever it says) cuts it there.
        output.WriteLine($"greedy reply: {JsonSerializer.Serialize(text)}");
        int at = Enumerable.Range(2, Math.Max(0, text.Length - 5)).First(i => text.Substring(i, 3).All(c => c != '\uFFFD' && !char.IsSurrogate(c)));
        string stop = text.Substring(at, 3);
        var options = Greedy(24);
        options.StopSequences.Add(stop);
        var stopped = (await chat.CompleteChatAsync([new UserChatMessage("Tell me a story")], options)).Value;
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)], stopped.Content.Count > 0 ? stopped.Content[0].Text : "");
        Assert.Equal(OaChatFinishReason.Stop, stopped.FinishReason);
    }

    [Fact]
    public async Task JsonSchemaOutputParsesAndValidates()
    {
        var options = new ChatCompletionOptions
        {
            MaxOutputTokenCount = 120, Temperature = 0.8f, Seed = 1,
            ResponseFormat = OaChatResponseFormat.CreateJsonSchemaFormat("item", BinaryData.FromString(
                """{"type":"object","properties":{"name":{"type":"string","maxLength":6},"count":{"type":"integer"},"ok":{"type":"boolean"}},"required":["name","count","ok"],"additionalProperties":false}"""),
                jsonSchemaIsStrict: true),
        };
        var completion = (await f.Chat().CompleteChatAsync([new UserChatMessage("An item as JSON")], options)).Value;
        string text = completion.Content[0].Text;
        output.WriteLine(text);
        using var doc = JsonDocument.Parse(text);
        var root = doc.RootElement;
        Assert.Equal(["name", "count", "ok"], root.EnumerateObject().Select(p => p.Name));
        Assert.True(root.GetProperty("name").GetString()!.EnumerateRunes().Count() <= 6);
        Assert.True(root.GetProperty("count").TryGetInt64(out _));
        Assert.Contains(root.GetProperty("ok").ValueKind, new[] { JsonValueKind.True, JsonValueKind.False });
        Assert.Equal(OaChatFinishReason.Stop, completion.FinishReason);
    }

    [Fact]
    public async Task RequiredToolCallComesBackParsed()
    {
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 100, Temperature = 0, ToolChoice = ChatToolChoice.CreateRequiredChoice() };
        options.Tools.Add(ChatTool.CreateFunctionTool("get_weather", "Weather for a city", BinaryData.FromString(
            """{"type":"object","properties":{"city":{"type":"string","maxLength":10},"days":{"type":"integer"}},"required":["city","days"],"additionalProperties":false}""")));
        var completion = (await f.Chat().CompleteChatAsync([new UserChatMessage("Weather in Paris?")], options)).Value;
        Assert.Equal(OaChatFinishReason.ToolCalls, completion.FinishReason);
        var call = Assert.Single(completion.ToolCalls);
        output.WriteLine($"{call.FunctionName}({call.FunctionArguments})");
        Assert.Equal("get_weather", call.FunctionName);
        using var args = JsonDocument.Parse(call.FunctionArguments);
        Assert.Equal(JsonValueKind.String, args.RootElement.GetProperty("city").ValueKind);
        Assert.True(args.RootElement.GetProperty("city").GetString()!.EnumerateRunes().Count() <= 10);
        Assert.True(args.RootElement.GetProperty("days").TryGetInt64(out _));
    }

    [Fact]
    public async Task ServerGreedyEqualsRunRaw()
    {
        const string prompt = "Once upon a time";
        var (code, stdout, _) = Cli("run", "--model", f.ModelPath, "-p", prompt, "--raw", "-n", "12", "-t", "0", "--ignore-eos", "--json");
        Assert.Equal(0, code);
        var run = JsonDocument.Parse(stdout).RootElement;
        var runIds = Ids(run.GetProperty("token_ids"));
        Assert.Equal(12, runIds.Length);
        Assert.Equal(f.Reference.Encode(prompt).Length + 1, run.GetProperty("prompt_tokens").GetInt32()); // + <|begin_of_text|>

        using var response = await f.Http.PostAsJsonAsync("/v1/completions",
            new { prompt, max_tokens = 12, temperature = 0, logprobs = 1, ignore_eos = true });
        response.EnsureSuccessStatusCode();
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        var choice = body.GetProperty("choices")[0];
        Assert.Equal(run.GetProperty("text").GetString(), choice.GetProperty("text").GetString());
        Assert.Equal(run.GetProperty("prompt_tokens").GetInt32(), body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(12, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        // Token by token: the server's logprobs list each chosen token's text; they are run's ids decoded one by one.
        Assert.Equal(runIds.Select(id => f.Reference.Decode([id])),
            choice.GetProperty("logprobs").GetProperty("tokens").EnumerateArray().Select(t => t.GetString()));
    }
}
