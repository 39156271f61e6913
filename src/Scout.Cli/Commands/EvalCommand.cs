using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Scout.Evaluation;
using Scout.Generation;

namespace Scout.Cli.Commands;

/// <summary>`scout eval`: multiple-choice accuracy by log-likelihood (the work is in <see cref="MultipleChoice"/>).</summary>
public static class EvalCommand
{
    public static Command Create(CliContext ctx)
    {
        var model = new Option<string>("--model", "-m") { Description = "model folder, .safetensors or .gguf", Required = true };
        var config = new Option<string?>("--config") { Description = "config.json overriding values the weights file does not carry" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer.model / tokenizer.json (default: next to the weights, or the GGUF's own)" };
        var tasks = new Option<string>("--tasks") { Description = "JSON lines: {question, choices, answer}, HellaSwag {ctx, endings, label}, or {context_ids, choice_ids, answer}", Required = true };
        var limit = new Option<int?>("--limit") { Description = "evaluate only the first N items" };
        var chat = new Option<bool>("--chat") { Description = "put each question in the chat format (user turn + assistant header) instead of raw text" };
        var json = new Option<bool>("--json") { Description = "print the result as JSON (accuracies and every choice's log-likelihood)" };
        var cmd = new Command("eval", "Multiple-choice accuracy: each choice scored by the log-likelihood of its tokens after the shared context")
        {
            model, config, tokenizer, tasks, limit, chat, json,
        };
        ctx.SetAction(cmd, p =>
        {
            if (p.GetValue(limit) is < 1) throw new CliException($"--limit must be positive (got {p.GetValue(limit)})");
            var items = MultipleChoice.Load(p.GetValue(tasks)!, p.GetValue(limit));
            string modelPath = p.GetValue(model)!;
            TokenizerBundle? bundle = items.Any(i => i.ContextIds is null) ? TokenizerSource.Resolve(modelPath, p.GetValue(tokenizer)) : null;
            using var m = CliModelLoader.Load(ctx, modelPath, p.GetValue(config));
            var style = p.GetValue(chat) ? PromptStyle.Chat : PromptStyle.Raw;
            bool asJson = p.GetValue(json);
            var inv = CultureInfo.InvariantCulture;
            var result = CliProgressBar.Run(ctx, "eval", bar => MultipleChoice.Evaluate(m, items, bundle?.Tokenizer, bundle?.ChatFormat, style, (done, total, r) =>
            {
                bar(done, total, null);
                if (!asJson && !CliProgressBar.Interactive(ctx))
                    ctx.Err.WriteLine(string.Format(inv, "[{0}/{1}] answer {2}, picked {3} (norm {4})", done, total, r.Answer, r.Picked, r.PickedNormalized));
            }));
            if (asJson)
            {
                var doc = new
                {
                    items = result.Items.Count,
                    acc = result.Accuracy.Value,
                    acc_stderr = result.Accuracy.Error,
                    acc_norm = result.AccuracyNormalized.Value,
                    acc_norm_stderr = result.AccuracyNormalized.Error,
                    context_tokens = result.ContextTokens,
                    choice_tokens = result.ChoiceTokens,
                    seconds = result.Elapsed.TotalSeconds,
                    results = result.Items.Select(r => new
                    {
                        index = r.Index,
                        answer = r.Answer,
                        picked = r.Picked,
                        picked_norm = r.PickedNormalized,
                        loglikelihoods = r.Choices.Select(c => c.LogLikelihood).ToArray(),
                        tokens = r.Choices.Select(c => c.Tokens).ToArray(),
                    }),
                };
                ctx.Out.WriteLine(JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }));
                return 0;
            }
            ctx.Out.WriteLine(string.Format(inv, "items      {0}", result.Items.Count));
            ctx.Out.WriteLine(string.Format(inv, "acc        {0:F4} ± {1:F4}", result.Accuracy.Value, result.Accuracy.Error));
            ctx.Out.WriteLine(string.Format(inv, "acc_norm   {0:F4} ± {1:F4}   (per-token mean log-likelihood)", result.AccuracyNormalized.Value, result.AccuracyNormalized.Error));
            ctx.Err.WriteLine(string.Format(inv, "{0:N0} context + {1:N0} choice tokens in {2:F2} s", result.ContextTokens, result.ChoiceTokens, result.Elapsed.TotalSeconds));
            return 0;
        });
        return cmd;
    }
}
