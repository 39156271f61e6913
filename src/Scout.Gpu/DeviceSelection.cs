using Scout.Backends;

namespace Scout.Gpu;

/// <summary>Turns a <c>--device</c> value into a backend: <c>cpu</c>, <c>cuda</c> / <c>cuda:N</c>, or <c>ilgpu-cpu</c>
/// (the GPU code path on ILGPU's CPU accelerator, for checking it without a GPU).</summary>
public static class DeviceSelection
{
    /// <summary>Parses a device name; throws <see cref="ArgumentException"/> naming the flag for anything else.</summary>
    public static (string Kind, int Index) Parse(string device)
    {
        var d = device.Trim().ToLowerInvariant();
        if (d is "cpu" or "cuda" or "ilgpu-cpu") return (d, 0);
        if (d.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(d.AsSpan(5), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n))
            return ("cuda", n);
        throw new ArgumentException($"--device: expected cpu, cuda or cuda:N (N = 0, 1, ...), got '{device}'");
    }

    /// <summary>A backend for <paramref name="device"/> with <paramref name="threads"/> host threads (0: every core).
    /// Throws <see cref="GpuUnavailableException"/> with a clear message when the device cannot be opened.</summary>
    public static IBackend Create(string device, int threads = 0)
    {
        var (kind, index) = Parse(device);
        if (kind == "cpu") return new CpuBackend(threads);
        var host = new CpuBackend(threads);
        try
        {
            return new GpuBackend(kind == "cuda" ? GpuKind.Cuda : GpuKind.CpuEmulated, index, host);
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }
}
