using System.Text.Json;
using Scout.Generation;
using Scout.Tokenization;

namespace Scout.Tests.Generation;

/// <summary>The output grammars over the real Llama 4 vocabulary, and tool calls parsed back by the real chat format.</summary>
public class RealTokenizerGrammarTests
{
    private static readonly Lazy<Llama4Tokenizer> Tokenizer = new(() => Llama4Tokenizer.Load(Fixtures.Tokenizer("llama4/tokenizer.model")));

    [Fact]
    public void ConstrainedToolCallTokensAreAllowedOneByOneAndParseAsAToolCall()
    {
        var tok = Tokenizer.Value;
        var schema = ScoutEngine.ToolCallSchema(
        [
            new ToolDefinition("get_weather", "Weather", """{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}"""),
            new ToolDefinition("get_time", null, """{"type":"object","properties":{"zone":{"enum":["UTC","CET"]}}}"""),
        ], null);
        var constraint = new JsonConstraint(tok, schema);
        string text = """{"type": "function", "name": "get_weather", "parameters": {"city": "São Paulo", "days": 3}}""";
        var logits = new float[tok.VocabSize];
        foreach (int id in tok.Encode(text))
        {
            Array.Clear(logits);
            constraint.Mask(logits);
            Assert.False(float.IsNegativeInfinity(logits[id]), $"token {id} ({tok.Decode([id])}) was masked out");
            constraint.Accept(id);
        }
        Assert.True(constraint.IsComplete);
        Array.Clear(logits);
        constraint.Mask(logits);
        var allowed = Enumerable.Range(0, logits.Length).Where(i => !float.IsNegativeInfinity(logits[i])).ToHashSet();
        Assert.True(allowed.SetEquals(tok.StopIds), "only end-of-turn tokens may follow a complete call");

        var reply = new Llama4ChatFormat(tok).ParseAssistant(text);
        var call = Assert.Single(reply.ToolCalls);
        Assert.Equal("get_weather", call.Name);
        using var args = JsonDocument.Parse(call.ArgumentsJson);
        Assert.Equal("São Paulo", args.RootElement.GetProperty("city").GetString());
    }

    [Fact]
    public void WrongToolNameAndWrongArgumentTypeAreMasked()
    {
        var tok = Tokenizer.Value;
        var schema = ScoutEngine.ToolCallSchema([new ToolDefinition("get_time", null, """{"type":"object","properties":{"zone":{"enum":["UTC","CET"]}},"required":["zone"]}""")], null);
        Assert.True(new JsonConstraint(tok, schema).Accepts("""{"type":"function","name":"get_time","parameters":{"zone":"CET"}}"""));
        Assert.False(new JsonConstraint(tok, schema).Accepts("""{"type":"function","name":"get_weather","parameters":{"zone":"CET"}}"""));
        Assert.False(new JsonConstraint(tok, schema).Accepts("""{"type":"function","name":"get_time","parameters":{"zone":"PST"}}"""));
        Assert.False(new JsonConstraint(tok, schema).Accepts("""{"type":"function","name":"get_time","parameters":{}}"""));
    }
}
