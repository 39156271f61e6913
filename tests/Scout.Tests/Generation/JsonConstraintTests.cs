using System.Text.Json;
using Scout.Generation;

namespace Scout.Tests.Generation;

public class JsonConstraintTests(TinyModel tiny) : IClassFixture<TinyModel>
{
    private const string PersonSchema = """
        {"type":"object","properties":{
           "name":{"type":"string","maxLength":6},
           "age":{"type":"integer"},
           "tags":{"type":"array","items":{"enum":["a","b",3]},"maxItems":3},
           "ok":{"type":"boolean"}},
         "required":["name","age","ok"],"additionalProperties":false}
        """;

    private static JsonConstraint Person() => new(StandInTokenizer.Instance, JsonSchemaSubset.Parse(PersonSchema));

    [Theory]
    [InlineData("""{"name":"Bo","age":41,"tags":["a",3],"ok":true}""", true)]
    [InlineData("""{ "name": "Bo", "age": -0, "ok": false}""", true)]
    [InlineData("""{"name":"Bo","age":4.5,"ok":true}""", false)]        // integer
    [InlineData("""{"name":"Bo","age":-99999999999999999,"ok":true}""", true)]  // 18 characters: fits a long
    [InlineData("""{"name":"Bo","age":9999999999999999999,"ok":true}""", false)] // 19 digits could overflow a long
    [InlineData("""{"name":"Bo","ok":true}""", false)]                  // age required
    [InlineData("""{"name":"Bo","age":1,"ok":true,"x":1}""", false)]    // no additional properties
    [InlineData("""{"age":1,"name":"Bo","ok":true}""", false)]          // declaration order
    [InlineData("""{"name":"Bobbyyy","age":1,"ok":true}""", false)]     // maxLength
    [InlineData("""{"name":"Bo","age":1,"tags":["c"],"ok":true}""", false)]
    [InlineData("""{"name":"Bo","age":1,"ok":true}    """, false)]      // nothing after the document
    public void RecognizesTheSchema(string text, bool valid) => Assert.Equal(valid, Person().Accepts(text));

    [Fact]
    public void AnyObjectModeAcceptsJsonObjectsOnly()
    {
        var c = new JsonConstraint(StandInTokenizer.Instance, JsonSchemaSubset.AnyObject);
        Assert.True(c.Accepts("""{"a":[1,2.5e-3,{"b":null}],"c":"\u00e9\n"}"""));
        Assert.False(c.Accepts("[1]"));
        Assert.False(c.Accepts("""{"a":01}"""));
        Assert.False(c.Accepts("""{"a":1,}"""));
    }

    [Fact]
    public void SampledOutputsAlwaysParseAndValidate()
    {
        // Random sampling at a high temperature from scout-tiny, masked by the schema, must always give valid JSON.
        var generator = new Generator(tiny.Model, StandInTokenizer.Instance, 512);
        for (int seed = 0; seed < 6; seed++)
        {
            var updates = generator.Generate(new GenerationRequest
            {
                Prompt = tiny.Tokens[..5], MaxTokens = 200,
                Sampling = new SamplingOptions { Temperature = 1.3f, Seed = seed },
                Constraint = Person,
            }).ToList();
            string text = string.Concat(updates.Select(u => u.Text));
            Assert.Equal(FinishReason.Stop, updates[^1].Finish);
            using var doc = JsonDocument.Parse(text);
            var root = doc.RootElement;
            Assert.True(root.GetProperty("name").GetString()!.EnumerateRunes().Count() <= 6, text);
            Assert.True(root.GetProperty("age").TryGetInt64(out _), text);
            Assert.True(root.GetProperty("ok").ValueKind is JsonValueKind.True or JsonValueKind.False, text);
            Assert.All(root.EnumerateObject(), p => Assert.Contains(p.Name, new[] { "name", "age", "tags", "ok" }));
        }
    }

    [Fact]
    public void UnsupportedSchemasAreRefusedClearly()
    {
        Assert.Contains("type", Assert.ThrowsAny<ArgumentException>(() => JsonSchemaSubset.Parse("""{"type":"banana"}""")).Message);
        Assert.Contains("$ref", Assert.ThrowsAny<ArgumentException>(() => JsonSchemaSubset.Parse("""{"$ref":"http://x"}""")).Message);
        Assert.Contains("valid JSON", Assert.ThrowsAny<ArgumentException>(() => JsonSchemaSubset.Parse("{")).Message);
    }
}
