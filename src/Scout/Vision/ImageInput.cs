namespace Scout.Vision;

/// <summary>
/// Where an image comes from in user input: a file path, or a <c>data:image/...;base64,</c> URL (OpenAI-style chat
/// messages). Remote http(s) URLs are refused, never fetched.
/// </summary>
public static class ImageInput
{
    /// <summary>Maximum encoded size accepted from a data URL or file (64 MiB).</summary>
    public const int MaxEncodedBytes = 64 << 20;

    /// <summary>Decodes a file path or data URL into RGB; <paramref name="label"/> names it in errors (e.g. "image 2").</summary>
    public static RgbImage Load(string pathOrUrl, string? label = null, long maxPixels = ImageDecoder.DefaultMaxPixels)
    {
        if (pathOrUrl.StartsWith("data:", StringComparison.OrdinalIgnoreCase))
            return ImageDecoder.Decode(DecodeDataUrl(pathOrUrl, label ?? "data URL"), label ?? "data URL", maxPixels);
        if (pathOrUrl.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || pathOrUrl.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
            throw new ImageDecodeException(label ?? Shorten(pathOrUrl), "remote image URLs are not fetched; send the image inline as a data:image/...;base64, URL or pass a local file");
        if (File.Exists(pathOrUrl) && new FileInfo(pathOrUrl).Length > MaxEncodedBytes)
            throw new ImageDecodeException(pathOrUrl, $"file of {new FileInfo(pathOrUrl).Length:N0} bytes exceeds the {MaxEncodedBytes:N0}-byte limit for an image");
        return ImageDecoder.DecodeFile(pathOrUrl, maxPixels);
    }

    /// <summary>The bytes of a base64 <c>data:</c> URL.</summary>
    public static byte[] DecodeDataUrl(string url, string label = "data URL")
    {
        int comma = url.IndexOf(',');
        if (!url.StartsWith("data:", StringComparison.OrdinalIgnoreCase) || comma < 0)
            throw new ImageDecodeException(label, "malformed data URL (expected data:image/<type>;base64,<data>)");
        string meta = url[5..comma];
        if (!meta.EndsWith(";base64", StringComparison.OrdinalIgnoreCase))
            throw new ImageDecodeException(label, "data URL is not base64-encoded (expected ';base64,')");
        string mediaType = meta[..^";base64".Length];
        if (mediaType.Length > 0 && !mediaType.StartsWith("image/", StringComparison.OrdinalIgnoreCase))
            throw new ImageDecodeException(label, $"data URL has media type '{mediaType}', not an image");
        var payload = url.AsSpan(comma + 1);
        if ((long)payload.Length * 3 / 4 > MaxEncodedBytes)
            throw new ImageDecodeException(label, $"data URL of about {(long)payload.Length * 3 / 4:N0} bytes exceeds the {MaxEncodedBytes:N0}-byte limit for an image");
        var bytes = new byte[payload.Length * 3 / 4 + 3];
        if (!Convert.TryFromBase64Chars(payload, bytes, out int written))
            throw new ImageDecodeException(label, "data URL holds invalid base64");
        return bytes.AsSpan(0, written).ToArray();
    }

    private static string Shorten(string s) => s.Length <= 80 ? s : s[..77] + "...";
}
