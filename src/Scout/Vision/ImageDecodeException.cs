namespace Scout.Vision;

/// <summary>An image could not be read: corrupt, truncated, unsupported, empty or too large. The message names the source and the problem. (An IOException: InvalidDataException is sealed.)</summary>
public sealed class ImageDecodeException(string source, string problem, Exception? inner = null)
    : IOException($"{source}: {problem}", inner)
{
    /// <summary>The file name (or a label such as "image 2") the image came from.</summary>
    public string ImageSource { get; } = source;
    public string Problem { get; } = problem;
}
