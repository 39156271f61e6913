using Scout.Backends;
using Scout.Cli.Commands;
using Scout.Gpu;
using Scout.Kernels;
using Scout.Kernels.Quant;
using Scout.Model;
using Scout.Tensors;
using Xunit.Abstractions;

namespace Scout.Tests.Gpu;

/// <summary>
/// The GPU backend's kernels and the whole forward through it, on ILGPU's CPU accelerator (CI has no GPU): the
/// same kernels CUDA runs, emulated. Shapes are tiny because the emulation is slow.
/// </summary>
public unsafe class GpuBackendTests(ITestOutputHelper output)
{
    /// <summary>ILGPU's CPU accelerator; SCOUT_TEST_GPU=cuda runs the same tests on CUDA device 0 (bench/gpu-check.sh).</summary>
    private static GpuBackend Emulated() => new(Environment.GetEnvironmentVariable("SCOUT_TEST_GPU") == "cuda" ? GpuKind.Cuda : GpuKind.CpuEmulated, 0, new CpuBackend(2));

    private static float[] Random(int n, int seed)
    {
        var rng = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(rng.NextDouble() * 2 - 1);
        return v;
    }

    [Theory]
    [InlineData(TensorType.F32)]
    [InlineData(TensorType.F16)]
    [InlineData(TensorType.BF16)]
    [InlineData(TensorType.Q8_0)]
    [InlineData(TensorType.Q4_0)]
    [InlineData(TensorType.Q4_K)]
    [InlineData(TensorType.Q6_K)]
    public void DeviceProductMatchesTheDequantizedReference(TensorType type)
    {
        const int rows = 6, cols = 512, n = 3;
        var w = Random(rows * cols, 11);
        var bytes = new byte[type.RowBytes(cols) * rows];
        Quantizer.QuantizeRows(type, w, rows, cols, bytes);
        var wide = new float[rows * cols];
        Dequantize.ToFloat(type, bytes, wide);
        var x = Random(n * cols, 12);
        var expected = new float[n * rows];
        ScalarReference.MatMul(wide, rows, cols, x, n, expected);

        using var gpu = Emulated();
        var actual = new float[n * rows];
        var cpuActual = new float[n * rows];
        fixed (byte* p = bytes)
        {
            var m = gpu.RowMajor(type, p, rows, cols);
            Assert.Equal(1, gpu.DeviceMatrices);
            Assert.Equal(bytes.Length, gpu.UploadedBytes);
            m.Multiply(x, n, actual);
            gpu.Host.RowMajor(type, p, rows, cols).Multiply(x, n, cpuActual);
        }
        for (int i = 0; i < actual.Length; i++) Assert.Equal(expected[i], actual[i], 2e-3f);
        // The CPU backend's integer kernels quantize activations to 8 bits, so they agree only to that precision.
        double scale = expected.Max(Math.Abs);
        for (int i = 0; i < actual.Length; i++) Assert.InRange(Math.Abs(cpuActual[i] - actual[i]), 0, 0.02 * scale + 1e-3);
    }

    [Fact]
    public void TypesWithoutADeviceKernelStayOnTheHost()
    {
        using var gpu = Emulated();
        var bytes = new byte[TensorType.Q5_K.RowBytes(256) * 2];
        fixed (byte* p = bytes)
        {
            var m = gpu.RowMajor(TensorType.Q5_K, p, 2, 256);
            Assert.IsNotType<GpuMatrix>(m);
        }
        Assert.Equal(1, gpu.HostMatrices);
        Assert.Equal(0, gpu.UploadedBytes);
    }

