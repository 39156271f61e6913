using SkiaSharp;
using Scout.Vision;

namespace Scout.Tests.Vision;

public class ImageDecoderTests
{
    private static byte[] Png(string name) => File.ReadAllBytes(Fixtures.Vision($"images/{name}.png"));

    private static byte[] Encode(RgbImage image, SKEncodedImageFormat format, int quality, byte alpha = 255)
    {
        var info = new SKImageInfo(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[info.BytesSize];
        for (int i = 0, o = 0; i < image.Pixels.Length; i += 3, o += 4)
        {
            rgba[o] = image.Pixels[i]; rgba[o + 1] = image.Pixels[i + 1]; rgba[o + 2] = image.Pixels[i + 2]; rgba[o + 3] = alpha;
        }
        unsafe
        {
            fixed (byte* p = rgba)
            {
                using var pixmap = new SKPixmap(info, (nint)p, info.RowBytes);
                using SKData? data = format == SKEncodedImageFormat.Webp
                    ? pixmap.Encode(new SKWebpEncoderOptions(SKWebpEncoderCompression.Lossless, 100))
                    : pixmap.Encode(format, quality);
                Assert.NotNull(data);
                return data!.ToArray();
            }
        }
    }

    [Fact]
    public void PngRgbaIsCompositedOverWhite()
    {
        var img = ImageDecoder.Decode(Png("small"), "small.png");
        Assert.Equal((88, 109), (img.Width, img.Height));
        // The corner of the emblem crop is fully transparent: white after compositing.
        Assert.Equal(new byte[] { 255, 255, 255 }, img.Pixels[..3]);
    }

    [Fact]
    public void LosslessWebPRoundTripsExactlyAndItsAlphaIsComposited()
    {
        var img = ImageDecoder.Decode(Png("wide"), "wide.png");
        var webp = ImageDecoder.Decode(Encode(img, SKEncodedImageFormat.Webp, 100), "x.webp");
        Assert.Equal(img.Pixels, webp.Pixels);

        var translucent = ImageDecoder.Decode(Encode(img, SKEncodedImageFormat.Webp, 100, alpha: 128), "a.webp");
        for (int i = 0; i < 300; i++)
            Assert.Equal(ImageDecoder.BlendOverWhite(img.Pixels[i], 128), translucent.Pixels[i]);
    }

    [Fact]
    public void JpegDecodesCloseToTheSource()
    {
        var img = ImageDecoder.Decode(Png("tall"), "tall.png");
        var jpeg = ImageDecoder.Decode(Encode(img, SKEncodedImageFormat.Jpeg, 95), "x.jpg");
        Assert.Equal((img.Width, img.Height), (jpeg.Width, jpeg.Height));
        double meanAbs = img.Pixels.Zip(jpeg.Pixels, (a, b) => Math.Abs(a - b)).Average();
        Assert.True(meanAbs < 4, $"mean |Δ| {meanAbs}");
        var tiles = ImagePreprocessor.Preprocess(jpeg);
        Assert.Equal(5, tiles.TileCount);
    }

    [Fact]
    public void EmptyAndMissingFilesAreRefused()
    {
        var e = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(ReadOnlySpan<byte>.Empty, "empty.png"));
        Assert.Contains("empty.png", e.Message);
        Assert.Contains("empty", e.Problem);
        var missing = Assert.Throws<ImageDecodeException>(() => ImageDecoder.DecodeFile("/nonexistent/photo.jpg"));
        Assert.Contains("not found", missing.Message);
    }

    [Theory]
    [InlineData(new byte[] { (byte)'G', (byte)'I', (byte)'F', (byte)'8', (byte)'9', (byte)'a', 1, 0, 1, 0 }, "GIF")]
    [InlineData(new byte[] { (byte)'B', (byte)'M', 0, 0, 0, 0, 0, 0 }, "BMP")]
    [InlineData(new byte[] { (byte)'h', (byte)'e', (byte)'l', (byte)'l', (byte)'o' }, "unrecognised")]
    public void UnsupportedFormatsAreRefused(byte[] data, string expected)
    {
        var e = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(data, "pic.bin"));
        Assert.Contains("pic.bin", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void TruncatedImagesAreRefused()
    {
        var png = Png("wide");
        var e = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(png.AsSpan(0, png.Length / 2), "half.png"));
        Assert.Contains("truncated", e.Message);
        var header = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(png.AsSpan(0, 20), "stub.png"));
        Assert.Contains("stub.png", header.Message);

