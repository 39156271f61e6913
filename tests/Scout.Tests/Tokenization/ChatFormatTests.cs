using System.Text.Json;
using Scout.Tokenization;

namespace Scout.Tests.Tokenization;

public class ChatFormatTests
{
    private static Llama4Message ToMessage(JsonElement m)
    {
        static IReadOnlyList<ChatContent> Items(JsonElement c) => c.ValueKind == JsonValueKind.String
            ? [new ChatContent.Text(c.GetString()!)]
            : c.EnumerateArray().Select(i => i.GetProperty("type").GetString() == "text"
                ? (ChatContent)new ChatContent.Text(i.GetProperty("text").GetString()!)
                : new ChatContent.Image(Llama4ChatFormat.TilingForImage(i.GetProperty("width").GetInt32(), i.GetProperty("height").GetInt32()))).ToList();

        var msg = new Llama4Message(m.GetProperty("role").GetString()!, Items(m.GetProperty("content")));
        if (m.TryGetProperty("context", out var ctx) && ctx.ValueKind != JsonValueKind.Null) msg = msg with { Context = Items(ctx) };
        if (m.TryGetProperty("stop_reason", out var sr))
            msg = msg with { StopReason = sr.GetString() == "end_of_message" ? StopReason.EndOfMessage : StopReason.EndOfTurn };
        if (m.TryGetProperty("tool_calls", out var calls))
            msg = msg with
            {
                ToolCalls = calls.EnumerateArray().Select(c => new ToolCall(c.GetProperty("tool_name").GetString()!,
                    c.GetProperty("arguments").GetRawText(), c.GetProperty("call_id").GetString())).ToList(),
            };
        return msg;
    }

    private static ToolPromptFormat Format(JsonElement dialog) =>
        (dialog.TryGetProperty("tool_prompt_format", out var f) ? f.GetString() : "json") switch
        {
            "python_list" => ToolPromptFormat.PythonList,
            "function_tag" => ToolPromptFormat.FunctionTag,
            _ => ToolPromptFormat.Json,
        };

