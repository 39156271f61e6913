using System.CommandLine;
using System.CommandLine.Help;
using Scout.Cli.Commands;

namespace Scout.Cli;

public static class Program
{
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error, Console.In);

    /// <summary>Runs the CLI with the given streams (tests call this in-process).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, TextReader? stdin = null)
    {
        var ctx = new CliContext(stdout, stderr, stdin ?? TextReader.Null);
        // A plain command named "scout" (a RootCommand takes the executable's name, "Scout.Cli"), so usage lines say scout.
        var root = new Command("scout", "Scout: Llama 4 (Scout, Maverick) inference in pure C#") { new HelpOption(), new VersionOption() };
        foreach (var command in CommandRegistry.All(ctx))
            root.Subcommands.Add(command);
        var parse = root.Parse(args);
        return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
    }
}
