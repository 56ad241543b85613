using System.Management.Automation;
using DataOps.Engine.Executions;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Gets workflow executions by id, by Temporal workflow id, or filtered and paged.</para>
/// <para type="description">Get-WorkflowExecution returns executions newest first (by started_at) with the workflow's name and
/// description joined in. Filters combine with AND; -Status takes several values; -Since and -Until bound started_at.
/// Paging is done in SQL: -First, -Skip and -IncludeTotalCount (the total comes first, as a PSObject with a Count). Rows are
/// streamed from the server as the pipeline consumes them, so a large listing is not held in memory. An -Id or
/// -TemporalWorkflowId that matches nothing is an ObjectNotFound error. An execution piped in (from Get-, New- or
/// Set-WorkflowExecution) is read again by its Id, from the database it came from.</para>
/// <para type="link">Set-WorkflowExecution</para>
/// <para type="link">Get-ExecutionStats</para>
/// </summary>
/// <example>
///   <code>Get-WorkflowExecution -CreatedBy sample-user-1 -Status failed,timed_out -First 20</code>
///   <para>The 20 newest failed or timed-out executions started by user sample-user-1.</para>
/// </example>
/// <example>
///   <code>Get-WorkflowExecution -Status running -Until (Get-Date).AddHours(-6) | Set-WorkflowExecution -Status timed_out</code>
///   <para>Marks every execution that has been running for more than six hours as timed out.</para>
/// </example>
/// <example>
///   <code>Get-WorkflowExecution -TemporalWorkflowId order-42</code>
///   <para>The newest execution recorded for Temporal workflow order-42.</para>
/// </example>
/// <example>
///   <code>$last = Get-WorkflowExecution -First 1; Get-WorkflowExecution -Since $last.StartedAt.AddHours(-1) | Where-Object { $_.Input.orderId -eq 42 } | Select-Object Id, Status, InputJson</code>
///   <para>Times from the module's own objects (DateTimeOffset) bind to -Since and -Until, as do Get-Date values and date strings.
///   Input and Output are the JSON documents as objects ($_.Input.orderId); InputJson and OutputJson hold the text.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "WorkflowExecution", DefaultParameterSetName = List, SupportsPaging = true)]
[OutputType(typeof(WorkflowExecution))]
public sealed class GetWorkflowExecutionCommand : DatabaseCmdlet
{
    private const string List = "List";
    private const string ById = "ById";
    private const string ByTemporalId = "ByTemporalId";

    /// <summary>Execution ids. Binds from pipeline objects' Id property, so a piped execution is read again by its Id (and from its own Connection).</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ById, ValueFromPipelineByPropertyName = true)]
    public Guid[] Id { get; set; } = [];

    /// <summary>Temporal workflow ids; the newest execution of each is returned.</summary>
    /// <remarks>
    /// Not bound from the pipeline (as in Set-WorkflowExecution): an execution has both an Id and a
    /// TemporalWorkflowId, and binding both made '$e | Get-WorkflowExecution' an AmbiguousParameterSet
    /// error. A piped object is read by its Id.
    /// </remarks>
    [Parameter(Mandatory = true, ParameterSetName = ByTemporalId)]
    [ArgumentCompleter(typeof(TemporalWorkflowIdCompleter))]
    public string[] TemporalWorkflowId { get; set; } = [];

    /// <summary>Only executions of these workflows.</summary>
    [Parameter(ParameterSetName = List)]
    [ArgumentCompleter(typeof(WorkflowIdCompleter))]
    public Guid[]? WorkflowId { get; set; }

    /// <summary>Only executions started by these users.</summary>
    [Parameter(ParameterSetName = List)]
    [ArgumentCompleter(typeof(UserIdCompleter))]
    public string[]? CreatedBy { get; set; }

    /// <summary>Only executions with these statuses: running, completed, failed, cancelled, timed_out.</summary>
    [Parameter(ParameterSetName = List)]
    [ValidateSet(ExecutionStatusNames.Running, ExecutionStatusNames.Completed, ExecutionStatusNames.Failed, ExecutionStatusNames.Cancelled, ExecutionStatusNames.TimedOut)]
    public string[]? Status { get; set; }

    /// <summary>Only executions started at or after this time: a DateTimeOffset (such as an execution's StartedAt), a DateTime or a date string.</summary>
    [Parameter(ParameterSetName = List)]
    [PointInTimeTransformation]
    public DateTimeOffset? Since { get; set; }

    /// <summary>Only executions started before this time: a DateTimeOffset (such as an execution's StartedAt), a DateTime or a date string.</summary>
    [Parameter(ParameterSetName = List)]
    [PointInTimeTransformation]
    public DateTimeOffset? Until { get; set; }

    protected override void ProcessRecord()
    {
        if (!TryResolveConnection(out var connection))
        {
            return;
        }

        switch (ParameterSetName)
        {
            case ById:
                foreach (var id in Id)
                {
                    if (TryRunEngine((_, ct) => ExecutionStore.GetAsync(connection, id, ct), out var execution))
                    {
                        WriteObject(ExecutionOutput.ToPSObject(execution with { Connection = connection }));
                    }
                }

                break;
            case ByTemporalId:
                foreach (var temporalId in TemporalWorkflowId)
                {
                    if (TryRunEngine((_, ct) => ExecutionStore.GetByTemporalIdAsync(connection, temporalId, null, ct), out var execution))
                    {
                        WriteObject(ExecutionOutput.ToPSObject(execution with { Connection = connection }));
                    }
                }

                break;
            default:
                var filter = new ExecutionFilter
                {
                    WorkflowIds = WorkflowId ?? [],
                    CreatedBy = CreatedBy ?? [],
                    Statuses = Status ?? [],
                    Since = Since,
                    Until = Until,
                };
                if (PagingParameters.IncludeTotalCount)
                {
                    var total = RunEngine((_, ct) => ExecutionStore.CountAsync(connection, filter, ct));
                    WriteObject(PagingParameters.NewTotalCount((ulong)total, 1.0));
                }

                var skip = (long)Math.Min(PagingParameters.Skip, long.MaxValue);
                long? first = PagingParameters.First == ulong.MaxValue ? null : (long)Math.Min(PagingParameters.First, long.MaxValue);
                StreamEngine((_, ct) => Stamped(ExecutionStore.ListAsync(connection, filter, skip, first, ct), e => ExecutionOutput.ToPSObject(e with { Connection = connection }), ct));
                break;
        }
    }
}
