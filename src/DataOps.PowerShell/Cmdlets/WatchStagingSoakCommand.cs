using System.Management.Automation;
using DataOps.Engine.Jobs;
using DataOps.Engine.Soak;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Watches a job's soak checks for hours, strictly read-only, and ends with a Go / NoGo / Inconclusive verdict.</para>
/// <para type="description">Watch-StagingSoak runs the checks of the job file's soak section every -Interval for -Duration (defaults: the
/// job's, else 6h and 5m). Each check is a query returning one number (no row or NULL is NoData) judged against an expectation written
/// as data: equals, atMost, atLeast, between [low, high], or atLeastBaseline (a ratio of a baseline number or query evaluated once at the
/// start). Checks may set failureLimit (default 0), consecutiveFailureLimit and dryRun (reported, never counted), as in Argo Rollouts'
/// analysis runs. Queries may use the job's parameters and @windowStart (when the soak began).</para>
/// <para type="description">The session is read-only (default_transaction_read_only on) and every sample is a READ ONLY transaction with a
/// statement timeout: a check that tries to write gets an Error sample and writes nothing. A check that calls what a read-only
/// transaction still allows (pg_terminate_backend, advisory locks, lo_import, dblink, set_config(..., false); docs/security.md lists
/// them) stops the command before the first round (QueryNotReadOnly). A lost connection is an Error sample, and
/// the next round reconnects; too many rounds in a row with errors make the verdict Inconclusive. Samples stream as SoakSample objects;
/// the last object is the SoakReport, shown with its own view after the samples' table. -FailFast ends at the first exceeded limit
/// with NoGo; Ctrl+C ends early with a report over what was seen: PowerShell keeps no output of a stopped command, so the report object
/// is then in $DataOpsLastSoak (which every soak sets to its report) and the host says so. A Go verdict is reported as host output
/// (the Information stream); NoGo and Inconclusive as a warning. staging_observability.md (a table and a Mermaid chart per check) goes to OutputDirectory/job/soak_TIMESTAMP.</para>
/// <para type="link">Invoke-Backfill</para>
/// <para type="link">about_DataOps_JobFile</para>
/// </summary>
/// <example>
///   <code>Watch-StagingSoak -Job ./examples/jobs/results-v1.2.1.job.json -Connection $staging</code>
///   <para>Watches staging for the job's configured window (6 hours, every 5 minutes) and reports the verdict.</para>
/// </example>
/// <example>
///   <code>$report = Watch-StagingSoak -Job ./fix.job.json -Duration 90m -Interval 30s -FailFast | Select-Object -Last 1</code>
///   <para>A 90-minute soak that stops at the first exceeded limit; keeps only the final report, which is always the last object.</para>
/// </example>
/// <example>
///   <code>$all = Watch-StagingSoak -Job ./fix.job.json -Duration 10m -Interval 1m; $samples = $all | Where-Object { $_.PSTypeNames -contains 'DataOps.Engine.Soak.SoakSample' }; $report = $all | Where-Object Verdict; $report.Checks[0].Check; $samples | Where-Object Outcome -eq 'Fail'</code>
///   <para>Separates the samples from the report by their PSTypeNames or by a property only one of them has. The module's types load in
///   a private context, so a type literal such as [DataOps.Engine.Soak.SoakReport] does not resolve in the session: compare PSTypeNames
///   (strings) or filter on properties instead. Outcome and Verdict are names (Pass, Fail, NoData, Error; Go, NoGo, Inconclusive).</para>
/// </example>
/// <example>
///   <code>Watch-StagingSoak -Job ./fix.job.json -Connection staging-eu, staging-us -Duration 2h -Interval 5m | Where-Object Verdict | Format-Table Target, Verdict, Rounds</code>
///   <para>Soaks two staging databases at once, each read-only with its own connection; every sample and report names its Target,
///   each report file goes to OutputDirectory/TARGET/..., and $DataOpsLastSoak holds the reports of the targets that finished.</para>
/// </example>
[Cmdlet(VerbsCommon.Watch, "StagingSoak")]
[OutputType(typeof(SoakSample), typeof(SoakReport))]
public sealed class WatchStagingSoakCommand : FleetCmdlet
{
    /// <summary>The job file whose soak section to run.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(JobFileCompleter))]
    [Alias("Path", "LiteralPath", "PSPath")]
    [ValidateNotNullOrEmpty]
    public string Job { get; set; } = string.Empty;

    /// <summary>How long to watch: 6h, 90m, 30s or a TimeSpan. Default: the job's, else 6h.</summary>
    /// <default>the job's soak.duration, else 6h</default>
    [Parameter]
    [DurationTransformation]
    public TimeSpan? Duration { get; set; }

