using System.Text.Json;
using Scout.Cli;

namespace Scout.Tests.Tokenization;

public class TokenizeCliTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => ScoutCli.Run(args);

    [Fact]
    public void Tokenize_jsonl_writes_one_ids_line_per_input_line_in_order()
    {
        using var dir = new Fixtures.TempDir();
        var cases = TokenizerFixtures.ReadJsonl("encode.jsonl").Take(40).ToList();
        File.WriteAllLines(dir.File("in.jsonl"), cases.Select(c => JsonSerializer.Serialize(new { text = c.GetProperty("text").GetString() })));
        var (code, stdout, err) = Run("tokenize", "--tokenizer", TokenizerFixtures.ModelPath, "--jsonl", dir.File("in.jsonl"));
        Assert.True(code == 0, err);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(cases.Count, lines.Length);
        for (int i = 0; i < cases.Count; i++)
        {
            using var doc = JsonDocument.Parse(lines[i]);
            Assert.Equal(TokenizerFixtures.Ids(cases[i].GetProperty("ids")), TokenizerFixtures.Ids(doc.RootElement.GetProperty("ids")));
        }

        // and back: detokenize --jsonl gives the texts
        File.WriteAllText(dir.File("ids.jsonl"), stdout);
        (code, stdout, err) = Run("detokenize", "--tokenizer", TokenizerFixtures.ModelPath, "--jsonl", dir.File("ids.jsonl"));
        Assert.True(code == 0, err);
        lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(cases.Count, lines.Length);
        for (int i = 0; i < cases.Count; i++)
        {
            using var doc = JsonDocument.Parse(lines[i]);
            Assert.Equal(cases[i].GetProperty("text").GetString(), doc.RootElement.GetProperty("text").GetString());
        }
    }

    [Fact]
    public void Tokenize_text_plain_special_and_json_forms()
    {
        var (code, stdout, _) = Run("tokenize", "-t", TokenizerFixtures.ModelPath, "--text", "<|eot|>");
        Assert.Equal(0, code);
        Assert.Equal("40 104 81 359 159276", stdout.Trim());
        (code, stdout, _) = Run("tokenize", "-t", Fixtures.Tokenizer("llama4"), "--text", "<|eot|>", "--special", "--json");
        Assert.Equal(0, code);
        Assert.Equal("""{"ids":[200008],"count":1}""", stdout.Trim());
    }

    [Fact]
    public void Tokenize_file_and_other_loaders_agree()
    {
        using var dir = new Fixtures.TempDir();
        var c = TokenizerFixtures.ReadJsonl("encode.jsonl").First(x => x.GetProperty("text").GetString()!.Length > 5000);
        File.WriteAllText(dir.File("t.txt"), c.GetProperty("text").GetString());
        var expected = string.Join(' ', TokenizerFixtures.Ids(c.GetProperty("ids")));
        foreach (var tokenizer in new[] { TokenizerFixtures.ModelPath, TokenizerFixtures.DerivedGgufPath })
        {
            var (code, stdout, err) = Run("tokenize", "-t", tokenizer, "--file", dir.File("t.txt"));
            Assert.True(code == 0, err);
            Assert.Equal(expected, stdout.Trim());
        }
    }

    [Fact]
    public void Tokenize_large_file_on_all_cores_gives_the_serial_ids()
    {
        using var dir = new Fixtures.TempDir();
        var texts = TokenizerFixtures.ReadJsonl("encode.jsonl").Select(c => c.GetProperty("text").GetString()!).ToList();
        var sb = new System.Text.StringBuilder();
        while (sb.Length < 1_100_000) sb.AppendJoin('\n', texts).Append('\n');
        File.WriteAllText(dir.File("big.txt"), sb.ToString());
        var (code, stdout, err) = Run("tokenize", "-t", TokenizerFixtures.ModelPath, "--file", dir.File("big.txt"), "--bos");
        Assert.True(code == 0, err);
        var expected = TokenizerFixtures.Tiktoken.Encode(File.ReadAllText(dir.File("big.txt")), bos: true, eos: false);
        Assert.Equal(string.Join(' ', expected), stdout.Trim());
    }

    [Fact]
    public void Tokenize_file_with_invalid_utf8_uses_replacement_characters()
    {
        using var dir = new Fixtures.TempDir();
        File.WriteAllBytes(dir.File("bad.txt"), [(byte)'a', 0xC0, 0x80, (byte)'b', 0xE4]);
        var (code, stdout, err) = Run("tokenize", "-t", TokenizerFixtures.ModelPath, "--file", dir.File("bad.txt"));
        Assert.True(code == 0, err);
        Assert.Equal(string.Join(' ', TokenizerFixtures.Tiktoken.Encode("a\uFFFD\uFFFDb\uFFFD")), stdout.Trim());
    }

    [Fact]
    public void Detokenize_ids_including_partial_utf8()
    {
        var (code, stdout, _) = Run("detokenize", "-t", TokenizerFixtures.ModelPath, "--ids", "19873,24,3817,13");
        Assert.Equal(0, code);
        Assert.Equal("Hello, world!", stdout);
        (code, stdout, _) = Run("detokenize", "-t", TokenizerFixtures.ModelPath, "--ids", "171 200008", "--json");
        Assert.Equal(0, code);
        Assert.Equal("{\"text\":\"\uFFFD<|eot|>\"}", stdout.Trim());
    }

    [Theory]
    [InlineData("tokenize", "--text", "a", "--file", "x", "exactly one")]
    [InlineData("tokenize", "--jsonl", "/nonexistent.jsonl", null, null, "not found")]
    [InlineData("detokenize", "--ids", "1,x", null, null, "'x' is not an integer")]
    [InlineData("detokenize", "--ids", "202048", null, null, "202048 is not in the vocabulary")]
    public void Bad_cli_input_gives_a_clear_error(string command, string o1, string v1, string? o2, string? v2, string message)
    {
        var args = new List<string> { command, "-t", TokenizerFixtures.ModelPath, o1, v1 };
        if (o2 != null) args.AddRange([o2, v2!]);
        var (code, _, err) = Run(args.ToArray());
        Assert.Equal(1, code);
        Assert.Contains(message, err);
    }

    [Fact]
    public void Malformed_jsonl_line_names_the_line()
    {
        using var dir = new Fixtures.TempDir();
        File.WriteAllLines(dir.File("in.jsonl"), ["{\"text\": \"ok\"}", "{\"txt\": 1}"]);
        var (code, _, err) = Run("tokenize", "-t", TokenizerFixtures.ModelPath, "--jsonl", dir.File("in.jsonl"));
        Assert.Equal(1, code);
        Assert.Contains("line 2", err);
    }
}
