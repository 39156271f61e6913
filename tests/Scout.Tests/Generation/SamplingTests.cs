using System.Text;
using Scout.Generation;

namespace Scout.Tests.Generation;

public class SamplingTests
{
    private static readonly float[] Logits = [1f, 3f, 2.5f, -1f, 0f, 2.9f];

    [Fact]
    public void GreedyIsArgmax() => Assert.Equal(1, new Sampler(SamplingOptions.Greedy).Sample(Logits).Id);

    [Fact]
    public void TopKOneIsGreedyAtAnyTemperature()
    {
        var s = new Sampler(new SamplingOptions { Temperature = 5, TopK = 1, Seed = 1 });
        for (int i = 0; i < 20; i++) Assert.Equal(1, s.Sample(Logits).Id);
    }

    [Fact]
    public void TopPAndMinPKeepOnlyLikelyTokens()
    {
        var topP = new Sampler(new SamplingOptions { Temperature = 1, TopP = 0.5f, Seed = 3 });
        var minP = new Sampler(new SamplingOptions { Temperature = 1, MinP = 0.5f, Seed = 3 });
        for (int i = 0; i < 200; i++)
        {
            Assert.Contains(topP.Sample(Logits).Id, new[] { 1, 5 });       // p(1)≈.36, p(5)≈.33
            Assert.Contains(minP.Sample(Logits).Id, new[] { 1, 2, 5 });    // within e^-0.69 of the best
        }
    }

    [Fact]
    public void SamplingFollowsTheDistribution()
    {
        var s = new Sampler(new SamplingOptions { Temperature = 1, Seed = 7 });
        var counts = new int[Logits.Length];
        for (int i = 0; i < 20000; i++) counts[s.Sample(Logits).Id]++;
        double z = Logits.Sum(v => Math.Exp(v));
        for (int i = 0; i < Logits.Length; i++)
            Assert.InRange(counts[i] / 20000.0, Math.Exp(Logits[i]) / z - 0.02, Math.Exp(Logits[i]) / z + 0.02);
    }

    [Fact]
    public void PenaltiesAndBiasChangeTheChoice()
    {
        var bias = new Sampler(SamplingOptions.Greedy with { LogitBias = new Dictionary<int, float> { [4] = 10 } });
        Assert.Equal(4, bias.Sample(Logits).Id);

        var presence = new Sampler(SamplingOptions.Greedy with { PresencePenalty = 1f });
        presence.Accept(1);
        Assert.Equal(5, presence.Sample(Logits).Id);

        var frequency = new Sampler(SamplingOptions.Greedy with { FrequencyPenalty = 0.06f });
        frequency.Accept(1);
        Assert.Equal(1, frequency.Sample(Logits).Id); // 3 - 0.06 > 2.9
        frequency.Accept(1);
        Assert.Equal(5, frequency.Sample(Logits).Id); // 3 - 0.12 < 2.9
    }

    [Fact]
    public void RepetitionPenaltyCountsPromptTokens()
    {
        var s = new Sampler(SamplingOptions.Greedy with { RepetitionPenalty = 1.2f });
        s.ObservePrompt([1]);
        Assert.Equal(5, s.Sample(Logits).Id); // 3/1.2 = 2.5 < 2.9
    }

    [Fact]
    public void MaskAllowsOnlyWhatItLeaves()
    {
        var s = new Sampler(new SamplingOptions { Temperature = 1, Seed = 5 });
        for (int i = 0; i < 50; i++)
            Assert.Equal(3, s.Sample(Logits, 0, x => { for (int j = 0; j < x.Length; j++) if (j != 3) x[j] = float.NegativeInfinity; }).Id);
        Assert.Throws<InvalidOperationException>(() => s.Sample(Logits, 0, x => x.Fill(float.NegativeInfinity)));
    }

    [Fact]
    public void InvalidOptionsAreRefused()
    {
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplingOptions { Temperature = -1 }));
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplingOptions { TopK = -2 }));
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplingOptions { PresencePenalty = 3 }));
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplingOptions { LogitBias = new Dictionary<int, float> { [1] = 500 } }));
    }

    [Fact]
    public void Utf8CharactersSplitAcrossTokensWait()
    {
        var o = new OutputText([]);
        var bytes = Encoding.UTF8.GetBytes("a€😀");
        var pieces = bytes.Select(b => o.Append([b])).ToList();
        Assert.Equal(["a", "", "", "€", "", "", "", "😀"], pieces);
        Assert.Equal("", o.Flush());
    }

    [Fact]
    public void DanglingPartialCharacterBecomesReplacementAtTheEnd()
    {
        var o = new OutputText([]);
        Assert.Equal("x", o.Append([(byte)'x', 0xE2, 0x82]));
        Assert.Equal("\uFFFD", o.Flush());
    }

    [Fact]
    public void StopStringPrefixIsHeldBackThenReleased()
    {
        var o = new OutputText(["END", "<stop>"]);
        Assert.Equal("ab", o.Append("abE"u8));
        Assert.Equal("", o.Append("N"u8));
        Assert.Equal("ENx", o.Append("x<"u8)); // "EN" released, "<" held
        Assert.Equal("", o.Append("st"u8));
        Assert.Equal("", o.Append("op>tail"u8));
        Assert.Equal("<stop>", o.MatchedStop);
        Assert.Equal("abENx", o.Text);
    }
}