        var jpeg = Encode(ImageDecoder.Decode(png, "wide.png"), SKEncodedImageFormat.Jpeg, 90);
        var j = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(jpeg.AsSpan(0, jpeg.Length / 2), "half.jpg"));
        Assert.Contains("truncated", j.Message);
    }

    [Fact]
    public void CorruptPixelDataIsRefused()
    {
        var png = Png("wide");
        // Overwrite the middle of the compressed stream: zlib and the chunk CRC both catch it.
        var bad = (byte[])png.Clone();
        for (int i = bad.Length / 3; i < bad.Length / 3 + 64; i++) bad[i] ^= 0x5A;
        var e = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(bad, "corrupt.png"));
        Assert.Contains("corrupt.png", e.Message);
    }

    /// <summary>A PNG whose header claims 100000×100000 pixels is refused from the header alone.</summary>
    [Fact]
    public void DecompressionBombsAreRefusedBeforeDecoding()
    {
        var png = Png("synthetic");
        var bomb = (byte[])png.Clone();
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bomb.AsSpan(16), 100_000);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bomb.AsSpan(20), 100_000);
        var e = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(bomb, "bomb.png"));
        Assert.Contains("exceeds the limit", e.Message);

        // JPEG: patch the SOF0 frame size to 65000×65000; the codec reads only the header before the check.
        var jpeg = Encode(ImageDecoder.Decode(png, "s.png"), SKEncodedImageFormat.Jpeg, 90);
        int sof = FindMarker(jpeg, 0xC0);
        Assert.True(sof > 0);
        jpeg[sof + 5] = 0xFD; jpeg[sof + 6] = 0xE8; // height 65000
        jpeg[sof + 7] = 0xFD; jpeg[sof + 8] = 0xE8; // width 65000
        var j = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(jpeg, "bomb.jpg"));
        Assert.Contains("exceeds the limit", j.Message);

        // A real image over a caller's lower limit.
        var limited = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(Png("wide"), "wide.png", maxPixels: 100_000));
        Assert.Contains("480x320", limited.Message);
    }

    [Fact]
    public void ZeroSizeImagesAreRefused()
    {
        var png = (byte[])Png("synthetic").Clone();
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(16), 0);
        var e = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(png, "zero.png"));
        Assert.Contains("zero-size", e.Message);

        var jpeg = Encode(ImageDecoder.Decode(Png("synthetic"), "s.png"), SKEncodedImageFormat.Jpeg, 90);
        int sof = FindMarker(jpeg, 0xC0);
        jpeg[sof + 5] = 0; jpeg[sof + 6] = 0;
        var j = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(jpeg, "zero.jpg"));
        Assert.Contains("zero.jpg", j.Message);
    }

    private static int FindMarker(byte[] jpeg, byte marker)
    {
        for (int i = 2; i + 1 < jpeg.Length; i++)
            if (jpeg[i] == 0xFF && jpeg[i + 1] == marker) return i;
        return -1;
    }
}

public class ImageInputTests
{
    [Fact]
    public void DataUrlsDecodeLikeTheFile()
    {
        var bytes = File.ReadAllBytes(Fixtures.Vision("images/small.png"));
        var fromUrl = ImageInput.Load("data:image/png;base64," + Convert.ToBase64String(bytes), "image 1");
        var fromFile = ImageInput.Load(Fixtures.Vision("images/small.png"));
        Assert.Equal(fromFile.Pixels, fromUrl.Pixels);
    }

    [Theory]
    [InlineData("http://example.com/cat.png", "not fetched")]
    [InlineData("https://example.com/cat.png", "not fetched")]
    [InlineData("data:image/png;base64,@@@@", "invalid base64")]
    [InlineData("data:image/png,rawdata", "not base64")]
    [InlineData("data:text/plain;base64,aGVsbG8=", "not an image")]
    [InlineData("data:image/png;base64", "malformed")]
    public void BadSourcesAreRefused(string source, string expected)
    {
        var e = Assert.Throws<ImageDecodeException>(() => ImageInput.Load(source, "image 1"));
        Assert.Contains(expected, e.Message);
    }
}
