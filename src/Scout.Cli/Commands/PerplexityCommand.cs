using System.CommandLine;
using System.Globalization;
using Scout.Evaluation;
using Scout.Generation;
using Scout.Tokenization;

namespace Scout.Cli.Commands;

/// <summary>`scout perplexity`: llama-perplexity's perplexity and KL-divergence measures (the work is in <see cref="Perplexity"/>).</summary>
public static class PerplexityCommand
{
    public static Command Create(CliContext ctx)
    {
        var model = new Option<string>("--model", "-m") { Description = "model folder, .safetensors or .gguf", Required = true };
        var config = new Option<string?>("--config") { Description = "config.json overriding values the weights file does not carry" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer.model / tokenizer.json (default: next to the weights, or the GGUF's own)" };
        var file = new Option<string?>("--file", "-f") { Description = "text file to evaluate (tokenized once, BOS first)" };
        var tokens = new Option<string?>("--tokens") { Description = "pre-tokenized input: JSON {\"input_ids\": [...]} or an array, used as given" };
        var context = new Option<int>("--ctx", "-c") { Description = "tokens per chunk; each chunk is scored on its second half", DefaultValueFactory = _ => 512 };
        var batch = new Option<int>("--batch", "-b") { Description = "tokens per forward pass: batch/ctx chunks run together", DefaultValueFactory = _ => 2048 };
        var chunks = new Option<int?>("--chunks") { Description = "evaluate at most this many chunks" };
        var klBase = new Option<string?>("--kl-divergence-base") { Description = "save this model's log-probabilities of every scored token to FILE (the reference)" };
        var klFormat = new Option<string>("--kl-format") { Description = "base file storage: u16 (llama.cpp's file, ln p within 1.23e-4) or f32 (exact)", DefaultValueFactory = _ => "u16" };
        var kl = new Option<string?>("--kl-divergence") { Description = "compare this model with a base FILE (its tokens and ctx are used)" };
        var json = new Option<bool>("--json") { Description = "print the final result as JSON (full precision) instead of text" };
        var cmd = new Command("perplexity", "Perplexity of a text, and KL divergence against a reference model (as llama-perplexity)")
        {
            model, config, tokenizer, file, tokens, context, batch, chunks, klBase, klFormat, kl, json,
        };
        ctx.SetAction(cmd, p =>
        {
            string? basePath = p.GetValue(kl), savePath = p.GetValue(klBase);
            if (basePath is not null && savePath is not null) throw new CliException("--kl-divergence and --kl-divergence-base are exclusive");
            var format = p.GetValue(klFormat)!.ToLowerInvariant() switch
            {
                "u16" => KlBaseFormat.U16,
                "f32" => KlBaseFormat.F32,
                var other => throw new CliException($"--kl-format: unknown format '{other}' (expected u16 or f32)"),
            };
            string? textPath = p.GetValue(file), tokensPath = p.GetValue(tokens);
            if (basePath is null && (textPath is null) == (tokensPath is null)) throw new CliException("give the input with either -f/--file TEXT or --tokens IDS.json");
            if (basePath is not null && (textPath ?? tokensPath) is not null) throw new CliException("--kl-divergence reads its tokens from the base file: drop -f/--tokens");
            using var baseFile = basePath is null ? null : new KlBaseReader(basePath);

            string modelPath = p.GetValue(model)!;
            int[]? ids = tokensPath is not null ? LogitsCommand.ReadTokens(tokensPath) : null;
            TokenizerBundle? bundle = null;
            if (textPath is not null)
            {
                if (!File.Exists(textPath)) throw new CliException($"text file not found: {textPath}");
                bundle = TokenizerSource.Resolve(modelPath, p.GetValue(tokenizer));
            }
            using var m = CliModelLoader.Load(ctx, modelPath, p.GetValue(config));
            int? bos = m.Config.BosTokenId ?? bundle?.Tokenizer.BosId;
            if (textPath is not null)
            {
                var watch = System.Diagnostics.Stopwatch.StartNew();
                ids = PerplexityInput.Tokenize(bundle!.Tokenizer, File.ReadAllText(textPath), bos);
                ctx.Err.WriteLine($"tokenized {textPath}: {ids.Length:N0} tokens in {watch.Elapsed.TotalSeconds:F2} s");
            }
            var options = new PerplexityOptions { Context = p.GetValue(context), Batch = p.GetValue(batch), MaxChunks = p.GetValue(chunks), Bos = bos };
            bool asJson = p.GetValue(json);
            var o = asJson ? TextWriter.Null : ctx.Out;
            var inv = CultureInfo.InvariantCulture;
            if (baseFile is not null)
            {
                var h = baseFile.Header;
                ctx.Err.WriteLine($"kl-divergence: {h.Chunks} chunks of {h.Context} from {basePath} ({h.Format}), batch {options.Batch}");
                o.WriteLine("chunk             PPL          ln(PPL(Q)/PPL(base))      KL Divergence          Δp RMS          Same top p");
                var r = CliProgressBar.Run(ctx, "kl-divergence", bar => Perplexity.CompareWithBase(m, baseFile, options, e =>
                {
                    var s = e.Kl!;
                    o.WriteLine(string.Format(inv, "{0,4}    {1,10:F4} ± {2,8:F4}    {3,10:F5} ± {4,8:F5}    {5,10:F5} ± {6,8:F5}    {7,6:F3} ± {8,5:F3} %    {9,6:F3} ± {10,5:F3} %",
                        e.Chunk, s.Ppl.Value, s.Ppl.Error, s.LnPplRatio.Value, s.LnPplRatio.Error, s.Kld.Value, s.Kld.Error,
                        100 * s.RmsDeltaP.Value, 100 * s.RmsDeltaP.Error, 100 * s.SameTop.Value, 100 * s.SameTop.Error));
                    bar(e.Chunk, e.Chunks, null);
                }));
                if (asJson) ctx.Out.WriteLine(ToJson(r));
                else PrintKl(o, r);
                return 0;
            }

            int n = Perplexity.ChunkCount(ids!.Length, options);
            ctx.Err.WriteLine($"perplexity: {ids.Length:N0} tokens, {n} chunks of {options.Context}, batch {options.Batch} ({Math.Max(1, Math.Min(options.Batch / options.Context, Math.Max(n, 1)))} chunks per pass)"
                + (savePath is null ? "" : $", saving the base to {savePath} ({format})"));
            var result = CliProgressBar.Run(ctx, "perplexity", bar => Perplexity.Run(m, ids, options, format, savePath, e =>
            {
                o.Write(string.Format(inv, "[{0}]{1:F4},", e.Chunk, e.Ppl.Value));
                o.Flush();
                bar(e.Chunk, e.Chunks, null);
            }));
            if (asJson) ctx.Out.WriteLine(ToJson(result));
            o.WriteLine();
            o.WriteLine(string.Format(inv, "Final estimate: PPL = {0:F4} +/- {1:F5}", result.Ppl.Value, result.Ppl.Error));
            ctx.Err.WriteLine(string.Format(inv, "{0:N0} tokens scored in {1:F2} s ({2:F1} tokens/s evaluated)",
                result.Scored, result.Elapsed.TotalSeconds, result.Chunks * (double)result.Context / Math.Max(result.Elapsed.TotalSeconds, 1e-9)));
            return 0;
        });
        return cmd;
    }

    private static string ToJson(PerplexityResult r)
    {
        object? E(Estimate e) => new { value = e.Value, error = e.Error };
        var s = r.Kl;
        var doc = new
        {
            ppl = E(r.Ppl), scored = r.Scored, chunks = r.Chunks, ctx = r.Context, seconds = r.Elapsed.TotalSeconds,
            kl = s is null ? null : new
            {
                ppl_base = E(s.PplBase), ln_ppl_ratio = E(s.LnPplRatio), kld = E(s.Kld), kld_median = s.KldMedian, kld_99 = s.Kld99,
                kld_99_9 = s.Kld999, kld_max = s.KldMax, delta_p = E(s.DeltaP), delta_p_median = s.DeltaPMedian, rms_delta_p = E(s.RmsDeltaP),
                same_top = E(s.SameTop),
            },
        };
        return System.Text.Json.JsonSerializer.Serialize(doc, new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
    }

    private static void PrintKl(TextWriter o, PerplexityResult r)
    {
        var s = r.Kl!;
        var inv = CultureInfo.InvariantCulture;
        o.WriteLine();
        o.WriteLine("====== Perplexity statistics ======");
        o.WriteLine(string.Format(inv, "Mean PPL(Q)                   : {0,10:F6} ± {1,10:F6}", s.Ppl.Value, s.Ppl.Error));
        o.WriteLine(string.Format(inv, "Mean PPL(base)                : {0,10:F6} ± {1,10:F6}", s.PplBase.Value, s.PplBase.Error));
        o.WriteLine(string.Format(inv, "Mean ln(PPL(Q)/PPL(base))     : {0,10:F6} ± {1,10:F6}", s.LnPplRatio.Value, s.LnPplRatio.Error));
        o.WriteLine();
        o.WriteLine("====== KL divergence statistics ======");
        o.WriteLine(string.Format(inv, "Mean    KLD: {0,10:F6} ± {1,10:F6}", s.Kld.Value, s.Kld.Error));
        o.WriteLine(string.Format(inv, "Maximum KLD: {0,10:F6}", s.KldMax));
        o.WriteLine(string.Format(inv, "99.9%   KLD: {0,10:F6}", s.Kld999));
        o.WriteLine(string.Format(inv, "99.0%   KLD: {0,10:F6}", s.Kld99));
        o.WriteLine(string.Format(inv, "Median  KLD: {0,10:F6}", s.KldMedian));
        o.WriteLine();
        o.WriteLine("====== Token probability statistics ======");
        o.WriteLine(string.Format(inv, "Mean    Δp: {0,6:F3} ± {1,5:F3} %", 100 * s.DeltaP.Value, 100 * s.DeltaP.Error));
        o.WriteLine(string.Format(inv, "Median  Δp: {0,6:F3}%", 100 * s.DeltaPMedian));
        o.WriteLine(string.Format(inv, "RMS Δp    : {0,6:F3} ± {1,5:F3} %", 100 * s.RmsDeltaP.Value, 100 * s.RmsDeltaP.Error));
        o.WriteLine(string.Format(inv, "Same top p: {0,6:F3} ± {1,5:F3} %", 100 * s.SameTop.Value, 100 * s.SameTop.Error));
    }
}
