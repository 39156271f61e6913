namespace Scout.Planning;

public enum DeviceKind { Gpu, UnifiedMemory, Cpu }

/// <summary>A machine the fit table checks: <see cref="Count"/> × <see cref="BytesEach"/>, of which <see cref="UsableFraction"/> can hold the model.</summary>
public sealed record Device(string Name, DeviceKind Kind, int Count, long BytesEach, double UsableFraction = 1.0, string Note = "")
{
    public long TotalBytes => Count * BytesEach;
    public long UsableBytes => (long)(TotalBytes * UsableFraction);
}

/// <summary>The devices the fit table lists by default.</summary>
public static class Devices
{
    private const long MiB = 1L << 20, GiB = 1L << 30;

    // GPU sizes are the totals nvidia-smi reports for each card (what "24 GB" or "80 GB" really means).
    private static readonly Device H100 = new("H100 80GB", DeviceKind.Gpu, 1, 81559 * MiB);
    private const string MacNote = "macOS lets the GPU wire about 75% of unified memory by default (raise with sysctl iogpu.wired_limit_mb)";

    public static IReadOnlyList<Device> Catalogue { get; } =
    [
        new("RTX 4090 24GB", DeviceKind.Gpu, 1, 24564 * MiB),
        new("L40S 48GB", DeviceKind.Gpu, 1, 46068 * MiB),
        new("A100 80GB", DeviceKind.Gpu, 1, 81920 * MiB),
        H100,
        new("H200 141GB", DeviceKind.Gpu, 1, 143771 * MiB),
        H100 with { Name = "2x H100 80GB", Count = 2 },
        H100 with { Name = "4x H100 80GB", Count = 4 },
        H100 with { Name = "8x H100 80GB", Count = 8 },
        new("Mac 64GB unified", DeviceKind.UnifiedMemory, 1, 64 * GiB, 0.75, MacNote),
        new("Mac 128GB unified", DeviceKind.UnifiedMemory, 1, 128 * GiB, 0.75, MacNote),
        new("Mac 192GB unified", DeviceKind.UnifiedMemory, 1, 192 * GiB, 0.75, MacNote),
        new("CPU 64GB RAM", DeviceKind.Cpu, 1, 64 * GiB),
        new("CPU 128GB RAM", DeviceKind.Cpu, 1, 128 * GiB),
        new("CPU 256GB RAM", DeviceKind.Cpu, 1, 256 * GiB),
    ];

    /// <summary>Devices whose name contains <paramref name="filter"/> (case-insensitive); an error names the choices when none does.</summary>
    public static IReadOnlyList<Device> Matching(string filter)
    {
        var found = Catalogue.Where(d => d.Name.Contains(filter.Trim(), StringComparison.OrdinalIgnoreCase)).ToList();
        if (found.Count == 0)
            throw new ArgumentException($"no device matches '{filter}' (known: {string.Join(", ", Catalogue.Select(d => d.Name))}; or give --memory 80GiB)");
        return found;
    }

    public static Device Custom(long bytes) => new($"custom {SizeParsing.GiB(bytes)}", DeviceKind.Gpu, 1, bytes);
}
