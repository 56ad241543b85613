using System.Management.Automation;
using DataOps.Engine.Health;
using DataOps.Engine.Jobs;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Finds what still needs the backfill on production and writes an idempotent, fingerprinted mini plan.</para>
/// <para type="description">Test-ProdHealth runs the job's health section read-only (the same guarantees as the soak): the discover query
/// (health.discover, else items.discover) finds the keys that still need the backfill, and each health check runs once. It writes
/// prod_health_check.md (database, time, pending count, a sample of pending keys, each check, and the recommendation with the exact
/// command) and, when keys are pending, prod_mini_backfill_plan.json: the job with items set to exactly those keys plus a fingerprint
/// (the cluster's system identifier and the database, the time, and a hash of each pending item's captured rows).</para>
/// <para type="description">Invoke-Backfill refuses that plan on another database (WrongDatabase) or when older than -MaxPlanAge (StalePlan),
/// and skips an item whose rows changed since the plan (Stale). The ProdHealthReport binds to Invoke-Backfill by property name, so
/// Test-ProdHealth ... | Invoke-Backfill applies exactly the plan, and does nothing for a healthy report. -Quiet returns only $true
/// (healthy) or $false, for runbooks.</para>
/// <para type="link">Invoke-Backfill</para>
/// <para type="link">Watch-StagingSoak</para>
/// </summary>
/// <example>
///   <code>Test-ProdHealth -Job ./examples/jobs/results-v1.2.1.job.json -Connection $prod</code>
///   <para>Reports how many sessions still need the backfill and writes the report and, if needed, the mini plan.</para>
/// </example>
/// <example>
///   <code>Test-ProdHealth -Job ./fix.job.json -Connection $prod | Invoke-Backfill -Connection $prod</code>
///   <para>Applies exactly the pending items, with the stale-row and wrong-database guards; does nothing when healthy.</para>
/// </example>
/// <example>
///   <code>if (-not (Test-ProdHealth -Job ./fix.job.json -Quiet)) { exit 2 }</code>
///   <para>A runbook gate: exit code 2 when action is needed.</para>
/// </example>
/// <example>
///   <code>Test-ProdHealth -Job ./fix.job.json -Connection eu, us, $apac -ThrottleLimit 4 -OutputDirectory ./health</code>
///   <para>A fleet: checks three databases at once (environment names, a connection object) and writes one row per target with its
///   Target and Status (Healthy, ActionNeeded, or the ErrorId of a target it could not check, such as ConnectionFailed, which is also a
///   non-terminating error). Each target's files go to ./health/TARGET/.</para>
/// </example>
/// <example>
///   <code>if (-not (Test-ProdHealth -Job ./fix.job.json -Connection eu, us -Quiet -ErrorAction SilentlyContinue)) { exit 2 }</code>
///   <para>A fleet gate: -Quiet returns one $true only when every target was checked and is healthy.</para>
/// </example>
[Cmdlet(VerbsDiagnostic.Test, "ProdHealth")]
[OutputType(typeof(ProdHealthReport), typeof(bool), typeof(FleetTargetFailure))]
public sealed class TestProdHealthCommand : FleetCmdlet
{
    /// <summary>The type name a fleet's rows carry first, for their table view (Target, Status, Pending, Report).</summary>
    public const string FleetTypeName = "DataOps.Fleet.HealthResult";

    /// <summary>The job file whose health section (or items.discover) to run.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(JobFileCompleter))]
    [Alias("Path", "LiteralPath", "PSPath")]
    [ValidateNotNullOrEmpty]
    public string Job { get; set; } = string.Empty;

    /// <summary>Where prod_health_check.md (and the plan) go: a folder per job and check. Default: ./backfill-runs.</summary>
    [Parameter]
    public string OutputDirectory { get; set; } = "backfill-runs";

    /// <summary>Where to write the mini plan instead of the check's folder.</summary>
    [Parameter]
    public string? PlanPath { get; set; }

    /// <summary>Return only $true (healthy) or $false. With a fleet, one value for the whole fleet: $true only when every target was checked and is healthy.</summary>
    [Parameter]
    public SwitchParameter Quiet { get; set; }

    protected override void ProcessRecord()
    {
        if (IsFleet)
        {
            ProcessFleet();
            return;
        }

        if (!TryResolveConnection(out var connection))
        {
            return;
        }

        var path = GetUnresolvedProviderPathFromPSPath(Job);
        var output = GetUnresolvedProviderPathFromPSPath(OutputDirectory);
        var plan = PlanPath is null ? null : GetUnresolvedProviderPathFromPSPath(PlanPath);
        var report = RunEngineLogged("Test-ProdHealth", async (log, observer, ct) =>
        {
            var job = await JobValidator.ValidateAsync(JobFile.Load(path), connection, ct).ConfigureAwait(false);
            return await HealthRunner.RunAsync(job, connection, output, plan, log, observer, ct).ConfigureAwait(false);
        });

        WriteVerbose(report.Healthy
            ? $"Healthy: nothing still needs '{report.JobName}'. Report: {report.ReportPath}"
            : $"{report.PendingCount} items still need '{report.JobName}'. Report: {report.ReportPath}; plan: {report.PlanPath}");
        WriteObject(Quiet ? report.Healthy : report with { Connection = connection });
    }

    /// <summary>
    /// Several targets at once: each one's report (with Target and Status: Healthy or ActionNeeded) or, for a
    /// target that could not be checked, a non-terminating error and a FleetTargetFailure row. Files go to
    /// OutputDirectory/TARGET/...; -PlanPath becomes DIRECTORY/TARGET/FILE.
    /// </summary>
    private void ProcessFleet()
    {
        if (!TryResolveFleet(out var targets))
        {
            return;
        }

        var path = GetUnresolvedProviderPathFromPSPath(Job);
        var output = GetUnresolvedProviderPathFromPSPath(OutputDirectory);
        var plan = PlanPath is null ? null : GetUnresolvedProviderPathFromPSPath(PlanPath);
        var quiet = Quiet.IsPresent;
        var outcomes = RunFleet(targets, $"Test-ProdHealth on {targets.Count} targets", async (target, scope, ct) =>
        {
            using var log = OpenLog("Test-ProdHealth", scope, null);
            var job = await JobValidator.ValidateAsync(JobFile.Load(path), target.Connection, ct).ConfigureAwait(false);
            var targetPlan = plan is null ? null : Path.Combine(Path.GetDirectoryName(plan) ?? ".", target.Folder, Path.GetFileName(plan));
            var report = await HealthRunner.RunAsync(job, target.Connection, Path.Combine(output, target.Folder), targetPlan, log, scope, ct).ConfigureAwait(false);
            scope.Verbose(report.Healthy
                ? $"Healthy: nothing still needs '{report.JobName}'. Report: {report.ReportPath}"
                : $"{report.PendingCount} items still need '{report.JobName}'. Report: {report.ReportPath}; plan: {report.PlanPath}");
            if (!quiet)
            {
                var row = PSObject.AsPSObject(report with { Connection = target.Connection });
                row.Properties.Add(new PSNoteProperty("Status", report.Healthy ? "Healthy" : "ActionNeeded"));
                scope.Write(row, FleetTypeName);
            }

            return report.Healthy;
        },
        quiet ? null : (scope, error) => scope.Write(new FleetTargetFailure(scope.Target.Name, "Test-ProdHealth", error.ErrorId, error.Message), FleetTypeName));

        if (quiet)
        {
            WriteObject(outcomes.All(o => o.Succeeded && o.Result));
        }
    }
}
