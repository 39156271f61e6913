namespace Scout.Tests;

/// <summary>Locates ../shared/fixtures (next to the repository) from the test binaries.</summary>
public static class Fixtures
{
    private static readonly Lazy<string> _root = new(() =>
    {
        var env = Environment.GetEnvironmentVariable("SCOUT_SHARED");
        if (!string.IsNullOrEmpty(env) && Directory.Exists(Path.Combine(env, "fixtures"))) return Path.Combine(env, "fixtures");
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "shared", "fixtures");
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException("shared/fixtures not found next to the repository (set SCOUT_SHARED)");
    });

    public static string Root => _root.Value;
    public static string Text(string model, string file = "") => Path.Combine(Root, "llama4-text", model, file);
    public static string Tokenizer(string file = "") => Path.Combine(Root, "tokenizer", file);
    public static string Vision(string file = "") => Path.Combine(Root, "llama4-vision", file);

    public static float[] ReadF32(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var result = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, result, 0, result.Length * 4);
        return result;
    }

    /// <summary>A fresh temporary directory, deleted on dispose.</summary>
    public sealed class TempDir : IDisposable
    {
        public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "scout-test-" + Guid.NewGuid().ToString("N"));
        public TempDir() => Directory.CreateDirectory(Path);
        public string File(string name) => System.IO.Path.Combine(Path, name);
        public void Dispose() { try { Directory.Delete(Path, true); } catch (IOException) { } }
    }
}

public static class LogitAssert
{
    /// <summary>|a − ref| ≤ atol + rtol·|ref| elementwise and the same argmax per row; returns max |Δ|.</summary>
    public static double Close(float[] actual, float[] expected, int vocab, double atol = 1e-4, double rtol = 1e-4)
    {
        Assert.Equal(expected.Length, actual.Length);
        double maxDiff = 0;
        int rows = expected.Length / vocab;
        for (int i = 0; i < expected.Length; i++)
        {
            double diff = Math.Abs(actual[i] - expected[i]);
            maxDiff = Math.Max(maxDiff, diff);
            if (!(diff <= atol + rtol * Math.Abs(expected[i])))
                Assert.Fail($"element {i} (row {i / vocab}, col {i % vocab}): {actual[i]} vs {expected[i]} (|Δ| {diff:g3})");
        }
        for (int r = 0; r < rows; r++)
            Assert.True(ArgMax(actual.AsSpan(r * vocab, vocab)) == ArgMax(expected.AsSpan(r * vocab, vocab)), $"argmax differs in row {r}");
        return maxDiff;
    }

    public static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}

/// <summary>Runs the `scout` CLI in-process and captures its exit code and output.</summary>
public static class ScoutCli
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Scout.Cli.Program.Run(args, o, e, new StringReader(""));
        return (code, o.ToString(), e.ToString());
    }
}
