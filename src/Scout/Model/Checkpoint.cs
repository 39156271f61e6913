using System.Text;
using System.Text.Json;
using Scout.Formats;
using Scout.Tensors;

namespace Scout.Model;

public enum CheckpointFormat { HuggingFace, Gguf }

/// <summary>
/// An opened checkpoint: its config and its tensors, memory-mapped. Accepts a Hugging Face folder (config.json +
/// model.safetensors or sharded model-XXXXX-of-YYYYY.safetensors with an index), a single .safetensors file (config
/// from its folder or <c>configPath</c>), or a llama4 GGUF file (optionally with a config.json for the values GGUF
/// does not carry).
/// </summary>
public sealed class Checkpoint : IDisposable
{
    private readonly List<IDisposable> _files = new();
    private readonly Dictionary<string, WeightTensor> _tensors = new(StringComparer.Ordinal);
    private readonly HashSet<string> _claimed = new(StringComparer.Ordinal);

    public Llama4Config Config { get; private set; } = null!;
    public CheckpointFormat Format { get; private set; }
    /// <summary>The weight files, in the order opened.</summary>
    public List<string> Files { get; } = new();
    /// <summary>The model folder (for tokenizer files next to the weights).</summary>
    public string Folder { get; private set; } = ".";
    public GgufFile? Gguf { get; private set; }
    public IReadOnlyDictionary<string, WeightTensor> Tensors => _tensors;
    public long FileBytes => Files.Sum(f => new FileInfo(f).Length);

    /// <summary>Opens a checkpoint. <paramref name="progress"/> receives (files opened, files total).</summary>
    public static Checkpoint Open(string path, string? configPath = null, Action<int, int>? progress = null)
    {
        var c = new Checkpoint();
        try
        {
            c.Load(path, configPath, progress);
            return c;
        }
        catch
        {
            c.Dispose();
            throw;
        }
    }

