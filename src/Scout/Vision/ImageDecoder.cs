using System.Buffers.Binary;
using SkiaSharp;

namespace Scout.Vision;

/// <summary>
/// Decodes PNG, JPEG and WebP (through SkiaSharp) into 8-bit RGB the way Meta's preprocessing sees them after PIL's
/// <c>convert("RGB")</c>: an image with an alpha channel of its own (PNG colour type 6, WebP with alpha) is composited
/// over white with PIL's integer blend; other transparency (grey+alpha, palette or colour-key tRNS) is dropped, as PIL does.
/// The size is read from the header and checked against a pixel limit before any pixel is decoded.
/// </summary>
public static class ImageDecoder
{
    /// <summary>Pillow's MAX_IMAGE_PIXELS: about 89.5 megapixels (a 9459×9459 image).</summary>
    public const long DefaultMaxPixels = 89_478_485;

    public enum ImageFormat { Png, Jpeg, WebP }

    /// <summary>Reads and decodes an image file.</summary>
    public static RgbImage DecodeFile(string path, long maxPixels = DefaultMaxPixels)
    {
        if (!File.Exists(path)) throw new ImageDecodeException(path, "file not found");
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (IOException e) { throw new ImageDecodeException(path, $"cannot read the file: {e.Message}", e); }
        catch (UnauthorizedAccessException e) { throw new ImageDecodeException(path, $"cannot read the file: {e.Message}", e); }
        return Decode(bytes, path, maxPixels);
    }

    /// <summary>Decodes an encoded image; <paramref name="source"/> names it in error messages.</summary>
    public static RgbImage Decode(ReadOnlySpan<byte> data, string source = "image", long maxPixels = DefaultMaxPixels)
    {
        var format = DetectFormat(data, source);
        string name = format switch { ImageFormat.Png => "PNG", ImageFormat.Jpeg => "JPEG", _ => "WebP" };
        if (format == ImageFormat.Png) CheckPngHeader(data, source, maxPixels);

        using var stream = new SKMemoryStream(data.ToArray());
        using var codec = SKCodec.Create(stream, out var createResult);
        if (codec is null)
            throw new ImageDecodeException(source, $"corrupt or truncated {name} header ({createResult})");
        int w = codec.Info.Width, h = codec.Info.Height;
        CheckSize(w, h, source, maxPixels);

        var info = new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[info.BytesSize64];
        SKCodecResult result;
        unsafe
        {
            fixed (byte* p = rgba) result = codec.GetPixels(info, (nint)p);
        }
        if (result == SKCodecResult.IncompleteInput)
            throw new ImageDecodeException(source, $"truncated {name} data (the pixel data ends early)");
        if (result != SKCodecResult.Success)
            throw new ImageDecodeException(source, $"corrupt {name} pixel data ({result})");

        bool composite = format switch
        {
            ImageFormat.Png => PngColorType(data) == 6,
            ImageFormat.WebP => codec.Info.AlphaType != SKAlphaType.Opaque,
            _ => false,
        };
        return FromRgba(rgba, w, h, composite);
    }

    /// <summary>RGBA (unpremultiplied) → RGB; with <paramref name="compositeOnWhite"/>, PIL's blend over white, else alpha dropped.</summary>
    public static RgbImage FromRgba(ReadOnlySpan<byte> rgba, int width, int height, bool compositeOnWhite)
    {
        var rgb = new byte[checked(width * height * 3)];
        for (int i = 0, o = 0; o < rgb.Length; i += 4, o += 3)
        {
            if (compositeOnWhite)
            {
                int a = rgba[i + 3];
                rgb[o] = BlendOverWhite(rgba[i], a);
                rgb[o + 1] = BlendOverWhite(rgba[i + 1], a);
                rgb[o + 2] = BlendOverWhite(rgba[i + 2], a);
            }
            else
            {
                rgb[o] = rgba[i];
                rgb[o + 1] = rgba[i + 1];
                rgb[o + 2] = rgba[i + 2];
            }
        }
        return new RgbImage(width, height, rgb);
    }

    /// <summary>PIL's integer blend of colour c with alpha a over 255.</summary>
    public static byte BlendOverWhite(int c, int a)
    {
        int t = 255 * (255 - a) + c * a + 128;
        return (byte)((t + (t >> 8)) >> 8);
    }

    public static ImageFormat DetectFormat(ReadOnlySpan<byte> d, string source = "image")
    {
        if (d.Length == 0) throw new ImageDecodeException(source, "empty file (0 bytes)");
        if (d.Length >= 8 && d[..8].SequenceEqual(PngSignature)) return ImageFormat.Png;
        if (d.Length >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return ImageFormat.Jpeg;
        if (d.Length >= 12 && d[..4].SequenceEqual("RIFF"u8) && d.Slice(8, 4).SequenceEqual("WEBP"u8)) return ImageFormat.WebP;
        string? known =
            d.Length >= 4 && d[..4].SequenceEqual("GIF8"u8) ? "GIF" :
            d.Length >= 2 && d[0] == (byte)'B' && d[1] == (byte)'M' ? "BMP" :
            d.Length >= 4 && (d[..4].SequenceEqual("II*\0"u8) || d[..4].SequenceEqual("MM\0*"u8)) ? "TIFF" :
            d.Length >= 12 && d.Slice(4, 4).SequenceEqual("ftyp"u8) ? "HEIF/AVIF" :
            d.Length >= 4 && d[0] == 0 && d[1] == 0 && d[2] == 1 && d[3] == 0 ? "ICO" :
            null;
        throw new ImageDecodeException(source, known is null
            ? "unsupported or unrecognised image format (expected PNG, JPEG or WebP)"
            : $"unsupported image format {known} (expected PNG, JPEG or WebP)");
    }

    private static ReadOnlySpan<byte> PngSignature => [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    private static int PngColorType(ReadOnlySpan<byte> d) => d.Length > 25 ? d[25] : -1;

    /// <summary>Reads the PNG's IHDR (the first chunk) for its size, before anything is decoded.</summary>
    private static void CheckPngHeader(ReadOnlySpan<byte> d, string source, long maxPixels)
    {
        if (d.Length < 33 || !d.Slice(12, 4).SequenceEqual("IHDR"u8))
            throw new ImageDecodeException(source, "truncated or corrupt PNG header (no IHDR chunk)");
        uint w = BinaryPrimitives.ReadUInt32BigEndian(d.Slice(16, 4));
        uint h = BinaryPrimitives.ReadUInt32BigEndian(d.Slice(20, 4));
        if (w > int.MaxValue || h > int.MaxValue)
            throw new ImageDecodeException(source, $"corrupt PNG header (size {w}x{h})");
        CheckSize((int)w, (int)h, source, maxPixels);
    }

    private static void CheckSize(int w, int h, string source, long maxPixels)
    {
        if (w <= 0 || h <= 0) throw new ImageDecodeException(source, $"zero-size image ({w}x{h})");
        if ((long)w * h > maxPixels)
            throw new ImageDecodeException(source, $"image of {w}x{h} = {(long)w * h:N0} pixels exceeds the limit of {maxPixels:N0} pixels (refused before decoding: possible decompression bomb)");
    }
}
