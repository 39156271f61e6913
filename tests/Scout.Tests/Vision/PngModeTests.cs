using System.Buffers.Binary;
using System.IO.Compression;
using Scout.Vision;

namespace Scout.Tests.Vision;

/// <summary>
/// Meta's RGB conversion: only RGBA is composited over white; other transparency (grey+alpha, palette tRNS,
/// colour-key tRNS) is dropped as PIL's convert("RGB") drops it. Tiny PNGs are built here, one per colour type.
/// </summary>
public class PngModeTests
{
    private static byte[] Png(int width, int height, byte colorType, byte[] rawRows, byte[]? plte = null, byte[]? trns = null)
    {
        using var ms = new MemoryStream();
        ms.Write([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = 8;
        ihdr[9] = colorType;
        Chunk(ms, "IHDR", ihdr);
        if (plte != null) Chunk(ms, "PLTE", plte);
        if (trns != null) Chunk(ms, "tRNS", trns);
        using (var z = new MemoryStream())
        {
            using (var zs = new ZLibStream(z, CompressionLevel.Optimal, leaveOpen: true)) zs.Write(rawRows);
            Chunk(ms, "IDAT", z.ToArray());
        }
        Chunk(ms, "IEND", []);
        return ms.ToArray();
    }

    private static void Chunk(Stream s, string type, byte[] data)
    {
        var head = new byte[8];
        BinaryPrimitives.WriteInt32BigEndian(head, data.Length);
        System.Text.Encoding.ASCII.GetBytes(type, head.AsSpan(4));
        s.Write(head);
        s.Write(data);
        var crcInput = head.AsSpan(4).ToArray().Concat(data).ToArray();
        var crc = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crc, Crc32(crcInput));
        s.Write(crc);
    }

    private static uint Crc32(byte[] data)
    {
        uint c = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            c ^= b;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
        }
        return ~c;
    }

    /// <summary>One row of two pixels, filter byte 0.</summary>
    private static byte[] Row(params byte[] pixels) => [0, .. pixels];

    [Fact]
    public void RgbaIsCompositedOverWhite()
    {
        var img = ImageDecoder.Decode(Png(2, 1, 6, Row(10, 20, 30, 0, 200, 100, 50, 128)), "rgba.png");
        Assert.Equal(new byte[] { 255, 255, 255, ImageDecoder.BlendOverWhite(200, 128), ImageDecoder.BlendOverWhite(100, 128), ImageDecoder.BlendOverWhite(50, 128) }, img.Pixels);
    }

    [Fact]
    public void GreyAlphaDropsItsAlpha()
    {
        var img = ImageDecoder.Decode(Png(2, 1, 4, Row(40, 0, 90, 128)), "la.png");
        Assert.Equal(new byte[] { 40, 40, 40, 90, 90, 90 }, img.Pixels);
    }

    [Fact]
    public void PaletteTransparencyIsDropped()
    {
        var img = ImageDecoder.Decode(Png(2, 1, 3, Row(0, 1), plte: [10, 20, 30, 200, 100, 50], trns: [0, 128]), "p.png");
        Assert.Equal(new byte[] { 10, 20, 30, 200, 100, 50 }, img.Pixels);
    }

    [Fact]
    public void ColourKeyTransparencyIsDropped()
    {
        var img = ImageDecoder.Decode(Png(2, 1, 2, Row(10, 20, 30, 1, 2, 3), trns: [0, 10, 0, 20, 0, 30]), "key.png");
        Assert.Equal(new byte[] { 10, 20, 30, 1, 2, 3 }, img.Pixels);
    }

    [Fact]
    public void GreyIsReplicated()
    {
        var img = ImageDecoder.Decode(Png(2, 1, 0, Row(7, 250)), "l.png");
        Assert.Equal(new byte[] { 7, 7, 7, 250, 250, 250 }, img.Pixels);
    }
}
