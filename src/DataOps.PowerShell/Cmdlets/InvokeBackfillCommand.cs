using System.Management.Automation;
using DataOps.Engine.Backfill;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Applies a backfill job item by item: guarded, throttled, idempotent, with a rollback script.</para>
/// <para type="description">Invoke-Backfill validates the whole job file first (structure, parameters, capture tables' primary keys, and
/// every statement parsed by the server in a rolled-back transaction); any problem stops it with JobFileInvalid naming the JSON paths.
/// Then each item runs in one transaction: lock and capture the before-image of the captured rows, run the steps with @key and the
/// job's parameters bound as parameters, capture the after-image, run verify (it must return true), write the ledger row, commit.
/// A failed item is rolled back and categorised (Constraint, Timeout, LockTimeout, VerifyFailed, ConnectionLost, Other); the run goes on
/// until -MaxFailures. An item whose rows another session has locked waits -LockTimeout (default: the job file's lockTimeout, else 5s),
/// then runs again after a backoff with jitter, up to -LockRetries times (default: the job file's lockRetries, else 3); then it fails as
/// LockTimeout, its error and its Blocker property naming the session that held the rows (pid, state, transaction age and its query's
/// text, never its values), and the next item runs. In a group, only that item leaves the group for its retries. -Verbose says when
/// an item waits for a lock, who holds it, and each retry. A lost connection, pg_terminate_backend, a server restart (57P01, 57P03) or a lost deadlock runs the item again
/// whole on a new connection, up to 5 times with backoff (0.25 s doubling to 4 s, about 8 s in all); an item whose COMMIT reached the
/// server before the connection went is found in the ledger and not run twice. If the database stays unreachable through every retry,
/// the item fails as ConnectionLost and the run stops there: run the job again when the database is back.</para>
/// <para type="description">Items the ledger shows as applied for this job are Skipped, so a re-run after Ctrl+C or a killed process
/// resumes; -Reapply runs them again (the earlier application stays in the ledger, marked superseded by the new run). One run per
/// job: a run holds the job's lease in the database (renewed every 5 s, checked in every item's transaction, on no particular
/// connection), so a second concurrent run of the same job fails at once (BackfillAlreadyRunning), and a
/// run whose lease was taken over (it expired after 30 s without renewal, or its process is gone) stops with BackfillLeaseLost. The
/// ledger itself refuses a second live application of an item. A crashed run's lease is free at once on its own host, after 30 s
/// elsewhere. The throttle is a token
/// bucket: never more than -ItemsPerMinute (default: the job's, else 20; 0 turns it off). Besides the rate, the run waits while a
/// database signal of the job file's throttle.signals (or -MaxReplicaLag, -MaxRetainedWal) is above its limit: replica replay lag,
/// WAL retained by replication slots, archive backlog, autovacuum on a captured table, active sessions, lock waiters, or a read-only
/// query. One sampler on its own read-only connection decides for the whole run, at most every check interval; a signal that
/// cannot be sampled at all (no permission, no standby) stops the run before it starts (ThrottleSignalUnavailable), one that fails
/// during the run holds it ("signal unavailable"), and a signal above its critical limit criticalHits samples in a row stops the run
/// (BackfillThrottleCritical). While it waits, the progress bar and -Verbose say why; the summary and Get-BackfillRun show the time
/// waited per reason and the largest value seen of each signal. Results stream as one object per item.
/// Files go to OutputDirectory/job/runId: backfill_summary.md, backfill_logs/execution_results.json, batch_NNN.json and
/// rollback_YYYY-MM-DD.sql (psql -v ON_ERROR_STOP=1 -f). The run then halts for review; nothing starts the next phase.</para>
/// <para type="description">The job file's notify hooks receive a JSON POST on start, throttled (once per episode), halt, success and
/// failure, with the run's counts; a failing hook is a warning, and a required one stops the run (BackfillHookFailed). -MetricsPath (or
/// the job file's metrics.path) keeps a Prometheus text file up to date while the run goes on.</para>
/// <para type="description">A keyset job (items.keyset in the job file) walks a large table in key ranges instead of a list of keys:
/// each chunk is one item (key ["lo","hi"]), sized to take the job's chunkTime, halved and run again when it hits its statementTimeout;
/// only keys up to the largest one when the run starts are taken, a re-run resumes after the job's last committed chunk, and a failed
/// chunk stops the walk there. The progress bar shows chunks and rows against the planner's row estimate; -Reapply is refused
/// (KeysetOptionUnsupported). See about_DataOps_JobFile, KEYSET CHUNKS.</para>
/// <para type="description">-Workers N runs the items with N workers, each on its own connection, claiming items from the database
/// (FOR UPDATE SKIP LOCKED): the run publishes its items, and another process or machine joins it with -RunId ID -Join. Each process's
/// membership is a lease renewed every 3 s; the items of a process that dies are claimed again by the others after 15 s (at once on the
/// same host), and an item applies exactly once (its claim is marked done in its own transaction; the ledger refuses a second
/// application). The rate limit, the signals and the operator's controls hold for the run as a whole, across every worker. The
/// starting process ends the run and writes one summary and one rollback script with every item, whichever process ran it. See
/// docs/workers.md.</para>
/// <para type="description">-WhatIf lists the items and steps without touching data (for a keyset job, the key range it would walk). -DryRun runs every item and rolls it back, reporting
/// the rows each would change. On a production connection the run asks for confirmation unless -Force or -Confirm:$false; -Force
/// only skips that question, it never changes what the run does.</para>
/// <para type="link">Undo-Backfill</para>
/// <para type="link">Get-BackfillRun</para>
/// <para type="link">about_DataOps_JobFile</para>
/// </summary>
/// <example>
///   <code>Invoke-Backfill -Job ./examples/jobs/results-v1.2.1.job.json -OutputDirectory ./runs</code>
///   <para>Applies the sample job at its configured rate and writes the run's files under ./runs/results-v1.2.1/RUNID.</para>
/// </example>
/// <example>
///   <code>Invoke-Backfill -Job ./fix.job.json -DryRun | Where-Object Status -eq Failed</code>
///   <para>Rehearses every item in rolled-back transactions and shows the items that would fail.</para>
/// </example>
/// <example>
///   <code>Invoke-Backfill -Job ./fix.job.json -Connection $prod -WhatIf</code>
///   <para>Lists the items and steps a run would apply on production, changing nothing.</para>
/// </example>
/// <example>
///   <code>Invoke-Backfill -Job ./fix.job.json -OutputDirectory ./runs -MetricsPath ./textfile/dataops_backfill.prom</code>
///   <para>Runs the job and keeps a Prometheus metrics file up to date (items by status, rate, seconds throttled by reason, running 1 or 0); point node_exporter's --collector.textfile.directory at ./textfile.</para>
/// </example>
/// <example>
///   <code>Invoke-Backfill -Job ./examples/jobs/legacy-fc-sweep.job.json -OutputDirectory ./runs -Force</code>
///   <para>Runs a keyset job: prism.sessions is walked by id in chunks sized to take about 500 ms each; run it again after a stop
///   or a killed process and it resumes after the last committed chunk.</para>
/// </example>
/// <example>
///   <code>Invoke-Backfill -Job ./fix.job.json -MaxReplicaLag 16MB -MaxRetainedWal 1GB -Verbose</code>
///   <para>Waits whenever a standby's replay falls more than 16 MB behind the primary, or replication slots keep more than 1 GB of WAL;
///   -Verbose and the progress bar say which standby is how far behind. Get-BackfillRun shows the time waited per reason afterwards.</para>
/// </example>
/// <example>
///   <code>Invoke-Backfill -Job ./fix.job.json -Connection eu, us, apac -ThrottleLimit 3 -OutputDirectory ./runs -Confirm:$false</code>
///   <para>A fleet: the job runs on three databases at once, each as its own run (its own lease, ledger, throttle and rollback script in
///   ./runs/TARGET/JOB/RUNID). Every database is validated first and confirmed on its own before any starts; every result names its
///   Target; a database that fails (unreachable, invalid for it, too many failed items) is a non-terminating error and the others go on.</para>
/// </example>
/// <example>
///   <code>Test-ProdHealth -Job ./fix.job.json -Connection eu, us, apac | Invoke-Backfill -ItemsPerMinute 0 -Force</code>
///   <para>Checks a fleet, then applies each target's mini plan in its own database (each report carries its Connection); healthy targets
///   and targets the check could not reach are skipped.</para>
/// </example>
/// <example>
///   <code>Invoke-Backfill -Job ./fix.job.json -Workers 3 -ItemsPerMinute 600 -OutputDirectory ./runs -Force</code>
///   <para>Runs the job with three workers that claim its items from the database, 600 items a minute for the three together; the run's
///   id (in -Verbose and Get-BackfillRun) lets other processes join it.</para>
/// </example>
/// <example>
///   <code>Invoke-Backfill -RunId (Get-BackfillRun -JobName fix | Where-Object Status -eq running).RunId -Join -Workers 4 -OutputDirectory ./runs</code>
///   <para>On another machine with the same job file: four more workers join the live run until no item is left; the run's own rate,
///   -MaxFailures and lock waits apply, and the starting process writes the run's summary and rollback script.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Invoke, "Backfill", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = ByJob)]
[OutputType(typeof(BackfillItemResult))]
public sealed class InvokeBackfillCommand : FleetCmdlet
{
    private const string ByJob = "Job";
    private const string ToJoin = "Join";

