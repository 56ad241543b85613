using System.Management.Automation;
using DataOps.Engine.Executions;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Deletes workflow executions.</para>
/// <para type="description">Remove-WorkflowExecution deletes executions by -Id or from the pipeline. It asks for confirmation
/// (ConfirmImpact High) unless -Force or -Confirm:$false is given; -WhatIf shows what would be deleted. An id that matches
/// nothing is an ObjectNotFound error.</para>
/// <para type="link">Get-WorkflowExecution</para>
/// </summary>
/// <example>
///   <code>Get-WorkflowExecution -CreatedBy sample-user-3 | Remove-WorkflowExecution -WhatIf</code>
///   <para>Shows which executions of sample-user-3 would be deleted, and deletes nothing.</para>
/// </example>
/// <example>
///   <code>Remove-WorkflowExecution -Id $id -Force -PassThru</code>
///   <para>Deletes one execution without asking and returns what was deleted.</para>
/// </example>
[Cmdlet(VerbsCommon.Remove, "WorkflowExecution", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(WorkflowExecution))]
public sealed class RemoveWorkflowExecutionCommand : DatabaseCmdlet
{
    /// <summary>The executions to delete. Binds from pipeline objects' Id property.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    public Guid[] Id { get; set; } = [];

    /// <summary>Skips the confirmation prompt.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Returns each deleted execution as it was.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        if (!TryResolveConnection(out var connection))
        {
            return;
        }

        foreach (var id in Id)
        {
            if (!TryRunEngine((_, ct) => ExecutionStore.GetAsync(connection, id, ct), out var execution) ||
                !ShouldWrite(connection, $"workflow execution {id} ({execution.WorkflowName}, {execution.Status})", "Delete", Force))
            {
                continue;
            }

            if (TryRunEngine(async (_, ct) => { await ExecutionStore.RemoveAsync(connection, id, ct).ConfigureAwait(false); return true; }, out _) && PassThru)
            {
                WriteObject(ExecutionOutput.ToPSObject(execution with { Connection = connection }));
            }
        }
    }
}
