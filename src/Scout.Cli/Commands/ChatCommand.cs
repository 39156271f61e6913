using System.CommandLine;
using System.Text;
using System.Text.Json;
using Scout.Generation;
using Scout.Tokenization;

namespace Scout.Cli.Commands;

/// <summary>
/// `scout chat`: an interactive conversation. The KV cache is kept between turns, so each answer only computes the
/// new message. Multi-line input: end a line with \ to continue, or wrap a block in """ lines.
/// Commands: /reset, /save FILE, /load FILE, /image FILE (attach to the next message), /stats, /help, /exit.
/// </summary>
public static class ChatCommand
{
    private sealed record SavedChat(string? System, List<SavedMessage> Messages);
    private sealed record SavedMessage(string Role, string Content);

    public static Command Create(CliContext ctx)
    {
        var flags = new GenerationFlags();
        var system = new Option<string?>("--system", "-s") { Description = "system prompt" };
        var cmd = new Command("chat", "Chat with a model interactively (history stays in the KV cache)") { system };
        foreach (var o in flags.ModelOptions.Concat(flags.SamplingFlags)) cmd.Options.Add(o);
        ctx.SetAction(cmd, p =>
        {
            var (model, tokens) = flags.Load(p, ctx);
            using var _ = model;
            var (keyType, valueType) = flags.Kv.Types(p);
            var generator = new Generator(model, tokens.Tokenizer, p.GetValue(flags.Context), keyType, valueType);
            var conversation = new Conversation(model, p.GetValue(flags.Context), keyType, valueType);
            string? systemPrompt = p.GetValue(system);
            var messages = new List<ChatMessage>();
            void Reset()
            {
                messages.Clear();
                if (!string.IsNullOrEmpty(systemPrompt)) messages.Add(new ChatMessage("system", systemPrompt));
            }
            var images = new List<PreparedImage>();      // every image of the dialog, in prompt order
            var attached = new List<PreparedImage>();    // images for the next user message
            VisionPromptEncoder? vision = null;
            Reset();
            long totalGenerated = 0, totalPrompt = 0, totalCached = 0;
            GenerationStats? last = null;
            ctx.Err.WriteLine("chat: type a message; end a line with \\ or wrap in \"\"\" for several lines; /help for commands");

            while (ReadMessage(ctx) is { } input)
            {
                if (input.StartsWith('/'))
                {
                    var parts = input.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                    string arg = parts.Length > 1 ? parts[1] : "";
                    switch (parts[0])
                    {
                        case "/exit" or "/quit": return 0;
                        case "/image":
                            if (arg.Length == 0 || !File.Exists(arg)) { ctx.Err.WriteLine($"usage: /image FILE (not found: {arg})"); break; }
                            try
                            {
                                vision ??= RunCommand.VisionFor(model);
                                attached.Add(vision.Prepare(File.ReadAllBytes(arg), Path.GetFileName(arg)));
                                ctx.Err.WriteLine($"(image {arg} attached to the next message: {attached[^1].Tiling.TilesX}x{attached[^1].Tiling.TilesY} tiles)");
                            }
                            catch (Exception e) when (e is CliException or ArgumentException or IOException)
                            {
                                ctx.Err.WriteLine($"error: {e.Message}");
                            }
                            break;
                        case "/reset":
                            Reset();
                            images.Clear();
                            attached.Clear();
                            conversation.Reset();
                            ctx.Err.WriteLine("(conversation cleared)");
                            break;
                        case "/save":
                            if (arg.Length == 0) { ctx.Err.WriteLine("usage: /save FILE"); break; }
                            var saved = new SavedChat(systemPrompt, messages.Where(m => m.Role != "system").Select(m => new SavedMessage(m.Role, m.Content)).ToList());
                            File.WriteAllText(arg, JsonSerializer.Serialize(saved, new JsonSerializerOptions { WriteIndented = true }));
                            ctx.Err.WriteLine($"(saved {saved.Messages.Count} messages to {arg})");
                            break;
                        case "/load":
                            try
                            {
                                var loaded = JsonSerializer.Deserialize<SavedChat>(File.ReadAllText(arg)) ?? throw new JsonException("empty file");
                                systemPrompt = loaded.System;
                                Reset();
                                images.Clear();
                                messages.AddRange(loaded.Messages.Select(m => new ChatMessage(m.Role, m.Content)));
                                ctx.Err.WriteLine($"(loaded {loaded.Messages.Count} messages from {arg})");
                            }
                            catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException or ArgumentException)
                            {
                                ctx.Err.WriteLine($"error: cannot load {arg}: {e.Message}");
                            }
                            break;
                        case "/stats":
                            ctx.Err.WriteLine($"messages: {messages.Count}, tokens in cache: {conversation.Tokens.Count} / {conversation.Cache.MaxContext}, " +
                                              $"KV cache {conversation.Cache.AllocatedBytes / (1 << 20)} MiB");
                            ctx.Err.WriteLine($"prompt tokens: {totalPrompt} ({totalCached} reused from cache), generated: {totalGenerated}");
                            if (last is not null)
                                ctx.Err.WriteLine($"last answer: {last.CompletionTokens} tokens, {last.TokensPerSecond:F1} tok/s; prompt {last.PromptTokensPerSecond:F1} tok/s");
                            break;
                        case "/help":
                            ctx.Err.WriteLine("/reset  clear the conversation\n/save FILE  save it as JSON (text only)\n/load FILE  load a saved one\n/image FILE  attach an image to the next message\n/stats  cache and speed\n/exit  quit");
                            break;
                        default:
                            ctx.Err.WriteLine($"unknown command {parts[0]} (/help lists them)");
                            break;
                    }
                    continue;
                }
                if (input.Trim().Length == 0) continue;

                messages.Add(new ChatMessage("user", input) { Images = attached.Select(i => i.Tiling).ToList() });
                images.AddRange(attached);
                attached.Clear();
                var prompt = tokens.ChatFormat.EncodeDialog(messages);
                var request = new GenerationRequest
                {
                    Prompt = prompt,
                    // With images, every turn re-runs the dialog with their features (image positions are never cache-reused).
                    PromptEmbeddings = images.Count > 0 ? vision!.EmbedPrompt(prompt, images) : null,
                    MaxTokens = p.GetValue(flags.MaxTokens),
                    Sampling = flags.Sampling(p),
                    StopStrings = flags.StopStrings(p),
                };
                if (request.Prompt.Length >= conversation.Cache.MaxContext)
                {
                    messages.RemoveAt(messages.Count - 1);
                    ctx.Err.WriteLine($"error: the conversation ({request.Prompt.Length} tokens) no longer fits the context ({conversation.Cache.MaxContext}); /reset or raise --context");
                    continue;
                }
                var answer = new StringBuilder();
                using var cancel = new CancellationTokenSource();
                ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancel.Cancel(); };
                Console.CancelKeyPress += onCancel;
                try
                {
                    foreach (var u in generator.Generate(request, conversation, cancel.Token))
                    {
                        answer.Append(u.Text);
                        ctx.Out.Write(u.Text);
                        ctx.Out.Flush();
                        if (u.Stats is { } s) last = s;
                    }
                    ctx.Out.WriteLine();
                    totalGenerated += last!.CompletionTokens;
                    totalPrompt += last.PromptTokens;
                    totalCached += last.CachedPromptTokens;
                    ctx.Err.WriteLine($"[{last.CompletionTokens} tokens, {last.TokensPerSecond:F1} tok/s; {last.PromptTokens - last.CachedPromptTokens} new prompt tokens]");
                }
                catch (OperationCanceledException)
                {
                    ctx.Out.WriteLine();
                    ctx.Err.WriteLine("(answer interrupted)");
                }
                finally
                {
                    Console.CancelKeyPress -= onCancel;
                }
                messages.Add(new ChatMessage("assistant", answer.ToString()));
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>One message from the input: a line, lines joined by a trailing \, or a """ block. Null at end of input.</summary>
    private static string? ReadMessage(CliContext ctx)
    {
        ctx.Err.Write("> ");
        ctx.Err.Flush();
        var line = ctx.In.ReadLine();
        if (line is null) return null;
        if (line.Trim() == "\"\"\"")
        {
            var block = new StringBuilder();
            while (ctx.In.ReadLine() is { } l && l.Trim() != "\"\"\"") block.Append(block.Length > 0 ? "\n" : "").Append(l);
            return block.ToString();
        }
        var text = new StringBuilder();
        while (line.EndsWith('\\'))
        {
            text.Append(line, 0, line.Length - 1).Append('\n');
            ctx.Err.Write(". ");
            line = ctx.In.ReadLine();
            if (line is null) return text.ToString();
        }
        return text.Append(line).ToString();
    }
}