    /// <summary>
    /// The job file (JSON, version 1) or a mini plan. Binds from pipeline objects' Job, PlanPath or PSPath property, so Test-ProdHealth
    /// reports and Get-ChildItem files can be piped. With -Join: a copy of the run's job file, when the path the run recorded is not on this machine.
    /// </summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ByJob)]
    [Parameter(ParameterSetName = ToJoin)]
    [ArgumentCompleter(typeof(JobFileCompleter))]
    [Alias("PlanPath", "Path", "LiteralPath", "PSPath")]
    [AllowNull]
    [AllowEmptyString]
    public string? Job { get; set; }

    /// <summary>A mini plan from Test-ProdHealth older than this is refused (StalePlan): 24h, 90m, or a TimeSpan. Default: 24h.</summary>
    [Parameter(ParameterSetName = ByJob)]
    [DurationTransformation]
    public TimeSpan MaxPlanAge { get; set; } = TimeSpan.FromHours(24);

    /// <summary>Overrides the job's throttle; 0 runs unthrottled.</summary>
    /// <default>the job's throttle.itemsPerMinute, else 20</default>
    [Parameter(ParameterSetName = ByJob)]
    [ValidateRange(0, 1_000_000)]
    public int? ItemsPerMinute { get; set; }

    /// <summary>Where the run's files go (a folder per job and run). Default: ./backfill-runs.</summary>
    [Parameter]
    public string OutputDirectory { get; set; } = "backfill-runs";

