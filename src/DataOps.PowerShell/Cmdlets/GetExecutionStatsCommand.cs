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
/// <para type="description">Piped executions (Get-WorkflowExecution ... | Get-ExecutionStats) are collected by Id and summarised
/// together: one result (per group) over all of them, computed once in SQL after the last one arrives, in the database they came
/// from. An execution from another database than the first is refused (ConnectionMismatch). The other filters still apply.</para>
/// <para type="link">Get-WorkflowExecution</para>
/// </summary>
/// <example>
///   <code>Get-ExecutionStats</code>
///   <para>Totals, success rate and durations over every execution.</para>
/// </example>
/// <example>
///   <code>Get-WorkflowExecution -Status failed -Since (Get-Date).AddDays(-30) | Get-ExecutionStats</code>
///   <para>One result over the failed executions of the last 30 days: how many, and their durations.</para>
/// </example>
/// <example>
///   <code>Get-ExecutionStats -CreatedBy sample-user-1 -Since (Get-Date).AddDays(-7) -GroupBy Day</code>
///   <para>User sample-user-1's executions of the last seven days, one row per day.</para>
/// </example>
/// <example>
///   <code>Get-ExecutionStats -Connection eu, us, apac -Since (Get-Date).AddDays(-1) | Format-Table Target, Total, Failed, SuccessRate</code>
///   <para>The last day's statistics of three databases, computed in each at once: one row per database (per group), each naming its Target.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "ExecutionStats")]
[OutputType(typeof(ExecutionStats))]
public sealed class GetExecutionStatsCommand : FleetCmdlet
{
    /// <summary>Only these executions. Binds from pipeline objects' Id property: the piped executions are summarised together, as one result.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [Alias("ExecutionId")]
    public Guid[]? Id { get; set; }

    /// <summary>Only executions of these workflows. Binds from pipeline objects' WorkflowId property when they have no Id.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(WorkflowIdCompleter))]
    public Guid[]? WorkflowId { get; set; }

    /// <summary>Only executions started by these users.</summary>
    [Parameter]
    [ArgumentCompleter(typeof(UserIdCompleter))]
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

    private readonly List<Guid> _pipedIds = [];
    private readonly List<Guid> _pipedWorkflowIds = [];
    private Guid[]? _typedIds;
    private Guid[]? _typedWorkflowIds;
    private Engine.Connections.DataOpsConnection? _connection;
    private bool _piped;

    protected override void BeginProcessing()
    {
        // Typed on the command line, these stay bound for every piped object; bound from the pipeline they change per object.
        _typedIds = MyInvocation.BoundParameters.ContainsKey(nameof(Id)) ? Id : null;
        _typedWorkflowIds = MyInvocation.BoundParameters.ContainsKey(nameof(WorkflowId)) ? WorkflowId : null;
    }

    private IReadOnlyList<FleetTarget>? _fleet;

    protected override void ProcessRecord()
    {
        if (IsFleet)
        {
            // Piped executions belong to one database each, not to a fleet: TryResolveFleet refuses them.
            if (TryResolveFleet(out var targets))
            {
                _fleet ??= targets;
            }

            return;
        }

        if (!TryResolveConnection(out var connection))
        {
            return;
        }

        if (InputObject is null)
        {
            _connection = connection;
            return;
        }

        // Statistics over piped objects are one statement in one database: the first object's.
        if (_connection is not null && !_connection.IsSameDatabase(connection))
        {
            WriteError(ToErrorRecord(new Engine.DataOpsException("ConnectionMismatch", Engine.DataOpsErrorKind.InvalidArgument,
                $"The piped {InputObject.BaseObject.GetType().Name} ({InputObject.BaseObject}) comes from {connection}, but the executions before it came from {_connection}; " +
                "statistics are computed in one database, so it is left out. Pipe executions from one database per Get-ExecutionStats.",
                connection.ToString())));
            return;
        }

        _connection ??= connection;
        _piped = true;
        if (_typedIds is null && Id is { Length: > 0 } ids)
        {
            _pipedIds.AddRange(ids);
        }
        else if (_typedWorkflowIds is null && WorkflowId is { Length: > 0 } workflows)
        {
            _pipedWorkflowIds.AddRange(workflows);
        }
    }

    protected override void EndProcessing()
    {
        if (_fleet is { } fleet)
        {
            var fleetFilter = new ExecutionFilter
            {
                Ids = _typedIds ?? [],
                WorkflowIds = _typedWorkflowIds ?? [],
                CreatedBy = CreatedBy ?? [],
                Since = Since,
                Until = Until,
            };
            var grouping = (StatsGrouping)(int)GroupBy;
            RunFleet(fleet, $"Get-ExecutionStats on {fleet.Count} targets", async (target, scope, ct) =>
            {
                foreach (var stats in await ExecutionStore.StatsAsync(target.Connection, fleetFilter, grouping, ct, scope).ConfigureAwait(false))
                {
                    scope.Write(stats with { Connection = target.Connection });
                }

                return true;
            });
            return;
        }

        // Nothing resolved (every piped object refused), or objects piped that named no execution: no statistics.
        if (_connection is not { } connection || (_piped && _pipedIds.Count == 0 && _pipedWorkflowIds.Count == 0))
        {
            return;
        }

        var filter = new ExecutionFilter
        {
            Ids = [.. _typedIds ?? [], .. _pipedIds],
            WorkflowIds = [.. _typedWorkflowIds ?? [], .. _pipedWorkflowIds],
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
