using Scout.Vision;

namespace Scout.Generation;

/// <summary>Images for prompts through Llama 4's vision encoder: decode, tile (Meta's canvas choice), embed, merge.</summary>
public sealed class VisionPromptEncoder(VisionLanguageModel model, int maxTiles = ImagePreprocessor.DefaultMaxTiles) : IImagePromptEncoder
{
    public VisionLanguageModel Model => model;

    public PreparedImage Prepare(ReadOnlyMemory<byte> image, string mediaType)
    {
        try
        {
            var pre = ImagePreprocessor.Preprocess(ImageDecoder.Decode(image.Span, mediaType), maxTiles);
            return new PreparedImage(pre.Tiling, pre);
        }
        catch (ImageDecodeException e)
        {
            throw new ArgumentException(e.Message, e);
        }
    }

    public float[] EmbedPrompt(int[] prompt, IReadOnlyList<PreparedImage> images)
        => model.EmbedPrompt(prompt, images.Select(i => (PreprocessedImage)i.Pixels).ToList());
}