    /// <summary>
    /// A Prometheus text-format file the run keeps up to date for node_exporter's textfile collector (point its
    /// --collector.textfile.directory at the folder; the name must end in .prom): items applied, failed and skipped
    /// (dataops_backfill_items_total), items planned, the rate, seconds throttled by reason, whether the run is going on, and
    /// when the file was written. It is rewritten about once a second and at the end (running 0, the final counts), each time
    /// through a temporary file renamed over it. Overrides the job file's metrics.path.
    /// </summary>
    /// <default>the job file's metrics.path, else none</default>
    [Parameter(ParameterSetName = ByJob)]
    public string? MetricsPath { get; set; }

    /// <summary>Stop the run after this many failed items. Default: 5.</summary>
    [Parameter(ParameterSetName = ByJob)]
    [ValidateRange(1, int.MaxValue)]
    public int MaxFailures { get; set; } = 5;

    /// <summary>
    /// How long one attempt of an item waits for rows another session has locked (the session's lock_timeout, separate from
    /// the 60 s statement timeout): 1ms to 60s. After the last of its 1 + -LockRetries attempts the item fails as LockTimeout,
    /// its error naming the session that held the rows, and the run goes on with the next item. Overrides the job file's
    /// lockTimeout. Accepts a TimeSpan or text such as 500ms, 5s, 1m.
    /// </summary>
    /// <default>the job file's lockTimeout, else 5s</default>
    [Parameter(ParameterSetName = ByJob)]
    [DurationTransformation]
    public TimeSpan? LockTimeout { get; set; }

