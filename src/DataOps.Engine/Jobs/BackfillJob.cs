using System.Text.Json;
using System.Text.RegularExpressions;

namespace DataOps.Engine.Jobs;

/// <summary>One table whose rows an item may touch, selected by a predicate on @key.</summary>
public sealed record CaptureSpec(string Table, string Where, string Path);

/// <summary>One step of an item: SQL (Sql set) or an HTTP call (Http set).</summary>
public sealed record StepSpec(string Name, string? Sql, string Path, HttpStep? Http = null);

/// <summary>A step that calls an HTTP endpoint (an edge or serverless function) for the item.</summary>
public sealed record HttpStep(
    string Method, string Url, IReadOnlyDictionary<string, string> Headers, string? BodyTemplate,
    IReadOnlyList<int> ExpectStatus, TimeSpan Timeout, int Retries);

/// <summary>
/// A $.notify entry: the run POSTs a JSON payload to <paramref name="Url"/> on each of its
/// <paramref name="Events"/> (start, throttled, halt, success, failure). A failing hook is reported;
/// a <paramref name="Required"/> one stops the run (BackfillHookFailed). Url and header values may
/// name {env:NAME} and {credential:NAME} secrets.
/// </summary>
public sealed record NotifyHook(string Url, IReadOnlyList<string> Events, IReadOnlyDictionary<string, string> Headers, bool Required, TimeSpan Timeout, string Path)
{
    /// <summary>The events a hook can be sent on, in the order a run can send them.</summary>
    public static readonly string[] EventNames = ["start", "throttled", "halt", "success", "failure"];

    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(5);

    public static readonly TimeSpan MinTimeout = TimeSpan.FromMilliseconds(100);

    public static readonly TimeSpan MaxTimeout = TimeSpan.FromSeconds(60);
}

/// <summary>A parsed, structurally valid job file (version 1). Database checks come later (<see cref="JobValidator"/>).</summary>
public sealed partial class BackfillJob
{
    public const int CurrentVersion = 1;

    public required string Name { get; init; }

    public string? Description { get; init; }

    public required string SourcePath { get; init; }

    /// <summary>Parameter values by name (string, number, boolean or null), bound as SQL parameters.</summary>
    public required IReadOnlyDictionary<string, object?> Parameters { get; init; }

    public IReadOnlyList<string>? Keys { get; init; }

    public string? DiscoverSql { get; init; }

    /// <summary>$.items.keyset: the run walks a table in key ranges instead of listing keys (null: keys or discover).</summary>
    public KeysetSpec? Keyset { get; init; }

    public int ItemsPerMinute { get; init; } = 20;

    public int BatchSize { get; init; } = 10;

    /// <summary>Items in flight at once (independent items calling an endpoint); the rate limit still holds. Default 1.</summary>
    public int MaxConcurrency { get; init; } = 1;

    /// <summary>$.throttle.signals: database signals the run waits for (replica lag, retained WAL, a query ...); empty: none.</summary>
    public IReadOnlyList<ThrottleSignal> Signals { get; init; } = [];

    /// <summary>$.lockTimeout: how long an item waits for rows another session holds; null: not given (Invoke-Backfill's default).</summary>
    public TimeSpan? LockTimeout { get; init; }

    /// <summary>$.lockRetries: how often an item that timed out waiting for a lock runs again; null: not given.</summary>
    public int? LockRetries { get; init; }

    public static readonly TimeSpan DefaultLockTimeout = TimeSpan.FromSeconds(5);

    public static readonly TimeSpan MinLockTimeout = TimeSpan.FromMilliseconds(1);

    /// <summary>An item's statement timeout: a longer lock wait would end as a statement timeout anyway.</summary>
    public static readonly TimeSpan MaxLockTimeout = TimeSpan.FromSeconds(60);

    public const int DefaultLockRetries = 3;

    public const int MinLockRetries = 0;

    public const int MaxLockRetries = 20;

    /// <summary>$.notify: the hooks a run POSTs its events to (empty: none).</summary>
    public IReadOnlyList<NotifyHook> Notify { get; init; } = [];

    /// <summary>$.metrics.path, resolved against the job file's folder: the Prometheus text file a run keeps up to date; null: none (Invoke-Backfill -MetricsPath overrides it).</summary>
    public string? MetricsPath { get; init; }

    public required IReadOnlyList<CaptureSpec> Capture { get; init; }

    public required IReadOnlyList<StepSpec> Steps { get; init; }

    public required string VerifySql { get; init; }

    /// <summary>The soak section, kept as JSON for Watch-StagingSoak.</summary>
    public JsonElement? Soak { get; init; }

    /// <summary>The health section, kept as JSON for Test-ProdHealth.</summary>
    public JsonElement? Health { get; init; }

    /// <summary>A plan's fingerprint (set by Test-ProdHealth), kept as JSON.</summary>
    public JsonElement? Fingerprint { get; init; }

    /// <summary>True when a step calls an HTTP endpoint: items then run in two transactions (see about_DataOps_JobFile).</summary>
    public bool HasHttpSteps => Steps.Any(s => s.Http is not null);

    /// <summary>Every SQL text of the job with its JSON path, for checks.</summary>
    public IEnumerable<(string Path, string Sql)> AllSql()
    {
        if (DiscoverSql is not null)
        {
            yield return ("$.items.discover", DiscoverSql);
        }

        if (Keyset?.Where is { } keysetWhere)
        {
            yield return ("$.items.keyset.where", $"SELECT 1 FROM {Keyset.Table} WHERE {keysetWhere}");
        }

        foreach (var c in Capture)
        {
            yield return (c.Path + ".where", $"SELECT 1 FROM {c.Table} WHERE {c.Where}");
        }

        foreach (var s in Steps.Where(s => s.Sql is not null))
        {
            yield return (s.Path + ".sql", s.Sql!);
        }

        yield return ("$.verify", VerifySql);
    }

    /// <summary>The @names a SQL text uses (outside quotes, comments and the @&gt; / &lt;@ operators).</summary>
    public static IReadOnlyList<string> ParameterNames(string sql) => ParameterNamesCache.GetOrAdd(sql, static text =>
    {
        var stripped = QuotedOrComment().Replace(text, " ");
        return [.. NamedParameter().Matches(stripped).Select(m => m.Groups[1].Value).Distinct(StringComparer.Ordinal)];
    });

    /// <summary>A run binds the same few statements for every item: scan each text once.</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, IReadOnlyList<string>> ParameterNamesCache = new(StringComparer.Ordinal);

    [GeneratedRegex(@"'(?:[^']|'')*'|""(?:[^""]|"""")*""|--[^\n]*|/\*.*?\*/|\$(\w*)\$.*?\$\1\$", RegexOptions.Singleline)]
    private static partial Regex QuotedOrComment();

    [GeneratedRegex(@"(?<![\w@:<])@([A-Za-z_][A-Za-z0-9_]*)")]
    private static partial Regex NamedParameter();
}
