using System.Text;
using Scout.Formats;
using Scout.Tokenization;

namespace Scout.Tests.Tokenization;

public class TokenizerBadInputTests
{
    private static string Line(string token, int rank) => Convert.ToBase64String(Encoding.UTF8.GetBytes(token)) + " " + rank;

    /// <summary>A small valid rank file: the 256 bytes plus a few merges.</summary>
    private static List<string> SmallModel()
    {
        var lines = Enumerable.Range(0, 256).Select(b => Convert.ToBase64String([(byte)b]) + " " + b).ToList();
        lines.Add(Line("ab", 256));
        lines.Add(Line("abc", 257));
        return lines;
    }

    private static ModelLoadException LoadFails(IEnumerable<string> lines)
    {
        using var dir = new Fixtures.TempDir();
        File.WriteAllLines(dir.File("tokenizer.model"), lines);
        return Assert.Throws<ModelLoadException>(() => Llama4Tokenizer.Load(dir.File("tokenizer.model")));
    }

    [Fact]
    public void Small_rank_file_loads_and_merges()
    {
        using var dir = new Fixtures.TempDir();
        File.WriteAllLines(dir.File("tokenizer.model"), SmallModel());
        var tok = Llama4Tokenizer.Load(dir.Path); // folder form
        Assert.Equal(258 + 2048, tok.VocabSize);
        Assert.Equal(new[] { 257, (int)'d' }, tok.Encode("abcd"));
        Assert.Equal(258, tok.BosId);
    }

    [Fact]
    public void Malformed_line_is_reported_with_its_number()
    {
        var lines = SmallModel();
        lines[10] = "not-base64!! 10";
        Assert.Contains("line 11", LoadFails(lines).Message);
        lines = SmallModel();
        lines[3] = Convert.ToBase64String([3]);
        Assert.Contains("line 4", LoadFails(lines).Message);
        lines = SmallModel();
        lines[5] = Convert.ToBase64String([5]) + " five";
        Assert.Contains("'five' is not a non-negative integer", LoadFails(lines).Message);
    }

    [Fact]
    public void Rank_gap_and_duplicates_are_rejected()
    {
        var lines = SmallModel();
        lines[^1] = Line("abc", 300);
        Assert.Contains("gap", LoadFails(lines).Message);
        lines = SmallModel();
        lines[^1] = Line("abc", 256);
        Assert.Contains("duplicate rank 256", LoadFails(lines).Message);
        lines = SmallModel();
        lines[^1] = Line("ab", 257);
        Assert.Contains("appear twice", LoadFails(lines).Message);
        lines = SmallModel();
        lines.RemoveAt(65); // byte 'A' missing: ranks now have a gap too, but make them contiguous to hit the byte check
        lines = lines.Select((l, i) => l.Split(' ')[0] + " " + i).ToList();
        Assert.Contains("0x41 has no rank", LoadFails(lines).Message);
    }

    [Theory]
    [InlineData("WordPiece")]
    [InlineData("Unigram")]
    public void Tokenizer_json_of_another_model_type_is_rejected(string type)
    {
        using var dir = new Fixtures.TempDir();
        var ranks = Enumerable.Range(0, 256).Select(b => ByteLevel.Encode([(byte)b])).ToList();
        TiktokenConversion.WriteHuggingFaceJson(dir.File("tokenizer.json"), ranks, [], new Dictionary<string, int>(), type);
        var e = Assert.Throws<ModelLoadException>(() => Llama4Tokenizer.Load(dir.File("tokenizer.json")));
        Assert.Contains($"'{type}'", e.Message);
    }

    [Fact]
    public void Tokenizer_json_with_merges_out_of_rank_order_is_rejected()
    {
        using var dir = new Fixtures.TempDir();
        var ranks = Enumerable.Range(0, 256).Select(b => ByteLevel.Encode([(byte)b])).Concat(["ab", "abc"]).ToList();
        TiktokenConversion.WriteHuggingFaceJson(dir.File("tokenizer.json"), ranks, [("ab", "c"), ("a", "b")], new Dictionary<string, int>());
        var e = Assert.Throws<ModelLoadException>(() => Llama4Tokenizer.Load(dir.File("tokenizer.json")));
        Assert.Contains("out of rank order", e.Message);
    }

