using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Scout.Generation;
using Scout.Tokenization;

namespace Scout.Cli.Commands;

/// <summary>`scout run`: one completion, streamed to stdout (chat-formatted unless --raw).</summary>
public static class RunCommand
{
    public static Command Create(CliContext ctx)
    {
        var flags = new GenerationFlags();
        var prompt = new Option<string?>("--prompt", "-p") { Description = "the prompt (\"-\" reads it from stdin)" };
        var promptFile = new Option<string?>("--prompt-file", "-f") { Description = "read the prompt from a file" };
        var system = new Option<string?>("--system", "-s") { Description = "system prompt (chat mode)" };
        var raw = new Option<bool>("--raw") { Description = "plain completion of the prompt text, no chat format" };
        var json = new Option<bool>("--json") { Description = "print one JSON object: text, token counts, finish reason, timings" };
        var ignoreEos = new Option<bool>("--ignore-eos") { Description = "keep going past end-of-turn tokens (benchmarks)" };
        var images = new Option<string[]>("--image") { Description = "image file for the prompt (repeatable; needs a checkpoint with a vision tower)", AllowMultipleArgumentsPerToken = false };
        var cmd = new Command("run", "Generate a completion for a prompt") { prompt, promptFile, system, raw, json, ignoreEos, images };
        foreach (var o in flags.ModelOptions.Concat(flags.SamplingFlags)) cmd.Options.Add(o);
        ctx.SetAction(cmd, p =>
        {
            string text = ReadPrompt(ctx, p.GetValue(prompt), p.GetValue(promptFile));
            var load = Stopwatch.StartNew();
            var (model, tokens) = flags.Load(p, ctx);
            using var _ = model;
            double loadSeconds = load.Elapsed.TotalSeconds;

            var imageFiles = p.GetValue(images) ?? [];
            if (imageFiles.Length > 0 && p.GetValue(raw)) throw new CliException("images need the chat format: drop --raw");
            var prepared = new List<PreparedImage>();
            VisionPromptEncoder? vision = null;
            if (imageFiles.Length > 0)
            {
                vision = VisionFor(model);
                foreach (var file in imageFiles)
                {
                    if (!File.Exists(file)) throw new CliException($"image not found: {file}");
                    prepared.Add(vision.Prepare(File.ReadAllBytes(file), Path.GetFileName(file)));
                }
            }

            int[] ids;
            float[]? rows = null;
            if (p.GetValue(raw))
            {
                var enc = tokens.Tokenizer.Encode(text);
                ids = tokens.Tokenizer.BosId is { } bos ? [bos, .. enc] : enc;
            }
            else
            {
                var messages = new List<ChatMessage>();
                if (p.GetValue(system) is { Length: > 0 } s) messages.Add(new ChatMessage("system", s));
                messages.Add(new ChatMessage("user", text) { Images = prepared.Select(i => i.Tiling).ToList() });
                ids = tokens.ChatFormat.EncodeDialog(messages);
                if (vision is not null) rows = vision.EmbedPrompt(ids, prepared);
            }
            var request = new GenerationRequest
            {
                Prompt = ids,
                MaxTokens = p.GetValue(flags.MaxTokens),
                Sampling = flags.Sampling(p),
                StopStrings = flags.StopStrings(p),
                IgnoreStopIds = p.GetValue(ignoreEos),
                PromptEmbeddings = rows,
            };
            var (keyType, valueType) = flags.Kv.Types(p);
            var generator = new Generator(model, tokens.Tokenizer, p.GetValue(flags.Context), keyType, valueType);
            using var cancel = new CancellationTokenSource();
            ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancel.Cancel(); };
            Console.CancelKeyPress += onCancel;
            try
            {
                bool asJson = p.GetValue(json);
                var output = new System.Text.StringBuilder();
                GenerationUpdate? final = null;
                var tokenIds = new List<int>();
                try
                {
                    foreach (var u in generator.Generate(request, cancel.Token))
                    {
                        output.Append(u.Text);
                        if (u.Token is { } t) tokenIds.Add(t.Id);
                        if (!asJson) { ctx.Out.Write(u.Text); ctx.Out.Flush(); }
                        if (u.IsFinal) final = u;
                    }
                }
                catch (OperationCanceledException)
                {
                    ctx.Err.WriteLine();
                    ctx.Err.WriteLine("cancelled");
                    return 130;
                }
                var stats = final!.Stats!;
                if (asJson)
                {
                    ctx.Out.WriteLine(JsonSerializer.Serialize(new
                    {
                        text = output.ToString(),
                        prompt_tokens = stats.PromptTokens,
                        completion_tokens = stats.CompletionTokens,
                        finish_reason = final.Finish == FinishReason.Length ? "length" : "stop",
                        stop = stats.StopString,
                        token_ids = tokenIds,
                        timings = new
                        {
                            load_s = Math.Round(loadSeconds, 3),
                            prompt_s = Math.Round(stats.PromptTime.TotalSeconds, 4),
                            generation_s = Math.Round(stats.GenerationTime.TotalSeconds, 4),
                            prompt_tokens_per_s = Math.Round(stats.PromptTokensPerSecond, 2),
                            tokens_per_s = Math.Round(stats.TokensPerSecond, 2),
                        },
                    }, TokenizeCommand.JsonOut));
                }
                else
                {
                    ctx.Out.WriteLine();
                    ctx.Err.WriteLine($"[{stats.PromptTokens} prompt tokens in {stats.PromptTime.TotalSeconds:F2}s, {stats.CompletionTokens} tokens at {stats.TokensPerSecond:F1} tok/s, {(final.Finish == FinishReason.Length ? "length" : "stop")}]");
                }
                return 0;
            }
            finally
            {
                Console.CancelKeyPress -= onCancel;
            }
        });
        return cmd;
    }

    /// <summary>The vision tower of the loaded checkpoint, or a clear error when it has none.</summary>
    internal static VisionPromptEncoder VisionFor(Scout.Model.Llama4Model model)
    {
        var ckpt = model.Checkpoint;
        if (ckpt is null || !ckpt.Tensors.Keys.Any(k => k.StartsWith("vision_model.", StringComparison.Ordinal)))
            throw new CliException("this checkpoint has no vision tower (no vision_model.* weights), so it cannot take images");
        var vlm = new Scout.Vision.VisionLanguageModel(model, Scout.Vision.VisionEncoder.Load(ckpt, model.Backend.HostPool),
            Scout.Vision.VisionLanguageModel.ReadImageTokenIds(Path.Combine(ckpt.Folder, "config.json")));
        return new VisionPromptEncoder(vlm);
    }

    private static string ReadPrompt(CliContext ctx, string? prompt, string? file)
    {
        if (prompt is not null && file is not null) throw new CliException("give --prompt or --prompt-file, not both");
        if (file is not null) return File.Exists(file) ? File.ReadAllText(file) : throw new CliException($"prompt file not found: {file}");
        if (prompt == "-") return ctx.In.ReadToEnd();
        if (string.IsNullOrEmpty(prompt)) throw new CliException("a prompt is required: --prompt \"...\" (or -p -, or --prompt-file)");
        return prompt;
    }
}
