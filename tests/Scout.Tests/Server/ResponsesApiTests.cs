using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using OpenAI.Responses;
using Xunit.Abstractions;

namespace Scout.Tests.Server;

/// <summary>
/// POST /v1/responses through the OpenAI .NET client (its ResponsesClient) and raw HTTP, against the real-vocabulary
/// model: plain text, streamed events, structured output, a function tool, and the refusals.
/// </summary>
public class ResponsesApiTests(RealVocabularyFixture f, ITestOutputHelper output) : IClassFixture<RealVocabularyFixture>
{
    private ResponsesClient Client() => new(new ApiKeyCredential(RealVocabularyFixture.Key), new ResponsesClientOptions { Endpoint = new Uri(f.Server.Url + "/v1") });

    private static CreateResponseOptions Options(string text, int maxTokens)
    {
        var o = new CreateResponseOptions { Model = "real-vocab", MaxOutputTokenCount = maxTokens, Temperature = 0 };
        o.InputItems.Add(ResponseItem.CreateUserMessageItem(text));
        return o;
    }

    [Fact]
    public async Task PlainAndStreamedResponsesAgreeWithChatCompletions()
    {
        var result = (await Client().CreateResponseAsync(Options("Say hello", 8))).Value;
        string text = result.GetOutputText();
        output.WriteLine(text);
        Assert.Equal(ResponseStatus.Incomplete, result.Status); // random weights run to max_output_tokens
        Assert.Equal(8, result.Usage.OutputTokenCount);
        Assert.True(result.Usage.InputTokenCount > 3);

        // The same greedy request through chat completions gives the same text.
        var chat = (await f.Chat().CompleteChatAsync([new OpenAI.Chat.UserChatMessage("Say hello")],
            new OpenAI.Chat.ChatCompletionOptions { MaxOutputTokenCount = 8, Temperature = 0 })).Value;
        Assert.Equal(chat.Content[0].Text, text);

        // Streamed: the deltas add up to the text, events come in order with increasing sequence numbers.
        var streamed = new StringBuilder();
        var kinds = new List<string>();
        int lastSequence = -1;
        ResponseResult? final = null;
        var streamOptions = Options("Say hello", 8);
        streamOptions.StreamingEnabled = true;
        await foreach (var update in await Client().CreateResponseStreamingAsync(streamOptions))
        {
            Assert.True(update.SequenceNumber > lastSequence);
            lastSequence = update.SequenceNumber;
            kinds.Add(update.GetType().Name);
            if (update is StreamingResponseOutputTextDeltaUpdate d) streamed.Append(d.Delta);
            if (update is StreamingResponseIncompleteUpdate inc) final = inc.Response;
        }
        output.WriteLine(string.Join(", ", kinds.Distinct()));
        Assert.Equal(text, streamed.ToString());
        Assert.Equal("StreamingResponseCreatedUpdate", kinds[0]);
        Assert.Contains("StreamingResponseOutputItemAddedUpdate", kinds);
        Assert.Contains("StreamingResponseContentPartAddedUpdate", kinds);
        Assert.Contains("StreamingResponseOutputTextDoneUpdate", kinds);
        Assert.Contains("StreamingResponseOutputItemDoneUpdate", kinds);
        Assert.Equal("StreamingResponseIncompleteUpdate", kinds[^1]);
        Assert.NotNull(final);
        Assert.Equal(text, final!.GetOutputText());
    }

    [Fact]
    public async Task StructuredOutputFollowsTheSchema()
    {
        var o = Options("An item as JSON", 120);
        o.Temperature = 0.8f;
        o.TextOptions = new ResponseTextOptions
        {
            TextFormat = ResponseTextFormat.CreateJsonSchemaFormat("item", BinaryData.FromString(
                """{"type":"object","properties":{"name":{"type":"string","maxLength":6},"count":{"type":"integer"}},"required":["name","count"],"additionalProperties":false}"""),
                jsonSchemaIsStrict: true),
        };
        var result = (await Client().CreateResponseAsync(o)).Value;
        string text = result.GetOutputText();
        output.WriteLine(text);
        Assert.Equal(ResponseStatus.Completed, result.Status);
        using var doc = JsonDocument.Parse(text);
        Assert.Equal(["name", "count"], doc.RootElement.EnumerateObject().Select(p => p.Name));
        Assert.True(doc.RootElement.GetProperty("count").TryGetInt64(out _));
    }