    private void Load(string path, string? configPath, Action<int, int>? progress)
    {
        if (Directory.Exists(path))
        {
            Folder = path;
            var ggufs = Directory.GetFiles(path, "*.gguf");
            if (!File.Exists(Path.Combine(path, "config.json")) && configPath is null && ggufs.Length == 1)
            {
                LoadGguf(ggufs[0], null);
                return;
            }
            string cfg = configPath ?? Path.Combine(path, "config.json");
            Config = Llama4Config.FromJsonFile(cfg);
            LoadSafetensorsFolder(path, progress);
            CheckLayerCount(Path.GetFileName(cfg));
        }
        else if (File.Exists(path))
        {
            Folder = Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".";
            if (path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
            {
                LoadGguf(path, configPath);
            }
            else if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            {
                Config = Llama4Config.FromJsonFile(configPath ?? Path.Combine(Folder, "config.json"));
                Format = CheckpointFormat.HuggingFace;
                AddSafetensors(path);
                CheckLayerCount(Path.GetFileName(configPath ?? "config.json"));
                progress?.Invoke(1, 1);
            }
            else if (Path.GetFileName(path) == "config.json")
            {
                Load(Folder, path, progress);
            }
            else
            {
                throw new ModelLoadException($"{path}: not a model (expected a folder, a .safetensors file or a .gguf file)");
            }
        }
        else
        {
            throw new ModelLoadException($"model not found: {path}");
        }
    }

    private void LoadGguf(string path, string? configPath)
    {
        Format = CheckpointFormat.Gguf;
        var g = GgufFile.Open(path);
        _files.Add(g);
        Gguf = g;
        Files.Add(path);
        Config = Llama4Config.FromGguf(g);
        if (configPath is not null)
            Config = Config.WithOverridesFrom(Llama4Config.FromJsonFile(configPath));
        foreach (var (name, t) in g.Tensors) _tensors[name] = t;
    }

    private void LoadSafetensorsFolder(string folder, Action<int, int>? progress)
    {
        Format = CheckpointFormat.HuggingFace;
        string index = Path.Combine(folder, "model.safetensors.index.json");
        List<string> shards;
        if (File.Exists(index))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(index));
                if (doc.RootElement.ValueKind != JsonValueKind.Object
                    || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                    throw new ModelLoadException($"{index}: no weight_map object");
                shards = map.EnumerateObject().Select(p => p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString() ?? ""
                    : throw new ModelLoadException($"{index}: weight_map.\"{p.Name}\" must be a shard file name, got {p.Value.ValueKind}")).Distinct().ToList();
                foreach (var s in shards)
                    if (s.Length == 0 || s.Contains('/') || s.Contains('\\') || s is "." or "..")
                        throw new ModelLoadException($"{index}: invalid shard name '{s}'");
            }
            catch (JsonException e)
            {
                throw new ModelLoadException($"{index}: malformed JSON: {e.Message}");
            }
            catch (Exception e) when (e is InvalidOperationException or ArgumentException or DecoderFallbackException)
            {
                throw new ModelLoadException($"{index}: {e.Message}");
            }
        }
        else if (File.Exists(Path.Combine(folder, "model.safetensors")))
        {
            shards = ["model.safetensors"];
        }
        else
        {
            shards = Directory.GetFiles(folder, "model-*-of-*.safetensors").Select(Path.GetFileName).OfType<string>().Order().ToList();
            if (shards.Count == 0)
                throw new ModelLoadException($"{folder}: no model.safetensors, model.safetensors.index.json or model-XXXXX-of-YYYYY.safetensors shards");
        }
        for (int i = 0; i < shards.Count; i++)
        {
            string shardPath = Path.Combine(folder, shards[i]);
            if (!File.Exists(shardPath))
                throw new ModelLoadException($"shard listed in the index is missing: {shardPath}");
            AddSafetensors(shardPath);
            progress?.Invoke(i + 1, shards.Count);
        }
    }

    private void AddSafetensors(string path)
    {
        var f = SafetensorsFile.Open(path);
        _files.Add(f);
        Files.Add(path);
        foreach (var (name, t) in f.Tensors)
        {
            if (!_tensors.TryAdd(name, t))
                throw new ModelLoadException($"tensor '{name}' appears in more than one shard ({path})");
        }
    }

    /// <summary>The tensor of that name, or null; a tensor found counts as claimed (see <see cref="CheckAllClaimed"/>).</summary>
    public WeightTensor? Find(string name)
    {
        var t = _tensors.GetValueOrDefault(name);
        if (t is not null) _claimed.Add(name);
        return t;
    }

    /// <summary>Tensor name prefixes of parts loaded separately (the vision encoder and its projector).</summary>
    public static readonly string[] SeparatelyLoaded = ["vision_model.", "multi_modal_projector.", "v.", "mm."];

    /// <summary>
    /// Refuses a checkpoint holding text-model tensors the loader did not take (e.g. a config saying fewer layers
    /// than the file holds): every tensor must be claimed, or the load fails naming the extra ones.
    /// </summary>
    public void CheckAllClaimed()
    {
        var extra = _tensors.Keys.Where(n => !_claimed.Contains(n) && !SeparatelyLoaded.Any(p => n.StartsWith(p, StringComparison.Ordinal)))
            .Order(StringComparer.Ordinal).ToList();
        if (extra.Count == 0) return;
        throw new ModelLoadException($"{string.Join(", ", Files.Select(Path.GetFileName))}: {extra.Count} tensor(s) are not used by this model's config " +
            $"({Config.NumLayers} layers): {string.Join(", ", extra.Take(8))}{(extra.Count > 8 ? ", …" : "")}; the config and the weights disagree");
    }

    /// <summary>The config's layer count must match the layers the tensor names describe (checked before anything is sized by it).</summary>
    private void CheckLayerCount(string configName)
    {
        string prefix = _tensors.Keys.Any(k => k.StartsWith("language_model.model.layers.", StringComparison.Ordinal)) ? "language_model.model.layers." : "model.layers.";
        int present = Llama4Config.LayersPresent(_tensors.Keys, prefix);
        if (present > 0 && present != Config.NumLayers)
            throw new ModelLoadException($"{configName}: num_hidden_layers is {Config.NumLayers} but the weights hold tensors for {present} layers ({prefix}0 .. {prefix}{present - 1})");
    }

    public WeightTensor Get(string name)
        => Find(name) ?? throw new ModelLoadException($"tensor '{name}' is missing from the checkpoint ({string.Join(", ", Files.Select(Path.GetFileName))})");

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }
}