    /// <summary>
    /// How many times an item whose lock wait timed out runs again, after a backoff with jitter (starting at the lock timeout,
    /// at most 1 s, and doubling), before it fails as LockTimeout: 0 to 20. Overrides the job file's lockRetries.
    /// </summary>
    /// <default>the job file's lockRetries, else 3</default>
    [Parameter(ParameterSetName = ByJob)]
    [ValidateRange(BackfillOptions.MinLockRetries, BackfillOptions.MaxLockRetries)]
    public int? LockRetries { get; set; }

    /// <summary>
    /// Holds the run while a standby's replay lag is above this: a size (16MB, 512kB, or a number of bytes such as 1MB in
    /// PowerShell) measures the LSN distance from the primary's current WAL position to each standby's replay position in
    /// pg_stat_replication (0 on an idle primary); a duration (10s) measures replay_lag. The standbys streaming when the run starts
    /// are watched; one that disconnects holds the run too. Sampled on a read-only connection every -SignalCheckInterval; the
    /// progress bar and -Verbose say which standby is how far behind, and the run's summary and Get-BackfillRun show the time
    /// waited under "replica lag". Replaces the limit of the job file's replicaLag signal of the same unit, else adds one.
    /// </summary>
    /// <default>the job file's throttle.signals, else none</default>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? MaxReplicaLag { get; set; }

    /// <summary>
    /// Holds the run while replication slots retain more WAL than this (the largest distance from the current WAL position to a
    /// slot's restart_lsn; inactive slots count): a size such as 1GB or 512MB, or a number of bytes. Replaces the limit of the
    /// job file's retainedWal signal, else adds one.
    /// </summary>
    /// <default>the job file's throttle.signals, else none</default>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? MaxRetainedWal { get; set; }

    /// <summary>
    /// How often each throttle signal (the job file's and -MaxReplicaLag, -MaxRetainedWal) is sampled: 100ms to 1h. Asking
    /// between samples costs no statement. Accepts a TimeSpan or text such as 500ms, 1s, 1m.
    /// </summary>
    /// <default>each signal's checkInterval, else 1s</default>
    [Parameter]
    [DurationTransformation]
    public TimeSpan? SignalCheckInterval { get; set; }

    /// <summary>Secrets for HTTP steps' {credential:NAME} placeholders: @{ NAME = $credential } (the password is the secret).</summary>
    [Parameter]
    public System.Collections.Hashtable? Secret { get; set; }

    /// <summary>Runs again the items the ledger shows as applied for this job, instead of skipping them; each earlier application is marked superseded by this run.</summary>
    [Parameter(ParameterSetName = ByJob)]
    public SwitchParameter Reapply { get; set; }

    /// <summary>Skips the confirmation a production connection asks for. It changes nothing else: applied items are still skipped (see -Reapply).</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>
    /// Runs the items with this many workers in this process, each on its own connection, claiming items from the database: the
    /// run publishes its items (dataops.run_item) so that other processes or machines can join it (-RunId -Join), and its rate is
    /// the run's across every worker of every process (each item's start is spaced in the database), as are its signals, its
    /// controls (Suspend-, Resume-, Stop-Backfill, Set-BackfillThrottle) and its ledger. 1 to 64; each item is still its own transaction
    /// (in server-side groups when unthrottled, as without workers). Not for keyset jobs. With -Join: this process's workers (default 1).
    /// </summary>
    /// <default>none: one worker, or the job's maxConcurrency, without a queue</default>
    [Parameter]
    [ValidateRange(1, BackfillOptions.MaxWorkers)]
    public int? Workers { get; set; }

    /// <summary>With -Join: the run to join (Get-BackfillRun shows it; the starting process logs it).</summary>
    [Parameter(Mandatory = true, ParameterSetName = ToJoin)]
    public Guid RunId { get; set; }

    /// <summary>
    /// Joins the live run -RunId (started with -Workers, in any process or on any machine) instead of starting one: this process's
    /// workers claim the run's items until none is left. The run's own settings apply (rate, -MaxFailures, lock waits, -DryRun);
    /// the job file must be byte for byte the run's (the path it recorded, or -Job). Its items are output here and kept in
    /// OutputDirectory/JOB/RUNID/workers/HOST-PID-ID; the starting process writes the run's summary and rollback script with every item.
    /// If the starting process dies, the run's lease expires and the joined workers stop (BackfillLeaseLost); run the job again to resume.
    /// </summary>
    /// <default>False</default>
    [Parameter(Mandatory = true, ParameterSetName = ToJoin)]
    public SwitchParameter Join { get; set; }

