using System.Management.Automation;
using DataOps.Engine.Logging;
using DataOps.Engine.Executions;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Fills the WorkflowExecution tables with sample users, workflows and executions.</para>
/// <para type="description">New-WorkflowSampleData writes users (sample-user-N), workflows (sample-workflow-N) and executions spread over the
/// last 30 days: about 60% completed, 10% each failed, cancelled, timed out and running, with durations from 100 ms to 10 minutes. It
/// gives Get-WorkflowExecution and Get-ExecutionStats something realistic to show. The rows are generated in SQL in one transaction.</para>
/// <para type="link">Get-ExecutionStats</para>
/// <para type="link">Get-WorkflowExecution</para>
/// </summary>
/// <example>
///   <code>Install-DataOpsSchema -Component WorkflowExecution; New-WorkflowSampleData; Get-ExecutionStats -GroupBy Status</code>
///   <para>Writes 10 users, 20 workflows and 2,000 executions, then shows the statistics per status.</para>
/// </example>
/// <example>
///   <code>New-WorkflowSampleData -Users 100 -Workflows 1000 -Executions 1000000</code>
///   <para>A million executions for testing queries at scale.</para>
/// </example>
[Cmdlet(VerbsCommon.New, "WorkflowSampleData", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(WorkflowSampleResult))]
public sealed class NewWorkflowSampleDataCommand : DatabaseCmdlet
{
    /// <summary>How many users. Default: 10.</summary>
    [Parameter]
    [ValidateRange(1, 1_000_000)]
    public int Users { get; set; } = 10;

    /// <summary>How many workflows. Default: 20.</summary>
    [Parameter]
    [ValidateRange(1, 1_000_000)]
    public int Workflows { get; set; } = 20;

    /// <summary>How many executions. Default: 2,000.</summary>
    [Parameter]
    [ValidateRange(1, 100_000_000)]
    public int Executions { get; set; } = 2000;

    /// <summary>Seed of the generator. Default: random, reported in the result.</summary>
    /// <default>random, reported in the result</default>
    [Parameter]
    public int? Seed { get; set; }

    /// <summary>Skips confirmation prompts.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        var connection = ResolveConnection();
        if (ShouldWrite(connection, $"workflow tables in {connection}", $"Write {Executions} sample executions", Force))
        {
            WriteObject(RunEngine((observer, ct) => Heartbeat.Track(ExecutionSampleData.CreateAsync(connection, Users, Workflows, Executions, Seed, ct), observer,
                "New-WorkflowSampleData", $"Writing {Users} users, {Workflows} workflows and {Executions} executions in one transaction")));
        }
    }
}
