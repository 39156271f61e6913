using System.CommandLine;
using Scout.Cli.Commands;

namespace Scout.Cli;

public static class Program
{
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error, Console.In);

    /// <summary>Runs the CLI with the given streams (tests call this in-process).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, TextReader? stdin = null)
    {
        var ctx = new CliContext(stdout, stderr, stdin ?? TextReader.Null);
        var root = new RootCommand("Scout: Llama 4 (Scout, Maverick) inference in pure C#");
        foreach (var command in CommandRegistry.All(ctx))
            root.Subcommands.Add(command);
        var parse = root.Parse(args);
        return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
    }
}
