using Scout.Formats;
using Scout.Model;
using Scout.Tensors;
using Scout.Vision;

namespace Scout.Planning;

/// <summary>What to plan for.</summary>
public sealed record PlanOptions
{
    /// <summary>"scout" (default), "maverick", a config.json, a Hugging Face folder / .safetensors, or a .gguf file.</summary>
    public string? Model { get; init; }
    /// <summary>A config.json for the values a GGUF does not carry (chunk size, qk-norm, NoPE layout).</summary>
    public string? ConfigPath { get; init; }
    public long Context { get; init; } = 1024;
    /// <summary>Sequences decoded side by side, each with its own KV cache.</summary>
    public int Parallel { get; init; } = 1;
    /// <summary>Tokens per forward pass (prefill piece size); sizes the activation buffers.</summary>
    public int Batch { get; init; } = 512;
    public KvType KvType { get; init; } = KvType.BF16;
    /// <summary>Schemes to show; null = the standard list.</summary>
    public IReadOnlyList<QuantScheme>? Schemes { get; init; }
    public IReadOnlyList<Device>? Devices { get; init; }
    /// <summary>Count the vision weights in the fit table (needed to accept images).</summary>
    public bool WithVision { get; init; }
    public int Threads { get; init; }
    /// <summary>A device placement to plan for a checkpoint file (--gpu-layers / --n-cpu-moe as the engine reads them); null: none.</summary>
    public int? GpuLayers { get; init; }
    public int HostExpertLayers { get; init; }
    /// <summary>Which matrices the device backend uploads (the GPU backend's rule); required with a placement.</summary>
    public Func<TensorType, long, bool>? DeviceUploads { get; init; }
    /// <summary>List every tensor with its shape and its type and bytes in each scheme.</summary>
    public bool IncludeTensors { get; init; }
    /// <summary>Images per prompt: their tokens join the context, and the vision weights and buffers the plan (implies <see cref="WithVision"/>).</summary>
    public int Images { get; init; }
    /// <summary>Pixel size of each image; null = the worst case (a 16-tile canvas plus the thumbnail).</summary>
    public (int Width, int Height)? ImageSize { get; init; }
}

/// <summary>
/// Images in the prompt: their layout in tokens (Meta's tiling), the context they take, and the float32 buffers the
/// engine holds to embed them (encoder scratch for one tile, one image's stage outputs, the finished images' pixels
/// and rows, and the merged prompt rows fed to the text model).
/// </summary>
public sealed record ImagePlan(
    int Images, int Width, int Height, int TilesX, int TilesY, int EncodedTiles, int TokensPerImage, long ImageTokens,
    long TextContext, long Context, long EncoderScratchBytes, long ImageBufferBytes, long HeldImageBytes, long PromptRowBytes)
{
    public long ScratchBytes => EncoderScratchBytes + ImageBufferBytes + HeldImageBytes + PromptRowBytes;
}

/// <summary>One tensor of the plan: ggml shape (ne[0] first), parameters, and "type bytes" per scheme.</summary>
public sealed record TensorLine(string Name, string Group, int Layer, long[] Ne, long Parameters, IReadOnlyDictionary<string, string> Schemes);

public sealed record ModelSummary(
    string Name, string Source, string? Path, int HiddenSize, int Layers, int MoeLayers, int GlobalLayers, int Heads, int KvHeads, int HeadDim,
    int Vocab, int Experts, int TopK, int ExpertWidth, int DenseWidth, int ChunkSize, bool QkNorm, long MaxContext, bool HasVision);

public sealed record ParameterGroup(string Group, long Parameters, int Tensors);

public sealed record ParameterReport(long Total, long Text, long Vision, long ActivePerToken, long RoutedExperts, IReadOnlyList<ParameterGroup> Groups);

public sealed record WeightGroup(string Group, long Bytes, string Types);

/// <summary>Weight bytes of one scheme (or of an actual checkpoint file).</summary>
public sealed record SchemeWeights(
    string Name, string Description, string Family, long TextBytes, long VisionBytes, long RoutedExpertBytes, double BitsPerWeight,
    IReadOnlyList<WeightGroup> Groups, IReadOnlyList<string> HigherPrecision, string? Error = null)
{
    public long NonRoutedBytes => TextBytes - RoutedExpertBytes;
}

public sealed record CheckpointReport(string Format, IReadOnlyList<string> Files, long FileBytes, long TensorBytes, int Tensors,
    IReadOnlyList<string> TypeCounts, string? MatchingScheme, long? MatchingSchemeBytes);

