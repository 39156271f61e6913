using System.Text.Json;
using System.Text.RegularExpressions;
using Scout.Cli;
using Scout.Generation;
using Scout.Tests.Generation;
using Xunit.Abstractions;

namespace Scout.Tests.Cli;

/// <summary>`scout run` and `scout chat` in process, on scout-tiny with the stand-in tokenizer.</summary>
public class ChatAndRunCommandTests(ITestOutputHelper output)
{
    static ChatAndRunCommandTests()
    {
        // The fixtures have no tokenizer files: stand-ins take the real tokenizer's place.
        TestTokenizers.Install();
    }

    private static readonly string Model = Fixtures.Text("scout-tiny", "model.safetensors");

    private (int Code, string Out, string Err) Run(string stdin, params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e, new StringReader(stdin));
        output.WriteLine($"$ scout {string.Join(' ', args)}\n--- stdout\n{o}\n--- stderr\n{e}");
        return (code, o.ToString(), e.ToString());
    }

    private static string Greedy(IReadOnlyList<Scout.Tokenization.ChatMessage> dialog, int maxTokens)
    {
        using var model = Scout.Model.Llama4Model.Load(Model);
        var g = new Generator(model, StandInTokenizer.Instance, 512);
        return string.Concat(g.Generate(new GenerationRequest
        {
            Prompt = StandInChatFormat.Instance.EncodeDialog(dialog), MaxTokens = maxTokens, Sampling = SamplingOptions.Greedy,
        }).Select(u => u.Text));
    }

    [Fact]
    public void ChatKeepsHistoryInTheCacheAndHandlesCommands()
    {
        using var tmp = new Fixtures.TempDir();
        string saved = tmp.File("chat.json");
        string input = string.Join('\n',
            "Hello",
            "second \\",
            "line",
            "/stats",
            $"/save {saved}",
            "/reset",
            "/stats",
            $"/load {saved}",
            "\"\"\"",
            "a block",
            "of two lines",
            "\"\"\"",
            "/nonsense",
            "/exit",
            "never read");
        var (code, stdout, stderr) = Run(input, "chat", "--model", Model, "-t", "0", "-n", "6", "--system", "Be brief", "--context", "512");
        Assert.Equal(0, code);

        // First answer: what the generator gives for the same dialog.
        var dialog = new List<Scout.Tokenization.ChatMessage> { new("system", "Be brief"), new("user", "Hello") };
        string first = Greedy(dialog, 6);
        Assert.StartsWith(first + "\n", stdout);

        // Every answer reports its speed; the second and later turns reuse the cached history.
        var newPrompt = Regex.Matches(stderr, @"\[(\d+) tokens, [\d.]+ tok/s; (\d+) new prompt tokens\]");
        Assert.Equal(3, newPrompt.Count);
        int secondPromptLength = StandInChatFormat.Instance.EncodeDialog([.. dialog, new("assistant", first), new("user", "second \nline")]).Length;
        int firstPromptLength = StandInChatFormat.Instance.EncodeDialog(dialog).Length;
        // At least the whole first prompt comes from the cache (the reply's bytes may re-encode differently).
        Assert.True(int.Parse(newPrompt[1].Groups[2].Value) <= secondPromptLength - firstPromptLength, "the second turn recomputed the history");

        Assert.Contains("messages: 5, tokens in cache:", stderr);
        Assert.Contains("(conversation cleared)", stderr);
        Assert.Contains("messages: 1, tokens in cache: 0", stderr);
        Assert.Contains("(loaded 4 messages", stderr);
        Assert.Contains("unknown command /nonsense", stderr);
        using var doc = JsonDocument.Parse(File.ReadAllText(saved));
        Assert.Equal("Be brief", doc.RootElement.GetProperty("System").GetString());
        Assert.Equal("second \nline", doc.RootElement.GetProperty("Messages")[2].GetProperty("Content").GetString());
    }

    [Fact]
    public void RunPrintsJsonWithCountsAndTimings()
    {
        var (code, stdout, _) = Run("", "run", "--model", Model, "-p", "Hi", "-t", "0", "-n", "7", "--json");
        Assert.Equal(0, code);
        var json = JsonDocument.Parse(stdout).RootElement;
        string expected = Greedy([new("user", "Hi")], 7);
        Assert.Equal(expected, json.GetProperty("text").GetString());
        Assert.Equal(StandInChatFormat.Instance.EncodeDialog([new("user", "Hi")]).Length, json.GetProperty("prompt_tokens").GetInt32());
        Assert.InRange(json.GetProperty("completion_tokens").GetInt32(), 1, 7);
        Assert.Contains(json.GetProperty("finish_reason").GetString(), new[] { "stop", "length" });
        Assert.True(json.GetProperty("timings").GetProperty("tokens_per_s").GetDouble() >= 0);
    }

    [Fact]
    public void RawRunStreamsAPlainCompletionAndHonoursStopStrings()
    {
        var (code, stdout, stderr) = Run("", "run", "--model", Model, "-p", "abc", "--raw", "-t", "0", "-n", "20", "--ignore-eos");
        Assert.Equal(0, code);
        Assert.Contains("tok/s", stderr);
        string text = stdout.TrimEnd('\n');
        int at = Enumerable.Range(2, Math.Max(0, text.Length - 4)).First(i => text.Substring(i, 2).All(c => c != '\uFFFD' && !char.IsSurrogate(c) && !char.IsControl(c)));
        var (_, stopped, _) = Run("", "run", "--model", Model, "-p", "abc", "--raw", "-t", "0", "-n", "20", "--ignore-eos", "--stop", text.Substring(at, 2));
        Assert.Equal(text[..text.IndexOf(text.Substring(at, 2), StringComparison.Ordinal)], stopped.TrimEnd('\n'));
    }

    [Fact]
    public void RunWithAnImageGivesMetasGreedyToken()
    {
        // The vision fixture's "synthetic" case: its image, then "What is in this picture?", in one user turn.
        var (code, stdout, _) = Run("", "run", "--model", Fixtures.Vision(), "--image", Fixtures.Vision("images/synthetic.png"),
            "-p", "What is in this picture?", "-t", "0", "-n", "1", "--ignore-eos", "--json");
        Assert.Equal(0, code);
        var json = JsonDocument.Parse(stdout).RootElement;
        var tokens = Scout.Cli.Commands.LogitsCommand.ReadTokens(Fixtures.Vision("cases/synthetic/tokens.json"));
        Assert.Equal(tokens.Length, json.GetProperty("prompt_tokens").GetInt32());
        var golden = Fixtures.ReadF32(Fixtures.Vision("cases/synthetic/logits.f32"));
        int vocab = 512;
        Assert.Equal(LogitAssert.ArgMax(golden.AsSpan((tokens.Length - 1) * vocab, vocab)), json.GetProperty("token_ids")[0].GetInt32());

        Assert.Contains("vision tower", Run("", "run", "--model", Model, "--image", Fixtures.Vision("images/synthetic.png"), "-p", "x").Err);
        Assert.Contains("--raw", Run("", "run", "--model", Fixtures.Vision(), "--image", Fixtures.Vision("images/synthetic.png"), "-p", "x", "--raw").Err);
    }

    [Fact]
    public void ChatImageCommandAttachesAnImage()
    {
        var input = string.Join('\n', $"/image {Fixtures.Vision("images/synthetic.png")}", "What is in this picture?", "/image /nonexistent.png", "/exit");
        var (code, stdout, stderr) = Run(input, "chat", "--model", Fixtures.Vision(), "-t", "0", "-n", "1");
        Assert.Equal(0, code);
        Assert.Contains("attached to the next message: 1x1 tiles", stderr);
        Assert.Contains("usage: /image FILE", stderr);
        var tokens = Scout.Cli.Commands.LogitsCommand.ReadTokens(Fixtures.Vision("cases/synthetic/tokens.json"));
        var golden = Fixtures.ReadF32(Fixtures.Vision("cases/synthetic/logits.f32"));
        Assert.StartsWith($"[{LogitAssert.ArgMax(golden.AsSpan((tokens.Length - 1) * 512, 512))}]", stdout);
    }

    [Fact]
    public void BadArgumentsGiveClearErrors()
    {
        Assert.Contains("prompt is required", Run("", "run", "--model", Model).Err);
        Assert.Contains("top_p", Run("", "run", "--model", Model, "-p", "x", "--top-p", "3").Err);
        var (code, _, err) = Run("", "run", "--model", "/nonexistent/model.safetensors", "-p", "x");
        Assert.Equal(1, code);
        Assert.StartsWith("error:", err.Trim().Split('\n')[^1]);
    }
}
