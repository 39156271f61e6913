using System.CommandLine;

namespace Scout.Cli.Commands;

/// <summary>Every subcommand of `scout`, one file each.</summary>
public static class CommandRegistry
{
    public static IEnumerable<Command> All(CliContext ctx)
    {
        yield return InspectCommand.Create(ctx);
        yield return LogitsCommand.Create(ctx);
        yield return RunCommand.Create(ctx);
        yield return ChatCommand.Create(ctx);
        yield return ServeCommand.Create(ctx);
        yield return TokenizeCommand.Create(ctx);
        yield return DetokenizeCommand.Create(ctx);
        yield return PlanCommand.Create(ctx);
        yield return BenchCommand.Create(ctx);
        yield return QuantizeCommand.Create(ctx);
        yield return SynthCommand.Create(ctx);
        yield return PerplexityCommand.Create(ctx);
        yield return EvalCommand.Create(ctx);
    }
}