public sealed record KvRow(string Type, long Context, long ChunkAwareBytes, long NaiveBytes);

public sealed record KvReport(KvCacheSize Requested, long EngineBytes, IReadOnlyList<KvRow> Table);

public sealed record FitRow(
    string Device, string Kind, long UsableBytes, string Scheme, long WeightBytes, long NeedBytes, bool Fits, long MaxContext,
    long GpuBytesExpertsInRam, long RamBytesExpertsInRam, bool FitsExpertsInRam, long MaxContextExpertsInRam);

public sealed record PlanReport(
    ModelSummary Model, ParameterReport Parameters, IReadOnlyList<SchemeWeights> Schemes, CheckpointReport? Checkpoint,
    KvReport Kv, EngineBufferPlan EngineBuffers, IReadOnlyList<FitRow> Fit, IReadOnlyList<string> Notes, PlanInputs Inputs,
    IReadOnlyList<TensorLine>? Tensors = null, ImagePlan? Images = null, DevicePlan? Device = null);

public sealed record PlanInputs(long Context, int Parallel, int Batch, string KvType, bool WithVision, IReadOnlyList<string> Devices);

/// <summary>Builds a <see cref="PlanReport"/>: parameters, weights per scheme, KV cache, engine buffers and what fits where.</summary>
public static class MemoryPlanner
{
    private static readonly long[] TableContexts = [1024, 8192, 32768, 131072, 1L << 20, 10L << 20];