    /// <summary>Time between rounds: 5m, 30s, 500ms or a TimeSpan. Default: the job's, else 5m.</summary>
    /// <default>the job's soak.interval, else 5m</default>
    [Parameter]
    [DurationTransformation]
    public TimeSpan? Interval { get; set; }

    /// <summary>Where staging_observability.md goes (a folder per job and soak). Default: ./backfill-runs.</summary>
    [Parameter]
    public string OutputDirectory { get; set; } = "backfill-runs";

    /// <summary>End with NoGo as soon as a check exceeds its limits.</summary>
    [Parameter]
    public SwitchParameter FailFast { get; set; }

    protected override void ProcessRecord()
    {
        IReadOnlyList<FleetTarget>? fleet = null;
        if (IsFleet && !TryResolveFleet(out fleet))
        {
            return;
        }

        var connection = fleet is null ? ResolveConnection() : null!;
        var path = GetUnresolvedProviderPathFromPSPath(Job);
        var output = GetUnresolvedProviderPathFromPSPath(OutputDirectory);
        var (duration, interval) = (Duration, Interval);
        (BackfillJob, SoakSpec) Load()
        {
            var j = JobFile.Load(path);
            var s = SoakSpecParser.Parse(j);
            return (j, s with { Duration = duration ?? s.Duration, Interval = interval ?? s.Interval });
        }

        var (job, spec) = RunEngine((_, _) => Load());
        RunEngine((_, _) =>
        {
            spec.EnsureUsable();
            return true;
        });

        if (fleet is not null)
        {
            WatchFleet(fleet, spec, Load, output);
            return;
        }

        WriteVerbose($"Watching {spec.Checks.Count} checks every {SoakRunner.Format(spec.Interval)} for {SoakRunner.Format(spec.Duration)}, read-only.");
        var failFast = FailFast.IsPresent;
        try
        {
            StreamEngineLogged("Watch-StagingSoak", (log, observer, ct) => Kept(SoakRunner.WatchAsync(job, spec, connection, output, failFast, log, observer, ct), ct));
        }
        finally
        {
            if (Volatile.Read(ref _report) is { } report)
            {
                SessionState.PSVariable.Set("global:" + LastReportVariable, report);
                if (StopToken.IsCancellationRequested)
                {
                    // Ctrl+C: PowerShell drops whatever a stopped pipeline writes, so the report reaches the user
                    // through the variable (and the file); the host still shows where to find both.
                    Host.UI.WriteLine($"Soak of '{report.Job}' stopped early: verdict {report.Verdict} over {report.Rounds} rounds. " +
                        $"The report object is in ${LastReportVariable}; the report file is {report.ReportPath}.");
                }
            }
        }
    }

    /// <summary>
    /// Several databases at once: each target loads the job for itself (no engine object is shared), streams
    /// its samples and report with its Target, and writes its file under OutputDirectory/TARGET.
    /// $DataOpsLastSoak then holds the reports of the targets that finished, in the fleet's order.
    /// </summary>
    private void WatchFleet(IReadOnlyList<FleetTarget> fleet, SoakSpec spec, Func<(BackfillJob, SoakSpec)> load, string output)
    {
        WriteVerbose($"Watching {spec.Checks.Count} checks on {fleet.Count} targets every {SoakRunner.Format(spec.Interval)} for {SoakRunner.Format(spec.Duration)}, read-only.");
        var failFast = FailFast.IsPresent;
        var reports = new SoakReport?[fleet.Count];
        try
        {
            RunFleet(fleet, $"Watch-StagingSoak on {fleet.Count} targets", async (target, scope, ct) =>
            {
                var (job, ownSpec) = load();
                using var log = OpenLog("Watch-StagingSoak", scope, null);
                await foreach (var item in SoakRunner.WatchAsync(job, ownSpec, target.Connection, Path.Combine(output, target.Folder), failFast, log, scope, ct).WithCancellation(ct).ConfigureAwait(false))
                {
                    if (item is SoakReport report)
                    {
                        Volatile.Write(ref reports[target.Index], report);
                    }

                    scope.Write(item);
                }

                return true;
            });
        }
        finally
        {
            var finished = reports.Where(r => r is not null).Cast<SoakReport>().ToArray();
            if (finished.Length > 0)
            {
                SessionState.PSVariable.Set("global:" + LastReportVariable, finished);
            }
        }
    }

    /// <summary>The global variable that holds the last soak's report, also after Ctrl+C (when no output can be written).</summary>
    public const string LastReportVariable = "DataOpsLastSoak";

    private SoakReport? _report;

    /// <summary>Keeps the final report as it passes, so it survives a stopped pipeline.</summary>
    private async IAsyncEnumerable<object> Kept(IAsyncEnumerable<object> items, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        await foreach (var item in items.WithCancellation(ct).ConfigureAwait(false))
        {
            if (item is SoakReport report)
            {
                Volatile.Write(ref _report, report);
            }

            yield return item;
        }
    }
}
