using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using Scout.Generation;
using Scout.Tests.Server;
using Xunit.Abstractions;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace Scout.Tests.Robustness;

/// <summary>Hostile and malformed requests against the real server (issue #13): 400s naming the field, and no stall for others.</summary>
public class HostileRequestTests(ServerFixture f, ITestOutputHelper output) : IClassFixture<ServerFixture>
{
    private static string Chat(string extra = "") => $$"""{"messages":[{"role":"user","content":"hi"}],"max_tokens":4{{extra}}}""";

    private static string Schema(string schema) => Chat(""","response_format":{"type":"json_schema","json_schema":{"name":"x","schema":""" + schema + "}}");

    public static TheoryData<string, byte[], string> ClientErrors()
    {
        var d = new TheoryData<string, byte[], string>();
        void Add(string name, string body, string field) => d.Add(name, Encoding.UTF8.GetBytes(body), field);
        var invalidUtf8 = Encoding.UTF8.GetBytes(Chat()).ToList();
        int at = Encoding.UTF8.GetBytes(Chat()).AsSpan().IndexOf("hi"u8);
        invalidUtf8[at] = 0xC3; invalidUtf8[at + 1] = 0x28; // a lead byte followed by a non-continuation byte
        d.Add("invalid UTF-8 in a string", invalidUtf8.ToArray(), "messages[0].content");
        Add("lone \\ud800", """{"messages":[{"role":"user","content":"a\ud800b"}]}""", "messages[0].content");
        Add("lone surrogate in a key", """{"messages":[{"role":"user","content":"a"}],"\udc00":1}""", "");
        Add("schema type 5", Schema("""{"type":5}"""), "type");
        Add("schema $ref 5", Schema("""{"$ref":5}"""), "$ref");
        Add("schema required [5]", Schema("""{"type":"object","properties":{"a":{"type":"string"}},"required":[5]}"""), "required");
        Add("schema $ref without $defs", Schema("""{"$ref":"#/$defs/Missing"}"""), "$defs");
        Add("schema pattern", Schema("""{"type":"string","pattern":"^x$"}"""), "pattern");
        Add("schema format", Schema("""{"type":"string","format":"email"}"""), "format");
        Add("schema not an object", Schema("5"), "schema");
        Add("logit_bias value out of range", Chat(""","logit_bias":{"1":1e30}"""), "logit_bias");
        Add("too many logit_bias entries", Chat(",\"logit_bias\":{" + string.Join(",", Enumerable.Range(0, 2000).Select(i => $"\"{i % 500}{(i >= 500 ? "0" + i / 500 : "")}\":1")) + "}"), "logit_bias");
        return d;
    }

    [Theory]
    [MemberData(nameof(ClientErrors))]
    public async Task ClientMistakesAre400sNamingTheField(string name, byte[] body, string field)
    {
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        using var response = await f.Http.PostAsync("/v1/chat/completions", content);
        string text = await response.Content.ReadAsStringAsync();
        output.WriteLine($"{name}: {(int)response.StatusCode} {text}");
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{name}: {(int)response.StatusCode} {text}");
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        string message = error.GetProperty("message").GetString()!;
        string param = error.GetProperty("param").ValueKind == JsonValueKind.String ? error.GetProperty("param").GetString()! : "";
        Assert.True(message.Contains(field, StringComparison.Ordinal) || param.Contains(field, StringComparison.Ordinal), $"{name}: neither '{message}' nor param '{param}' names {field}");
    }

    [Fact]
    public async Task HeadHealthIs200()
    {
        using var response = await f.Http.SendAsync(new HttpRequestMessage(HttpMethod.Head, "/health"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task IntegerMaximumIsEnforcedOverHttp()
    {
        for (int seed = 0; seed < 4; seed++)
        {
            using var response = await f.Http.PostAsync("/v1/chat/completions", new StringContent(
                """{"messages":[{"role":"user","content":"n"}],"max_tokens":12,"temperature":1,"seed":""" + seed + ""","response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"integer","minimum":-5,"maximum":9}}}}""",
                Encoding.UTF8, "application/json"));
            string body = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, body);
            string text = JsonDocument.Parse(body).RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
            output.WriteLine($"seed {seed}: {text}");
            if (JsonDocument.Parse(body).RootElement.GetProperty("choices")[0].GetProperty("finish_reason").GetString() == "stop")
            {
                long v = long.Parse(text.Trim());
                Assert.InRange(v, -5, 9);
            }
            else
            {
                Assert.Matches("^-?[0-9]*$", text.Trim());
            }
        }
    }

    public sealed record Forecast(int Degrees, bool Rain, int Wind);

    [Fact]
    public async Task GetResponseAsyncOfTYieldsTheTypesDeclaredProperties()
    {
        // Microsoft.Extensions.AI sends a schema without additionalProperties: false; the reply must still be a Forecast.
        IChatClient local = f.Engine.AsChatClient();
        var response = await local.GetResponseAsync<Forecast>([new AiChatMessage(ChatRole.User, "Forecast?")],
            new ChatOptions { MaxOutputTokens = 200, Temperature = 0 });
        output.WriteLine(response.Text);
        var root = JsonDocument.Parse(response.Text).RootElement;
        var keys = root.EnumerateObject().Select(p => p.Name).ToList();
        Assert.Equal(["degrees", "rain", "wind"], keys.Select(k => k.ToLowerInvariant()).ToList());
        Assert.True(response.TryGetResult(out var forecast), response.Text);
        Assert.Equal(root.EnumerateObject().First().Value.GetInt32(), forecast!.Degrees);
    }

    /// <summary>A request body that arrives a few bytes at a time, slowly (a slow client).</summary>
    private sealed class SlowContent(byte[] body, TimeSpan pause) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            for (int i = 0; i < body.Length; i += 8)
            {
                await stream.WriteAsync(body.AsMemory(i, Math.Min(8, body.Length - i)));
                await stream.FlushAsync();
                await Task.Delay(pause);
            }
        }

        protected override bool TryComputeLength(out long length) { length = body.Length; return true; }
    }