    public static PlanReport Plan(PlanOptions o)
    {
        if (o.Context <= 0 || o.Context > SizeParsing.MaxContext)
            throw new ArgumentException($"context must be in 1..{SizeParsing.MaxContext:N0}, got {o.Context}");
        if (o.Parallel <= 0 || o.Parallel > 65536) throw new ArgumentException($"parallel sequences must be in 1..65536, got {o.Parallel}");
        if (o.Batch <= 0 || o.Batch > 1 << 20) throw new ArgumentException($"batch (tokens per forward) must be in 1..1048576, got {o.Batch}");

        if (o.Images < 0 || o.Images > 1024) throw new ArgumentException($"images must be in 0..1024, got {o.Images}");
        if (o.ImageSize is { } size && o.Images == 0) throw new ArgumentException("an image size needs a number of images (--images N)");
        if (o.ImageSize is { Width: <= 0 or > 1 << 20 } or { Height: <= 0 or > 1 << 20 })
            throw new ArgumentException($"image size must be WxH with both sides in 1..1048576 pixels, got {o.ImageSize.Value.Width}x{o.ImageSize.Value.Height}");

        var source = ResolveModel(o.Model, o.ConfigPath);
        var c = source.Config;
        var notes = new List<string>();
        var images = o.Images > 0 ? PlanImages(o, c, source) : null;
        if (images is not null) o = o with { Context = images.Context, WithVision = true };

        var inventory = TensorInventory.FromConfig(c, source.Vision, includeRopeFreqs: false);
        var parameters = source.Checkpoint?.Parameters ?? CountParameters(inventory, c);

        var schemes = new List<SchemeWeights>();
        foreach (var s in o.Schemes ?? QuantScheme.Standard) schemes.Add(Weights(s, c, source.Vision, source.RopeFreqsPresent));

        CheckpointReport? ckptReport = null;
        SchemeWeights? fileWeights = source.Checkpoint?.Weights;
        if (source.Checkpoint is { } ck)
        {
            var match = MatchScheme(ck, c, source.Vision, source.RopeFreqsPresent);
            ckptReport = ck.Report with { MatchingScheme = match?.Name, MatchingSchemeBytes = match is null ? null : match.TextBytes + match.VisionBytes };
        }

        var kvRequested = KvCachePlan.Size(c, o.Context, o.KvType, o.Parallel);
        long engineKv = KvCachePlan.EngineBytes(c, o.Context, o.Parallel, o.KvType, o.KvType); // what the engine allocates with --kv-type of this type
        var kvTable = new List<KvRow>();
        foreach (var type in new[] { KvType.BF16, KvType.Q8_0, KvType.Q4_0 })
            foreach (long ctx in TableContexts.Append(o.Context).Distinct().Order())
            {
                if (ctx > Math.Max(c.MaxPositionEmbeddings, o.Context)) continue;
                var k = KvCachePlan.Size(c, ctx, type, o.Parallel);
                kvTable.Add(new KvRow(type.Name, ctx, k.Bytes, k.NaiveBytes));
            }

        var buffers = EngineBuffers.ForForward(c, (int)Math.Min(o.Batch, o.Context), o.Context, 1, o.Threads);

        var devices = o.Devices ?? Devices.Catalogue;
        var fitSchemes = new List<SchemeWeights>();
        if (fileWeights is not null) fitSchemes.Add(fileWeights);
        fitSchemes.AddRange(schemes.Where(s => s.Error is null));
        var fit = new List<FitRow>();
        long cap = Math.Max(c.MaxPositionEmbeddings, 1);
        foreach (var dev in devices)
            foreach (var s in fitSchemes)
                fit.Add(Fit(dev, s, c, o, kvRequested.Bytes, buffers.PeakBytes, images?.ScratchBytes ?? 0, cap));

        Notes(notes, c, source, o, kvRequested);
        if (images is not null)
            notes.Add($"{images.Images} image(s) of {images.Width}x{images.Height}: {images.TilesX}x{images.TilesY} tiles" +
                      (images.EncodedTiles > 1 ? " + thumbnail" : "") + $", {images.TokensPerImage:N0} tokens each; context {images.TextContext:N0} text + " +
                      $"{images.ImageTokens:N0} image = {images.Context:N0} tokens. Vision weights and {SizeParsing.GiB(images.ScratchBytes)} of image buffers are counted in the fit table.");
        var summary = new ModelSummary(source.Name, source.Kind, source.Path, c.HiddenSize, c.NumLayers, c.MoeLayers.Count(m => m),
            c.RopeLayers.Count(r => !r), c.NumHeads, c.NumKvHeads, c.HeadDim, c.VocabSize, c.NumExperts, c.TopK, c.IntermediateSize,
            c.MoeLayers.All(m => m) ? 0 : c.IntermediateSizeMlp, c.AttentionChunkSize, c.UseQkNorm, c.MaxPositionEmbeddings, source.Vision is not null);
        var inputs = new PlanInputs(o.Context, o.Parallel, o.Batch, o.KvType.Name, o.WithVision, devices.Select(d => d.Name).ToList());
        var tensorLines = o.IncludeTensors ? TensorLines(c, source, o.Schemes ?? QuantScheme.Standard) : null;
        DevicePlan? device = null;
        if ((o.GpuLayers is not null || o.HostExpertLayers > 0) && o.DeviceUploads is { } uploads)
        {
            if (source.Checkpoint is not { } ckInfo)
                throw new ArgumentException("--gpu-layers / --n-cpu-moe in a plan need a checkpoint file (--model FILE.gguf or a folder): the placement is planned per tensor");
            if (o.GpuLayers < 0) throw new ArgumentException($"--gpu-layers must not be negative, got {o.GpuLayers}");
            if (o.HostExpertLayers < 0) throw new ArgumentException($"--n-cpu-moe must not be negative, got {o.HostExpertLayers}");
            var kvDevice = o.KvType == KvType.F32 || o.KvType == KvType.BF16 ? o.KvType : KvType.F16;
            if (kvDevice != o.KvType) notes.Add($"Device K/V planned as f16: the GPU backend keeps K/V as f32, f16 or bf16 (--kv-type {o.KvType.Name} is refused with --device cuda).");
            var place = new Placement(c.NumLayers, o.GpuLayers ?? int.MaxValue, o.HostExpertLayers);
            device = DevicePlan.For(c, ckInfo.Tensors, place, uploads, (int)Math.Min(o.Batch, o.Context), (int)Math.Min(o.Context, int.MaxValue), o.Parallel, kvDevice, kvDevice);
        }
        return new PlanReport(summary, parameters, schemes, ckptReport, new KvReport(kvRequested, engineKv, kvTable), buffers, fit, notes, inputs, tensorLines, images, device);
    }

