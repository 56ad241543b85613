using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace DataOps.Engine.Logging;

/// <summary>
/// -Debug's view of the SQL sent: Npgsql reports each command it completed (text and duration, never
/// its parameter values: parameter logging stays off) and this hands it to whoever traces the current
/// async flow. Nothing traces by default, so the cost is one AsyncLocal read per command.
/// </summary>
public static class SqlTrace
{
    private static readonly AsyncLocal<Action<string>?> Sink = new();
    private static int _installed;

    /// <summary>
    /// Routes Npgsql's command log here. Npgsql reads its global logger factory when it first builds a
    /// pool for a connection string, so this runs once, before any connection (the cmdlet base's static
    /// constructor calls it).
    /// </summary>
    public static void Install()
    {
        if (Interlocked.Exchange(ref _installed, 1) == 0)
        {
            NpgsqlLoggingConfiguration.InitializeLogging(new Factory(), parameterLoggingEnabled: false);
        }
    }

    /// <summary>Sends the SQL that this async flow (and the tasks it starts) runs to <paramref name="sink"/> until disposed.</summary>
    public static IDisposable Begin(Action<string> sink)
    {
        var previous = Sink.Value;
        Sink.Value = sink;
        return new Scope(previous);
    }

    /// <summary>What one completed command looks like in -Debug.</summary>
    internal static string Describe(string commandText, long durationMs) =>
        $"SQL ({durationMs} ms): {AdHocSafe(commandText.Trim())}";

    // Literal passwords in a user's own statement (ALTER ROLE ... PASSWORD '...') are masked, as Invoke-DataOpsQuery's -Debug does.
    private static string AdHocSafe(string sql) => Queries.AdHocQuery.SafeText(sql);

    private sealed class Scope(Action<string>? previous) : IDisposable
    {
        public void Dispose() => Sink.Value = previous;
    }

    private sealed class Factory : ILoggerFactory
    {
        public ILogger CreateLogger(string categoryName) => categoryName == "Npgsql.Command" ? new CommandLogger() : NullLogger.Instance;

        public void AddProvider(ILoggerProvider provider)
        {
        }

        public void Dispose()
        {
        }
    }

    /// <summary>Takes Npgsql's "command execution completed" event only: "Executing command" (Debug) would repeat the text.</summary>
    private sealed class CommandLogger : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel == LogLevel.Information && Sink.Value is not null;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (Sink.Value is not { } sink || eventId.Name is not ("CommandExecutionCompleted" or "BatchExecutionCompleted") || state is not IReadOnlyList<KeyValuePair<string, object?>> values)
            {
                return;
            }

            string? text = null;
            long duration = 0;
            foreach (var (key, value) in values)
            {
                switch (key)
                {
                    case "CommandText":
                        text = value as string;
                        break;
                    case "BatchCommands" when value is string[] batch:
                        text = string.Join(";\n", batch);
                        break;
                    case "DurationMs" when value is long ms:
                        duration = ms;
                        break;
                }
            }

            if (text is not null)
            {
                sink(Describe(text, duration));
            }
        }
    }
}
