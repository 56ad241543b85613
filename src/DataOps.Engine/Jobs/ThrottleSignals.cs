using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace DataOps.Engine.Jobs;

/// <summary>The kinds of database signal a run can wait for ($.throttle.signals[].kind): names, as the job file spells them.</summary>
public static class SignalKind
{
    /// <summary>Replay lag per standby, from the primary's pg_stat_replication: LSN distance (a size limit) or replay_lag (a duration limit).</summary>
    public const string ReplicaLag = "replicaLag";

    /// <summary>WAL kept by replication slots (active or not): the largest distance from the current WAL position to a slot's restart_lsn.</summary>
    public const string RetainedWal = "retainedWal";

    /// <summary>WAL segments waiting for the archiver (.ready files in pg_wal/archive_status).</summary>
    public const string ArchiveBacklog = "archiveBacklog";

    /// <summary>Autovacuum workers running on a captured table.</summary>
    public const string Autovacuum = "autovacuum";

    /// <summary>Client backends running a statement (state 'active'), the run's own sampler left out.</summary>
    public const string ActiveSessions = "activeSessions";

    /// <summary>Backends waiting for a lock (wait_event_type 'Lock').</summary>
    public const string LockWaiters = "lockWaiters";

    /// <summary>A read-only query of the job's returning a boolean (true holds) or a number (above the limit holds).</summary>
    public const string Query = "query";

    /// <summary>Every kind, in order.</summary>
    public static readonly string[] All = [ReplicaLag, RetainedWal, ArchiveBacklog, Autovacuum, ActiveSessions, LockWaiters, Query];

    /// <summary>The reason a run waits for a signal of this kind (what throttled time is counted under), unless the signal has a name.</summary>
    public static string Reason(string kind) => kind switch
    {
        ReplicaLag => "replica lag",
        RetainedWal => "retained WAL",
        ArchiveBacklog => "archive backlog",
        Autovacuum => "autovacuum",
        ActiveSessions => "active sessions",
        LockWaiters => "lock waiters",
        _ => "query",
    };
}

/// <summary>What a signal's value measures.</summary>
public enum SignalUnit
{
    /// <summary>A size (WAL bytes).</summary>
    Bytes,

    /// <summary>A duration in seconds.</summary>
    Seconds,

    /// <summary>A count (sessions, files, workers) or a custom query's number (true is 1).</summary>
    Count,
}

/// <summary>
/// One reason to wait, read from the database: a run holds while the value is above
/// <see cref="Limit"/>, sampled at most every <see cref="CheckInterval"/>; <see cref="CriticalHits"/>
/// samples in a row above <see cref="Critical"/> stop it (BackfillThrottleCritical).
/// </summary>
public sealed record ThrottleSignal
{
    public static readonly TimeSpan DefaultCheckInterval = TimeSpan.FromSeconds(1);

    public static readonly TimeSpan MinCheckInterval = TimeSpan.FromMilliseconds(100);

    public static readonly TimeSpan MaxCheckInterval = TimeSpan.FromHours(1);

    public const int DefaultCriticalHits = 3;

    public const int MaxCriticalHits = 1000;

    public required string Kind { get; init; }

    /// <summary>Where it was given: a JSON path ($.throttle.signals[0]) or a parameter (-MaxReplicaLag).</summary>
    public required string Source { get; init; }

    /// <summary>The signal's own name ($.throttle.signals[].name), if given: then the reason it is counted under.</summary>
    public string? Name { get; init; }

    public SignalUnit Unit { get; init; } = SignalUnit.Count;

    public double Limit { get; init; }

    public double? Critical { get; init; }

    public int CriticalHits { get; init; } = DefaultCriticalHits;

    public TimeSpan CheckInterval { get; init; } = DefaultCheckInterval;

    /// <summary>replicaLag: a watched standby missing from pg_stat_replication holds the run (the default) or is ignored.</summary>
    public bool MissingHolds { get; init; } = true;

    /// <summary>replicaLag: the standbys (application_name) to watch; empty: those streaming when the run starts.</summary>
    public IReadOnlyList<string> Standbys { get; init; } = [];

    /// <summary>query: the read-only query.</summary>
    public string? Query { get; init; }

    /// <summary>What held time is counted under and progress names: the signal's name, else its kind's reason.</summary>
    public string Reason => Name ?? SignalKind.Reason(Kind);

    /// <summary>A value in the signal's unit, for people: 48.0 MB, 2.5 s, 3.</summary>
    public string Format(double value) => SignalValue.Format(value, Unit);

    public override string ToString() => $"{Reason} above {Format(Limit)}{(Critical is { } c ? $" (critical {Format(c)} x{CriticalHits})" : string.Empty)}";
}