    /// <summary>The image tokens and buffers of <see cref="PlanOptions.Images"/> images, laid out by the engine's own tiling rule.</summary>
    private static ImagePlan PlanImages(PlanOptions o, Llama4Config c, ModelSource source)
    {
        var g = source.Vision ?? throw new ArgumentException(
            $"{source.Name} has no vision encoder to plan images with ({(source.Kind == "gguf" ? "a GGUF carries the text model only; plan its Hugging Face config or a preset" : "its config has no vision_config")})");
        var vc = new VisionConfig
        {
            HiddenSize = g.HiddenSize, IntermediateSize = g.IntermediateSize, NumLayers = g.NumLayers, NumHeads = g.NumHeads,
            NumChannels = g.NumChannels, ImageSize = g.ImageSize, PatchSize = g.PatchSize, PixelShuffleRatio = g.PixelShuffleRatio,
            ProjectorInputDim = g.ProjectorInputDim, ProjectorOutputDim = g.ProjectorOutputDim, VisionOutputDim = g.VisionOutputDim,
        };
        // Default: the largest layout, a full 4x4 canvas (16 tiles) plus the thumbnail.
        var (width, height) = o.ImageSize ?? (4 * vc.ImageSize, 4 * vc.ImageSize);
        var tiling = ImagePromptLayout.TilingFor(width, height, ImagePreprocessor.DefaultMaxTiles, vc.TokensPerTile, vc.ImageSize);
        int tokensPerImage = ImagePromptLayout.TokenCount(tiling);
        int encodedTiles = ImagePromptLayout.PatchCount(tiling) / tiling.PatchesPerTile;
        long imageTokens = (long)o.Images * tokensPerImage;
        long context = o.Context + imageTokens;
        if (context > SizeParsing.MaxContext)
            throw new ArgumentException($"context {o.Context:N0} plus {imageTokens:N0} image tokens exceeds {SizeParsing.MaxContext:N0}");
        // Images are embedded one after another; the finished ones' pixels and projected rows stay until the prompt is merged.
        long pixels = 4L * encodedTiles * 3 * vc.ImageSize * vc.ImageSize;
        long rows = 4L * encodedTiles * vc.TokensPerTile * c.HiddenSize;
        long held = (o.Images - 1) * (pixels + rows) + o.Images * rows;
        return new ImagePlan(o.Images, width, height, tiling.TilesX, tiling.TilesY, encodedTiles, tokensPerImage, imageTokens, o.Context, context,
            VisionEncoder.ScratchBytesPerTileFor(vc), VisionEncoder.ImageBufferBytes(vc, encodedTiles, c.HiddenSize), held, 4L * context * c.HiddenSize);
    }

    private static List<TensorLine> TensorLines(Llama4Config c, ModelSource source, IReadOnlyList<QuantScheme> schemes)
    {
        var tensors = TensorInventory.FromConfig(c, source.Vision, includeRopeFreqs: true, source.RopeFreqsPresent);
        var lines = new List<TensorLine>();
        foreach (var t in tensors)
        {
            var per = new Dictionary<string, string>();
            foreach (var s in schemes)
            {
                if (t.Role == TensorRole.RopeFreqs && s.Family != SchemeFamily.Gguf) continue;
                try
                {
                    var type = s.TypeFor(t, c);
                    per[s.Name] = $"{type.Name} {type.Bytes(t.RowLength, t.TotalRows)}";
                }
                catch (InvalidDataException e) { per[s.Name] = e.Message; }
            }
            long[] ne = t.Matrices > 1 ? [t.RowLength, t.Rows, t.Matrices] : t.Rows > 1 ? [t.RowLength, t.Rows] : [t.RowLength];
            lines.Add(new TensorLine(t.Name, t.Group, t.Layer, ne, t.IsParameter ? t.Elements : 0, per));
        }
        return lines;
    }

    /// <summary>Parameter counts from a tensor list: total, text, vision, and active per token (one top-k share of the routed experts).</summary>
    public static ParameterReport CountParameters(IEnumerable<PlannedTensor> tensors, Llama4Config c)
    {
        var list = tensors.Where(t => t.IsParameter).ToList();
        long vision = list.Where(t => t.IsVision).Sum(t => t.Elements);
        long text = list.Where(t => !t.IsVision).Sum(t => t.Elements);
        long routed = list.Where(t => t.IsRoutedExpert).Sum(t => t.Elements);
        long active = c.NumExperts > 0 ? text - routed + routed / c.NumExperts * c.TopK : text;
        var groups = PlannedTensor.GroupOrder
            .Select(g => new ParameterGroup(g, list.Where(t => t.Group == g).Sum(t => t.Elements), list.Count(t => t.Group == g)))
            .Where(g => g.Tensors > 0).ToList();
        return new ParameterReport(text + vision, text, vision, active, routed, groups);
    }

