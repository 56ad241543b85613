using System.Diagnostics;
using System.Text.Json;
using DataOps.Engine.Connections;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;

namespace DataOps.Engine.Backfill;

/// <summary>What one item came to: its result and, when it committed, the blocks that restore it.</summary>
internal readonly record struct ItemOutcome(string Key, BackfillItemResult Result, IReadOnlyList<RestoreOp>? Restore)
{
    public static ItemOutcome Skipped(Guid runId, string job, string key) =>
        new(key, new BackfillItemResult { RunId = runId, Job = job, Key = key, Status = BackfillItemStatus.Skipped }, null);

    /// <summary>An item the ledger shows committed, from the images the ledger row holds.</summary>
    public static ItemOutcome Committed(ValidatedJob job, Guid runId, string key, string beforeJson, string afterJson, int rows, TimeSpan duration)
    {
        var before = ItemImage.FromJson(beforeJson);
        var after = ItemImage.FromJson(afterJson);
        return new(key, new BackfillItemResult
        {
            RunId = runId, Job = job.Job.Name, Key = key, Status = BackfillItemStatus.Applied, RowsChanged = rows, Duration = duration, Attempts = 1,
        }, RestoreOp.ForItem(key, before, after, job.Capture));
    }
}

/// <summary>The time a run waited per reason, and the peak of each of its signals.</summary>
internal sealed record ThrottleReport(IReadOnlyDictionary<string, TimeSpan> Held, IReadOnlyList<BackfillSignalPeak> Signals)
{
    public static readonly ThrottleReport None = new(new Dictionary<string, TimeSpan>(), []);
}

/// <summary>
/// One run's state, kept in one place: its keys and what the ledger already has, the counters, the
/// outcome and why, the run's files and its progress. The coordinator (<see cref="BackfillRunner"/>)
/// records each batch of outcomes here before it reports them, asks here whether to stop, and ends
/// the run here whatever way it ends.
/// </summary>
internal sealed class BackfillRunState
{
    private readonly ValidatedJob _job;
    private readonly BackfillOptions _options;
    private readonly JobLease _lease;
    private readonly RunLog _log;
    private readonly IOperationObserver _observer;
    private readonly BackfillArtifacts _artifacts;
    private readonly Stopwatch _watch = Stopwatch.StartNew();
    private readonly object _gate = new();
    private TimeSpan _lastProgress = TimeSpan.FromSeconds(-1);
    private string _outcome = "stopped";
    private string? _reason;
    private Exception? _error;
    private readonly RunHooks _hooks;
    private readonly SecretRedactor _redactor;
    private readonly CancellationTokenSource _halt = new();
    private RunMetrics? _metrics;
    private Throttle? _throttle;
    private DataOpsException? _hookFailure;
    private int _failures;
    private int _applied;
    private int _skipped;
    private int _done;
    private volatile bool _stopped;
    private volatile string? _stopReason;
    private bool _aborted;
    private readonly CancellationTokenSource _stopRequested = new();
    private volatile bool _finished;
    private SignalGate? _signals;

    private BackfillRunState(ValidatedJob job, BackfillOptions options, JobLease lease, RunLog log, IOperationObserver observer,
        IReadOnlyList<string> keys, HashSet<string> applied, BackfillArtifacts artifacts)
    {
        (_job, _options, _lease, _log, _observer, _artifacts) = (job, options, lease, log, observer, artifacts);
        (Keys, Applied) = (keys, applied);
        _redactor = options.Redactor ?? new SecretRedactor();
        var secrets = job.Job.Notify.Count == 0 ? new Dictionary<string, string>()
            : options.ResolvedSecrets ?? HttpSteps.ResolveSecrets(job.Job, options.Credentials ?? new Dictionary<string, string>(), _redactor);
        // A process that joined another's run sends no hooks: the run's own process does.
        _hooks = new RunHooks(options.JoinRunId is null ? job.Job.Notify : [], secrets, _redactor, log, observer);
        _hooks.RequiredFailed += ex =>
        {
            // A required hook failed while the run went on (throttled): no new item starts, and a wait in progress ends now.
            Stop("stopped: " + ex.Message);
            _hookFailure ??= ex;
            _halt.Cancel();
        };
    }

