using System.Management.Automation;
using DataOps.Engine.Backfill;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Suspends a backfill run in progress, from any session or machine.</para>
/// <para type="description">Suspend-Backfill records the request in the run's control row (dataops.run_control) and in its action
/// history with who asked (the database role, the operating-system user and host) and when. The run reads its control row every
/// 250 ms: it finishes the item (or group of fast items) in flight, then starts no new item and waits, with the reason "suspended",
/// until Resume-Backfill; the time it waits is counted as held time, and Get-BackfillRun shows its State as suspended. Its job's
/// lease stays renewed meanwhile, so no other run can take the job over. Stop-Backfill ends a suspended run.</para>
/// <para type="description">The output is the run's control state. A run that is not found (RunNotFound) or not running
/// (BackfillRunNotRunning, with its status) is a non-terminating error.</para>
/// <para type="link">Resume-Backfill</para>
/// <para type="link">Stop-Backfill</para>
/// <para type="link">Set-BackfillThrottle</para>
/// <para type="link">Get-BackfillRun</para>
/// </summary>
/// <example>
///   <code>Suspend-Backfill -RunId $id</code>
///   <para>Suspends the run: the item in flight finishes, then the run waits for Resume-Backfill.</para>
/// </example>
/// <example>
///   <code>Get-BackfillRun -JobName results-v1.2.1 | Where-Object State -eq running | Suspend-Backfill</code>
///   <para>Suspends every live run of the job, in the database each run came from.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Suspend, "Backfill", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(BackfillRunControl))]
public sealed class SuspendBackfillCommand : BackfillControlCmdlet
{
    protected override void ProcessRecord() =>
        Request(BackfillControlAction.Suspend, null, "Suspend the run after the item in flight");
}