    /// <summary>Weight bytes of the model in one scheme, tensor by tensor.</summary>
    /// <param name="ropeFreqsPresent">for a model read from a GGUF (whose config has no rope_scaling): whether it carries rope_freqs</param>
    public static SchemeWeights Weights(QuantScheme scheme, Llama4Config c, VisionGeometry? vision, bool? ropeFreqsPresent = null)
    {
        // GGUF files carry rope_freqs (F32) when the model uses llama3 rope scaling; Hugging Face files do not.
        var tensors = TensorInventory.FromConfig(c, vision, includeRopeFreqs: scheme.Family == SchemeFamily.Gguf, ropeFreqsPresent);
        try
        {
            var lines = tensors.Select(t => (Tensor: t, Type: scheme.TypeFor(t, c))).ToList();
            var bytes = lines.Select(l => (l.Tensor, l.Type, Bytes: l.Type.Bytes(l.Tensor.RowLength, l.Tensor.TotalRows))).ToList();
            long textBytes = bytes.Where(b => !b.Tensor.IsVision).Sum(b => b.Bytes);
            long visionBytes = bytes.Where(b => b.Tensor.IsVision).Sum(b => b.Bytes);
            long routed = bytes.Where(b => b.Tensor.IsRoutedExpert).Sum(b => b.Bytes);
            long textElements = tensors.Where(t => !t.IsVision).Sum(t => t.Elements);
            var groups = PlannedTensor.GroupOrder
                .Select(g => (g, items: bytes.Where(b => b.Tensor.Group == g).ToList()))
                .Where(x => x.items.Count > 0)
                .Select(x => new WeightGroup(x.g, x.items.Sum(i => i.Bytes), string.Join("+", x.items.Select(i => i.Type.Name).Distinct())))
                .ToList();
            var higher = HigherPrecision(scheme, bytes.Where(b => !b.Tensor.IsVision).Select(b => (b.Tensor, b.Type)).ToList());
            return new SchemeWeights(scheme.Name, scheme.Description, scheme.Family.ToString(), textBytes, visionBytes, routed,
                8.0 * textBytes / textElements, groups, higher);
        }
        catch (InvalidDataException e)
        {
            return new SchemeWeights(scheme.Name, scheme.Description, scheme.Family.ToString(), 0, 0, 0, 0, [], [], e.Message);
        }
    }

    /// <summary>Which tensors a scheme keeps above its base type, with their layers, e.g. "Q6_K: attn_v, ffn_down_exps (layers 0-5, 8, 11, …)".</summary>
    private static List<string> HigherPrecision(QuantScheme scheme, List<(PlannedTensor Tensor, StorageType Type)> lines)
    {
        var result = new List<string>();
        var off = lines.Where(l => l.Type != scheme.BaseType).ToList();
        foreach (var byType in off.GroupBy(l => l.Type.Name).OrderByDescending(g => g.First().Type.BitsPerWeight))
        {
            var parts = new List<string>();
            foreach (var byLayers in byType.GroupBy(l => ShortName(l.Tensor.Name)).GroupBy(g => LayerText(g.Select(x => x.Tensor.Layer))))
                parts.Add($"{string.Join(", ", byLayers.Select(g => g.Key))}{byLayers.Key}");
            result.Add($"{byType.Key}: {string.Join("; ", parts)}");
        }
        return result;
    }

    private static string ShortName(string name)
    {
        string n = name.EndsWith(".weight", StringComparison.Ordinal) ? name[..^7] : name;
        return n.StartsWith("blk.", StringComparison.Ordinal) ? n[(n.IndexOf('.', 4) + 1)..] : n;
    }

    private static string LayerText(IEnumerable<int> layers)
    {
        var l = layers.Where(x => x >= 0).Distinct().Order().ToList();
        if (l.Count == 0) return "";
        if (l.Count >= 4 && l[1] - l[0] > 1 && l.Zip(l.Skip(1)).All(p => p.Second - p.First == l[1] - l[0]))
            return $" (every {Ordinal(l[1] - l[0])} layer, {l[0]}-{l[^1]})";
        var ranges = new List<string>();
        for (int i = 0; i < l.Count;)
        {
            int j = i;
            while (j + 1 < l.Count && l[j + 1] == l[j] + 1) j++;
            ranges.Add(j == i ? $"{l[i]}" : $"{l[i]}-{l[j]}");
            i = j + 1;
        }
        return $" (layers {string.Join(", ", ranges)})";
    }

    private static string Ordinal(int n) => n switch { 2 => "2nd", 3 => "3rd", _ => $"{n}th" };