    [Fact]
    public async Task FunctionToolCallsComeBackAsItemsAndTheirOutputsGoBackIn()
    {
        var tool = ResponseTool.CreateFunctionTool("get_weather", BinaryData.FromString(
            """{"type":"object","properties":{"city":{"type":"string","maxLength":10}},"required":["city"],"additionalProperties":false}"""),
            strictModeEnabled: true, functionDescription: "Weather for a city");
        var o = Options("Weather in Paris?", 60);
        o.Tools.Add(tool);
        o.ToolChoice = ResponseToolChoice.CreateRequiredChoice();
        var result = (await Client().CreateResponseAsync(o)).Value;
        var call = Assert.Single(result.OutputItems.OfType<FunctionCallResponseItem>());
        output.WriteLine($"{call.FunctionName}({call.FunctionArguments}) id {call.CallId}");
        Assert.Equal("get_weather", call.FunctionName);
        using (var args = JsonDocument.Parse(call.FunctionArguments))
            Assert.Equal(JsonValueKind.String, args.RootElement.GetProperty("city").ValueKind);

        // Streamed: the call arrives as function-call argument events.
        var deltas = new StringBuilder();
        string? done = null;
        o.StreamingEnabled = true;
        await foreach (var update in await Client().CreateResponseStreamingAsync(o))
        {
            if (update is StreamingResponseFunctionCallArgumentsDeltaUpdate d) deltas.Append(d.Delta.ToString());
            if (update is StreamingResponseFunctionCallArgumentsDoneUpdate dd) done = dd.FunctionArguments.ToString();
        }
        Assert.Equal(call.FunctionArguments.ToString(), done);
        Assert.Equal(done, deltas.ToString());

        // The call and its output go back as input items: the model answers in text.
        o.StreamingEnabled = false;
        var next = Options("Weather in Paris?", 6);
        next.InputItems.Add(ResponseItem.CreateFunctionCallItem(call.CallId, call.FunctionName, call.FunctionArguments));
        next.InputItems.Add(ResponseItem.CreateFunctionCallOutputItem(call.CallId, """{"temperature_c": 21}"""));
        next.Tools.Add(tool);
        next.ToolChoice = ResponseToolChoice.CreateNoneChoice();
        var answer = (await Client().CreateResponseAsync(next)).Value;
        Assert.Single(answer.OutputItems.OfType<MessageResponseItem>());
        // The call and its result are in the prompt: it is longer than the question alone.
        var alone = (await Client().CreateResponseAsync(Options("Weather in Paris?", 1))).Value;
        Assert.True(answer.Usage.InputTokenCount > alone.Usage.InputTokenCount + 10, $"{answer.Usage.InputTokenCount} vs {alone.Usage.InputTokenCount}");
    }

    [Theory]
    [InlineData("""{"input":"hi","previous_response_id":"resp_1"}""", "previous_response_id")]
    [InlineData("""{"input":"hi","tools":[{"type":"web_search"}]}""", "tools")]
    [InlineData("""{"input":[]}""", "input")]
    [InlineData("""{"input":[{"type":"message","role":"wizard","content":"x"}]}""", "input")]
    [InlineData("""{"input":"hi","text":{"format":{"type":"yaml"}}}""", "text.format.type")]
    [InlineData("""{"input":"hi","max_output_tokens":0}""", "max_output_tokens")]
    [InlineData("""{"input":"hi","text":{"format":{"type":"json_schema","name":"x","schema":5}}}""", "text.format.schema")]
    [InlineData("""{"input":"hi","text":{"format":{"type":"json_schema","name":"x","schema":{"type":"integer","pattern":"a"}}}}""", "text.format.schema")]
    [InlineData("""{"input":"hi","tools":[{"type":"function","name":"f","parameters":{"type":5}}]}""", "tools[0].parameters")]
    [InlineData("""{}""", "input")]
    public async Task BadRequestsAre400sNamingTheField(string body, string param)
    {
        using var r = await f.Http.PostAsync("/v1/responses", new StringContent(body, Encoding.UTF8, "application/json"));
        string text = await r.Content.ReadAsStringAsync();
        output.WriteLine(text);
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        Assert.Equal(param, JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("param").GetString());
    }
}
