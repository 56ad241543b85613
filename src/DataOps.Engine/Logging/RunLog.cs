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
public sealed partial class RunLog : IDisposable
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

    /// <summary>How many days run logs are kept when $DATAOPS_LOG_RETENTION_DAYS is not set.</summary>
    public const int DefaultRetentionDays = 30;

    /// <summary>
    /// Opens a run log for <paramref name="operation"/> (for example "Install-DataOpsSchema"). With
    /// <paramref name="file"/> (operations that change data) the events also go to a JSON file, and run
    /// logs in that folder older than the retention ($DATAOPS_LOG_RETENTION_DAYS, default 30, 0 keeps
    /// them all) are removed first; without it, events only reach the observer (-Verbose).
    /// </summary>
    public static RunLog Open(string operation, IOperationObserver observer, SecretRedactor? redactor = null, string? directory = null, bool file = true)
    {
        redactor ??= new SecretRedactor();
        var runId = Guid.NewGuid().ToString("N")[..12];
        var config = new LoggerConfiguration()
            .MinimumLevel.Debug()
            .Enrich.WithProperty("Operation", operation)
            .Enrich.WithProperty("RunId", runId)
            .WriteTo.Sink(new ObserverSink(observer, redactor));
        string? path = null;
        if (file)
        {
            var retention = RetentionDays();
            var dir = directory ?? DefaultDirectory();
            Directory.CreateDirectory(dir);
            var pruned = Prune(dir, retention, DateTime.UtcNow);
            if (pruned > 0)
            {
                observer.Verbose($"Removed {pruned} run logs older than {retention} days from {dir} ($env:DATAOPS_LOG_RETENTION_DAYS; 0 keeps them all)");
            }

            var stamp = DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", System.Globalization.CultureInfo.InvariantCulture);
            path = System.IO.Path.Combine(dir, $"{operation}-{stamp}-{runId}.json");
            config = config.WriteTo.File(new CompactJsonFormatter(), path);
        }

        var log = new RunLog(config.CreateLogger(), path, runId, redactor);
        log.Information("Run {RunId} of {Operation} started", runId, operation);
        return log;
    }

    /// <summary>$DATAOPS_LOG_RETENTION_DAYS: a whole number of days, 0 or more (0: keep every log); unset: 30.</summary>
    public static int RetentionDays() => ParseRetention(Environment.GetEnvironmentVariable("DATAOPS_LOG_RETENTION_DAYS"));

    internal static int ParseRetention(string? value)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            return DefaultRetentionDays;
        }

        return int.TryParse(value.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var days) && days <= 36_500
            ? days
            : throw new DataOpsException("LogRetentionInvalid", DataOpsErrorKind.InvalidArgument,
                $"$env:DATAOPS_LOG_RETENTION_DAYS is '{value}': give a whole number of days from 0 to 36500 (0 keeps every run log), or remove the variable for the default of {DefaultRetentionDays}.",
                value);
    }

    /// <summary>
    /// Removes the run logs (files named as <see cref="Open"/> names them, nothing else) in
    /// <paramref name="directory"/> last written more than <paramref name="days"/> days before
    /// <paramref name="now"/>; 0 days removes nothing. A file another process holds or removed is skipped.
    /// </summary>
    internal static int Prune(string directory, int days, DateTime now)
    {
        if (days <= 0)
        {
            return 0;
        }

        var removed = 0;
        foreach (var file in Directory.EnumerateFiles(directory, "*.json"))
        {
            if (!LogName().IsMatch(System.IO.Path.GetFileName(file)) || File.GetLastWriteTimeUtc(file) >= now.AddDays(-days))
            {
                continue;
            }

            try
            {
                File.Delete(file);
                removed++;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // In use or already gone: the next run tries again.
            }
        }

        return removed;
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^[A-Za-z]+-[A-Za-z]+-\d{8}-\d{6}-[0-9a-f]{12}\.json$")]
    private static partial System.Text.RegularExpressions.Regex LogName();

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

            observer.Verbose(redactor.Redact(Plain(logEvent)));
        }
    }

    /// <summary>
    /// A log event as a person reads it in -Verbose: values as they are (Serilog's own rendering
    /// quotes strings, "Run \"abc\" of \"Invoke-Backfill\""), lists comma-separated, a missing value "none".
    /// The file keeps the structured event.
    /// </summary>
    internal static string Plain(LogEvent logEvent)
    {
        using var text = new StringWriter(System.Globalization.CultureInfo.InvariantCulture);
        foreach (var token in logEvent.MessageTemplate.Tokens)
        {
            switch (token)
            {
                case Serilog.Parsing.TextToken t:
                    text.Write(t.Text);
                    break;
                case Serilog.Parsing.PropertyToken p:
                    WritePlain(text, logEvent.Properties.TryGetValue(p.PropertyName, out var value) ? value : null, p.Format);
                    break;
            }
        }

        return text.ToString();
    }

    private static void WritePlain(TextWriter text, LogEventPropertyValue? value, string? format)
    {
        switch (value)
        {
            case null or ScalarValue { Value: null }:
                text.Write("none");
                break;
            case ScalarValue { Value: string s }:
                text.Write(s);
                break;
            case ScalarValue { Value: IFormattable f }:
                text.Write(f.ToString(format, System.Globalization.CultureInfo.InvariantCulture));
                break;
            case SequenceValue list:
                for (var i = 0; i < list.Elements.Count; i++)
                {
                    text.Write(i == 0 ? string.Empty : ", ");
                    WritePlain(text, list.Elements[i], format);
                }

                break;
            default:
                value.Render(text, format, System.Globalization.CultureInfo.InvariantCulture);
                break;
        }
    }

    /// <summary>Carries an exception's type and redacted message without its original text.</summary>
    private sealed class RedactedException(Exception inner, SecretRedactor redactor)
        : Exception($"{inner.GetType().Name}: {redactor.Redact(inner.Message)}")
    {
        public override string? StackTrace => redactor.Redact(inner.StackTrace ?? string.Empty);
    }
}
