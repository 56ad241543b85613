using System.Management.Automation;
using DataOps.Engine.Executions;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Updates a workflow execution: its status, output, error message or activity count.</para>
/// <para type="description">Set-WorkflowExecution changes an execution found by -Id, by -TemporalWorkflowId (the newest run, or
/// the one named by -TemporalRunId) or by pipeline input. Reaching a final status (completed, failed, cancelled, timed_out)
/// sets completed_at, and duration_ms from started_at unless -DurationMs gives it. A finished execution cannot go back to
/// running or change to another final status unless -AllowFinalStatusChange is given; such a transition is an
/// InvalidStatusTransition error that names both states. -Force only skips confirmation (asked on a production connection).
/// Each update locks the row, so concurrent updates from several sessions are applied one after the other and none is lost.</para>
/// <para type="link">Get-WorkflowExecution</para>
/// <para type="link">New-WorkflowExecution</para>
/// </summary>
/// <example>
///   <code>Set-WorkflowExecution -TemporalWorkflowId order-42 -Status completed -Output @{ total = 99.5 } -ActivitiesExecuted 7 -PassThru</code>
///   <para>Completes the newest execution of Temporal workflow order-42 and returns it.</para>
/// </example>
/// <example>
///   <code>Get-WorkflowExecution -Status running -Until (Get-Date).AddHours(-6) | Set-WorkflowExecution -Status timed_out -ErrorMessage 'stale'</code>
///   <para>Times out every execution that has been running for more than six hours.</para>
/// </example>
[Cmdlet(VerbsCommon.Set, "WorkflowExecution", DefaultParameterSetName = ById, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(WorkflowExecution))]
public sealed class SetWorkflowExecutionCommand : DatabaseCmdlet
{
    private const string ById = "ById";
    private const string ByTemporalId = "ByTemporalId";

    /// <summary>The execution's id. Binds from pipeline objects' Id property.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ById, ValueFromPipelineByPropertyName = true)]
    public Guid Id { get; set; }

    /// <summary>The Temporal workflow id; the newest execution of it is updated.</summary>
    [Parameter(Mandatory = true, ParameterSetName = ByTemporalId)]
    [ArgumentCompleter(typeof(TemporalWorkflowIdCompleter))]
    public string TemporalWorkflowId { get; set; } = string.Empty;

    /// <summary>With -TemporalWorkflowId: the Temporal run to update instead of the newest.</summary>
    [Parameter(ParameterSetName = ByTemporalId)]
    public string? TemporalRunId { get; set; }

    /// <summary>The new status: running, completed, failed, cancelled or timed_out.</summary>
    [Parameter]
    [ValidateSet(ExecutionStatusNames.Running, ExecutionStatusNames.Completed, ExecutionStatusNames.Failed, ExecutionStatusNames.Cancelled, ExecutionStatusNames.TimedOut)]
    public string? Status { get; set; }

    /// <summary>The execution's output: a hashtable or object (stored as JSON), or JSON text.</summary>
    [Parameter]
    public object? Output { get; set; }

    /// <summary>The error message to record.</summary>
    [Parameter]
    public string? ErrorMessage { get; set; }

    /// <summary>How many activities the execution ran.</summary>
    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int? ActivitiesExecuted { get; set; }

    /// <summary>The duration to record in milliseconds; default when a final status is reached: now minus started_at.</summary>
    /// <default>now minus started_at, when a final status is reached</default>
    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long? DurationMs { get; set; }

    /// <summary>Allows changing the status of a finished execution (completed, failed, cancelled or timed_out): back to running, or to another final status. Without it such a change is an InvalidStatusTransition error.</summary>
    [Parameter]
    public SwitchParameter AllowFinalStatusChange { get; set; }

    /// <summary>Skips the confirmation a production connection asks for. It allows nothing else (see -AllowFinalStatusChange).</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Returns the updated execution.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        if (!TryResolveConnection(out var connection))
        {
            return;
        }

        var output = RunEngine((_, _) => JsonArgument.ToJson(Output, nameof(Output)));
        var id = Id;
        if (ParameterSetName == ByTemporalId)
        {
            if (!TryRunEngine((_, ct) => ExecutionStore.GetByTemporalIdAsync(connection, TemporalWorkflowId, TemporalRunId, ct), out var found))
            {
                return;
            }

            id = found.Id;
        }

        var changes = string.Join(", ", new[]
        {
            Status is null ? null : $"status {Status}",
            Output is null ? null : "output",
            ErrorMessage is null ? null : "error message",
            ActivitiesExecuted is null ? null : $"activities {ActivitiesExecuted}",
            DurationMs is null ? null : $"duration {DurationMs} ms",
        }.Where(c => c is not null));
        if (!ShouldWrite(connection, $"workflow execution {id}", $"Set {(changes.Length == 0 ? "nothing" : changes)}", Force))
        {
            return;
        }

        var update = new ExecutionUpdate
        {
            Status = Status, OutputJson = output, ErrorMessage = ErrorMessage, ActivitiesExecuted = ActivitiesExecuted, DurationMs = DurationMs,
            AllowFinalStatusChange = AllowFinalStatusChange,
        };
        if (TryRunEngine((_, ct) => ExecutionStore.UpdateAsync(connection, id, update, ct), out var updated) && PassThru)
        {
            WriteObject(ExecutionOutput.ToPSObject(updated with { Connection = connection }));
        }
    }
}