    /// <summary>Cancelled when a required hook fails mid-run: the scheduler's token, so a throttled wait ends too.</summary>
    public CancellationToken Halt => _halt.Token;

    public Guid RunId => _lease.RunId;

    public string Name => _job.Job.Name;

    /// <summary>The keys in the order the run takes them.</summary>
    public IReadOnlyList<string> Keys { get; }

    /// <summary>A run worked by several workers: this process's place in it (its items are claimed from the database); null otherwise.</summary>
    public RunQueue? Queue { get; private set; }

    /// <summary>The items the progress counts: the run's keys, or for a process that joined a run, the items the run published.</summary>
    private int Total => Queue is { Coordinator: false } joined ? joined.Items : Keys.Count;

    /// <summary>A keyset job's walk (its items are found as the run goes); null for a list of keys.</summary>
    public KeysetWalk? Keyset { get; private init; }

    /// <summary>Keys the ledger shows applied before this run (empty for -Reapply): skipped, by a dry run too, as the real run would.</summary>
    public HashSet<string> Applied { get; }

    /// <summary>Set once the run has decided to stop (failures, a lost database, a stopped pipeline): no new item starts.</summary>
    public bool Stopped => _stopped;

    /// <summary>Why an operator stopped the run (Stop-Backfill), once one did.</summary>
    public string? StopReason => _stopReason;

    /// <summary>Cancelled when an operator stops the run: a worker waiting for its turn (a slow rate) stops waiting.</summary>
    public CancellationToken StopToken => _stopRequested.Token;

    /// <summary>
    /// An operator stopped the run (Stop-Backfill): no new item starts, the run ends 'stopped' with
    /// <paramref name="reason"/> (who and when) in its files. The first stop wins, except that an abort
    /// (<paramref name="abort"/>) after a plain stop replaces it.
    /// </summary>
    public void RequestStop(string reason, bool abort)
    {
        lock (_gate)
        {
            // Too late for a run that has run every item: it ends completed.
            if ((_stopReason is not null && (_aborted || !abort)) || _outcome == "completed")
            {
                return;
            }

            (_stopReason, _aborted) = (reason, abort);
            if (!_stopped || _outcome == "stopped")
            {
                _stopped = true;
                (_outcome, _reason) = ("stopped", reason);
            }
        }

        _log.Warning("Run {RunId} {Reason}", RunId, reason);
        _stopRequested.Cancel();
    }

