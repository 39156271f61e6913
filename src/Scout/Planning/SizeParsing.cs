using System.Globalization;

namespace Scout.Planning;

/// <summary>Parses the planner's human-friendly numbers: context lengths ("8k", "1M") and memory sizes ("80GiB").</summary>
public static class SizeParsing
{
    /// <summary>Contexts above this are rejected as nonsense (the engine's positions are 32-bit; Scout's own limit is 10,485,760).</summary>
    public const long MaxContext = 1L << 30;

    /// <summary>
    /// "1024", "1,048,576", "8k"/"8K" (×1024), "1M" (×1024²), "10M" = 10,485,760 — binary multiples, as context
    /// sizes are quoted (Scout's "10M" is max_position_embeddings = 10 × 2^20).
    /// </summary>
    public static long ParseContext(string text)
    {
        string s = text.Trim().Replace(",", "").Replace("_", "");
        if (s.Length == 0) throw new ArgumentException("context is empty");
        long multiplier = 1;
        char last = char.ToLowerInvariant(s[^1]);
        if (last is 'k' or 'm' or 'g')
        {
            multiplier = last switch { 'k' => 1L << 10, 'm' => 1L << 20, _ => 1L << 30 };
            s = s[..^1];
        }
        if (!decimal.TryParse(s, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out decimal value))
            throw new ArgumentException($"context '{text}' is not a number (examples: 1024, 8k, 128k, 1M, 10M)");
        decimal tokens = value * multiplier;
        if (tokens <= 0) throw new ArgumentException($"context must be a positive number of tokens, got '{text}'");
        if (tokens != decimal.Truncate(tokens)) throw new ArgumentException($"context '{text}' is not a whole number of tokens");
        if (tokens > MaxContext) throw new ArgumentException($"context '{text}' ({tokens:N0} tokens) is absurd: the limit is {MaxContext:N0} tokens (Scout's trained maximum is 10,485,760)");
        return (long)tokens;
    }

    /// <summary>"80GiB", "80 GiB", "24G" (binary), "80GB" (decimal, 10^9), "81559MiB", "1.5TiB", "512MB".</summary>
    public static long ParseMemory(string text)
    {
        string s = text.Trim().Replace(",", "").Replace("_", "");
        int i = 0;
        while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '.' || s[i] == '-' || s[i] == '+')) i++;
        string number = s[..i], unit = s[i..].Trim().ToLowerInvariant();
        if (!decimal.TryParse(number, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out decimal value))
            throw new ArgumentException($"memory '{text}' is not a size (examples: 80GiB, 24GiB, 192GB)");
        decimal scale = unit switch
        {
            "b" => 1m,
            "k" or "kib" => 1024m, "kb" => 1e3m,
            "m" or "mib" => 1024m * 1024, "mb" => 1e6m,
            "g" or "gib" => 1024m * 1024 * 1024, "gb" => 1e9m,
            "t" or "tib" => 1024m * 1024 * 1024 * 1024, "tb" => 1e12m,
            "" => throw new ArgumentException($"memory '{text}' needs a unit (GiB = 2^30 bytes, GB = 10^9 bytes)"),
            _ => throw new ArgumentException($"memory '{text}' has an unknown unit '{unit}' (use B, MiB, GiB, TiB, MB, GB, TB)"),
        };
        decimal bytes = value * scale;
        if (bytes <= 0) throw new ArgumentException($"memory must be positive, got '{text}'");
        if (bytes > 1e15m) throw new ArgumentException($"memory '{text}' is absurd (more than a petabyte)");
        return (long)bytes;
    }

    public static string GiB(long bytes) => (bytes / (double)(1L << 30)).ToString("0.###", CultureInfo.InvariantCulture) + " GiB";

    /// <summary>A context rounded down for tables: "1.62M", "381k", "512" (k = 1024, M = 1024²; exact numbers are in --json).</summary>
    public static string TokensApprox(long tokens) => tokens switch
    {
        >= 1L << 20 when tokens % (1L << 20) == 0 => $"{tokens >> 20}M",
        >= 1L << 20 => (Math.Floor(tokens * 100.0 / (1L << 20)) / 100).ToString("0.00", CultureInfo.InvariantCulture) + "M",
        >= 1L << 10 => $"{tokens >> 10}k",
        _ => tokens.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>"8k", "1M", or the plain number when it is not a round binary multiple.</summary>
    public static string Tokens(long tokens) => tokens switch
    {
        >= 1L << 20 when tokens % (1L << 20) == 0 => $"{tokens >> 20}M",
        >= 1L << 10 when tokens % (1L << 10) == 0 => $"{tokens >> 10}k",
        _ => tokens.ToString("N0", CultureInfo.InvariantCulture),
    };

    /// <summary>An image size "WxH" in pixels, e.g. "1024x768" (x, X or ×).</summary>
    public static (int Width, int Height) ParseImageSize(string text)
    {
        var parts = text.Trim().Split(['x', 'X', '\u00d7']);
        if (parts.Length == 2
            && int.TryParse(parts[0].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int w)
            && int.TryParse(parts[1].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int h))
        {
            if (w <= 0 || h <= 0) throw new ArgumentException($"image size '{text}' must have positive width and height");
            return (w, h);
        }
        throw new ArgumentException($"image size '{text}' is not WxH in pixels (example: 1024x768)");
    }
}
