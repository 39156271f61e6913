using System.Diagnostics;
using System.IO.Compression;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Scout.Tests.Server;
using Xunit.Abstractions;

namespace Scout.Tests.Packaging;

/// <summary>The README's C# as it stands, and the NuGet package as a .NET developer would consume it.</summary>
public partial class PackageTests(ITestOutputHelper output)
{
    private static string Repo => NpmOpenAiClientTests.RepoRoot;

    /// <summary>What a new console app (Microsoft.NET.Sdk, ImplicitUsings on) has without writing it.</summary>
    private const string ImplicitUsings = """
        global using global::System;
        global using global::System.Collections.Generic;
        global using global::System.IO;
        global using global::System.Linq;
        global using global::System.Net.Http;
        global using global::System.Threading;
        global using global::System.Threading.Tasks;
        """;

    [GeneratedRegex(@"```csharp\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();

    public static IEnumerable<string> Snippets(string file) => CSharpBlock().Matches(File.ReadAllText(file).Replace("\r\n", "\n")).Select(m => m.Groups[1].Value);

    [Theory]
    [InlineData("README.md")]
    [InlineData("src/Scout/PACKAGE.md")]
    public void ReadmeSnippetsCompileAsWritten(string file)
    {
        var snippets = Snippets(Path.Combine(Repo, file)).ToList();
        Assert.NotEmpty(snippets);
        // The framework and the assemblies a package consumer gets: Scout and its dependencies (from this test's output).
        var refs = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Concat(new[] { "Scout.dll", "Microsoft.Extensions.AI.Abstractions.dll", "System.Numerics.Tensors.dll" }.Select(f => Path.Combine(AppContext.BaseDirectory, f)))
            .Distinct().Select(p => MetadataReference.CreateFromFile(p)).ToList();
        var parse = new CSharpParseOptions(LanguageVersion.Latest);
        foreach (var code in snippets)
        {
            var compilation = CSharpCompilation.Create("Snippet",
                [CSharpSyntaxTree.ParseText(code, parse, "Program.cs"), CSharpSyntaxTree.ParseText(ImplicitUsings, parse, "GlobalUsings.cs")],
                refs, new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions: NullableContextOptions.Enable));
            using var pe = new MemoryStream();
            var result = compilation.Emit(pe);
            var problems = result.Diagnostics.Where(d => d.Severity >= DiagnosticSeverity.Warning).ToList();
            output.WriteLine($"--- {file}\n{code}{string.Join("\n", problems)}");
            Assert.True(result.Success, $"{file}: a snippet does not compile:\n{code}\n{string.Join("\n", problems)}");
        }
    }

    private (int Code, string Output) Dotnet(string args, string folder, int timeoutSeconds = 300)
    {
        var psi = new ProcessStartInfo("dotnet", args) { WorkingDirectory = folder, RedirectStandardOutput = true, RedirectStandardError = true };
        // The test host's MSBuild settings must not leak into a separate build.
        foreach (var v in new[] { "MSBuildExtensionsPath", "MSBuildSDKsPath", "MSBUILD_EXE_PATH", "MSBuildLoadMicrosoftTargetsReadOnly", "VSTEST_HOST_DEBUG" })
            psi.Environment.Remove(v);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutSeconds * 1000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"dotnet {args} ran past {timeoutSeconds} s");
        }
        string text = stdout.Result + stderr.Result;
        output.WriteLine($"$ dotnet {args}   ({clock.Elapsed.TotalSeconds:F1} s, exit {p.ExitCode})\n{text}");
        return (p.ExitCode, text);
    }

    [Fact]
    public void PackedPackageRunsTheReadmeExampleInAFreshConsoleApp()
    {
        using var dir = new Fixtures.TempDir();
        string feed = Directory.CreateDirectory(dir.File("feed")).FullName;
        string app = Directory.CreateDirectory(dir.File("app")).FullName;
        // A version no cache has seen, so restore takes this package and no earlier one.
        string version = $"0.1.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";
        string config = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}") ? "Debug" : "Release";
        string project = Path.Combine(Repo, "src", "Scout", "Scout.csproj");
        bool built = File.Exists(Path.Combine(Repo, "src", "Scout", "bin", config, "net10.0", "Scout.dll"));
        var (packCode, packLog) = Dotnet($"pack \"{project}\" -c {config} -o \"{feed}\" -p:Version={version} {(built ? "--no-build" : "")} -nologo", Repo);
        Assert.True(packCode == 0, packLog);

        // The package as nuget.org would list it.
        string nupkg = Path.Combine(feed, $"Scout.Llama4.{version}.nupkg");
        Assert.True(File.Exists(Path.Combine(feed, $"Scout.Llama4.{version}.snupkg")), "no symbols package");
        using (var zip = ZipFile.OpenRead(nupkg))
        {
            var names = zip.Entries.Select(e => e.FullName).ToList();
            Assert.Contains("lib/net10.0/Scout.dll", names);
            Assert.Contains("lib/net10.0/Scout.xml", names);
            Assert.Contains("PACKAGE.md", names);
            using var nuspec = zip.GetEntry("Scout.Llama4.nuspec")!.Open();
            var meta = XDocument.Load(nuspec).Root!.Elements().First();
            string Field(string name) => meta.Elements().Single(e => e.Name.LocalName == name).Value;
            Assert.Equal("MIT", Field("license"));
            Assert.Equal("PACKAGE.md", Field("readme"));
            Assert.DoesNotContain("Package Description", Field("description"));
            Assert.Contains("llama4", Field("tags"));
            Assert.StartsWith("https://", meta.Elements().Single(e => e.Name.LocalName == "repository").Attribute("url")!.Value);
            var deps = meta.Descendants().Where(e => e.Name.LocalName == "dependency").Select(e => e.Attribute("id")!.Value).ToList();
            Assert.Contains("SkiaSharp.NativeAssets.Linux.NoDependencies", deps);
            Assert.Contains("SkiaSharp.NativeAssets.Win32", deps);
            Assert.Contains("SkiaSharp.NativeAssets.macOS", deps);
        }

        // A model to run: tiny random weights with Meta's real vocabulary (its tokenizer inside the GGUF).
        string model = dir.File("tiny.gguf");
        var err = new StringWriter();
        Assert.True(Scout.Cli.Program.Run(["synth", "--layers", "1", "--dim", "64", "--heads", "4", "--kv-heads", "2", "--head-dim", "16",
            "--experts", "2", "--expert-ffn", "64", "--dense-ffn", "128", "--type", "Q8_0", "--seed", "3",
            "--real-vocab", RealVocabularyFixture.TokenizerModel, "--out", model], new StringWriter(), err) == 0, err.ToString());

        // A fresh console app referencing the PACKAGE (not the project), restored from the folder feed (and NuGet's cache).
        File.WriteAllText(Path.Combine(app, "app.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
                <Nullable>enable</Nullable>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="Scout.Llama4" Version="{version}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <clear />
                <add key="local" value="{feed}" />
                <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
              </packageSources>
            </configuration>
            """);
        // The README's in-process example as written, pointed at the synthetic model.
        string example = Snippets(Path.Combine(Repo, "README.md")).Single(s => s.Contains("AsChatClient"));
        Assert.Contains("\"models/Llama-4-Scout-17B-16E-Instruct\"", example);
        File.WriteAllText(Path.Combine(app, "Program.cs"), example.Replace("\"models/Llama-4-Scout-17B-16E-Instruct\"", $"@\"{model}\""));

        try
        {
            var (runCode, runLog) = Dotnet("run -c Release", app);
            Assert.True(runCode == 0, runLog);
            Assert.False(string.IsNullOrWhiteSpace(runLog), "the example printed nothing");

            string assets = File.ReadAllText(Path.Combine(app, "obj", "project.assets.json"));
            Assert.Contains($"\"Scout.Llama4/{version}\"", assets);
            Assert.DoesNotContain("\"type\": \"project\"", assets);
            string bin = Path.Combine(app, "bin", "Release", "net10.0");
            Assert.True(File.Exists(Path.Combine(bin, "Scout.dll")));
            // Skia's native library for every platform the app may be published to.
            foreach (var native in new[] { "linux-x64/native/libSkiaSharp.so", "linux-arm64/native/libSkiaSharp.so", "win-x64/native/libSkiaSharp.dll",
                                           "win-arm64/native/libSkiaSharp.dll", "osx/native/libSkiaSharp.dylib" })
                Assert.True(File.Exists(Path.Combine(bin, "runtimes", native)), $"no runtimes/{native}");
        }
        finally
        {
            // The test version leaves nothing in NuGet's cache.
            string cached = Path.Combine(Environment.GetEnvironmentVariable("NUGET_PACKAGES")
                ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages"), "scout.llama4", version);
            if (Directory.Exists(cached)) Directory.Delete(cached, recursive: true);
        }
    }
}