    private async Task<(double FirstTokenMs, string? Finish)> OrdinaryStream(int i)
    {
        var clock = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent($$"""{"messages":[{"role":"user","content":"ordinary {{i}}"}],"max_tokens":24,"stream":true,"temperature":0.8,"seed":{{i}}}""", Encoding.UTF8, "application/json"),
        };
        using var response = await f.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        double first = -1;
        string? finish = null;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal) || line == "data: [DONE]") continue;
            if (first < 0) first = clock.Elapsed.TotalMilliseconds;
            var choice = JsonNode.Parse(line[6..])!["choices"]![0]!;
            if (choice["finish_reason"] is { } fr) finish = fr.GetValue<string>();
        }
        return (first, finish);
    }

    [Fact]
    public async Task HostileRequestsDoNotStallOrdinaryStreams()
    {
        // Warm up (JIT, first allocations), then alone: the ordinary streams' time to first token without hostile company.
        await OrdinaryStream(99);
        var alone = await Task.WhenAll(Enumerable.Range(0, 3).Select(OrdinaryStream));

        // Then the same streams next to: the nested schema (streamed), a huge logit_bias, and a slow client.
        var hostile = new List<Task<string>>
        {
            Task.Run(async () =>
            {
                string body = """{"messages":[{"role":"user","content":"x"}],"max_tokens":60,"stream":true,"response_format":{"type":"json_schema","json_schema":{"name":"h","schema":"""
                              + HostileInputTests.NestedSchema(15, 4) + "}}}";
                using var r = await f.Http.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
                string text = await r.Content.ReadAsStringAsync();
                return $"nested schema: {(int)r.StatusCode} {(text.Length > 160 ? text[^160..] : text)}";
            }),
            Task.Run(async () =>
            {
                string bias = string.Join(",", Enumerable.Range(0, 20_000).Select(i => $"\"{i % 512}\":{(i % 7) - 3}"));
                try
                {
                    using var r = await f.Http.PostAsync("/v1/chat/completions", new StringContent(Chat($",\"logit_bias\":{{{bias}}}"), Encoding.UTF8, "application/json"));
                    return $"huge logit_bias: {(int)r.StatusCode}";
                }
                catch (HttpRequestException e)
                {
                    // The server answers 413 from the Content-Length and closes before the client has sent the whole body.
                    return $"huge logit_bias: 4xx (connection closed while sending: {e.Message})";
                }
            }),
            Task.Run(async () =>
            {
                using var r = await f.Http.PostAsync("/v1/chat/completions", new SlowContent(Encoding.UTF8.GetBytes(Chat()), TimeSpan.FromMilliseconds(40)));
                return $"slow client: {(int)r.StatusCode}";
            }),
        };
        await Task.Delay(50);
        var together = await Task.WhenAll(Enumerable.Range(10, 3).Select(OrdinaryStream));
        var hostileResults = await Task.WhenAll(hostile);

        output.WriteLine($"ordinary TTFT alone: {string.Join(", ", alone.Select(a => $"{a.FirstTokenMs:F0} ms"))}");
        output.WriteLine($"ordinary TTFT with hostile requests: {string.Join(", ", together.Select(a => $"{a.FirstTokenMs:F0} ms"))}");
        foreach (var h in hostileResults) output.WriteLine(h);

        Assert.All(alone.Concat(together), a => Assert.True(a.Finish is "stop" or "length", $"an ordinary stream did not finish: {a.Finish}"));
        // The hostile ones are refused (4xx) or bounded (they completed, with an answer or an error, while the test waited).
        Assert.StartsWith("huge logit_bias: 4", hostileResults[1]);
        Assert.Matches("^nested schema: (200|400|500)", hostileResults[0]);
        Assert.Matches("^slow client: (200|400|408)", hostileResults[2]);
        Assert.Equal(0, await ActiveAfter(TimeSpan.FromSeconds(10)));
    }

    private async Task<int> ActiveAfter(TimeSpan wait)
    {
        var deadline = DateTime.UtcNow + wait;
        while (f.Engine.Scheduler.Metrics.Active > 0 && DateTime.UtcNow < deadline) await Task.Delay(20);
        return f.Engine.Scheduler.Metrics.Active;
    }
}
