using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Playwright;
using Scout.Generation;
using Scout.Server;
using Scout.Tests.Generation;
using Xunit.Abstractions;

namespace Scout.Tests.Server;

/// <summary>
/// The chat page at GET / in a real browser: Debian's headless Chromium driven by Playwright (its own browser download
/// is never used). The server serves the vision fixture, so the page offers image upload. Type a message and see tokens
/// stream, press stop, upload an image, reload and find the conversation kept; screenshots are written for a person to
/// look at (their paths are in the test output).
/// </summary>
public sealed class WebUiTests(ITestOutputHelper output) : IAsyncLifetime
{
    private Scout.Vision.VisionLanguageModel _vlm = null!;
    private ScoutEngine _engine = null!;
    private ScoutServer _server = null!;
    private IPlaywright _playwright = null!;
    private IBrowser _browser = null!;

    /// <summary>$SCOUT_CHROMIUM, else Debian's chromium (.ci/run installs it with apt-get when it is missing).</summary>
    public static string ChromiumPath => Environment.GetEnvironmentVariable("SCOUT_CHROMIUM") is { Length: > 0 } p ? p : "/usr/bin/chromium";

    public static string ScreenshotFolder => Path.Combine(AppContext.BaseDirectory, "webui-screenshots");

    public async Task InitializeAsync()
    {
        if (!File.Exists(ChromiumPath))
            throw new InvalidOperationException($"no Chromium at {ChromiumPath}: install Debian's chromium (apt-get install -y chromium, as .ci/run does) or set SCOUT_CHROMIUM");
        _vlm = Scout.Vision.VisionLanguageModel.Load(Fixtures.Vision());
        _engine = new ScoutEngine(_vlm.Text, VisionFixtureTokenizer.Bundle, new SchedulerOptions { MaxContext = 512, Parallel = 2 }, "scout-vision-fixture")
        {
            Images = new VisionPromptEncoder(_vlm),
        };
        _server = new ScoutServer(_engine, new ServerOptions { Port = 0 });
        await _server.StartAsync();
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ChromiumPath, Headless = true, Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        });
        Directory.CreateDirectory(ScreenshotFolder);
    }

    public async Task DisposeAsync()
    {
        if (_browser is not null) await _browser.DisposeAsync();
        _playwright?.Dispose();
        if (_server is not null) await _server.DisposeAsync();
        _engine?.Dispose();
        _vlm?.Dispose();
    }

    private async Task Shot(IPage page, string name)
    {
        string path = Path.Combine(ScreenshotFolder, name);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = path });
        output.WriteLine($"screenshot: {path}");
    }

    [Fact]
    public async Task ChatStreamsStopsUploadsImagesAndKeepsConversations()
    {
        var context = await _browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 800 } });
        var page = await context.NewPageAsync();
        var errors = new List<string>();
        page.Console += (_, m) => { if (m.Type == "error") errors.Add(m.Text); };
        page.PageError += (_, e) => errors.Add(e);

        // Requests the page sends are recorded; the test makes replies long (ignore_eos) so there is time to press stop.
        var sent = new List<JsonObject>();
        int? maxTokens = 400;
        await page.RouteAsync("**/v1/chat/completions", async route =>
        {
            var body = JsonNode.Parse(route.Request.PostData!)!.AsObject();
            lock (sent) sent.Add((JsonObject)body.DeepClone());
            body["ignore_eos"] = true;
            body["max_tokens"] = maxTokens;
            await route.ContinueAsync(new RouteContinueOptions { PostData = Encoding.UTF8.GetBytes(body.ToJsonString()) });
        });
        // A slow link (about 3 KB/s down), so the streamed reply arrives over seconds however fast the server is.
        var cdp = await context.NewCDPSessionAsync(page);
        await cdp.SendAsync("Network.enable");
        await cdp.SendAsync("Network.emulateNetworkConditions", new Dictionary<string, object>
        {
            ["offline"] = false, ["latency"] = 0, ["downloadThroughput"] = 3000, ["uploadThroughput"] = 1_000_000,
        });

        await page.GotoAsync(_server.Url + "/");
        await Assertions.Expect(page.Locator("#model-name")).ToHaveTextAsync("scout-vision-fixture");
        await Assertions.Expect(page.Locator("#attach")).ToBeVisibleAsync(); // the checkpoint has a vision tower

        // Settings: a system prompt and a seed go into the request.
        await page.ClickAsync("#settings-toggle");
        await page.FillAsync("#set-system", "You are terse.");
        await page.FillAsync("#set-seed", "42");
        await page.Locator("#set-seed").DispatchEventAsync("change");
        await page.Locator("#set-system").DispatchEventAsync("change");
        await page.ClickAsync("#settings-toggle");

        // Type a message, see tokens stream in.
        await page.FillAsync("#input", "Hello there");
        await page.PressAsync("#input", "Enter");
        var reply = page.Locator(".msg.assistant .bubble").Last;
        await Assertions.Expect(page.Locator("#stop")).ToBeVisibleAsync();
        await Assertions.Expect(reply).Not.ToBeEmptyAsync();
        int firstLength = (await reply.InnerTextAsync()).Length;
        await page.WaitForFunctionAsync($"() => document.querySelector('.msg.assistant:last-child .bubble').innerText.length > {firstLength}");
        Assert.True(await page.Locator("#stop").IsVisibleAsync(), "the reply ended before it could be stopped");
        await Assertions.Expect(page.Locator("#stat-tps")).Not.ToHaveTextAsync("–");
        await Shot(page, "streaming.png");

        // Stop: the stream ends at once, the partial reply stays, marked stopped.
        await page.ClickAsync("#stop");
        await Assertions.Expect(page.Locator("#stop")).ToBeHiddenAsync();
        await Assertions.Expect(page.Locator(".msg.assistant .meta").Last).ToContainTextAsync("stopped");
        string partial = await reply.InnerTextAsync();
        Assert.NotEmpty(partial.Trim());
        var first = sent[0];
        output.WriteLine(first.ToJsonString());
        Assert.Equal("system", first["messages"]![0]!["role"]!.GetValue<string>());
        Assert.Equal("You are terse.", first["messages"]![0]!["content"]!.GetValue<string>());
        Assert.Equal(42, first["seed"]!.GetValue<int>());
        Assert.True(first["stream"]!.GetValue<bool>());

        // Upload an image in a new chat: a thumbnail, then a message with an image_url part; the reply completes.
        await cdp.SendAsync("Network.emulateNetworkConditions", new Dictionary<string, object>
        {
            ["offline"] = false, ["latency"] = 0, ["downloadThroughput"] = -1, ["uploadThroughput"] = -1,
        });
        maxTokens = 3;
        await page.ClickAsync("#new-chat");
        await page.SetInputFilesAsync("#file", Fixtures.Vision("images/synthetic.png"));
        await Assertions.Expect(page.Locator("#attachments img")).ToHaveCountAsync(1);
        await page.FillAsync("#input", "What is in this picture?");
        await page.ClickAsync("#send");
        await Assertions.Expect(page.Locator(".msg.assistant .meta").Last).ToContainTextAsync("tokens");
        Assert.Equal(0, await page.Locator(".msg.error").CountAsync());
        await Assertions.Expect(page.Locator(".msg.user img.attached")).ToHaveCountAsync(1);
        var withImage = sent[^1];
        var parts = withImage["messages"]!.AsArray().Last()!["content"]!.AsArray();
        Assert.StartsWith("data:image/png;base64,", parts[0]!["image_url"]!["url"]!.GetValue<string>());
        Assert.Equal("What is in this picture?", parts[^1]!["text"]!.GetValue<string>());
        await Assertions.Expect(page.Locator("#stat-ctx")).ToContainTextAsync("/ 512");

        // Reload: both conversations are still there (localStorage), the newest open.
        await page.ReloadAsync();
        await Assertions.Expect(page.Locator("#conversations li")).ToHaveCountAsync(2);
        await Assertions.Expect(page.Locator(".msg.user img.attached")).ToHaveCountAsync(1);
        await page.ClickAsync("#conversations li >> nth=1");
        await Assertions.Expect(page.Locator(".msg.assistant .bubble").Last).ToHaveTextAsync(partial);
        Assert.Empty(errors);
    }

    [Fact]
    public async Task MarkdownAndCodeRenderAndModelHtmlIsEscaped()
    {
        var page = await _browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 800 } });
        await page.GotoAsync(_server.Url + "/");
        // A stored conversation whose reply is Markdown: headings, lists, a table, inline and fenced code, and raw HTML.
        string markdown = "## Sorting in Python\n\nUse **`sorted()`** for a *new* list, or `list.sort()` in place:\n\n"
                          + "```python\ndef top(xs, n=3):\n    # the n largest\n    return sorted(xs, reverse=True)[:n]\n```\n\n"
                          + "1. `sorted` returns a copy\n2. `sort` returns `None`\n\n| call | copies |\n|---|---|\n| sorted | yes |\n| sort | no |\n\n"
                          + "> Stable: equal keys keep their order.\n\n<script>window.pwned = 1</script><img src=x onerror=\"window.pwned=2\">";
        var conversation = new[]
        {
            new { id = "c1", title = "Sorting", updated = 1, messages = new object[]
            {
                new { role = "user", content = "How do I sort a list in Python?" },
                new { role = "assistant", content = markdown, meta = "57 tokens · 41.3 tok/s · first token 0.12 s · 1.5 s" },
            } },
        };
        await page.EvaluateAsync("c => localStorage.setItem('scout.conversations', JSON.stringify(c))", conversation);
        await page.ReloadAsync();
        var bubble = page.Locator(".msg.assistant .bubble");
        await Assertions.Expect(bubble.Locator("h2")).ToHaveTextAsync("Sorting in Python");
        await Assertions.Expect(bubble.Locator("strong code")).ToHaveTextAsync("sorted()");
        await Assertions.Expect(bubble.Locator("em")).ToHaveTextAsync("new");
        await Assertions.Expect(bubble.Locator(".codeblock .bar span")).ToHaveTextAsync("python");
        await Assertions.Expect(bubble.Locator(".codeblock code")).ToHaveTextAsync("def top(xs, n=3):\n    # the n largest\n    return sorted(xs, reverse=True)[:n]");
        await Assertions.Expect(bubble.Locator(".codeblock .tok-k").First).ToHaveTextAsync("def");
        await Assertions.Expect(bubble.Locator("ol li")).ToHaveCountAsync(2);
        await Assertions.Expect(bubble.Locator("table td")).ToHaveCountAsync(4);
        await Assertions.Expect(bubble.Locator("blockquote")).ToContainTextAsync("Stable");
        // The model's HTML is text, never markup.
        Assert.Equal(0, await bubble.Locator("script, img").CountAsync());
        await Assertions.Expect(bubble).ToContainTextAsync("<script>window.pwned = 1</script>");
        Assert.Null(await page.EvaluateAsync<int?>("() => window.pwned ?? null"));
        await page.ClickAsync("#settings-toggle");
        await Shot(page, "markdown.png");
    }
}
