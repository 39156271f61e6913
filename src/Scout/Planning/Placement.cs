namespace Scout.Planning;

/// <summary>
/// Which parts of the model run on the device and which stay in RAM on the CPU, by llama.cpp's rules:
/// <c>--gpu-layers N</c> (-ngl) offloads the <em>last</em> N of the L repeating layers, and the output (final norm
/// and head) only when N &gt; L (so -ngl 999 offloads everything); <c>--n-cpu-moe M</c> keeps the routed experts of
/// the first M layers in RAM (<c>--cpu-moe</c>: all of them) while the rest of those layers runs on the device.
/// The token embedding is looked up on the device only when the whole model is offloaded; otherwise on the host
/// (as llama.cpp's input layer) and uploaded. Both the engine (<see cref="Model.Llama4Weights"/>, the model's
/// layer loop) and <c>scout plan</c> read these rules from here.
/// </summary>
public sealed record Placement(int Layers, int GpuLayers = int.MaxValue, int HostExpertLayers = 0)
{
    /// <summary>Everything on the one backend (the CPU backend, or a device with no layer kept in RAM).</summary>
    public static Placement All(int layers) => new(layers);

    /// <summary>First layer on the device (layers before it run on the host).</summary>
    public int FirstDeviceLayer => GpuLayers >= Layers ? 0 : Layers - Math.Max(0, GpuLayers);

    public bool LayerOnDevice(int layer) => layer >= FirstDeviceLayer;

    /// <summary>Whether layer <paramref name="layer"/>'s routed experts are device matrices.</summary>
    public bool ExpertsOnDevice(int layer) => LayerOnDevice(layer) && layer >= HostExpertLayers;

    public bool OutputOnDevice => GpuLayers > Layers;

    public bool EmbeddingOnDevice => OutputOnDevice;

    /// <summary>Layers on the device.</summary>
    public int DeviceLayers => Layers - FirstDeviceLayer;

    /// <summary>One line for logs and <c>scout plan</c>.</summary>
    public string Describe()
    {
        int dev = DeviceLayers;
        string layers = dev == Layers ? $"all {Layers} layers" : dev == 0 ? "no layer" : $"layers {FirstDeviceLayer}-{Layers - 1} ({dev} of {Layers})";
        int hostExperts = 0;
        for (int i = 0; i < Layers; i++) if (LayerOnDevice(i) && !ExpertsOnDevice(i)) hostExperts++;
        string experts = hostExperts == 0 ? "" : $", routed experts of {hostExperts} of them in RAM";
        return $"device: {layers}{experts}; output {(OutputOnDevice ? "on the device" : "on the CPU")}; embedding {(EmbeddingOnDevice ? "on the device" : "on the CPU")}";
    }
}