/// <summary>Sizes (16MB, 512kB, 1GB, or a number of bytes; 1024-based, as PostgreSQL writes them) and how values are shown.</summary>
public static partial class SignalValue
{
    /// <summary>Parses 16MB, 512kB, 1.5GB, 100B or a plain number of bytes; false for anything else or a negative size.</summary>
    public static bool TryParseSize(string text, out double bytes)
    {
        bytes = 0;
        var m = SizePattern().Match(text.Trim());
        if (!m.Success)
        {
            return false;
        }

        var n = double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
        bytes = n * m.Groups[2].Value.ToUpperInvariant() switch
        {
            "" or "B" => 1,
            "KB" => 1024,
            "MB" => 1024 * 1024,
            "GB" => 1024d * 1024 * 1024,
            _ => 1024d * 1024 * 1024 * 1024,
        };
        return true;
    }

    public static string Format(double value, SignalUnit unit) => unit switch
    {
        SignalUnit.Bytes => value >= 1024 * 1024 * 1024
            ? (value / (1024d * 1024 * 1024)).ToString("0.0", CultureInfo.InvariantCulture) + " GB"
            : value >= 1024 * 1024
                ? (value / (1024d * 1024)).ToString("0.0", CultureInfo.InvariantCulture) + " MB"
                : value >= 1024 ? (value / 1024).ToString("0.0", CultureInfo.InvariantCulture) + " kB" : value.ToString("0", CultureInfo.InvariantCulture) + " B",
        SignalUnit.Seconds => value.ToString("0.0##", CultureInfo.InvariantCulture) + " s",
        _ => value.ToString("0.###", CultureInfo.InvariantCulture),
    };

    [GeneratedRegex(@"^(\d+(?:\.\d+)?)\s*(B|kB|KB|kb|MB|mb|GB|gb|TB|tb)?$")]
    private static partial Regex SizePattern();
}

/// <summary>Reads $.throttle.signals and builds the signals of Invoke-Backfill's parameters.</summary>
public static class ThrottleSignals
{
    private static readonly string[] Fields = ["kind", "name", "limit", "critical", "criticalHits", "checkInterval", "missing", "standbys", "query"];

