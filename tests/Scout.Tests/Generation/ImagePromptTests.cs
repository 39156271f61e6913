using Scout.Cli.Commands;
using Scout.Generation;
using Scout.Vision;

namespace Scout.Tests.Generation;

/// <summary>Generation from a prompt with an image, against Meta's logits for the vision fixture's "synthetic" case.</summary>
public class ImagePromptTests
{
    [Fact]
    public async Task ImagePromptGreedyTokenIsArgmaxOfMetaLogitsAndIsNeverReused()
    {
        using var vlm = VisionLanguageModel.Load(Fixtures.Vision());
        var encoder = new VisionPromptEncoder(vlm);
        var tokens = LogitsCommand.ReadTokens(Fixtures.Vision("cases/synthetic/tokens.json"));
        var golden = Fixtures.ReadF32(Fixtures.Vision("cases/synthetic/logits.f32"));
        int vocab = vlm.Text.Config.VocabSize;
        var lastRow = golden.AsSpan((tokens.Length - 1) * vocab, vocab);

        var image = encoder.Prepare(File.ReadAllBytes(Fixtures.Vision("images/synthetic.png")), "image/png");
        Assert.Equal(new Scout.Tokenization.ImageTiling(1, 1), image.Tiling);
        var request = new GenerationRequest
        {
            Prompt = tokens, PromptEmbeddings = encoder.EmbedPrompt(tokens, [image]),
            MaxTokens = 1, Sampling = SamplingOptions.Greedy, IgnoreStopIds = true, Logprobs = true,
        };
        var single = new Generator(vlm.Text, StandInTokenizer.Instance, 256).Generate(request).Single();
        Assert.Equal(LogitAssert.ArgMax(lastRow), single.Token!.Id);

        // Through the scheduler too; a later text-only prompt with the same ids must not reuse the image's cache.
        using var scheduler = new BatchScheduler(vlm.Text, StandInTokenizer.Instance, new SchedulerOptions { MaxContext = 256, PrefillChunk = 64 });
        GenerationUpdate? withImage = null, textOnly = null;
        await foreach (var u in scheduler.Submit(request)) withImage = u;
        await foreach (var u in scheduler.Submit(request with { PromptEmbeddings = null })) textOnly = u;
        Assert.Equal(single.Token.Id, withImage!.Token!.Id);
        Assert.Equal(single.Token.Logprob, withImage.Token.Logprob, 4);
        Assert.Equal(0, textOnly!.Stats!.CachedPromptTokens);
    }

    [Fact]
    public void UnreadableImageIsAnArgumentError()
    {
        using var vlm = VisionLanguageModel.Load(Fixtures.Vision());
        Assert.Throws<ArgumentException>(() => new VisionPromptEncoder(vlm).Prepare(new byte[] { 1, 2, 3, 4 }, "image/png"));
    }
}