    /// <param name="imageBytes">image buffers (<see cref="ImagePlan.ScratchBytes"/>), held beside the text buffers</param>
    private static FitRow Fit(Device dev, SchemeWeights s, Llama4Config c, PlanOptions o, long kvBytes, long textBufferBytes, long imageBytes, long cap)
    {
        long bufferBytes = textBufferBytes + imageBytes;
        long weights = s.TextBytes + (o.WithVision ? s.VisionBytes : 0);
        long usable = dev.UsableBytes;
        long need = weights + kvBytes + bufferBytes;
        // Largest context: score rows grow with the context, so size the buffers at the cap to stay on the safe side.
        long buffersAtCap = EngineBuffers.ForForward(c, (int)Math.Min(o.Batch, cap), cap, 1, o.Threads).PeakBytes + imageBytes;
        long maxCtx = KvCachePlan.MaxContext(c, usable - weights - buffersAtCap, o.KvType, o.Parallel, cap);
        // Experts in system RAM: the GPU keeps attention, shared experts, embeddings, KV and buffers.
        long gpu = weights - s.RoutedExpertBytes + kvBytes + bufferBytes;
        long maxCtxSplit = KvCachePlan.MaxContext(c, usable - (weights - s.RoutedExpertBytes) - buffersAtCap, o.KvType, o.Parallel, cap);
        bool split = dev.Kind == DeviceKind.Gpu;
        return new FitRow(dev.Name, dev.Kind.ToString(), usable, s.Name, weights, need, need <= usable, maxCtx,
            split ? gpu : 0, split ? s.RoutedExpertBytes : 0, split && gpu <= usable, split ? maxCtxSplit : 0);
    }

    private static void Notes(List<string> notes, Llama4Config c, ModelSource source, PlanOptions o, KvCacheSize kv)
    {
        if (o.Context > c.MaxPositionEmbeddings)
            notes.Add($"--context {o.Context:N0} is beyond the model's max_position_embeddings ({c.MaxPositionEmbeddings:N0}); sizes are shown anyway.");
        int global = kv.GlobalLayers;
        if (c.NumLayers == 48 && c.HiddenSize == 5120)
            notes.Add("Some calculators list hidden 8192, 80 layers, 64 heads (Llama-3-70B's geometry). Llama 4 Scout and Maverick are hidden 5120, " +
                      $"48 layers, 40 query heads, {c.NumKvHeads} KV heads of {c.HeadDim}, {c.NumExperts} experts with 1 routed + 1 shared per token.");
        if (c.NumExperts > 0)
            notes.Add($"Mixture of experts: every expert must be resident, so weights scale with all {c.NumExperts} experts " +
                      "(sizing it as a dense 17B model is wrong); only compute per token scales with the active parameters.");
        if (global < c.NumLayers)
        {
            var bf16 = KvCachePlan.Size(c, o.Context, KvType.BF16, o.Parallel);
            notes.Add($"KV cache: only the {global} NoPE layers attend globally; the other {kv.ChunkedLayers} keep at most {c.AttentionChunkSize:N0} tokens " +
                      $"(attention_chunk_size). bf16 at {o.Context:N0} tokens: {SizeParsing.GiB(bf16.Bytes)} chunk-aware vs {SizeParsing.GiB(bf16.NaiveBytes)} if every layer kept the whole context.");
            if (c.MaxPositionEmbeddings >= 10L << 20)
            {
                var ten = KvCachePlan.Size(c, 10L << 20, KvType.BF16, 1);
                notes.Add($"10M context (10,485,760 tokens) needs {SizeParsing.GiB(ten.Bytes)} of bf16 KV per sequence even chunk-aware " +
                          $"({SizeParsing.GiB(ten.NaiveBytes)} naive), on top of the weights.");
            }
        }
        notes.Add($"KV sizes use the head count that is cached: {c.NumKvHeads} KV heads × {c.HeadDim} = {c.KvDim} values per token per layer for K and for V, " +
                  "not the hidden size. q8_0 costs 34 bytes per 32 values (1.0625 B), q4_0 18 per 32 (0.5625 B).");
        notes.Add($"Scout's engine stores K/V as {o.KvType.Name} with --kv-type {o.KvType.Name} (f32, f16, bf16, q8_0 or q4_0; f16 by default): " +
                  $"{SizeParsing.GiB(KvCachePlan.EngineBytes(c, o.Context, o.Parallel, o.KvType, o.KvType))} at this context, in pages allocated as the sequence grows " +
                  "(KvCache.CapacityBytes when full).");
        notes.Add("GGUF ships the vision encoder separately (mmproj file); the fit table counts text weights only" + (o.WithVision ? ", plus vision (--with-vision)." : " (add --with-vision for images)."));
        notes.Add("FP8 assumes Meta's fp8_mixed recipe: routed experts float8 with one f32 scale per output row, first and last layer kept bf16. " +
                  "INT4 assumes a bf16 scale per 128 weights (Meta's loader keeps f32 scales in memory: +2 bytes per 128 weights).");
        if (source.Checkpoint is not null)
            notes.Add("The 'file' rows use the checkpoint's own tensor types and byte sizes.");
    }