    /// <summary>Runs every item's steps in a transaction that is rolled back, and reports the rows each would change.</summary>
    [Parameter(ParameterSetName = ByJob)]
    public SwitchParameter DryRun { get; set; }

    protected override void ProcessRecord()
    {
        if (InputObject?.BaseObject is FleetTargetFailure failure)
        {
            // A fleet's health check could not check this target: its error is already reported, and there is no plan.
            WriteVerbose($"Skipped {failure.Target}: its health check did not run ({failure.ErrorId}), so there is nothing to apply.");
            return;
        }

        if (Join.IsPresent)
        {
            ProcessJoin();
            return;
        }

        if (string.IsNullOrEmpty(Job))
        {
            // A piped Test-ProdHealth report that is healthy has no plan (PlanPath binds null): nothing to do.
            if (PipelineInput.Value<bool>(InputObject, "Healthy") == true)
            {
                WriteHostInformation(this, "The health check found nothing that still needs the backfill: no plan, nothing to do.");
                return;
            }

            ThrowTerminating("JobFileNotFound", Engine.DataOpsErrorKind.InvalidArgument, "-Job is empty: give the path of a job file or of a mini plan.", Job);
        }

        if (IsFleet)
        {
            ProcessFleet();
            return;
        }

        if (!TryResolveConnection(out var connection))
        {
            return;
        }

        CheckLockTimeout();
        var path = GetUnresolvedProviderPathFromPSPath(Job);
        var output = GetUnresolvedProviderPathFromPSPath(OutputDirectory);
        var redactor = new SecretRedactor();
        var credentials = SecretArgument.ToDictionary(Secret, redactor);
        var (job, secrets, signals) = RunEngine(async (_, ct) =>
        {
            var loaded = JobFile.Load(path);
            var signals = ThrottleSignals.WithParameters(loaded.Signals, MaxReplicaLag, MaxRetainedWal, SignalCheckInterval);
            var prepared = await BackfillRunner.PrepareAsync(loaded, connection, ct).ConfigureAwait(false);
            await BackfillRunner.VerifyPlanAsync(prepared.Job, connection, MaxPlanAge, ct).ConfigureAwait(false);
            return (prepared, HttpSteps.ResolveSecrets(prepared.Job, credentials, redactor), signals);
        });

        if (WhatIfRequested)
        {
            var steps = string.Join("; ", job.Job.Steps.Select(s => s.Name));
            if (RunEngine((_, ct) => BackfillRunner.PreviewKeysetAsync(job, connection, ct)) is { } walk)
            {
                ShouldProcess($"{walk} of job {job.Job.Name} on {connection}", $"Apply steps: {steps}");
                WriteVerbose($"A keyset walk of {walk} (found as the run goes); nothing was changed.");
                return;
            }

            var keys = RunEngine((_, ct) => BackfillRunner.ResolveKeysAsync(job, connection, ct));
            foreach (var key in keys)
            {
                ShouldProcess($"item {key} of job {job.Job.Name} on {connection}", $"Apply steps: {steps}");
            }

            WriteVerbose($"{keys.Count} items; nothing was changed.");
            return;
        }

        if (!DryRun && !ShouldWrite(connection, $"job {job.Job.Name} on {connection}", "Apply backfill", Force))
        {
            return;
        }

        var options = new BackfillOptions
        {
            ItemsPerMinute = ItemsPerMinute, OutputDirectory = output, MaxFailures = MaxFailures, LockTimeout = LockTimeout, LockRetries = LockRetries, Reapply = Reapply, DryRun = DryRun,
            ResolvedSecrets = secrets, Redactor = redactor, MetricsPath = MetricsPath is null ? null : GetUnresolvedProviderPathFromPSPath(MetricsPath), Signals = signals, Workers = Workers,
        };
        StreamEngineLogged("Invoke-Backfill", (log, observer, ct) => Stamped(BackfillRunner.RunAsync(job, connection, options, log, observer, ct), r => r with { Connection = connection }, ct), redactor);
    }

