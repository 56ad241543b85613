using System.Management.Automation;
using DataOps.Engine.Backfill;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Resumes a suspended backfill run, from any session or machine.</para>
/// <para type="description">Resume-Backfill records the request in the run's control row and in its action history with who asked
/// and when. The run reads its control row every 250 ms and goes on with its next item, at its rate (or the one Set-BackfillThrottle
/// gave it). Resuming a run that is not suspended changes nothing but is recorded. A run that Stop-Backfill is ending cannot be
/// resumed (BackfillRunStopping).</para>
/// <para type="link">Suspend-Backfill</para>
/// <para type="link">Set-BackfillThrottle</para>
/// <para type="link">Get-BackfillRun</para>
/// </summary>
/// <example>
///   <code>Resume-Backfill -RunId $id</code>
///   <para>The suspended run goes on with its next item.</para>
/// </example>
/// <example>
///   <code>Get-BackfillRun | Where-Object State -eq suspended | Resume-Backfill</code>
///   <para>Resumes every suspended run.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Resume, "Backfill", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(BackfillRunControl))]
public sealed class ResumeBackfillCommand : BackfillControlCmdlet
{
    protected override void ProcessRecord() =>
        Request(BackfillControlAction.Resume, null, "Resume the run");
}
