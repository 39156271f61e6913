using Spectre.Console;

namespace Scout.Cli.Commands;

/// <summary>
/// A progress bar on stderr when stderr is an interactive terminal; otherwise nothing (the command's own lines
/// say how far it is). <see cref="Run"/> gives the body a callback taking (done, total, description).
/// </summary>
public static class CliProgressBar
{
    public static bool Interactive(CliContext ctx)
        => ReferenceEquals(ctx.Err, Console.Error) && !Console.IsErrorRedirected && AnsiConsole.Profile.Capabilities.Interactive;

    public static T Run<T>(CliContext ctx, string title, Func<Action<int, int, string?>, T> body)
    {
        if (!Interactive(ctx)) return body((_, _, _) => { });
        T? result = default;
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(p =>
            {
                var task = p.AddTask(title, maxValue: 1);
                result = body((done, total, text) =>
                {
                    task.MaxValue = Math.Max(1, total);
                    task.Value = done;
                    if (text is not null) task.Description = $"{title} {text}";
                });
            });
        return result!;
    }
}
