using System.Diagnostics;
using Xunit.Abstractions;

namespace Scout.Tests.Server;

/// <summary>
/// The npm `openai` package (tests/npm, installed here with npm) against the real server and the real-vocabulary
/// model: chat, streaming, abort, tools, structured output, responses.create plain / streamed / with a tool.
/// Runs when node and npm are on PATH; on CI (CI=true) their absence is a failure.
/// </summary>
public class NpmOpenAiClientTests(RealVocabularyFixture f, ITestOutputHelper output) : IClassFixture<RealVocabularyFixture>
{
    public static string RepoRoot
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "Scout.sln"))) return d.FullName;
            throw new InvalidOperationException($"Scout.sln not found above {AppContext.BaseDirectory}");
        }
    }

    private static string? OnPath(string name)
        => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    private (int Code, string Output) Run(string file, string args, string folder, IDictionary<string, string>? env = null, int timeoutSeconds = 240)
    {
        var psi = new ProcessStartInfo(file, args) { WorkingDirectory = folder, RedirectStandardOutput = true, RedirectStandardError = true };
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutSeconds * 1000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {args} ran past {timeoutSeconds} s");
        }
        string text = stdout.Result + stderr.Result;
        output.WriteLine($"$ {file} {args}\n{text}");
        return (p.ExitCode, text);
    }

    [Fact]
    public void NpmOpenAiClientPassesAgainstScoutServe()
    {
        string? node = OnPath("node"), npm = OnPath("npm");
        if (node is null || npm is null)
        {
            Assert.True(Environment.GetEnvironmentVariable("CI") is null, "CI must have node and npm for the npm openai client test");
            output.WriteLine("node/npm not on PATH: the npm openai client test did not run");
            return;
        }
        string folder = Path.Combine(RepoRoot, "tests", "npm");
        if (!File.Exists(Path.Combine(folder, "node_modules", "openai", "package.json")))
        {
            var (code, text) = Run(npm, "ci --no-audit --no-fund --loglevel=error", folder);
            Assert.True(code == 0, "npm ci failed:\n" + text);
        }
        var (rc, log) = Run(node, "openai-client.mjs", folder, new Dictionary<string, string>
        {
            ["SCOUT_URL"] = f.Server.Url, ["SCOUT_KEY"] = RealVocabularyFixture.Key, ["SCOUT_MODEL"] = "real-vocab",
        });
        Assert.True(rc == 0, log);
        Assert.Contains("12 passed, 0 failed", log);
    }
}