    /// <summary>
    /// The keys, the ledger's applied items and the run's files; if any of them fails, nothing ran yet:
    /// the run is recorded as ended and the job's lease released, so the next run starts at once.
    /// </summary>
    public static async Task<BackfillRunState> StartAsync(
        ValidatedJob job, DataOpsConnection connection, BackfillOptions options, JobLease lease, RunLog log, IOperationObserver observer, CancellationToken ct)
    {
        try
        {
            // A keyset job finds its items as it goes (KeysetWalk): no list of keys is held.
            var joining = options.JoinRunId is not null;
            var walk = job.Keyset is null ? null : await KeysetWalk.StartAsync(job, connection, fromStart: false, ct).ConfigureAwait(false);
            var keys = walk is not null || joining ? [] : options.Keys ?? await BackfillRunner.ResolveKeysAsync(job, connection, ct).ConfigureAwait(false);
            var applied = options.Reapply || walk is not null || joining ? [] : await LedgerStore.AppliedKeysAsync(connection, job.Job.Name, ct).ConfigureAwait(false);
            BackfillArtifacts artifacts;
            try
            {
                // A process that joined another's run keeps its own files in a folder of its own inside the run's, and no
                // rollback script (the run's own process writes the whole run's).
                artifacts = new BackfillArtifacts(options.OutputDirectory, job.Job, lease.RunId, connection.ToString(), job.Job.BatchSize, options.DryRun,
                    joining ? $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid():N}"[..^24] : null);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
            {
                throw OutputDirectoryUnusable(options.OutputDirectory, ex, "Nothing was applied.");
            }

            if (lease.Abandoned.Count > 0)
            {
                await BackfillRunFiles.CompleteAbandonedAsync(connection, job.Job.Name, lease.RunId, lease.Abandoned, log, ct).ConfigureAwait(false);
            }

            var run = new BackfillRunState(job, options, lease, log, observer, keys, applied, artifacts) { Keyset = walk };
            // The job's metrics file is the starting process's: a joined process would overwrite it.
            if (!joining && (options.MetricsPath ?? job.Job.MetricsPath) is { } metrics)
            {
                run._metrics = new RunMetrics(metrics, () => run.Metrics(running: true), log, observer);
            }

            // Last: nothing after it can fail, so a membership never outlives a run that did not start.
            if (options.JoinRunId is not null)
            {
                run.Queue = await RunQueue.JoinAsync(connection, lease.RunId, options.JoinItems, options.Workers ?? 1, log, ct).ConfigureAwait(false);
                artifacts.Note($"This process ({Environment.MachineName}, process {Environment.ProcessId}) joined run {lease.RunId} as {options.Workers ?? 1} workers; these files list its own items. " +
                    "The process that started the run writes the run's summary and rollback script with every item, whichever process ran it.");
            }
            else if (options.Workers is { } workers)
            {
                run.Queue = await RunQueue.PublishAsync(connection, lease.RunId, [.. keys.Where(k => !applied.Contains(k))], RunQueue.JobHash(job.Job.SourcePath), workers,
                    options.ItemsPerMinute ?? job.Job.ItemsPerMinute, log, ct).ConfigureAwait(false);
            }

            return run;
        }
        catch (Exception ex)
        {
            // The advisory lock stayed on a pooled connection here; ending the run releases it.
            var (status, why) = ex is OperationCanceledException ? ("stopped", "stopped before the first item (Ctrl+C)") : ("failed", "did not start: " + ex.Message);
            await lease.EndAsync(status, JsonSerializer.Serialize(new { reason = why, failures = 0, skipped = 0 })).ConfigureAwait(false);
            throw;
        }
    }

    public void LogStart(Throttle throttle, GroupExecutor? groups)
    {
        _throttle = throttle;
        if (Keyset is { } walk)
        {
            _log.Information("Run {RunId} of job {Job}: a keyset walk, {Rate}, output {Directory}", RunId, Name, throttle.PerMinute == 0 ? "unthrottled" : $"at most {throttle.PerMinute} chunks/minute", _artifacts.Directory);
            walk.LogStart(_log);
        }
        else if (Queue is { Coordinator: false } joined)
        {
            _log.Information("Joined run {RunId} of job {Job} ({Items} items published) with {Workers} workers, {PerMinute} items/minute for the whole run, output {Directory}",
                RunId, Name, joined.Items, joined.Workers, throttle.PerMinute, _artifacts.Directory);
        }
        else
        {
            _log.Information("Run {RunId} of job {Job}: {Items} items, {AlreadyApplied} already applied, {PerMinute} items/minute{ForTheRun}, output {Directory}",
                RunId, Name, Keys.Count, Applied.Count(Keys.Contains), throttle.PerMinute, Queue is null ? string.Empty : " for the whole run", _artifacts.Directory);
        }

        var (lockTimeout, lockRetries) = (_options.LockTimeoutFor(_job.Job), _options.LockRetriesFor(_job.Job));
        var lockWorst = Retry.LockWorstCase(lockTimeout, lockRetries);
        _log.Information("An item whose rows another session holds waits {LockTimeout} per attempt, {Attempts} attempts with backoff: up to about {Worst} before it fails as LockTimeout and the run goes on",
            lockTimeout, lockRetries + 1, lockWorst);
        if (groups is not null)
        {
            _log.Information("Each item runs whole on the server as its own transaction{Verified}; {Group} items per round trip, {Workers} at a time",
                _options.DryRun ? ", rolled back (dry run)" : ", verified by dataops.verified()", throttle.GroupSize(GroupExecutor.GroupSize), Math.Max(1, Queue?.Workers ?? _job.Job.MaxConcurrency));
        }
    }

    /// <summary>
    /// A batch's results and restore blocks go to the files in one write each, flushed to the OS (not
    /// fsynced) before the batch is reported: a killed process leaves them on disk, and Ctrl+C while
    /// reporting loses none. Safe to call from a worker (the scheduler records what it drains).
    /// </summary>
    public void Record(IReadOnlyList<ItemOutcome> batch)
    {
        lock (_gate)
        {
            try
            {
                foreach (var (_, result, restore) in batch)
                {
                    _skipped += result.Status == BackfillItemStatus.Skipped ? 1 : 0;
                    _applied += result.Status is BackfillItemStatus.Applied or BackfillItemStatus.WouldApply ? 1 : 0;
                    _failures += result.Status == BackfillItemStatus.Failed ? 1 : 0;
                    _artifacts.Add(result, restore);
                    _done++;
                }

                _artifacts.Flush();
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                _stopped = true;
                (_outcome, _reason) = ("failed", "its files could not be written: " + ex.Message);
                throw OutputDirectoryUnusable(_options.OutputDirectory, ex, $"The run stopped; the items it applied are in the ledger: Undo-Backfill -RunId {RunId} needs no files, and Export-BackfillRollback -RunId {RunId} writes the rollback script anywhere.");
            }
        }

        var throttled = _options.ItemsPerMinute ?? _job.Job.ItemsPerMinute;
        if (_watch.Elapsed - _lastProgress > TimeSpan.FromMilliseconds(200) || _done == Total || throttled > 0)
        {
            _lastProgress = _watch.Elapsed;
            var rate = _done / Math.Max(_watch.Elapsed.TotalSeconds, 1e-3);
            _observer.Progress(Keyset is { } walk
                ? new OperationProgress($"Backfill {Name}", $"{_done} chunks, {walk.Rows} rows ({_failures} failed); next chunk {walk.Size} rows", walk.PercentDone(),
                    CurrentOperation: batch.Count > 0 ? batch[^1].Key : null)
                : new OperationProgress($"Backfill {Name}", $"{_done} of {Total} items{(Queue is null ? string.Empty : " (this process)")} ({_failures} failed)",
                    (int)Math.Min(_done * 100L / Math.Max(Total, 1), 100), TimeSpan.FromSeconds(Math.Max(Total - _done, 0) / rate), CurrentOperation: batch.Count > 0 ? batch[^1].Key : null));
        }
    }

    /// <summary>The run's throttle and signals, whose held time per reason and peaks the run's end records.</summary>
    public void Throttled(Throttle throttle, SignalGate? signals) => (_throttle, _signals) = (throttle, signals);

    /// <summary>What the run waited for and the signals' peaks, as the summary, the run row and Get-BackfillRun show them.</summary>
    private ThrottleReport Report() => new(
        _throttle?.HeldTime.Where(h => h.Value > TimeSpan.Zero).ToDictionary(h => h.Key, h => h.Value, StringComparer.Ordinal) ?? [],
        _signals?.Peaks ?? []);

    /// <summary>
    /// The throttle started holding the run for a reason (once per episode), or let it go on (null):
    /// the run log and -Verbose say why, and the progress bar shows it while the run waits.
    /// </summary>
    public void Held(ThrottleHold? hold)
    {
        var done = Volatile.Read(ref _done);
        if (hold is null)
        {
            _log.Information("Run {RunId} goes on after waiting", RunId);
            return;
        }

        _log.Information("Run {RunId} waits ({Reason}): {Detail}", RunId, hold.Reason, hold.Detail);
        if (hold.Reason != ItemExecutor.LockReason)
        {
            // Once per episode (the throttle tells once per reason); a lock wait is one item's, not the run's.
            _hooks.Enqueue("throttled", Payload("throttled", hold));
        }

        _observer.Progress(Keyset is { } walk
            ? new OperationProgress($"Backfill {Name}", $"{done} chunks, {walk.Rows} rows; waiting ({hold.Reason}): {hold.Detail}", walk.PercentDone())
            : new OperationProgress($"Backfill {Name}", $"{done} of {Total} items; waiting ({hold.Reason}): {hold.Detail}", (int)Math.Min(done * 100L / Math.Max(Total, 1), 100)));
    }

    /// <summary>After a reported batch: stop when the database stayed unreachable or -MaxFailures is reached.</summary>
    public void Review(IReadOnlyList<ItemOutcome> batch)
    {
        if (!_stopped && batch.FirstOrDefault(g => g.Result.DatabaseUnreachable) is { Key: not null } gone)
        {
            // The database stayed unreachable through every retry: the next items would only fail the same way.
            Stop($"stopped: the database connection was lost and did not come back within {Retry.MaxRetries} retries (item {gone.Key}: {gone.Result.Error}). " +
                "Run the job again when the database is back; applied items are skipped");
        }

        if (_failures >= _options.MaxFailures && !_stopped)
        {
            Stop($"stopped after {_failures} failed items (-MaxFailures {_options.MaxFailures})");
        }
    }

    /// <summary>
    /// Sends the start event before the first item. False when a required hook failed: the run applies
    /// nothing and ends failed with BackfillHookFailed.
    /// </summary>
    public async Task<bool> StartHooksAsync()
    {
        if (!_hooks.Wants("start"))
        {
            return true;
        }

        await _hooks.SendAsync("start", Payload("start", null)).ConfigureAwait(false);
        if (_hooks.RequiredFailure is { } failed)
        {
            _hookFailure ??= failed;
            Stop("did not start: " + failed.Message);
            return false;
        }

        return true;
    }

    /// <summary>The exception that ended the stream of batches, for the run's outcome.</summary>
    public void Failed(Exception ex) => _error = ex;

    /// <summary>Every item ran (unless the run stopped itself first).</summary>
    public void Complete()
    {
        lock (_gate)
        {
            if (!_stopped)
            {
                (_outcome, _reason) = ("completed", _failures > 0 ? $"{_failures} items failed" : null);
            }
        }
    }

    /// <summary>
    /// The run's end on any exit: its outcome and why, the closing files, then the outcome and the
    /// lease's release in one transaction, and the halt-for-review message.
    /// </summary>
    public async Task FinishAsync(bool cancelled)
    {
        if (_lease.LostError is { } lost)
        {
            (_outcome, _reason) = ("failed", lost.Message);
        }
        else if (_outcome == "stopped" && _reason is null)
        {
            // Ended early without an outcome of its own: Ctrl+C, an error, or a pipeline that stopped reading.
            (_outcome, _reason) = cancelled || _error is OperationCanceledException
                ? ("stopped", "stopped before the end (Ctrl+C)")
                : _error is not null
                    ? ("failed", "stopped by an error: " + (_options.Redactor?.Redact(_error.Message) ?? _error.Message))
                    : ("stopped", "stopped before the end: the pipeline stopped reading its results (for example Select-Object -First)");
        }

        _observer.Progress(new OperationProgress($"Backfill {Name}", "Done", Completed: true));
        await SendClosingHooksAsync().ConfigureAwait(false);
        foreach (var failure in _hooks.Failures)
        {
            _artifacts.Note(failure);
        }

        if (Queue is not null)
        {
            // Leaves the run's workers before the run ends: the items this process still holds are free at once.
            await Queue.DisposeAsync().ConfigureAwait(false);
        }

        var throttled = Report();
        foreach (var (reason, held) in throttled.Held)
        {
            _log.Information("Run {RunId} waited {Held} in all for {Reason}", RunId, held, reason);
        }

        DataOpsException? unwritten = null;
        try
        {
            _artifacts.Finish(_outcome, _reason, _options.DryRun, throttled);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Reported only if nothing else failed first (that error is already on its way).
            _log.Error(ex, "Run {RunId}: the closing files could not be written", RunId);
            if (_outcome == "completed")
            {
                (_outcome, _reason) = ("failed", "its closing files could not be written: " + ex.Message);
                unwritten = OutputDirectoryUnusable(_options.OutputDirectory, ex, "Every item ran; the ledger has them, and Undo-Backfill -RunId needs no files.");
            }
        }
        finally
        {
            _finished = true;
            try
            {
                await _lease.EndAsync(_outcome, JsonSerializer.Serialize(new
                {
                    reason = _reason, failures = _failures, skipped = _skipped, directory = _artifacts.Directory,
                    throttled = throttled.Held.ToDictionary(h => h.Key, h => Math.Round(h.Value.TotalSeconds, 3)),
                    signals = throttled.Signals,
                }, BackfillArtifacts.Camel)).ConfigureAwait(false);
            }
            finally
            {
                if (_metrics is not null)
                {
                    await _metrics.DisposeAsync().ConfigureAwait(false);
                }
            }
        }

        if (unwritten is not null)
        {
            throw unwritten;
        }

        _log.Information("Run {RunId} {Outcome}; summary {Summary}", RunId, _outcome, _artifacts.SummaryPath);
        // A completed run halting for review is the normal end: host output, not a warning that CI flags.
        // A run that failed or was stopped needs attention.
        var ending = _options.JoinRunId is not null
            ? $"This process's workers of run {RunId} of '{Name}' {_outcome} ({_applied} items here{(_options.DryRun ? ", rolled back" : string.Empty)}, {_failures} failed); the process that started the run writes its summary. This process's files: {_artifacts.SummaryPath}."
            : _options.DryRun
            ? $"Dry run {RunId} of '{Name}' {_outcome}: nothing was changed. Review {_artifacts.SummaryPath}."
            : $"Backfill run {RunId} of '{Name}' {_outcome} and has halted for review: read {_artifacts.SummaryPath} before starting the soak. Nothing moves to the next phase by itself.";
        if (_outcome == "completed" && _failures == 0)
        {
            _observer.Information(ending);
        }
        else
        {
            _observer.Warning(ending);
        }

        if (_hookFailure is not null)
        {
            throw _hookFailure;
        }
    }

    /// <summary>
    /// The queued events first, then halt (a completed run halts for review) and success (completed,
    /// no failed item) or failure. A required closing hook that fails makes the run failed.
    /// </summary>
    private async Task SendClosingHooksAsync()
    {
        await _hooks.DrainAsync().ConfigureAwait(false);
        if (_outcome == "completed")
        {
            await _hooks.SendAsync("halt", Payload("halt", null)).ConfigureAwait(false);
        }

        var end = _outcome == "completed" && _failures == 0 ? "success" : "failure";
        await _hooks.SendAsync(end, Payload(end, null)).ConfigureAwait(false);
        if (_hookFailure is null && _hooks.RequiredFailure is { } failed)
        {
            _hookFailure = failed;
            (_outcome, _reason) = ("failed", _outcome == "completed" ? failed.Message : $"{_reason}; {failed.Message}");
        }
    }

    /// <summary>An event's JSON payload, redacted: the run's counts, rate and throttled time, and what the event is about.</summary>
    private string Payload(string eventName, ThrottleHold? hold)
    {
        var m = Metrics(running: eventName is "start" or "throttled");
        var closing = eventName is "halt" or "success" or "failure";
        var payload = new Dictionary<string, object?>
        {
            ["event"] = eventName, ["job"] = Name, ["runId"] = RunId, ["host"] = Environment.MachineName, ["dryRun"] = _options.DryRun,
            ["counts"] = new Dictionary<string, long> { ["applied"] = m.Applied, ["failed"] = m.Failed, ["skipped"] = m.Skipped, ["total"] = m.Planned },
            ["rate"] = Math.Round(m.Rate, 3),
            ["throttledSeconds"] = m.Throttled.ToDictionary(t => t.Key, t => Math.Round(t.Value.TotalSeconds, 3), StringComparer.Ordinal),
        };
        if (hold is not null)
        {
            (payload["reason"], payload["detail"]) = (hold.Reason, hold.Detail);
        }

        if (closing)
        {
            (payload["outcome"], payload["outcomeReason"], payload["summary"]) = (_outcome, _reason, _artifacts.SummaryPath);
        }

        payload["timestamp"] = DateTimeOffset.UtcNow;
        return _redactor.Redact(JsonSerializer.Serialize(payload));
    }

    /// <summary>The counts for the metrics file and the hooks.</summary>
    private MetricsSnapshot Metrics(bool running)
    {
        int applied, failed, skipped;
        lock (_gate)
        {
            (applied, failed, skipped) = (_applied, _failures, _skipped);
        }

        var rate = (applied + failed) / Math.Max(_watch.Elapsed.TotalSeconds, 1e-3);
        return new MetricsSnapshot(Name, RunId, applied, failed, skipped, Total, rate,
            _throttle?.HeldTime ?? new Dictionary<string, TimeSpan>(), running && !_finished) { Signals = _signals?.Peaks ?? [] };
    }

    private void Stop(string reason)
    {
        if (_stopped)
        {
            return;
        }

        _stopped = true;
        (_outcome, _reason) = ("failed", reason);
        _log.Warning("Run {RunId} {Reason}", RunId, reason);
    }

    private static DataOpsException OutputDirectoryUnusable(string directory, Exception ex, string consequence) =>
        new("OutputDirectoryUnusable", DataOpsErrorKind.WriteError,
            $"The run's files cannot be written under -OutputDirectory '{directory}': {ex.Message}. {consequence} Give a folder you can write to.",
            directory, ex);
}
