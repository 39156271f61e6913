using Scout.Tokenization;

namespace Scout.Vision;

/// <summary>An image cut into normalised tiles: [TileCount, 3, TileSize, TileSize], grid tiles row-major, then the thumbnail.</summary>
public sealed class PreprocessedImage
{
    public required float[] Pixels { get; init; }
    public required int TileSize { get; init; }
    /// <summary>Grid columns (Meta's ratio_w).</summary>
    public required int RatioW { get; init; }
    /// <summary>Grid rows (Meta's ratio_h).</summary>
    public required int RatioH { get; init; }
    public required int ResizedWidth { get; init; }
    public required int ResizedHeight { get; init; }
    public bool HasThumbnail => RatioW * RatioH > 1;
    /// <summary>Tiles in <see cref="Pixels"/>, the thumbnail included.</summary>
    public int TileCount => RatioW * RatioH + (HasThumbnail ? 1 : 0);
    public ImageTiling Tiling => new(RatioW, RatioH);
    public ReadOnlySpan<float> Tile(int i) => Pixels.AsSpan(i * 3 * TileSize * TileSize, 3 * TileSize * TileSize);
}

/// <summary>
/// Meta's Llama 4 image preprocessing (<c>VariableSizeImageTransform</c> + <c>ResizeNormalizeImageTransform</c>): choose a
/// canvas of at most 16 tiles, resize without distortion (upscaling only up to one tile), pad with black at the
/// bottom/right, normalise with mean = std = 0.5, cut into tiles, and add a 336×336 thumbnail for multi-tile images.
/// </summary>
public static class ImagePreprocessor
{
    public const int DefaultTileSize = 336;
    public const int DefaultMaxTiles = 16;

    /// <summary>uint8 → ((u/255) − 0.5)/0.5, each step rounded to float32 as torchvision does.</summary>
    public static readonly float[] NormalizeLut = BuildLut();

    private static float[] BuildLut()
    {
        var lut = new float[256];
        for (int u = 0; u < 256; u++)
        {
            float v = (float)u / 255f;
            v -= 0.5f;
            lut[u] = v / 0.5f;
        }
        return lut;
    }

    /// <summary>Meta's candidate canvases (columns, rows) in its enumeration order (the rule lives in <see cref="Llama4ChatFormat"/>).</summary>
    public static IReadOnlyList<(int Cols, int Rows)> CandidateGrids(int maxTiles = DefaultMaxTiles)
        => Llama4ChatFormat.CandidateCanvases(maxTiles).Select(c => (c.TilesX, c.TilesY)).ToList();

    /// <summary>The tile grid (columns, rows) Meta picks for an image of <paramref name="width"/>×<paramref name="height"/>.</summary>
    public static (int Cols, int Rows) ChooseGrid(int width, int height, int maxTiles = DefaultMaxTiles, int tileSize = DefaultTileSize)
    {
        var tiling = Llama4ChatFormat.TilingForImage(width, height, tileSize, maxTiles);
        return (tiling.TilesX, tiling.TilesY);
    }

    /// <summary>The size the image is resized to inside its canvas (Meta's resize_without_distortion, upscaling capped at one tile).</summary>
    public static (int Width, int Height) ResizedSize(int width, int height, int cols, int rows, int tileSize = DefaultTileSize)
    {
        int tw = Math.Min(Math.Max(width, tileSize), tileSize * cols);
        int th = Math.Min(Math.Max(height, tileSize), tileSize * rows);
        double sw = (double)tw / width, sh = (double)th / height;
        int nw, nh;
        if (sw < sh) { nw = tw; nh = Math.Min((int)Math.Floor(height * sw), th); }
        else { nh = th; nw = Math.Min((int)Math.Floor(width * sh), tw); }
        return (Math.Max(1, nw), Math.Max(1, nh));
    }

    /// <summary>Decodes and preprocesses an image file.</summary>
    public static PreprocessedImage PreprocessFile(string path, int maxTiles = DefaultMaxTiles, int tileSize = DefaultTileSize)
        => Preprocess(ImageDecoder.DecodeFile(path), maxTiles, tileSize);

    public static PreprocessedImage Preprocess(RgbImage image, int maxTiles = DefaultMaxTiles, int tileSize = DefaultTileSize)
    {
        var (cols, rows) = ChooseGrid(image.Width, image.Height, maxTiles, tileSize);
        var (rw, rh) = ResizedSize(image.Width, image.Height, cols, rows, tileSize);
        var resized = PillowResize.Resize(image, rw, rh);
        bool thumbnail = cols * rows > 1;
        int tilePixels = tileSize * tileSize;
        var pixels = new float[(cols * rows + (thumbnail ? 1 : 0)) * 3 * tilePixels];

        // Canvas tiles: pixels outside the resized image are black (−1 after normalisation).
        for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            WriteTile(resized, c * tileSize, r * tileSize, tileSize, pixels.AsSpan((r * cols + c) * 3 * tilePixels, 3 * tilePixels));
        if (thumbnail)
        {
            var thumb = PillowResize.Resize(image, tileSize, tileSize);
            WriteTile(thumb, 0, 0, tileSize, pixels.AsSpan(cols * rows * 3 * tilePixels, 3 * tilePixels));
        }
        return new PreprocessedImage
        {
            Pixels = pixels, TileSize = tileSize, RatioW = cols, RatioH = rows, ResizedWidth = rw, ResizedHeight = rh,
        };
    }

    /// <summary>Writes the tile at (x0, y0) of the black-padded canvas as planar CHW normalised floats.</summary>
    private static void WriteTile(RgbImage img, int x0, int y0, int tileSize, Span<float> dst)
    {
        var lut = NormalizeLut;
        int plane = tileSize * tileSize;
        dst.Fill(lut[0]);
        int yEnd = Math.Min(tileSize, img.Height - y0), xEnd = Math.Min(tileSize, img.Width - x0);
        var src = img.Pixels;
        for (int y = 0; y < yEnd; y++)
        {
            int rowIn = ((y0 + y) * img.Width + x0) * 3;
            for (int x = 0; x < xEnd; x++)
            {
                int p = rowIn + x * 3, o = y * tileSize + x;
                dst[o] = lut[src[p]];
                dst[plane + o] = lut[src[p + 1]];
                dst[2 * plane + o] = lut[src[p + 2]];
            }
        }
    }
}
