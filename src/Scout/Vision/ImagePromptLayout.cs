using Scout.Tokenization;

namespace Scout.Vision;

/// <summary>The special token ids of the image part of a Llama 4 prompt.</summary>
public sealed record ImageTokenIds(int ImageStart, int ImageEnd, int Image, int Patch, int TileXSeparator, int TileYSeparator)
{
    /// <summary>The published Llama 4 ids (special tokens from 200000).</summary>
    public static ImageTokenIds Llama4 { get; } = ForFirstSpecialId(200000);

    /// <summary>Llama 4's layout of special tokens starting at <paramref name="firstSpecialId"/> (200000 in the real vocabulary).</summary>
    public static ImageTokenIds ForFirstSpecialId(int firstSpecialId)
        => new(firstSpecialId + 80, firstSpecialId + 81, firstSpecialId + 90, firstSpecialId + 92, firstSpecialId + 84, firstSpecialId + 85);
}

/// <summary>Meta's <c>ChatFormat._encode_image</c>: the token ids that stand for one image in a prompt.</summary>
public static class ImagePromptLayout
{
    /// <summary>
    /// One tile: <c>&lt;|image_start|&gt; &lt;|image|&gt; patches &lt;|image_end|&gt;</c>. Several: image_start, for each row the
    /// tiles' patches separated by tile_x_separator and followed by tile_y_separator, then &lt;|image|&gt; and the thumbnail's
    /// patches, image_end.
    /// </summary>
    public static int[] Tokens(ImageTiling tiling, ImageTokenIds? ids = null)
    {
        ids ??= ImageTokenIds.Llama4;
        if (tiling.TilesX <= 0 || tiling.TilesY <= 0 || tiling.PatchesPerTile <= 0)
            throw new ArgumentException($"invalid image tiling {tiling.TilesX}x{tiling.TilesY} with {tiling.PatchesPerTile} patches per tile");
        return Llama4ChatFormat.ImageTokens(tiling, ids.ImageStart, ids.ImageEnd, ids.TileXSeparator, ids.TileYSeparator, ids.Image, ids.Patch);
    }

    /// <summary>Number of ids <see cref="Tokens"/> returns: p + 3 for one tile, (p+1)·tiles + p + 3 otherwise.</summary>
    public static int TokenCount(ImageTiling t) => Llama4ChatFormat.ImageTokenCount(t);

    /// <summary>Number of <c>&lt;|patch|&gt;</c> ids (= image embedding rows) for a tiling.</summary>
    public static int PatchCount(ImageTiling t)
    {
        int tiles = t.TilesX * t.TilesY;
        return (tiles > 1 ? tiles + 1 : 1) * t.PatchesPerTile;
    }

    /// <summary>The tiling Meta chooses for an image of this pixel size (no decoding needed).</summary>
    public static ImageTiling TilingFor(int width, int height, int maxTiles = ImagePreprocessor.DefaultMaxTiles, int patchesPerTile = 144,
        int tileSize = ImagePreprocessor.DefaultTileSize)
    {
        var (cols, rows) = ImagePreprocessor.ChooseGrid(width, height, maxTiles, tileSize);
        return new ImageTiling(cols, rows, patchesPerTile);
    }
}
