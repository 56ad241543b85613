using DataOps.Engine.Connections;

namespace DataOps.Engine.Executions;

/// <summary>The statuses of a workflow execution, as stored.</summary>
public static class ExecutionStatus
{
    public const string Running = "running";
    public const string Completed = "completed";
    public const string Failed = "failed";
    public const string Cancelled = "cancelled";
    public const string TimedOut = "timed_out";

    public static readonly IReadOnlyList<string> All = [Running, Completed, Failed, Cancelled, TimedOut];

    public static readonly IReadOnlyList<string> Terminal = [Completed, Failed, Cancelled, TimedOut];

    public static bool IsTerminal(string status) => Terminal.Contains(status);

    /// <summary>Returns the canonical spelling, or throws StatusInvalid naming the valid ones.</summary>
    public static string Parse(string status)
    {
        var match = All.FirstOrDefault(s => string.Equals(s, status?.Trim(), StringComparison.OrdinalIgnoreCase));
        return match ?? throw new DataOpsException("StatusInvalid", DataOpsErrorKind.InvalidArgument,
            $"'{status}' is not an execution status. Valid statuses: {string.Join(", ", All)}.", status);
    }
}

/// <summary>One recorded workflow execution, with its workflow's name and description joined in.</summary>
public sealed record WorkflowExecution
{
    /// <summary>The database this came from; a cmdlet it is piped to acts there (binds to -Connection).</summary>
    public DataOpsConnection? Connection { get; init; }

    public Guid Id { get; init; }

    public Guid WorkflowId { get; init; }

    public string? WorkflowName { get; init; }

    public string? WorkflowDescription { get; init; }

    public required string TemporalWorkflowId { get; init; }

    public required string TemporalRunId { get; init; }

    public required string Status { get; init; }

    public DateTimeOffset StartedAt { get; init; }

    public DateTimeOffset? CompletedAt { get; init; }

    public long? DurationMs { get; init; }

    public TimeSpan? Duration => DurationMs is { } ms ? TimeSpan.FromMilliseconds(ms) : null;

    /// <summary>
    /// The input document as JSON text. The module adds Input, the same document as objects
    /// (PSCustomObject tree), so that $e.Input.orderId works; this keeps the text for ConvertFrom-Json or a file.
    /// </summary>
    public string? InputJson { get; init; }

    /// <summary>The output document as JSON text; the module adds Output, the same document as objects.</summary>
    public string? OutputJson { get; init; }

    public string? ErrorMessage { get; init; }

    public int ActivitiesExecuted { get; init; }

    public string? CreatedBy { get; init; }

    public override string ToString() => $"{WorkflowName ?? WorkflowId.ToString()} {TemporalWorkflowId} ({Status})";
}

/// <summary>Which executions to list or count. Empty filters match everything.</summary>
public sealed record ExecutionFilter
{
    /// <summary>Only these executions (by id), such as the ones piped to Get-ExecutionStats.</summary>
    public IReadOnlyList<Guid> Ids { get; init; } = [];

    public IReadOnlyList<Guid> WorkflowIds { get; init; } = [];

    public IReadOnlyList<string> CreatedBy { get; init; } = [];

    public IReadOnlyList<string> Statuses { get; init; } = [];

    /// <summary>started_at at or after.</summary>
    public DateTimeOffset? Since { get; init; }

    /// <summary>started_at before.</summary>
    public DateTimeOffset? Until { get; init; }

    public ExecutionFilter Validated()
    {
        if (Since is { } s && Until is { } u && s >= u)
        {
            throw new DataOpsException("TimeWindowInvalid", DataOpsErrorKind.InvalidArgument,
                $"-Since ({s:u}) must be before -Until ({u:u}).", $"{s:u} >= {u:u}");
        }

        return this with { Statuses = [.. Statuses.Select(ExecutionStatus.Parse).Distinct()] };
    }
}

/// <summary>The fields a new execution starts with.</summary>
public sealed record NewExecution(Guid WorkflowId, string TemporalWorkflowId, string TemporalRunId, string CreatedBy, string? InputJson);

/// <summary>What to change on an execution; null leaves a field as it is.</summary>
public sealed record ExecutionUpdate
{
    public string? Status { get; init; }

    public string? OutputJson { get; init; }

    public string? ErrorMessage { get; init; }

    public int? ActivitiesExecuted { get; init; }

    /// <summary>The duration to record when a terminal status is reached; default: now minus started_at.</summary>
    public long? DurationMs { get; init; }

    /// <summary>Allows leaving a terminal status (back to running, or to another terminal status): Set-WorkflowExecution -AllowFinalStatusChange.</summary>
    public bool AllowFinalStatusChange { get; init; }
}

/// <summary>How Get-ExecutionStats groups.</summary>
public enum StatsGrouping
{
    None,
    Workflow,
    User,
    Status,
    Day,
}

/// <summary>
/// Statistics of one group of executions. SuccessRate = Completed / Finished, where Finished =
/// Completed + Failed + Cancelled + TimedOut (running executions do not count); null when nothing finished.
/// Durations are over executions that have one.
/// </summary>
public sealed record ExecutionStats
{
    /// <summary>The database this came from; a cmdlet it is piped to acts there (binds to -Connection).</summary>
    public DataOpsConnection? Connection { get; init; }

    public required string Group { get; init; }

    public Guid? WorkflowId { get; init; }

    public string? WorkflowName { get; init; }

    public string? CreatedBy { get; init; }

    public string? Status { get; init; }

    /// <summary>
    /// With -GroupBy Day, the day (UTC) as a DateTime at midnight UTC: it compares and sorts with
    /// Get-Date values and ConvertTo-Json writes it as an ISO date; the views show it as yyyy-MM-dd.
    /// (Not a DateOnly: ConvertTo-Json writes a DateOnly as an object of its parts, and it does not compare with a DateTime.)
    /// </summary>
    public DateTime? Day { get; init; }

    public long Total { get; init; }

    public long Running { get; init; }

    public long Completed { get; init; }

    public long Failed { get; init; }

    public long Cancelled { get; init; }

    public long TimedOut { get; init; }

    public long Finished => Completed + Failed + Cancelled + TimedOut;

    public double? SuccessRate { get; init; }

    public double? AverageDurationMs { get; init; }

    public double? P50DurationMs { get; init; }

    public double? P95DurationMs { get; init; }

    /// <summary><see cref="AverageDurationMs"/> as a TimeSpan.</summary>
    public TimeSpan? AverageDuration => ToTimeSpan(AverageDurationMs);

    /// <summary><see cref="P50DurationMs"/> as a TimeSpan.</summary>
    public TimeSpan? P50Duration => ToTimeSpan(P50DurationMs);

    /// <summary><see cref="P95DurationMs"/> as a TimeSpan.</summary>
    public TimeSpan? P95Duration => ToTimeSpan(P95DurationMs);

    private static TimeSpan? ToTimeSpan(double? milliseconds) => milliseconds is { } ms ? TimeSpan.FromMilliseconds(ms) : null;

    public override string ToString() => $"{Group}: {Total} executions, success rate {(SuccessRate is { } r ? r.ToString("P1", System.Globalization.CultureInfo.InvariantCulture) : "n/a")}";
}
