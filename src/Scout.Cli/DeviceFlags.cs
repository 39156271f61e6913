using System.CommandLine;
using Scout.Backends;
using Scout.Gpu;

namespace Scout.Cli;

/// <summary><c>--device</c> and <c>--threads</c>, shared by run, chat, serve, bench and logits.</summary>
public sealed class DeviceFlags
{
    public readonly Option<string> Device = new("--device")
    {
        Description = "where the model runs: cpu, cuda or cuda:N (the forward pass on the GPU through ILGPU; see --gpu-layers, --cpu-moe)",
        DefaultValueFactory = _ => "cpu",
    };
    public readonly Option<int> Threads = new("--threads")
    {
        Description = "CPU worker threads (default: all cores)",
        DefaultValueFactory = _ => 0,
    };

    public readonly Option<bool> CpuMoe = new("--cpu-moe")
    {
        Description = "keep every layer's routed experts in RAM on the CPU (attention, shared expert and head on the --device)",
    };
    public readonly Option<int> NCpuMoe = new("--n-cpu-moe")
    {
        Description = "keep the routed experts of the first N layers in RAM on the CPU",
        DefaultValueFactory = _ => 0,
    };

    public readonly Option<int?> GpuLayers = new("--gpu-layers", "-ngl")
    {
        Description = "layers on the --device, as llama.cpp's -ngl: the last N layers; more than the layer count (e.g. 999) also puts the head there (default: everything)",
    };

    public IEnumerable<Option> Options => [Device, Threads, GpuLayers, CpuMoe, NCpuMoe];

    /// <summary>Layers whose routed experts stay in RAM (<see cref="Scout.Model.LoadOptions.HostExpertLayers"/>).</summary>
    public int HostExpertLayers(ParseResult p)
    {
        if (p.GetValue(NCpuMoe) < 0) throw new CliException("--n-cpu-moe must not be negative");
        return p.GetValue(CpuMoe) ? int.MaxValue : p.GetValue(NCpuMoe);
    }

    /// <summary><paramref name="options"/> with the placement flags (--gpu-layers, --cpu-moe, --n-cpu-moe) applied.</summary>
    public Scout.Model.LoadOptions LoadOptions(ParseResult p, Scout.Model.LoadOptions? options = null)
    {
        if (p.GetValue(GpuLayers) is < 0) throw new CliException("--gpu-layers must not be negative");
        return (options ?? new Scout.Model.LoadOptions()) with { HostExpertLayers = HostExpertLayers(p), GpuLayers = p.GetValue(GpuLayers) };
    }

    /// <summary>The backend the flags ask for; a device that cannot be opened is a clear CLI error, not a crash.</summary>
    public IBackend Create(ParseResult p, int? threads = null)
    {
        int t = threads ?? p.GetValue(Threads);
        if (t < 0) throw new CliException("--threads must not be negative");
        try
        {
            return DeviceSelection.Create(p.GetValue(Device) ?? "cpu", t);
        }
        catch (ArgumentException e)
        {
            throw new CliException(e.Message);
        }
        catch (GpuUnavailableException e)
        {
            throw new CliException($"--device {p.GetValue(Device)}: {e.Message}");
        }
    }
}