    /// <summary>The signals of $.throttle.signals, every problem added with its JSON path.</summary>
    internal static IReadOnlyList<ThrottleSignal> Parse(JsonElement array, List<string> problems)
    {
        const string at = "$.throttle.signals";
        if (array.ValueKind != JsonValueKind.Array)
        {
            problems.Add($"{at}: must be a list of signals ({{ \"kind\": \"replicaLag\", \"limit\": \"16MB\" }} ...).");
            return [];
        }

        var signals = new List<ThrottleSignal>();
        var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var i = 0;
        foreach (var s in array.EnumerateArray())
        {
            var path = $"{at}[{i++}]";
            var before = problems.Count;
            JobFile.Unknown(s, path, Fields, problems);
            if (s.ValueKind != JsonValueKind.Object)
            {
                continue;
            }

            var kind = s.TryGetProperty("kind", out var k) && k.ValueKind == JsonValueKind.String ? k.GetString()! : null;
            if (kind is null || !SignalKind.All.Contains(kind, StringComparer.Ordinal))
            {
                problems.Add($"{path}.kind: {(kind is null ? (k.ValueKind == JsonValueKind.Undefined ? "required" : k.GetRawText() + " is not a signal kind") : $"'{kind}' is not a signal kind")} (one of {string.Join(", ", SignalKind.All)}).");
                continue;
            }

            string? name = null;
            if (s.TryGetProperty("name", out var n))
            {
                name = n.ValueKind == JsonValueKind.String && !string.IsNullOrWhiteSpace(n.GetString()) ? n.GetString()!.Trim() : null;
                if (name is null)
                {
                    problems.Add($"{path}.name: must be a non-empty string.");
                }
                else if (!names.Add(name))
                {
                    problems.Add($"{path}.name: '{name}' is given to another signal; names are what throttled time is counted under.");
                }
            }

            var hasLimit = s.TryGetProperty("limit", out var limitElement);
            if (!hasLimit && kind is not (SignalKind.Autovacuum or SignalKind.Query))
            {
                problems.Add($"{path}.limit: required for a {kind} signal ({Example(kind)}).");
            }

            var (limit, unit) = hasLimit ? Value(limitElement, kind, $"{path}.limit", null, problems) : (0, SignalUnit.Count);
            double? critical = null;
            if (s.TryGetProperty("critical", out var c))
            {
                var (value, criticalUnit) = Value(c, kind, $"{path}.critical", unit, problems);
                if (problems.Count == before && criticalUnit != unit)
                {
                    problems.Add($"{path}.critical: {c.GetRawText()} is a {criticalUnit.ToString().ToLowerInvariant()} value and the limit a {unit.ToString().ToLowerInvariant()} value; give both as sizes or both as durations.");
                }
                else if (problems.Count == before && value < limit)
                {
                    problems.Add($"{path}.critical: {c.GetRawText()} is below the limit {limitElement.GetRawText()}; the critical limit stops the run, so it must be at least the limit that holds it.");
                }

                critical = value;
            }

            var hits = ThrottleSignal.DefaultCriticalHits;
            if (s.TryGetProperty("criticalHits", out var h))
            {
                if (h.ValueKind != JsonValueKind.Number || !h.TryGetInt32(out hits) || hits < 1 || hits > ThrottleSignal.MaxCriticalHits)
                {
                    problems.Add($"{path}.criticalHits: must be a whole number from 1 to {ThrottleSignal.MaxCriticalHits}; got {h.GetRawText()}.");
                }
                else if (critical is null)
                {
                    problems.Add($"{path}.criticalHits: given without critical; give the critical limit the samples in a row are counted against.");
                }
            }

            var interval = ThrottleSignal.DefaultCheckInterval;
            if (s.TryGetProperty("checkInterval", out var ci))
            {
                if (ci.ValueKind != JsonValueKind.String || !JobDuration.TryParse(ci.GetString()!, out interval))
                {
                    problems.Add($"{path}.checkInterval: {ci.GetRawText()} is not a duration (for example 500ms, 1s, 1m); give 100ms to 1h.");
                }
                else if (interval < ThrottleSignal.MinCheckInterval || interval > ThrottleSignal.MaxCheckInterval)
                {
                    problems.Add($"{path}.checkInterval: {ci.GetRawText()} is out of range: give 100ms to 1h (a signal is sampled at most that often).");
                }
            }

            var missingHolds = true;
            var standbys = new List<string>();
            if (s.TryGetProperty("missing", out var m) || s.TryGetProperty("standbys", out _))
            {
                if (kind != SignalKind.ReplicaLag)
                {
                    problems.Add($"{path}: missing and standbys are for a replicaLag signal only.");
                }
            }

            if (m.ValueKind != JsonValueKind.Undefined)
            {
                var text = m.ValueKind == JsonValueKind.String ? m.GetString() : null;
                if (text is not ("hold" or "ignore"))
                {
                    problems.Add($"{path}.missing: {m.GetRawText()} is not hold or ignore (what a watched standby missing from pg_stat_replication does).");
                }

                missingHolds = text != "ignore";
            }

            if (s.TryGetProperty("standbys", out var sb))
            {
                if (sb.ValueKind != JsonValueKind.Array || sb.GetArrayLength() == 0 || sb.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(e.GetString())))
                {
                    problems.Add($"{path}.standbys: must be a non-empty list of standby names (their application_name in pg_stat_replication).");
                }
                else
                {
                    standbys.AddRange(sb.EnumerateArray().Select(e => e.GetString()!));
                }
            }

            string? query = null;
            if (s.TryGetProperty("query", out var q))
            {
                query = q.ValueKind == JsonValueKind.String && !string.IsNullOrWhiteSpace(q.GetString()) ? q.GetString() : null;
                if (kind != SignalKind.Query)
                {
                    problems.Add($"{path}.query: only a query signal has a query.");
                }
                else if (query is null)
                {
                    problems.Add($"{path}.query: must be a non-empty string.");
                }
                else if (SqlText.MoreThanOneStatement($"{path}.query", query) is { } more)
                {
                    problems.Add(more);
                }
                else if (BackfillJob.ParameterNames(query).Contains("key"))
                {
                    problems.Add($"{path}.query: @key is not available in a signal's query (it is sampled for the whole run, not per item).");
                }
            }
            else if (kind == SignalKind.Query)
            {
                problems.Add($"{path}.query: required for a query signal: a read-only query returning a boolean (true holds the run) or a number (above the limit holds it).");
            }

            if (problems.Count == before)
            {
                signals.Add(new ThrottleSignal
                {
                    Kind = kind, Source = path, Name = name, Unit = unit, Limit = limit, Critical = critical, CriticalHits = hits, CheckInterval = interval,
                    MissingHolds = missingHolds, Standbys = standbys, Query = query,
                });
            }
        }

