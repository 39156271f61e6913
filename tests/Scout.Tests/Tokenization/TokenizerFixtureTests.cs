using System.Text.Json;
using Scout.Tokenization;

namespace Scout.Tests.Tokenization;

/// <summary>Every case of encode.jsonl, encode_special.jsonl and decode.jsonl through each loader.</summary>
public class TokenizerFixtureTests
{
    [Theory]
    [MemberData(nameof(TokenizerFixtures.Loaders), MemberType = typeof(TokenizerFixtures))]
    public void Encode_matches_every_fixture_case(string loader)
    {
        var tok = TokenizerFixtures.ByLoader(loader);
        var failures = new List<string>();
        int cases = 0;
        foreach (var c in TokenizerFixtures.ReadJsonl("encode.jsonl"))
        {
            cases++;
            string name = c.GetProperty("name").GetString()!;
            string text = c.GetProperty("text").GetString()!;
            var expected = TokenizerFixtures.Ids(c.GetProperty("ids"));
            var actual = tok.Encode(text);
            if (!actual.SequenceEqual(expected))
                failures.Add($"{name}: ids differ (got {actual.Length} ids, expected {expected.Length}; first diff at {FirstDiff(actual, expected)})");
            var raw = c.TryGetProperty("ids_raw_tiktoken", out var r) ? TokenizerFixtures.Ids(r) : expected;
            if (!tok.EncodeUnsliced(text).SequenceEqual(raw))
                failures.Add($"{name}: unsliced (plain tiktoken) ids differ");
            if (tok.Decode(expected) != text)
                failures.Add($"{name}: decode(ids) is not the text");
        }
        Assert.Equal(260, cases);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [MemberData(nameof(TokenizerFixtures.Loaders), MemberType = typeof(TokenizerFixtures))]
    public void Encode_with_special_tokens_matches_every_fixture_case(string loader)
    {
        var tok = TokenizerFixtures.ByLoader(loader);
        var failures = new List<string>();
        int cases = 0;
        foreach (var c in TokenizerFixtures.ReadJsonl("encode_special.jsonl"))
        {
            cases++;
            string name = c.GetProperty("name").GetString()!;
            string text = c.GetProperty("text").GetString()!;
            bool bos = c.GetProperty("bos").GetBoolean(), eos = c.GetProperty("eos").GetBoolean();
            var allowed = c.GetProperty("allowed_special");
            var expected = TokenizerFixtures.Ids(c.GetProperty("ids"));
            int[] actual = allowed.ValueKind == JsonValueKind.String && allowed.GetString() == "all"
                ? tok.Encode(text, bos, eos, allowSpecial: true)
                : tok.Encode(text, allowed.EnumerateArray().Select(a => a.GetString()!), bos, eos);
            if (!actual.SequenceEqual(expected))
                failures.Add($"{name}: got [{string.Join(",", actual)}], expected [{string.Join(",", expected)}]");
        }
        Assert.Equal(28, cases);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [MemberData(nameof(TokenizerFixtures.Loaders), MemberType = typeof(TokenizerFixtures))]
    public void Decode_and_streaming_match_every_fixture_case(string loader)
    {
        var tok = TokenizerFixtures.ByLoader(loader);
        var failures = new List<string>();
        int cases = 0, streams = 0;
        foreach (var c in TokenizerFixtures.ReadJsonl("decode.jsonl"))
        {
            cases++;
            string name = c.GetProperty("name").GetString()!;
            var ids = TokenizerFixtures.Ids(c.GetProperty("ids"));
            string hex = c.GetProperty("bytes_hex").GetString()!;
            string text = c.GetProperty("text").GetString()!;
            if (!Convert.ToHexString(tok.DecodeBytes(ids)).Equals(hex, StringComparison.OrdinalIgnoreCase))
                failures.Add($"{name}: bytes differ");
            if (tok.Decode(ids) != text)
                failures.Add($"{name}: text differs: {Escape(tok.Decode(ids))} vs {Escape(text)}");

            var decoder = tok.CreateIncrementalDecoder();
            var streamed = new System.Text.StringBuilder();
            if (c.TryGetProperty("stream", out var stream))
            {
                streams++;
                foreach (var step in stream.EnumerateArray())
                {
                    int id = step.GetProperty("id").GetInt32();
                    if (!Convert.ToHexString(tok.TokenBytes(id)).Equals(step.GetProperty("bytes_hex").GetString(), StringComparison.OrdinalIgnoreCase))
                        failures.Add($"{name}: token {id} bytes differ");
                    string emitted = decoder.Add(id);
                    if (emitted != step.GetProperty("emitted").GetString())
                        failures.Add($"{name}: after id {id} emitted {Escape(emitted)}, expected {Escape(step.GetProperty("emitted").GetString()!)}");
                    streamed.Append(emitted);
                }
                string flush = decoder.Flush();
                if (flush != c.GetProperty("stream_final_flush").GetString())
                    failures.Add($"{name}: final flush {Escape(flush)}, expected {Escape(c.GetProperty("stream_final_flush").GetString()!)}");
                streamed.Append(flush);
            }
            else
            {
                foreach (int id in ids) streamed.Append(decoder.Add(id));
                streamed.Append(decoder.Flush());
            }
            if (streamed.ToString() != text)
                failures.Add($"{name}: streamed text {Escape(streamed.ToString())} is not the decoded text");
        }
        Assert.Equal(57, cases);
        Assert.True(streams > 0);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void All_three_loaders_build_the_same_vocabulary()
    {
        var a = TokenizerFixtures.Tiktoken;
        foreach (var b in new[] { TokenizerFixtures.HuggingFace, TokenizerFixtures.Gguf })
        {
            Assert.Equal(a.NumBaseTokens, b.NumBaseTokens);
            Assert.Equal(a.VocabSize, b.VocabSize);
            for (int id = 0; id < a.VocabSize; id++)
                if (!a.TokenBytes(id).SequenceEqual(b.TokenBytes(id)))
                    Assert.Fail($"token {id} differs between loaders");
            Assert.Equal(a.SpecialTokens.OrderBy(kv => kv.Value), b.SpecialTokens.OrderBy(kv => kv.Value));
            Assert.Equal(a.Pattern, b.Pattern);
        }
    }

    internal static int FirstDiff(int[] a, int[] b)
    {
        int n = Math.Min(a.Length, b.Length);
        for (int i = 0; i < n; i++) if (a[i] != b[i]) return i;
        return n;
    }

    internal static string Escape(string s) => JsonSerializer.Serialize(s);
}