    // ---- model sources ----

    private sealed record CheckpointInfo(ParameterReport Parameters, SchemeWeights Weights, CheckpointReport Report, List<CheckpointTensor> Tensors);

    private sealed record ModelSource(string Name, string Kind, string? Path, Llama4Config Config, VisionGeometry? Vision, CheckpointInfo? Checkpoint)
    {
        /// <summary>A GGUF's config has no rope_scaling, so whether rope_freqs exists comes from its tensors.</summary>
        public bool? RopeFreqsPresent => Checkpoint is { Report.Format: nameof(CheckpointFormat.Gguf) } ck ? ck.Tensors.Any(t => t.Role == TensorRole.RopeFreqs) : null;
    }

    private static ModelSource ResolveModel(string? model, string? configPath)
    {
        if (string.IsNullOrWhiteSpace(model)) model = "scout";
        // A bare preset name wins over a same-named file in the current folder (the repository has a `scout` script);
        // write ./scout to mean a path.
        bool looksLikePath = model.Contains('/') && !model.StartsWith("meta-llama/", StringComparison.OrdinalIgnoreCase) || model.Contains('\\')
            || model.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || model.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)
            || model.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase);
        if (!looksLikePath && ModelPresets.Find(model) is { } preset)
            return new ModelSource(preset.DisplayName, "preset", null, preset.Text, preset.Vision, null);
        if (File.Exists(model) && model.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            var cfg = Llama4Config.FromJsonFile(model);
            return new ModelSource(System.IO.Path.GetFileName(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(model))) ?? model,
                "config", model, cfg, ModelPresets.VisionOf(cfg, model), null);
        }
        if (Directory.Exists(model) && File.Exists(System.IO.Path.Combine(model, "config.json"))
            && Directory.GetFiles(model, "*.safetensors").Length == 0 && Directory.GetFiles(model, "*.gguf").Length == 0)
        {
            string cfgPath = System.IO.Path.Combine(model, "config.json");
            var cfg = Llama4Config.FromJsonFile(cfgPath);
            return new ModelSource(System.IO.Path.GetFileName(System.IO.Path.GetFullPath(model).TrimEnd('/')), "config", cfgPath, cfg, ModelPresets.VisionOf(cfg, cfgPath), null);
        }
        if (!File.Exists(model) && !Directory.Exists(model)) throw ModelPresets.Unknown(model);

        using var ckpt = Checkpoint.Open(model, configPath);
        var c = ckpt.Config;
        var vision = ckpt.Format == CheckpointFormat.HuggingFace ? ModelPresets.VisionOf(c, model) : null;
        var tensors = ckpt.Tensors.Values.Select(CheckpointTensor.Of).ToList();
        var info = DescribeCheckpoint(ckpt, tensors);
        string name = System.IO.Path.GetFileName(System.IO.Path.GetFullPath(model).TrimEnd('/'));
        return new ModelSource(name, ckpt.Format == CheckpointFormat.Gguf ? "gguf" : "safetensors", model, c, vision, info);
    }

    private static CheckpointInfo DescribeCheckpoint(Checkpoint ckpt, List<CheckpointTensor> tensors)
    {
        var c = ckpt.Config;
        var unknown = tensors.Where(t => t.Role is null).Select(t => t.Name).ToList();
        if (unknown.Count > 0)
            throw new ModelLoadException($"{Path.GetFileName(ckpt.Files[0])}: tensors the planner does not recognise: {string.Join(", ", unknown.Take(5))}");
        bool IsVision(CheckpointTensor t) => t.Role is TensorRole.VisionEncoder or TensorRole.VisionAdapter or TensorRole.VisionProjector;
        bool IsRouted(CheckpointTensor t) => t.Role is TensorRole.RoutedGate or TensorRole.RoutedUp or TensorRole.RoutedDown;
        var parameters = tensors.Where(t => t.Role != TensorRole.RopeFreqs).ToList();
        long vision = parameters.Where(IsVision).Sum(t => t.Elements);
        long text = parameters.Where(t => !IsVision(t)).Sum(t => t.Elements);
        long routed = parameters.Where(IsRouted).Sum(t => t.Elements);
        long active = c.NumExperts > 0 ? text - routed + routed / c.NumExperts * c.TopK : text;
        var pGroups = PlannedTensor.GroupOrder
            .Select(g => new ParameterGroup(g, parameters.Where(t => PlannedTensor.GroupOf(t.Role!.Value) == g).Sum(t => t.Elements),
                parameters.Count(t => PlannedTensor.GroupOf(t.Role!.Value) == g)))
            .Where(g => g.Tensors > 0).ToList();
        var paramReport = new ParameterReport(text + vision, text, vision, active, routed, pGroups);

        long textBytes = tensors.Where(t => !IsVision(t)).Sum(t => t.Bytes);
        long visionBytes = tensors.Where(IsVision).Sum(t => t.Bytes);
        long routedBytes = tensors.Where(IsRouted).Sum(t => t.Bytes);
        long textElements = tensors.Where(t => !IsVision(t)).Sum(t => t.Elements);
        var wGroups = PlannedTensor.GroupOrder
            .Select(g => (g, items: tensors.Where(t => PlannedTensor.GroupOf(t.Role!.Value) == g).ToList()))
            .Where(x => x.items.Count > 0)
            .Select(x => new WeightGroup(x.g, x.items.Sum(i => i.Bytes), string.Join("+", x.items.Select(i => i.Type.ToString()).Distinct())))
            .ToList();
        var weights = new SchemeWeights("file", $"{Path.GetFileName(ckpt.Files[0])}{(ckpt.Files.Count > 1 ? $" (+{ckpt.Files.Count - 1} files)" : "")} as stored",
            ckpt.Format.ToString(), textBytes, visionBytes, routedBytes, textElements == 0 ? 0 : 8.0 * textBytes / textElements, wGroups, []);
        var typeCounts = tensors.GroupBy(t => t.Type).OrderBy(g => g.Key).Select(g => $"{g.Count()} {g.Key}").ToList();
        var report = new CheckpointReport(ckpt.Format.ToString(), ckpt.Files.ToList(), ckpt.FileBytes, tensors.Sum(t => t.Bytes), tensors.Count, typeCounts, null, null);
        return new CheckpointInfo(paramReport, weights, report, tensors);
    }

    /// <summary>The scheme whose prediction equals the checkpoint's tensor bytes exactly, if any (F32/BF16/F16/GGUF mixes).</summary>
    private static SchemeWeights? MatchScheme(CheckpointInfo ck, Llama4Config c, VisionGeometry? vision, bool? ropeFreqs)
    {
        bool gguf = ck.Report.Format == nameof(CheckpointFormat.Gguf);
        foreach (var s in QuantScheme.All.Where(s => (s.Family == SchemeFamily.Gguf) == gguf || (gguf && s == QuantScheme.F32)))
        {
            var w = gguf && s == QuantScheme.F32 ? WeightsAsGgufF32(c, ropeFreqs) : Weights(s, c, gguf ? null : vision, ropeFreqs);
            if (w.Error is null && w.TextBytes + w.VisionBytes == ck.Report.TensorBytes) return w;
        }
        return null;
    }

    /// <summary>An all-F32 GGUF as convert_hf_to_gguf writes it (--outtype f32): every tensor F32, plus rope_freqs.</summary>
    public static SchemeWeights WeightsAsGgufF32(Llama4Config c, bool? ropeFreqsPresent = null)
    {
        var tensors = TensorInventory.FromConfig(c, null, includeRopeFreqs: true, ropeFreqsPresent);
        long bytes = tensors.Sum(t => StorageType.F32.Bytes(t.RowLength, t.TotalRows));
        long routed = tensors.Where(t => t.IsRoutedExpert).Sum(t => StorageType.F32.Bytes(t.RowLength, t.TotalRows));
        return new SchemeWeights("F32 (GGUF)", "GGUF written with --outtype f32", nameof(SchemeFamily.Gguf), bytes, 0, routed, 32, [], []);
    }
}
