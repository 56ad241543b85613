using Serilog;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace DataOps.Engine.Logging;

/// <summary>
/// The structured log of one run of a long operation: a JSON-lines file (one Serilog compact JSON
/// event per line) under the log directory, with every event mirrored to the observer as a Verbose
/// line. Messages pass through <see cref="SecretRedactor"/> registered secrets before they are written.
/// </summary>
public sealed class RunLog : IDisposable
{
    private readonly Logger _logger;
    private readonly SecretRedactor _redactor;

    private RunLog(Logger logger, string? path, string runId, SecretRedactor redactor)
    {
        _logger = logger;
        Path = path;
        RunId = runId;
        _redactor = redactor;
    }

    /// <summary>Full path of the JSON log file, or null when file logging is off.</summary>
    public string? Path { get; }

    public string RunId { get; }

    /// <summary>
    /// Where run logs go: $DATAOPS_LOG_DIR, else the per-user data folder's DataOps/logs.
    /// </summary>
    public static string DefaultDirectory()
    {
        var fromEnv = Environment.GetEnvironmentVariable("DATAOPS_LOG_DIR");
        if (!string.IsNullOrWhiteSpace(fromEnv))
        {
            return fromEnv;
        }

        var baseDir = Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create);
        if (string.IsNullOrEmpty(baseDir))
        {
            baseDir = System.IO.Path.GetTempPath();
        }

        return System.IO.Path.Combine(baseDir, "DataOps", "logs");
    }

    /// <summary>Opens a run log for <paramref name="operation"/> (for example "Install-DataOpsSchema").</summary>
    public static RunLog Open(string operation, IOperationObserver observer, SecretRedactor? redactor = null, string? directory = null)
    {
        redactor ??= new SecretRedactor();
        var runId = Guid.NewGuid().ToString("N")[..12];
        var dir = directory ?? DefaultDirectory();
        Directory.CreateDirectory(dir);
        var stamp = DateTime.UtcNow.ToString("yyyyMMdd-HHmmss");
        var path = System.IO.Path.Combine(dir, $"{operation}-{stamp}-{runId}.json");
        var logger = new LoggerConfiguration()
            .MinimumLevel.Debug()
            .Enrich.WithProperty("Operation", operation)
            .Enrich.WithProperty("RunId", runId)
            .WriteTo.File(new CompactJsonFormatter(), path)
            .WriteTo.Sink(new ObserverSink(observer, redactor))
            .CreateLogger();
        var log = new RunLog(logger, path, runId, redactor);
        log.Information("Run {RunId} of {Operation} started", runId, operation);
        return log;
    }

    public void Debug(string template, params object?[] values) => Write(LogEventLevel.Debug, null, template, values);

    public void Information(string template, params object?[] values) => Write(LogEventLevel.Information, null, template, values);

    public void Warning(string template, params object?[] values) => Write(LogEventLevel.Warning, null, template, values);

    public void Error(Exception? exception, string template, params object?[] values) => Write(LogEventLevel.Error, exception, template, values);

    private void Write(LogEventLevel level, Exception? exception, string template, object?[] values)
    {
        // Values are redacted before Serilog sees them, so neither the file nor Verbose carries a secret.
        var safe = values.Select(v => v is string s ? _redactor.Redact(s) : v).ToArray();
        var safeException = exception is null ? null : new RedactedException(exception, _redactor);
        _logger.Write(level, safeException, template, safe);
    }

    public void Dispose()
    {
        _logger.Dispose();
    }

    private sealed class ObserverSink(IOperationObserver observer, SecretRedactor redactor) : ILogEventSink
    {
        public void Emit(LogEvent logEvent)
        {
            if (logEvent.Level < LogEventLevel.Information)
            {
                return;
            }

            var text = redactor.Redact(logEvent.RenderMessage());
            observer.Verbose(text);
        }
    }

    /// <summary>Carries an exception's type and redacted message without its original text.</summary>
    private sealed class RedactedException(Exception inner, SecretRedactor redactor)
        : Exception($"{inner.GetType().Name}: {redactor.Redact(inner.Message)}")
    {
        public override string? StackTrace => redactor.Redact(inner.StackTrace ?? string.Empty);
    }
}
