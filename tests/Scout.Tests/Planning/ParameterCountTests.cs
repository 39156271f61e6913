using Scout.Model;
using Scout.Planning;
using Xunit.Abstractions;

namespace Scout.Tests.Planning;

public class ParameterCountTests(ITestOutputHelper output)
{
    [Fact]
    public void ScoutPresetReproducesPublishedCounts()
    {
        var p = ModelPresets.Scout;
        var counts = MemoryPlanner.CountParameters(TensorInventory.FromConfig(p.Text, p.Vision), p.Text);
        Assert.Equal(108_641_793_536L, counts.Total);
        Assert.Equal(107_769_861_120L, counts.Text);
        Assert.Equal(871_932_416L, counts.Vision);
        // 16 experts, top-1: all but 15/16 of the routed experts.
        Assert.Equal(48L * 16 * 3 * 5120 * 8192, counts.RoutedExperts);
        Assert.Equal(counts.Text - counts.RoutedExperts + counts.RoutedExperts / 16, counts.ActivePerToken);
        Assert.InRange(counts.ActivePerToken, 17_000_000_000L, 17_300_000_000L);
        output.WriteLine($"scout active {counts.ActivePerToken:N0}");
    }

    [Fact]
    public void MaverickPresetMatchesPublishedScale()
    {
        var p = ModelPresets.Maverick;
        var counts = MemoryPlanner.CountParameters(TensorInventory.FromConfig(p.Text, p.Vision), p.Text);
        output.WriteLine($"maverick total {counts.Total:N0} text {counts.Text:N0} active {counts.ActivePerToken:N0}");
        // Published: ~400B total, 17B active. 24 MoE layers of 128 experts + 24 dense layers of width 16384.
        Assert.Equal(24, p.Text.MoeLayers.Count(m => m));
        Assert.False(p.Text.UseQkNorm);
        Assert.Equal(871_932_416L, counts.Vision);
        Assert.Equal(400_711_848_960L, counts.Text);
        Assert.Equal(401_583_781_376L, counts.Total);
        Assert.InRange(counts.ActivePerToken, 17_000_000_000L, 17_300_000_000L);
    }

    [Fact]
    public void PresetGeometryIsThePublishedOne()
    {
        var c = ModelPresets.Scout.Text;
        Assert.Equal((5120, 48, 40, 8, 128, 202048, 16, 8192), (c.HiddenSize, c.NumLayers, c.NumHeads, c.NumKvHeads, c.HeadDim, c.VocabSize, c.NumExperts, c.IntermediateSize));
        Assert.Equal(8192, c.AttentionChunkSize);
        Assert.Equal(12, c.RopeLayers.Count(r => !r));
        Assert.False(c.UsesRope(3));
        Assert.True(c.UsesRope(4));
        Assert.Equal(10_485_760, c.MaxPositionEmbeddings);
        var v = ModelPresets.Scout.Vision;
        Assert.Equal((1408, 34, 16, 5632, 14, 336), (v.HiddenSize, v.NumLayers, v.NumHeads, v.IntermediateSize, v.PatchSize, v.ImageSize));
        Assert.Equal(144, v.TextTokensPerTile);
        Assert.Equal(16384, ModelPresets.Maverick.Text.IntermediateSizeMlp);
    }

    [Fact]
    public void VisionInventoryMatchesTheVisionFixtureTensors()
    {
        // The vision fixture's model.safetensors holds exactly the tensors the inventory predicts, with the same counts.
        var cfg = Llama4Config.FromJsonFile(Fixtures.Vision("config.json"));
        var vision = ModelPresets.VisionOf(cfg, "config.json")!;
        var predicted = TensorInventory.Vision(vision, cfg.HiddenSize).ToDictionary(t => t.Name, t => t.Elements);
        using var st = Scout.Formats.SafetensorsFile.Open(Fixtures.Vision("model.safetensors"));
        var actual = st.Tensors.Values.Where(t => !t.Name.StartsWith("language_model.", StringComparison.Ordinal))
            .ToDictionary(t => t.Name, t => t.ElementCount);
        Assert.Equal(predicted.Keys.Order(), actual.Keys.Order());
        foreach (var (name, n) in actual) Assert.True(predicted[name] == n, $"{name}: predicted {predicted[name]}, file {n}");
    }
}
