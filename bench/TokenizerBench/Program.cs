using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Scout.Tokenization;

// Usage: TokenizerBench [tokenizer path] [MB, default 4] [file to save the corpus to]
// Encodes a few MB of mixed-language text built from the tokenizer fixtures (shuffled, repeated) and reports tokens/s and
// MB/s single-threaded (Meta's Encode) and with all cores (EncodeParallel), checking that both give the same ids.
string fixtures = FindFixtures();
string tokenizerPath = args.Length > 0 ? args[0] : Path.Combine(fixtures, "llama4", "tokenizer.model");
double targetMb = args.Length > 1 ? double.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 4;

var sw = Stopwatch.StartNew();
var tok = Llama4Tokenizer.Load(tokenizerPath);
Console.WriteLine($"load: {sw.Elapsed.TotalMilliseconds:F0} ms ({tokenizerPath})");

var texts = new List<string>();
foreach (var file in new[] { "encode.jsonl", "chat.jsonl" })
    foreach (var line in File.ReadLines(Path.Combine(fixtures, file)))
    {
        using var doc = JsonDocument.Parse(line);
        string t = doc.RootElement.GetProperty("text").GetString()!;
        if (t.Length is > 0 and < 20_000) texts.Add(t); // skip the two 25k+ slicing stress cases
    }
var rng = new Random(1234);
var sb = new StringBuilder();
while (Encoding.UTF8.GetByteCount(sb.ToString()) < targetMb * 1e6)
{
    foreach (var t in texts.OrderBy(_ => rng.Next())) sb.Append(t).Append('\n');
}
string corpus = sb.ToString();
long bytes = Encoding.UTF8.GetByteCount(corpus);
if (args.Length > 2)
{
    // save the corpus (and our ids) so other tokenizers can be timed on exactly the same text
    File.WriteAllText(args[2], corpus, new UTF8Encoding(false));
    Console.WriteLine($"corpus written to {args[2]}");
}
Console.WriteLine($"corpus: {bytes / 1e6:F2} MB UTF-8, {corpus.Length:N0} chars, {texts.Count} distinct fixture texts");

// warm-up (JIT, per-thread caches)
tok.Encode(corpus[..Math.Min(corpus.Length, 200_000)]);
tok.EncodeParallel(corpus[..Math.Min(corpus.Length, 400_000)]);

int[] serial = [];
var times = new List<double>();
var cpuTimes = new List<double>();
var process = Process.GetCurrentProcess();
for (int r = 0; r < 5; r++)
{
    process.Refresh();
    var cpu0 = process.TotalProcessorTime;
    sw.Restart();
    serial = tok.Encode(corpus);
    times.Add(sw.Elapsed.TotalSeconds);
    process.Refresh();
    cpuTimes.Add((process.TotalProcessorTime - cpu0).TotalSeconds);
}
double best = times.Min();
Console.WriteLine($"single-threaded: {serial.Length:N0} tokens, best of 5 {best:F3} s wall -> {serial.Length / best / 1e6:F2} M tokens/s, {bytes / best / 1e6:F2} MB/s");
double bestCpu = cpuTimes.Min();
Console.WriteLine($"single-threaded by process CPU time (robust on a busy box): {bestCpu:F3} s -> {serial.Length / bestCpu / 1e6:F2} M tokens/s, {bytes / bestCpu / 1e6:F2} MB/s");

int[] parallel = [];
times.Clear();
for (int r = 0; r < 5; r++)
{
    sw.Restart();
    parallel = tok.EncodeParallel(corpus);
    times.Add(sw.Elapsed.TotalSeconds);
}
best = times.Min();
Console.WriteLine($"all {Environment.ProcessorCount} cores:     {parallel.Length:N0} tokens, best of 5 {best:F3} s -> {parallel.Length / best / 1e6:F2} M tokens/s, {bytes / best / 1e6:F2} MB/s");
Console.WriteLine(serial.AsSpan().SequenceEqual(parallel) ? "parallel ids == single-threaded ids" : "MISMATCH between parallel and single-threaded ids");

// a cold-cache figure: fresh tokenizer (empty piece cache), one pass
var cold = Llama4Tokenizer.Load(tokenizerPath);
sw.Restart();
cold.Encode(corpus);
Console.WriteLine($"single-threaded, cold piece cache (incl. JIT of nothing new): {bytes / sw.Elapsed.TotalSeconds / 1e6:F2} MB/s");
return serial.AsSpan().SequenceEqual(parallel) ? 0 : 1;

static string FindFixtures()
{
    var env = Environment.GetEnvironmentVariable("SCOUT_SHARED");
    if (!string.IsNullOrEmpty(env)) return Path.Combine(env, "fixtures", "tokenizer");
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
    {
        var candidate = Path.Combine(dir.FullName, "shared", "fixtures", "tokenizer");
        if (Directory.Exists(candidate)) return candidate;
    }
    throw new DirectoryNotFoundException("shared/fixtures/tokenizer not found (set SCOUT_SHARED)");
}
