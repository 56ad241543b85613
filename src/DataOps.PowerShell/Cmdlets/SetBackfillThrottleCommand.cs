using System.Management.Automation;
using DataOps.Engine.Backfill;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Changes the rate of a backfill run in progress, from any session or machine.</para>
/// <para type="description">Set-BackfillThrottle records the new rate in the run's control row and in its action history with who
/// asked and when. The run reads its control row every 250 ms and applies the rate at once: items already waiting for their turn
/// wait for the new rate. 0 runs unthrottled (fast items go in groups again). The rate holds for the rest of the run and also
/// while it is suspended, so Set-BackfillThrottle then Resume-Backfill resumes at the new rate.</para>
/// <para type="link">Invoke-Backfill</para>
/// <para type="link">Suspend-Backfill</para>
/// <para type="link">Get-BackfillRun</para>
/// </summary>
/// <example>
///   <code>Set-BackfillThrottle -RunId $id -ItemsPerMinute 120</code>
///   <para>From now on the run applies at most 120 items a minute.</para>
/// </example>
/// <example>
///   <code>Get-BackfillRun -JobName results-v1.2.1 | Where-Object Status -eq running | Set-BackfillThrottle -ItemsPerMinute 0</code>
///   <para>Lifts the throttle of the job's live run.</para>
/// </example>
[Cmdlet(VerbsCommon.Set, "BackfillThrottle", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(BackfillRunControl))]
public sealed class SetBackfillThrottleCommand : BackfillControlCmdlet
{
    /// <summary>The run's new rate in items a minute, 0 (unthrottled) to 1000000, as Invoke-Backfill -ItemsPerMinute.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateRange(0, BackfillControl.MaxItemsPerMinute)]
    public int ItemsPerMinute { get; set; }

    protected override void ProcessRecord() =>
        Request(BackfillControlAction.Throttle, ItemsPerMinute, ItemsPerMinute == 0 ? "Run unthrottled" : $"Throttle the run to {ItemsPerMinute} items a minute");
}
