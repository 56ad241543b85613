using System.Management.Automation;
using DataOps.Engine.Executions;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Records the start of a workflow execution.</para>
/// <para type="description">New-WorkflowExecution inserts an execution with status 'running' and started_at now, for an existing
/// workflow and user (WorkflowExecution component), and returns it with the workflow's name. -Input may be a hashtable or
/// object (stored as JSON) or JSON text. An unknown workflow or user is an ObjectNotFound error and nothing is written.</para>
/// <para type="link">Set-WorkflowExecution</para>
/// <para type="link">Get-WorkflowExecution</para>
/// </summary>
/// <example>
///   <code>
///   $wf = Invoke-DataOpsQuery -Query "SELECT id FROM workflows WHERE name = 'sample-workflow-1'" -As Scalar
///   New-WorkflowExecution -WorkflowId $wf -TemporalWorkflowId 'order-42' -TemporalRunId (New-Guid) -CreatedBy 'sample-user-1' -Input @{ orderId = 42 }
///   </code>
///   <para>Records a running execution of sample-workflow-1 started by sample-user-1: a workflow and a user that New-WorkflowSampleData writes.</para>
/// </example>
/// <example>
///   <code>
///   $wf = (Get-WorkflowExecution -First 1).WorkflowId
///   $e = New-WorkflowExecution -WorkflowId $wf -TemporalWorkflowId 'order-43' -TemporalRunId (New-Guid) -CreatedBy 'sample-user-2'
///   $e | Set-WorkflowExecution -Status completed
///   </code>
///   <para>Starts an execution of the workflow that ran last and marks it completed; completed_at and duration_ms are filled in.</para>
/// </example>
[Cmdlet(VerbsCommon.New, "WorkflowExecution", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(WorkflowExecution))]
public sealed class NewWorkflowExecutionCommand : DatabaseCmdlet
{
    /// <summary>The workflow that runs (workflows.id).</summary>
    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(WorkflowIdCompleter))]
    public Guid WorkflowId { get; set; }

    /// <summary>Temporal's workflow id of the run.</summary>
    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true)]
    public string TemporalWorkflowId { get; set; } = string.Empty;

    /// <summary>Temporal's run id.</summary>
    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true)]
    public string TemporalRunId { get; set; } = string.Empty;

    /// <summary>The user who started it (users.id).</summary>
    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(UserIdCompleter))]
    public string CreatedBy { get; set; } = string.Empty;

    /// <summary>The execution's input: a hashtable or object (stored as JSON), or JSON text.</summary>
    [Parameter]
    public object? Input { get; set; }

    protected override void ProcessRecord()
    {
        if (!TryResolveConnection(out var connection))
        {
            return;
        }

        // One execution of several (pipeline input): bad input or an unknown workflow or user is non-terminating.
        if (!TryRunEngine((_, _) => Task.FromResult(JsonArgument.ToJson(Input, nameof(Input))), out var input)
            || !ShouldWrite(connection, $"workflow {WorkflowId}", $"Record execution {TemporalWorkflowId}/{TemporalRunId}", false))
        {
            return;
        }

        if (TryRunEngine((_, ct) => ExecutionStore.CreateAsync(connection, new NewExecution(WorkflowId, TemporalWorkflowId, TemporalRunId, CreatedBy, input), ct), out var created))
        {
            WriteObject(ExecutionOutput.ToPSObject(created with { Connection = connection }));
        }
    }
}