    [Theory]
    [MemberData(nameof(TokenizerFixtures.Loaders), MemberType = typeof(TokenizerFixtures))]
    public void Every_chat_dialog_renders_to_Metas_ids_and_text(string loader)
    {
        var tok = TokenizerFixtures.ByLoader(loader);
        var failures = new List<string>();
        int cases = 0;
        foreach (var d in TokenizerFixtures.ReadJsonl("chat.jsonl"))
        {
            cases++;
            string name = d.GetProperty("name").GetString()!;
            var chat = new Llama4ChatFormat(tok, Format(d));
            var messages = d.GetProperty("messages").EnumerateArray().Select(ToMessage).ToList();
            var expected = TokenizerFixtures.Ids(d.GetProperty("ids"));
            var ids = chat.EncodeDialog(messages, d.GetProperty("add_generation_prompt").GetBoolean());
            if (!ids.SequenceEqual(expected))
                failures.Add($"{name}: ids differ at {TokenizerFixtureTests.FirstDiff(ids, expected)} ({ids.Length} vs {expected.Length})");
            string text = d.GetProperty("text").GetString()!;
            if (tok.Decode(ids) != text) failures.Add($"{name}: decoded text differs");
            bool reencodes = d.GetProperty("text_reencodes_to_ids").GetBoolean();
            if (tok.Encode(text, allowSpecial: true).SequenceEqual(expected) != reencodes)
                failures.Add($"{name}: re-encoding the text {(reencodes ? "should" : "should not")} give the ids");
        }
        Assert.Equal(21, cases);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void Generic_chat_messages_render_like_the_fixture()
    {
        var chat = new Llama4ChatFormat(TokenizerFixtures.Tiktoken);
        var d = TokenizerFixtures.ReadJsonl("chat.jsonl").First(x => x.GetProperty("name").GetString() == "image_800x600_tiled");
        var messages = new List<ChatMessage>
        {
            new("system", "You are a careful visual assistant."),
            new("user", "What is in this picture? <|image|>") { Images = [Llama4ChatFormat.TilingForImage(800, 600)] },
        };
        Assert.Equal(TokenizerFixtures.Ids(d.GetProperty("ids")), chat.EncodeDialog(messages));

        var small = TokenizerFixtures.ReadJsonl("chat.jsonl").First(x => x.GetProperty("name").GetString() == "image_small_single_tile");
        var imageFirst = new List<ChatMessage> { new("user", "Describe this image in two sentences") { Images = [new ImageTiling(1, 1)] } };
        Assert.Equal(TokenizerFixtures.Ids(small.GetProperty("ids")), chat.EncodeDialog(imageFirst));
    }

    [Fact]
    public void Tool_definitions_go_into_the_system_message_as_plain_text()
    {
        var chat = new Llama4ChatFormat(TokenizerFixtures.Tiktoken);
        var tools = new[] { new ToolDefinition("get_weather", "Get the weather", """{"type": "dict", "required": ["city"], "properties": {"city": {"type": "string"}}}""") };
        var ids = chat.EncodeDialog([new ChatMessage("user", "Weather in Oslo?")], true, tools);
        string text = TokenizerFixtures.Tiktoken.Decode(ids);
        Assert.StartsWith("<|begin_of_text|><|header_start|>system<|header_end|>\n\nYou can call functions.", text);
        Assert.Contains("""    {"name": "get_weather", "description": "Get the weather", "parameters": {"type": "dict", "required": ["city"], "properties": {"city": {"type": "string"}}}}""", text);
        Assert.EndsWith("]<|eot|><|header_start|>user<|header_end|>\n\nWeather in Oslo?<|eot|><|header_start|>assistant<|header_end|>\n\n", text);
    }

    [Fact]
    public void Tool_calls_are_written_like_Pythons_json_dumps_and_str()
    {
        var call = new ToolCall("f", """{"big": 1e16, "small": 0.00001, "trailing": 2.50, "whole": 100.0, "int": 12, "neg": -0.5, "s": "Zürich 😀", "l": [true, null], "d": {"k": 1}}""");
        Assert.Equal("""{"type": "function", "name": "f", "parameters": {"big": 1e+16, "small": 1e-05, "trailing": 2.5, "whole": 100.0, "int": 12, "neg": -0.5, "s": "Z\u00fcrich \ud83d\ude00", "l": [true, null], "d": {"k": 1}}}""",
            Llama4ChatFormat.FormatToolCall(call, ToolPromptFormat.Json));
        Assert.Equal("""<function=f>{"big": 1e+16, "small": 1e-05, "trailing": 2.5, "whole": 100.0, "int": 12, "neg": -0.5, "s": "Z\u00fcrich \ud83d\ude00", "l": [true, null], "d": {"k": 1}}</function>""",
            Llama4ChatFormat.FormatToolCall(call, ToolPromptFormat.FunctionTag));
        Assert.Equal("""[f(big=1e+16, small=1e-05, trailing=2.5, whole=100.0, int=12, neg=-0.5, s="Zürich 😀", l=[True, None], d={k=1})]""",
            Llama4ChatFormat.FormatToolCall(call, ToolPromptFormat.PythonList));
        Assert.Equal("print(1)", Llama4ChatFormat.FormatToolCall(new ToolCall("code_interpreter", """{"code": "print(1)"}"""), ToolPromptFormat.Json));
        Assert.Throws<ArgumentException>(() => Llama4ChatFormat.FormatToolCall(new ToolCall("brave_search", "{}"), ToolPromptFormat.Json));
        Assert.Throws<ArgumentException>(() => Llama4ChatFormat.FormatToolCall(new ToolCall("f", "[1]"), ToolPromptFormat.Json));
    }

    [Fact]
    public void Unknown_role_is_rejected()
    {
        var chat = new Llama4ChatFormat(TokenizerFixtures.Tiktoken);
        var e = Assert.Throws<ArgumentException>(() => chat.EncodeDialog([new Llama4Message("narrator", "hi")]));
        Assert.Contains("narrator", e.Message);
    }

    [Fact]
    public void Every_assistant_reply_parses_as_Meta()
    {
        var failures = new List<string>();
        int cases = 0;
        foreach (var c in TokenizerFixtures.ReadJsonl("assistant_parse.jsonl"))
        {
            cases++;
            string content = c.GetProperty("content").GetString()!;
            var stopIn = ParseStop(c.GetProperty("stop_reason_in").GetString()!);
            var r = c.GetProperty("result");
            var m = Llama4ChatFormat.ParseAssistantMessage(content, stopIn);
            if (m.Content != r.GetProperty("content").GetString()) failures.Add($"{content}: content {m.Content}");
            if (m.StopReason != ParseStop(r.GetProperty("stop_reason").GetString()!)) failures.Add($"{content}: stop reason {m.StopReason}");
            var calls = r.GetProperty("tool_calls").EnumerateArray().ToList();
            if (calls.Count != m.ToolCalls.Count) { failures.Add($"{content}: {m.ToolCalls.Count} tool calls"); continue; }
            for (int i = 0; i < calls.Count; i++)
            {
                if (m.ToolCalls[i].Name != calls[i].GetProperty("tool_name").GetString()) failures.Add($"{content}: tool name {m.ToolCalls[i].Name}");
                if (m.ToolCalls[i].ArgumentsJson != calls[i].GetProperty("arguments_json").GetString()) failures.Add($"{content}: arguments {m.ToolCalls[i].ArgumentsJson}");
                using var doc = JsonDocument.Parse(m.ToolCalls[i].ArgumentsJson);
                Assert.True(JsonElement.DeepEquals(doc.RootElement, calls[i].GetProperty("arguments")), $"{content}: arguments object");
            }
            // The IChatFormat entry point agrees (it assumes end-of-turn when no end token is present).
            var reply = new Llama4ChatFormat(TokenizerFixtures.Tiktoken).ParseAssistant(content);
            Assert.Equal(m.Content, reply.Content);
            Assert.Equal(m.ToolCalls, reply.ToolCalls);
        }
        Assert.Equal(12, cases);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [InlineData("[f(a=1)] trailing text", "[f(a=1)] trailing text", 0)]
    [InlineData("[f(1)]", "[f(1)]", 0)]
    [InlineData("[]", "[]", 0)]
    [InlineData("[f(x=y.z, s='it''s', n=-2, t=(1, 2), d={'k': None})]", "", 1)]
    public void Python_list_edge_cases(string content, string expectedContent, int calls)
    {
        var m = Llama4ChatFormat.ParseAssistantMessage(content, StopReason.EndOfTurn);
        Assert.Equal(expectedContent, m.Content);
        Assert.Equal(calls, m.ToolCalls.Count);
        if (calls == 1)
            Assert.Equal("""{"x": "y.z", "s": "its", "n": -2, "t": [1, 2], "d": {"k": null}}""", m.ToolCalls[0].ArgumentsJson);
    }

    [Fact]
    public void Every_image_size_gets_Metas_tile_layout()
    {
        int cases = 0;
        foreach (var c in TokenizerFixtures.ReadJsonl("image_layouts.jsonl"))
        {
            cases++;
            int w = c.GetProperty("width").GetInt32(), h = c.GetProperty("height").GetInt32();
            var tiling = Llama4ChatFormat.TilingForImage(w, h);
            Assert.True(c.GetProperty("ratio_w").GetInt32() == tiling.TilesX && c.GetProperty("ratio_h").GetInt32() == tiling.TilesY,
                $"{w}x{h}: got {tiling.TilesX} wide x {tiling.TilesY} high");
            var ids = Llama4ChatFormat.ImageTokens(tiling);
            Assert.Equal(c.GetProperty("token_count").GetInt32(), ids.Length);
            Assert.Equal(c.GetProperty("token_count").GetInt32(), Llama4ChatFormat.ImageTokenCount(tiling));
            Assert.Equal(c.GetProperty("patch_count").GetInt32(), ids.Count(i => i == 200092));
            Assert.Equal(c.GetProperty("tiles").GetInt32(), tiling.TilesX * tiling.TilesY);
            Assert.Equal(ids, Llama4ChatFormat.ImageTokens(tiling, TokenizerFixtures.Tiktoken));
            // structure: start, (rows of patches with x separators, each row closed by a y separator), image, patches, end
            Assert.Equal(200080, ids[0]);
            Assert.Equal(200081, ids[^1]);
            Assert.Equal(200090, ids[^146]);
            Assert.Equal(tiling.TilesX * tiling.TilesY > 1 ? tiling.TilesY : 0, ids.Count(i => i == 200085));
            Assert.Equal(tiling.TilesX * tiling.TilesY > 1 ? (tiling.TilesX - 1) * tiling.TilesY : 0, ids.Count(i => i == 200084));
        }
        Assert.Equal(60, cases);
    }

    private static StopReason ParseStop(string s) => s switch
    {
        "end_of_turn" => StopReason.EndOfTurn,
        "end_of_message" => StopReason.EndOfMessage,
        "out_of_tokens" => StopReason.OutOfTokens,
        _ => throw new ArgumentException(s),
    };
}
