using System.Management.Automation;
using DataOps.Engine.Executions;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Computes workflow execution statistics in SQL: totals by status, success rate and duration percentiles.</para>
/// <para type="description">Get-ExecutionStats runs one SQL statement per call and returns one object per group (-GroupBy None,
/// Workflow, User, Status or Day; None gives a single 'All' row). Each has Total, the count per status (Running,
/// Completed, Failed, Cancelled, TimedOut), Finished, SuccessRate, and AverageDurationMs, P50DurationMs and P95DurationMs over the
/// executions that have a duration.</para>
/// <para type="description">SuccessRate = Completed / Finished, where Finished = Completed + Failed + Cancelled + TimedOut.
/// Running executions are not counted; SuccessRate is empty when nothing has finished.</para>
/// <para type="link">Get-WorkflowExecution</para>
/// </summary>
/// <example>
///   <code>Get-ExecutionStats</code>
///   <para>Totals, success rate and durations over every execution.</para>
/// </example>
/// <example>
///   <code>Get-ExecutionStats -CreatedBy sample-user-1 -Since (Get-Date).AddDays(-7) -GroupBy Day</code>
///   <para>User sample-user-1's executions of the last seven days, one row per day.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "ExecutionStats")]
[OutputType(typeof(ExecutionStats))]
public sealed class GetExecutionStatsCommand : DatabaseCmdlet
{
    /// <summary>Only executions of these workflows.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public Guid[]? WorkflowId { get; set; }

    /// <summary>Only executions started by these users.</summary>
    [Parameter]
    public string[]? CreatedBy { get; set; }

    /// <summary>Only executions started at or after this time: a DateTimeOffset (such as an execution's StartedAt), a DateTime or a date string.</summary>
    [Parameter]
    [PointInTimeTransformation]
    public DateTimeOffset? Since { get; set; }

    /// <summary>Only executions started before this time: a DateTimeOffset (such as an execution's StartedAt), a DateTime or a date string.</summary>
    [Parameter]
    [PointInTimeTransformation]
    public DateTimeOffset? Until { get; set; }

    /// <summary>How to group: None (default), Workflow, User, Status or Day (UTC).</summary>
    [Parameter]
    public ExecutionStatsGroup GroupBy { get; set; } = ExecutionStatsGroup.None;

    protected override void ProcessRecord()
    {
        if (!TryResolveConnection(out var connection))
        {
            return;
        }

        var filter = new ExecutionFilter
        {
            WorkflowIds = WorkflowId ?? [],
            CreatedBy = CreatedBy ?? [],
            Since = Since,
            Until = Until,
        };
        WriteObject(RunEngine((observer, ct) => ExecutionStore.StatsAsync(connection, filter, (StatsGrouping)(int)GroupBy, ct, observer)).Select(s => s with { Connection = connection }), enumerateCollection: true);
    }
}

/// <summary>
/// The -GroupBy values. Declared here, not in the engine: PowerShell loads the cmdlet types before
/// the module's load context is hooked up, and a value-type field from the engine would force the
/// engine to load too early. Same names and order as the engine's StatsGrouping.
/// </summary>
public enum ExecutionStatsGroup
{
    None = StatsGroupingValues.None,
    Workflow = StatsGroupingValues.Workflow,
    User = StatsGroupingValues.User,
    Status = StatsGroupingValues.Status,
    Day = StatsGroupingValues.Day,
}

internal static class StatsGroupingValues
{
    public const int None = 0;
    public const int Workflow = 1;
    public const int User = 2;
    public const int Status = 3;
    public const int Day = 4;
}
