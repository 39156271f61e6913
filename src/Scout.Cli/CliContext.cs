using System.CommandLine;
using Scout.Formats;

namespace Scout.Cli;

/// <summary>The streams a command writes to, and a wrapper that turns expected failures into clear messages.</summary>
public sealed class CliContext(TextWriter stdout, TextWriter stderr, TextReader stdin)
{
    public TextWriter Out { get; } = stdout;
    public TextWriter Err { get; } = stderr;
    public TextReader In { get; } = stdin;

    /// <summary>Runs a command body: user errors print "error: ..." and exit 1, never a stack trace.</summary>
    public int Guard(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is ModelLoadException or CliException or InvalidDataException or FileNotFoundException
                                      or DirectoryNotFoundException or NotSupportedException or ArgumentException or FormatException
                                      or System.Text.Json.JsonException or UnauthorizedAccessException or IOException)
        {
            Err.WriteLine($"error: {e.Message}");
            return 1;
        }
        catch (OperationCanceledException)
        {
            Err.WriteLine("cancelled");
            return 130;
        }
        catch (Exception e) when (Environment.GetEnvironmentVariable("SCOUT_DEBUG") is null)
        {
            Err.WriteLine($"error: internal error ({e.GetType().Name}): {e.Message}");
            Err.WriteLine("set SCOUT_DEBUG=1 for the stack trace");
            return 2;
        }
    }

    public void SetAction(Command command, Func<ParseResult, int> body)
        => command.SetAction(parse => Guard(() => body(parse)));
}

/// <summary>A usage error the CLI reports as a plain message.</summary>
public sealed class CliException(string message) : Exception(message);
