using System.Text;
using Scout.Generation;

namespace Scout.Tests.Generation;

/// <summary>
/// <see cref="OutputText"/> decodes token bytes without a <see cref="Decoder"/> (whose fallback path allocated per
/// invalid sequence): the reference is UTF8Encoding's streaming decoder fed the same pieces.
/// </summary>
public class OutputTextDecodingTests
{
    /// <summary>What the streaming decoder returns for each piece, and at the flush.</summary>
    private static List<string> Reference(IEnumerable<byte[]> pieces)
    {
        var decoder = new UTF8Encoding(false, false).GetDecoder();
        var result = new List<string>();
        foreach (var p in pieces)
        {
            var chars = new char[decoder.GetCharCount(p, 0, p.Length, flush: false)];
            result.Add(new string(chars, 0, decoder.GetChars(p, 0, p.Length, chars, 0, flush: false)));
        }
        var tail = new char[8];
        result.Add(new string(tail, 0, decoder.GetChars([], 0, 0, tail, 0, flush: true)));
        return result;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void PiecesDecodeAsTheStreamingDecoderDecodesThem(int seed)
    {
        var rng = new Random(seed);
        // Valid text of 1- to 4-byte characters with random bytes mixed in (lone continuations, truncated and
        // overlong sequences, surrogates, bytes above F4), cut at random places, some pieces empty.
        var valid = Encoding.UTF8.GetBytes("aé€😀 ж\u0800\uFFFD𐀀z");
        for (int run = 0; run < 200; run++)
        {
            var bytes = new List<byte>();
            int length = rng.Next(0, 40);
            while (bytes.Count < length)
            {
                if (rng.Next(3) == 0) bytes.Add((byte)rng.Next(0x80, 0x100));
                else if (rng.Next(4) == 0) bytes.AddRange([0xED, 0xA0, 0x80]); // an encoded surrogate
                else bytes.Add(valid[rng.Next(valid.Length)]);
            }
            var pieces = new List<byte[]>();
            for (int i = 0; i < bytes.Count;)
            {
                int n = Math.Min(rng.Next(0, 6), bytes.Count - i);
                pieces.Add(bytes.GetRange(i, n).ToArray());
                i += n;
            }
            var output = new OutputText([]);
            var got = new List<string>();
            foreach (var p in pieces) got.Add(output.Append(p));
            got.Add(output.Flush());
            Assert.Equal(Reference(pieces), got);
            Assert.Equal(string.Concat(got), output.Text);
        }
    }

    [Fact]
    public void WithoutKeptTextOnlyTheTextIsMissing()
    {
        var kept = new OutputText(["END"]);
        var streamed = new OutputText(["END"], keepText: false);
        foreach (var piece in new[] { "ab"u8.ToArray(), [0xE2, 0x82], [0xAC, (byte)'E'], "NDx"u8.ToArray() })
            Assert.Equal(kept.Append(piece), streamed.Append(piece));
        Assert.Equal("END", streamed.MatchedStop);
        Assert.Equal("ab€", kept.Text);
        Assert.Throws<InvalidOperationException>(() => streamed.Text);
    }
}