        return signals;
    }

    /// <summary>
    /// -MaxReplicaLag and -MaxRetainedWal as signals, replacing the job's of the same kind and unit (their other settings
    /// kept; a critical limit below the new limit rises to it); -SignalCheckInterval sets every signal's interval.
    /// Bad values throw SignalLimitInvalid naming the parameter and the value.
    /// </summary>
    public static IReadOnlyList<ThrottleSignal> WithParameters(IReadOnlyList<ThrottleSignal> job, string? maxReplicaLag, string? maxRetainedWal, TimeSpan? checkInterval)
    {
        if (checkInterval is { } ci && (ci < ThrottleSignal.MinCheckInterval || ci > ThrottleSignal.MaxCheckInterval))
        {
            throw new DataOpsException("SignalCheckIntervalOutOfRange", DataOpsErrorKind.InvalidArgument,
                $"-SignalCheckInterval {ci} is out of range: give 100ms to 1h. Nothing was run.", ci);
        }

        var signals = job.ToList();
        if (maxReplicaLag is not null)
        {
            var (limit, unit) = Parameter("-MaxReplicaLag", maxReplicaLag, allowDuration: true);
            Replace(signals, SignalKind.ReplicaLag, unit, limit, "-MaxReplicaLag");
        }

        if (maxRetainedWal is not null)
        {
            var (limit, unit) = Parameter("-MaxRetainedWal", maxRetainedWal, allowDuration: false);
            Replace(signals, SignalKind.RetainedWal, unit, limit, "-MaxRetainedWal");
        }

        return checkInterval is { } interval ? [.. signals.Select(s => s with { CheckInterval = interval })] : signals;
    }

    private static void Replace(List<ThrottleSignal> signals, string kind, SignalUnit unit, double limit, string source)
    {
        var i = signals.FindIndex(s => s.Kind == kind && s.Unit == unit);
        if (i < 0)
        {
            signals.Add(new ThrottleSignal { Kind = kind, Source = source, Unit = unit, Limit = limit });
        }
        else
        {
            var s = signals[i];
            signals[i] = s with { Limit = limit, Source = source, Critical = s.Critical is { } c ? Math.Max(c, limit) : null };
        }
    }

    private static (double, SignalUnit) Parameter(string parameter, string text, bool allowDuration)
    {
        if (SignalValue.TryParseSize(text, out var bytes))
        {
            return (bytes, SignalUnit.Bytes);
        }

        if (allowDuration && JobDuration.TryParse(text, out var duration))
        {
            return (duration.TotalSeconds, SignalUnit.Seconds);
        }

        throw new DataOpsException("SignalLimitInvalid", DataOpsErrorKind.InvalidArgument,
            $"{parameter} '{text}' is not a size{(allowDuration ? " or a duration" : string.Empty)}: give for example 16MB, 512kB, a number of bytes{(allowDuration ? " or 10s (replay_lag)" : string.Empty)}. Nothing was run.", text);
    }

    private static string Example(string kind) => kind switch
    {
        SignalKind.ReplicaLag => "a size such as \"16MB\" (LSN distance) or a duration such as \"10s\" (replay_lag)",
        SignalKind.RetainedWal => "a size such as \"1GB\"",
        _ => "a whole number",
    };

    /// <summary>A limit or critical value in the kind's unit: sizes (and durations for replicaLag) or numbers, never negative.</summary>
    private static (double Value, SignalUnit Unit) Value(JsonElement e, string kind, string at, SignalUnit? expected, List<string> problems)
    {
        var sized = kind is SignalKind.ReplicaLag or SignalKind.RetainedWal;
        if (e.ValueKind == JsonValueKind.Number)
        {
            var number = e.GetDouble();
            if (number < 0)
            {
                problems.Add($"{at}: {e.GetRawText()} is negative; give 0 or more.");
            }
            else if (kind is SignalKind.ArchiveBacklog or SignalKind.Autovacuum or SignalKind.ActiveSessions or SignalKind.LockWaiters && number != Math.Floor(number))
            {
                problems.Add($"{at}: {e.GetRawText()} is not a whole number (a count).");
            }

            return (number, sized ? SignalUnit.Bytes : SignalUnit.Count);
        }

        if (e.ValueKind == JsonValueKind.String && sized)
        {
            var text = e.GetString()!;
            if (SignalValue.TryParseSize(text, out var bytes))
            {
                return (bytes, SignalUnit.Bytes);
            }

            if (kind == SignalKind.ReplicaLag && JobDuration.TryParse(text, out var duration))
            {
                return (duration.TotalSeconds, SignalUnit.Seconds);
            }
        }

        problems.Add($"{at}: {e.GetRawText()} is not {(sized ? Example(kind) : "a number, 0 or more")}.");
        return (0, expected ?? SignalUnit.Count);
    }
}
