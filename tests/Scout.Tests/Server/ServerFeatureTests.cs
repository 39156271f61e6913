using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Scout.Server;
using Xunit.Abstractions;

namespace Scout.Tests.Server;

/// <summary>CORS, the model routes, /metrics histograms and the idle token rate, UTF-8 JSON, the chat page's route.</summary>
public class ServerFeatureTests(ServerFixture f, ITestOutputHelper output) : IClassFixture<ServerFixture>
{
    private async Task<(ScoutServer Server, HttpClient Http)> Start(ServerOptions options)
    {
        var server = new ScoutServer(f.Engine, options with { Port = 0 });
        await server.StartAsync();
        return (server, TestHttp.Client(new Uri(server.Url), TimeSpan.FromSeconds(30)));
    }

    private static HttpRequestMessage Preflight(string origin, string path = "/v1/chat/completions")
    {
        var m = new HttpRequestMessage(HttpMethod.Options, path);
        m.Headers.Add("Origin", origin);
        m.Headers.Add("Access-Control-Request-Method", "POST");
        m.Headers.Add("Access-Control-Request-Headers", "authorization, content-type");
        return m;
    }

    [Fact]
    public async Task CorsIsOffByDefaultAndAnswersPreflightsForAllowedOrigins()
    {
        // Default: no Access-Control-* headers at all.
        using (var r = await f.Http.SendAsync(Preflight("http://app.example")))
        {
            Assert.False(r.Headers.Contains("Access-Control-Allow-Origin"));
            Assert.NotEqual(HttpStatusCode.NoContent, r.StatusCode);
        }

        var (server, http) = await Start(new ServerOptions { ApiKey = "k", CorsOrigins = ["http://app.example"] });
        await using var _ = server;
        using var __ = http;
        // The preflight needs no key (browsers send none) and names what is allowed.
        using (var r = await http.SendAsync(Preflight("http://app.example")))
        {
            Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);
            Assert.Equal("http://app.example", r.Headers.GetValues("Access-Control-Allow-Origin").Single());
            Assert.Contains("POST", r.Headers.GetValues("Access-Control-Allow-Methods").Single());
            Assert.Equal("authorization, content-type", r.Headers.GetValues("Access-Control-Allow-Headers").Single());
            Assert.Contains("Origin", r.Headers.Vary);
        }
        // Another origin gets no grant.
        using (var r = await http.SendAsync(Preflight("http://evil.example")))
            Assert.False(r.Headers.Contains("Access-Control-Allow-Origin"));
        // The real request carries the header (and still needs the key).
        var get = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        get.Headers.Add("Origin", "http://app.example");
        get.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "k");
        using (var r = await http.SendAsync(get))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Equal("http://app.example", r.Headers.GetValues("Access-Control-Allow-Origin").Single());
        }
        var noKey = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        noKey.Headers.Add("Origin", "http://app.example");
        using (var r = await http.SendAsync(noKey))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode);
            Assert.True(r.Headers.Contains("Access-Control-Allow-Origin")); // so the page can read the 401
        }

        var (any, anyHttp) = await Start(new ServerOptions { CorsOrigins = ["*"] });
        await using var ___ = any;
        using var ____ = anyHttp;
        using (var r = await anyHttp.SendAsync(Preflight("http://whoever.example", "/v1/responses")))
        {
            Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);
            Assert.Equal("*", r.Headers.GetValues("Access-Control-Allow-Origin").Single());
        }
        Assert.Throws<ArgumentException>(() => new ScoutServer(f.Engine, new ServerOptions { Port = 0, CorsOrigins = ["not an origin"] }));
    }

    [Fact]
    public async Task ModelsListTheRealIdAndSayWhereTheModelCameFrom()
    {
        var list = JsonDocument.Parse(await f.Http.GetStringAsync("/v1/models")).RootElement;
        var entry = Assert.Single(list.GetProperty("data").EnumerateArray());
        Assert.Equal("scout-tiny", entry.GetProperty("id").GetString());
        Assert.Equal(256, entry.GetProperty("meta").GetProperty("context_length").GetInt32());
        Assert.False(entry.GetProperty("meta").GetProperty("vision").GetBoolean());

        var one = JsonDocument.Parse(await f.Http.GetStringAsync("/v1/models/scout-tiny")).RootElement;
        output.WriteLine(one.ToString());
        string source = one.GetProperty("source").GetString()!;
        Assert.Equal(Path.GetFullPath(Fixtures.Text("scout-tiny", "model.safetensors")), Path.GetFullPath(source));
        Assert.Equal(new FileInfo(source).Length, one.GetProperty("meta").GetProperty("file_bytes").GetInt64());

        using var missing = await f.Http.GetAsync("/v1/models/gpt-4");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Contains("scout-tiny", await missing.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task JsonIsWrittenAsUtf8WithoutEscapes()
    {
        // The route echoes the model name it was given: a non-ASCII one comes back as UTF-8 characters.
        using var r = await f.Http.PostAsync("/v1/chat/completions", new StringContent(
            """{"model":"黑猫-é","messages":[{"role":"user","content":"hi"}],"max_tokens":1}""", Encoding.UTF8, "application/json"));
        byte[] raw = await r.Content.ReadAsByteArrayAsync();
        string text = Encoding.UTF8.GetString(raw);
        Assert.True(r.IsSuccessStatusCode, text);
        Assert.Contains("\"model\":\"黑猫-é\"", text);
        Assert.DoesNotContain("\\u9ED1", text, StringComparison.OrdinalIgnoreCase);
        Assert.Equal("utf-8", r.Content.Headers.ContentType!.CharSet);
        // Error messages too.
        using var bad = await f.Http.PostAsync("/v1/chat/completions", new StringContent(
            """{"messages":[{"role":"巫师","content":"x"}]}""", Encoding.UTF8, "application/json"));
        Assert.Contains("巫师", await bad.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task MetricsHaveLatencyHistogramsAndTheTokenRateFallsToZeroWhenIdle()
    {
        var (server, http) = await Start(new ServerOptions { TokenRateWindow = TimeSpan.FromMilliseconds(500) });
        await using var _ = server;
        using var __ = http;
        static double Value(string metrics, string name) => double.Parse(metrics.Split('\n').Single(l => l.StartsWith(name + " ", StringComparison.Ordinal))
            .Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);

        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent("""{"messages":[{"role":"user","content":"count"}],"max_tokens":60,"stream":true,"ignore_eos":true}""", Encoding.UTF8, "application/json"),
        };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        int chunks = 0;
        double during = 0;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: {", StringComparison.Ordinal)) continue;
            // A token just arrived: the rate over the last window cannot be 0.
            if (++chunks == 5) during = Value(await http.GetStringAsync("/metrics"), "scout_tokens_per_second");
        }
        Assert.True(during > 0, $"tokens/s while streaming: {during}");

        string metrics = await http.GetStringAsync("/metrics");
        Assert.Equal(1, Value(metrics, "scout_time_to_first_token_seconds_count"));
        Assert.Equal(1, Value(metrics, "scout_request_duration_seconds_count"));
        Assert.Contains("scout_request_duration_seconds_bucket{le=\"+Inf\"} 1", metrics);
        Assert.Contains("# TYPE scout_time_to_first_token_seconds histogram", metrics);
        Assert.True(Value(metrics, "scout_time_to_first_token_seconds_sum") <= Value(metrics, "scout_request_duration_seconds_sum"));

        // Idle: the gauge reaches 0 (bounded wait, no timing assert).
        double idle = -1;
        for (int i = 0; i < 100 && idle != 0; i++)
        {
            await Task.Delay(100);
            idle = Value(await http.GetStringAsync("/metrics"), "scout_tokens_per_second");
        }
        Assert.Equal(0, idle);
    }

    [Fact]
    public async Task ChatPageIsServedWithoutAKeyAndFetchesNothingElsewhere()
    {
        using var anonymous = TestHttp.Client(new Uri(f.Server.Url));
        using var r = await anonymous.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("text/html", r.Content.Headers.ContentType!.MediaType);
        string html = await r.Content.ReadAsStringAsync();
        Assert.Contains("<title>Scout</title>", html);
        Assert.DoesNotContain("src=\"http", html);
        Assert.DoesNotContain("href=\"http", html);
        Assert.Contains("connect-src 'self'", r.Headers.GetValues("Content-Security-Policy").Single());
        // Everything else still needs the key.
        using var models = await anonymous.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.Unauthorized, models.StatusCode);

        var (server, http) = await Start(new ServerOptions { WebUi = false });
        await using var _ = server;
        using var __ = http;
        using var off = await http.GetAsync("/");
        Assert.Equal(HttpStatusCode.NotFound, off.StatusCode);
    }
}