    [Theory]
    [InlineData("scout-tiny", "model.safetensors", false)]
    [InlineData("scout-tiny", "model.gguf", true)]
    [InlineData("maverick-tiny", "model.gguf", false)]
    [InlineData("maverick-tiny", "model-bf16.safetensors", false)]
    public void ForwardThroughTheGpuBackendMatchesMetaReference(string model, string file, bool decode)
    {
        var gpu = Emulated();
        using var m = Llama4Model.Load(Fixtures.Text(model, file), Fixtures.Text(model, "config.json"), backend: gpu, ownsBackend: true);
        Assert.True(gpu.DeviceMatrices > 0);
        var ids = LogitsCommand.ReadTokens(Fixtures.Text(model, "tokens.json"));
        var actual = LogitsCommand.Compute(m, ids, decode);
        string golden = file == "model-bf16.safetensors" ? "logits-bf16.f32" : "logits.f32";
        double maxDiff = LogitAssert.Close(actual, Fixtures.ReadF32(Fixtures.Text(model, golden)), m.Config.VocabSize);
        output.WriteLine($"{model}/{file} on {gpu.Name}: {gpu.DeviceMatrices} device matrices ({gpu.UploadedBytes} bytes), {gpu.HostMatrices} on host; max |Δ| = {maxDiff:g3}");
    }

    [Theory]
    [InlineData(int.MaxValue)]
    [InlineData(1)]
    public void CpuMoeKeepsRoutedExpertsInRamAndTheLogits(int hostExpertLayers)
    {
        var gpu = Emulated();
        using var m = Llama4Model.Load(Fixtures.Text("maverick-tiny", "model.gguf"), Fixtures.Text("maverick-tiny", "config.json"),
            options: new LoadOptions { HostExpertLayers = hostExpertLayers }, backend: gpu, ownsBackend: true);
        for (int i = 0; i < m.Config.NumLayers; i++)
        {
            var l = m.Weights.Layers[i];
            Assert.IsType<GpuMatrix>(l.Q);
            if (l.Experts is null) continue;
            Assert.IsType<GpuMatrix>(l.SharedExpert!.Down);
            bool onHost = i < hostExpertLayers;
            Assert.All(l.Experts, e => Assert.Equal(onHost, e.Gate is not GpuMatrix));
        }
        Assert.IsType<GpuMatrix>(m.Weights.Output);
        var ids = LogitsCommand.ReadTokens(Fixtures.Text("maverick-tiny", "tokens.json"));
        LogitAssert.Close(LogitsCommand.Compute(m, ids, false), Fixtures.ReadF32(Fixtures.Text("maverick-tiny", "logits.f32")), m.Config.VocabSize);
    }

    /// <summary>Every surface that takes --device: without a GPU, cuda is exit 1 with one clear line, never a crash (or a hang: serve and chat would wait).</summary>
    [Theory]
    [InlineData("logits")]
    [InlineData("bench")]
    [InlineData("run")]
    [InlineData("chat")]
    [InlineData("serve")]
    public void CudaWithoutAGpuIsAClearErrorNotACrash(string command)
    {
        if (DeviceHasCuda()) return;   // on a GPU machine the command would run: nothing to check here
        string model = Fixtures.Text("scout-tiny", "model.gguf");
        string[] args = command switch
        {
            "logits" => ["logits", "--model", model, "--tokens", Fixtures.Text("scout-tiny", "tokens.json"), "--out", Path.Combine(Path.GetTempPath(), $"scout-gpu-{Guid.NewGuid():N}.f32")],
            "bench" => ["bench", "--model", model, "--no-bandwidth"],
            "run" => ["run", "--model", model, "--prompt", "hi", "-n", "2"],
            _ => [command, "--model", model],
        };
        var (code, _, err) = ScoutCli.Run([.. args, "--device", "cuda", "--gpu-layers", "2"]);
        Assert.Equal(1, code);
        Assert.StartsWith("error: --device cuda:", err.Trim());
        Assert.Contains("no CUDA device", err);
        Assert.DoesNotContain("   at ", err);
    }

    [Theory]
    [InlineData("gpu")]
    [InlineData("cuda:x")]
    [InlineData("cuda:-1")]
    public void BadDeviceNamesAreRejected(string device)
    {
        var (code, _, err) = ScoutCli.Run("bench", "--model", Fixtures.Text("scout-tiny", "model.gguf"), "--device", device, "--no-bandwidth");
        Assert.Equal(1, code);
        Assert.Contains("--device: expected cpu, cuda or cuda:N", err);
    }

    private static bool DeviceHasCuda()
    {
        try { using var b = new GpuBackend(GpuKind.Cuda, 0, new CpuBackend(1)); return true; }
        catch (GpuUnavailableException) { return false; }
    }
}