    /// <summary>
    /// -RunId -Join: the run must be live and started with -Workers, the job file the same; the run's settings apply, with this
    /// process's workers, signals, secrets and output folder.
    /// </summary>
    private void ProcessJoin()
    {
        if (IsFleet)
        {
            ThrowTerminating("JoinNeedsOneConnection", Engine.DataOpsErrorKind.InvalidArgument,
                $"-Join joins one run on one database: give one -Connection, not {Connection!.Length}.", RunId);
        }

        if (!TryResolveConnection(out var connection))
        {
            return;
        }

        var path = string.IsNullOrEmpty(Job) ? null : GetUnresolvedProviderPathFromPSPath(Job);
        var output = GetUnresolvedProviderPathFromPSPath(OutputDirectory);
        var redactor = new SecretRedactor();
        var credentials = SecretArgument.ToDictionary(Secret, redactor);
        var workers = Workers ?? 1;
        var (job, options) = RunEngine(async (_, ct) =>
        {
            var (prepared, fromRun) = await BackfillRunner.PrepareJoinAsync(connection, RunId, path, workers, output, ct).ConfigureAwait(false);
            return (prepared, fromRun with { ResolvedSecrets = HttpSteps.ResolveSecrets(prepared.Job, credentials, redactor), Redactor = redactor });
        });
        var target = $"run {RunId} of job {job.Job.Name} on {connection}";
        if (WhatIfRequested)
        {
            ShouldProcess($"{target} with {workers} workers", "Join backfill run");
            return;
        }

        if (!options.DryRun && !ShouldWrite(connection, target, "Join backfill run", Force))
        {
            return;
        }

        options = options with { Signals = ThrottleSignals.WithParameters(job.Job.Signals, MaxReplicaLag, MaxRetainedWal, SignalCheckInterval) };
        StreamEngineLogged("Invoke-Backfill", (log, observer, ct) => Stamped(BackfillRunner.RunAsync(job, connection, options, log, observer, ct), r => r with { Connection = connection }, ct), redactor);
    }

    private void CheckLockTimeout()
    {
        if (LockTimeout is { } lockTimeout && (lockTimeout < BackfillOptions.MinLockTimeout || lockTimeout > BackfillOptions.MaxLockTimeout))
        {
            ThrowTerminating("LockTimeoutOutOfRange", Engine.DataOpsErrorKind.InvalidArgument,
                $"-LockTimeout {LockTimeout} is out of range: give 1ms to 60s (an item's statement timeout). Nothing was run.", LockTimeout);
        }
    }