    [Fact]
    public void Tokenizer_json_with_pair_merges_and_llama3_style_split_loads()
    {
        using var dir = new Fixtures.TempDir();
        var vocab = string.Join(", ", Enumerable.Range(0, 256).Select(b => $"{System.Text.Json.JsonSerializer.Serialize(ByteLevel.Encode([(byte)b]))}: {b}"));
        string pattern = System.Text.Json.JsonSerializer.Serialize(Llama4Tokenizer.Llama4Pattern);
        File.WriteAllText(dir.File("tokenizer.json"),
            "{\"added_tokens\": [{\"id\": 258, \"content\": \"<|eot|>\", \"special\": true}], \"normalizer\": null," +
            "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [" +
            "{\"type\": \"Split\", \"pattern\": {\"Regex\": " + pattern + "}, \"behavior\": \"Removed\", \"invert\": true}," +
            "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}," +
            "\"model\": {\"type\": \"BPE\", \"vocab\": {" + vocab + ", \"ab\": 256, \"abc\": 257}, \"merges\": [[\"a\", \"b\"], [\"ab\", \"c\"]]}}");
        var tok = Llama4Tokenizer.Load(dir.File("tokenizer.json"));
        Assert.Equal(new[] { 257, (int)'d', 258 }, tok.Encode("abcd<|eot|>", allowSpecial: true));
        Assert.Equal(259, tok.VocabSize);
        Assert.Equal(258, tok.EotId);
    }

    [Fact]
    public void Malformed_tokenizer_json_is_rejected()
    {
        using var dir = new Fixtures.TempDir();
        File.WriteAllText(dir.File("tokenizer.json"), "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}");
        Assert.Contains("malformed JSON", Assert.Throws<ModelLoadException>(() => Llama4Tokenizer.Load(dir.File("tokenizer.json"))).Message);
    }

    [Theory]
    [InlineData("llama", "llama4", "tokenizer.ggml.model is 'llama'")]
    [InlineData("gpt2", "qwen2", "tokenizer.ggml.pre is 'qwen2'")]
    public void Gguf_with_another_tokenizer_is_rejected(string model, string pre, string message)
    {
        using var dir = new Fixtures.TempDir();
        var ranks = Enumerable.Range(0, 256).Select(b => ByteLevel.Encode([(byte)b])).ToList();
        TiktokenConversion.WriteGguf(dir.File("t.gguf"), ranks, [], new Dictionary<string, int>(), model, pre);
        var e = Assert.Throws<ModelLoadException>(() => Llama4Tokenizer.Load(dir.File("t.gguf")));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void Missing_files_are_reported()
    {
        using var dir = new Fixtures.TempDir();
        Assert.Contains("no tokenizer.model", Assert.Throws<ModelLoadException>(() => Llama4Tokenizer.Load(dir.Path)).Message);
        Assert.Contains("not found", Assert.Throws<ModelLoadException>(() => Llama4Tokenizer.Load(dir.File("nope.model"))).Message);
    }

    [Fact]
    public void Invalid_utf8_decodes_with_replacement_characters_and_unknown_ids_throw()
    {
        var tok = TokenizerFixtures.Tiktoken;
        // ids 0, 1, 2 are the bytes C0, C1, F5, never valid in UTF-8
        Assert.Equal("\uFFFD\uFFFD\uFFFDA", tok.Decode([0, 1, 2, tok.Encode("A")[0]]));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([5, 202048]));
        Assert.Contains("202048", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([-1]));
    }

    [Fact]
    public void Lone_surrogates_in_input_encode_as_the_replacement_character()
    {
        var tok = TokenizerFixtures.Tiktoken;
        Assert.Equal(tok.Encode("a\uFFFDb"), tok.Encode("a\uD800b"));
        Assert.Equal(tok.Encode("x \uFFFD"), tok.Encode("x \uDC00"));
    }

    [Fact]
    public void Incremental_decoder_holds_split_characters_and_flushes()
    {
        var tok = TokenizerFixtures.Tiktoken;
        var text = "héllo 🧑‍🚀 世界";
        var ids = tok.Encode(text);
        var bytes = Encoding.UTF8.GetBytes(text);
        // feed one byte-token at a time: re-encode each byte as its single-byte rank
        var byteIds = bytes.Select(b => tok.Rank([b])!.Value).ToArray();
        var dec = tok.CreateIncrementalDecoder();
        var sb = new StringBuilder();
        foreach (int id in byteIds)
        {
            string piece = dec.Add(id);
            Assert.DoesNotContain('\uFFFD', piece);
            Assert.False(piece.Length > 0 && char.IsHighSurrogate(piece[^1]));
            sb.Append(piece);
        }
        sb.Append(dec.Flush());
        Assert.Equal(text, sb.ToString());
        Assert.Equal(text, dec.Add(ids) + dec.Flush());
        // a truncated character is flushed as one U+FFFD at the end
        Assert.Equal("", dec.Add(byteIds[^3..^1]));
        Assert.Equal("\uFFFD", dec.Flush());
    }
}
