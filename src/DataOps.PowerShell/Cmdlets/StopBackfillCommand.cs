using System.Management.Automation;
using DataOps.Engine.Backfill;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Stops a backfill run in progress, from any session or machine: after the item in flight, or at once with -Abort.</para>
/// <para type="description">Stop-Backfill records the request in the run's control row and in its action history with who asked
/// and when. The run reads its control row every 250 ms: it finishes the item (or group of fast items) in flight, starts no new
/// item and ends with status 'stopped', writing its files as any run does (backfill_summary.md, the results and the rollback
/// script); its reason names who stopped it and when. A suspended run stops too. Items not started are not applied: run the job
/// again to apply them (applied items are skipped).</para>
/// <para type="description">-Abort does not wait for the items in flight: the run cancels their statements on the server, so
/// their transactions roll back and they leave no change and no applied ledger row, then ends 'stopped' the same way. Items
/// committed before stay applied and are in its rollback script.</para>
/// <para type="link">Suspend-Backfill</para>
/// <para type="link">Get-BackfillRun</para>
/// <para type="link">Undo-Backfill</para>
/// </summary>
/// <example>
///   <code>Stop-Backfill -RunId $id</code>
///   <para>The run finishes its item in flight and ends 'stopped', with its summary and rollback script.</para>
/// </example>
/// <example>
///   <code>Stop-Backfill -RunId $id -Abort -Confirm:$false</code>
///   <para>Cancels and rolls back the item in flight, then ends the run.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Stop, "Backfill", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(BackfillRunControl))]
public sealed class StopBackfillCommand : BackfillControlCmdlet
{
    /// <summary>Cancels the items in flight (their transactions roll back) instead of letting them finish.</summary>
    [Parameter]
    public SwitchParameter Abort { get; set; }

    protected override void ProcessRecord() =>
        Request(Abort ? BackfillControlAction.Abort : BackfillControlAction.Stop, null,
            Abort ? "Abort the run: roll back the item in flight and end the run" : "Stop the run after the item in flight");
}