    /// <summary>
    /// A fleet: each target is its own run. First every target loads and validates the job against its
    /// own database at once (a target where that fails is an error, the others go on); then, on this
    /// thread, -WhatIf lists each target's items, or ShouldProcess is asked per target; then the
    /// confirmed targets run at once, each with its own options, secrets redactor, run log, lease, ledger
    /// rows and files in OutputDirectory/TARGET/JOB/RUNID (a metrics file gets .TARGET before its extension).
    /// </summary>
    private void ProcessFleet()
    {
        if (!TryResolveFleet(out var targets))
        {
            return;
        }

        CheckLockTimeout();
        var path = GetUnresolvedProviderPathFromPSPath(Job!);
        var output = GetUnresolvedProviderPathFromPSPath(OutputDirectory);
        var metrics = MetricsPath is null ? null : GetUnresolvedProviderPathFromPSPath(MetricsPath);
        var (maxLag, maxWal, signalInterval, maxPlanAge, whatIf) = (MaxReplicaLag, MaxRetainedWal, SignalCheckInterval, MaxPlanAge, WhatIfRequested);

        // Secrets are read here, on the pipeline thread, into one redactor and dictionary per target.
        var redactors = targets.Select(_ => new SecretRedactor()).ToArray();
        var credentials = targets.Select(t => SecretArgument.ToDictionary(Secret, redactors[t.Index])).ToArray();
        var prepared = RunFleet(targets, $"Invoke-Backfill: validating on {targets.Count} targets", async (target, _, ct) =>
        {
            var loaded = JobFile.Load(path);
            var signals = ThrottleSignals.WithParameters(loaded.Signals, maxLag, maxWal, signalInterval);
            var job = await BackfillRunner.PrepareAsync(loaded, target.Connection, ct).ConfigureAwait(false);
            await BackfillRunner.VerifyPlanAsync(job.Job, target.Connection, maxPlanAge, ct).ConfigureAwait(false);
            var secrets = HttpSteps.ResolveSecrets(job.Job, credentials[target.Index], redactors[target.Index]);
            var walk = whatIf ? await BackfillRunner.PreviewKeysetAsync(job, target.Connection, ct).ConfigureAwait(false) : null;
            var keys = whatIf && walk is null ? await BackfillRunner.ResolveKeysAsync(job, target.Connection, ct).ConfigureAwait(false) : null;
            return new FleetRun(job, secrets, signals, keys, walk);
        });

        var confirmed = new List<FleetTarget>();
        foreach (var outcome in prepared.Where(o => o.Succeeded))
        {
            var (target, run) = (outcome.Target, outcome.Result!);
            var connection = target.Connection;
            if (whatIf)
            {
                var steps = string.Join("; ", run.Job.Job.Steps.Select(s => s.Name));
                if (run.Walk is { } walk)
                {
                    ShouldProcess($"{walk} of job {run.Job.Job.Name} on {connection} ({target.Name})", $"Apply steps: {steps}");
                    WriteVerbose($"[{target.Name}] A keyset walk of {walk} (found as the run goes); nothing was changed.");
                    continue;
                }

                foreach (var key in run.Keys!)
                {
                    ShouldProcess($"item {key} of job {run.Job.Job.Name} on {connection} ({target.Name})", $"Apply steps: {steps}");
                }

                WriteVerbose($"[{target.Name}] {run.Keys!.Count} items; nothing was changed.");
                continue;
            }

            if (DryRun || ShouldWrite(connection, $"job {run.Job.Job.Name} on {connection} ({target.Name})", "Apply backfill", Force))
            {
                confirmed.Add(target);
            }
        }

        if (confirmed.Count == 0)
        {
            return;
        }

        var runs = prepared.Where(o => o.Succeeded).ToDictionary(o => o.Target.Index, o => o.Result!);
        var (itemsPerMinute, maxFailures, lockTimeout, lockRetries, reapply, dryRun, workers) = (ItemsPerMinute, MaxFailures, LockTimeout, LockRetries, Reapply.IsPresent, DryRun.IsPresent, Workers);
        RunFleet(confirmed, $"Invoke-Backfill on {confirmed.Count} targets", async (target, scope, ct) =>
        {
            var run = runs[target.Index];
            var redactor = redactors[target.Index];
            var options = new BackfillOptions
            {
                ItemsPerMinute = itemsPerMinute, OutputDirectory = Path.Combine(output, target.Folder), MaxFailures = maxFailures, LockTimeout = lockTimeout, LockRetries = lockRetries,
                Reapply = reapply, DryRun = dryRun, ResolvedSecrets = run.Secrets, Redactor = redactor, MetricsPath = PerTarget(metrics ?? run.Job.Job.MetricsPath, target), Signals = run.Signals,
                Workers = workers,
            };
            using var log = OpenLog("Invoke-Backfill", scope, redactor);
            await foreach (var result in BackfillRunner.RunAsync(run.Job, target.Connection, options, log, scope, ct).WithCancellation(ct).ConfigureAwait(false))
            {
                scope.Write(result with { Connection = target.Connection });
            }

            return true;
        });
    }

    /// <summary>A metrics file per target: ./m/dataops.prom becomes ./m/dataops.TARGET.prom (node_exporter's textfile collector reads every *.prom of one folder).</summary>
    private static string? PerTarget(string? metrics, FleetTarget target) =>
        metrics is null ? null : Path.Combine(Path.GetDirectoryName(metrics) ?? string.Empty, $"{Path.GetFileNameWithoutExtension(metrics)}.{target.Folder}{Path.GetExtension(metrics)}");

    private sealed record FleetRun(ValidatedJob Job, IReadOnlyDictionary<string, string> Secrets, IReadOnlyList<ThrottleSignal> Signals, IReadOnlyList<string>? Keys, KeysetPreview? Walk);
}
