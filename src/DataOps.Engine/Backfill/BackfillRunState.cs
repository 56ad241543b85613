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
    private int _failures;
    private int _skipped;
    private int _done;
    private volatile bool _stopped;
    private Throttle? _throttle;
    private SignalGate? _signals;

    private BackfillRunState(ValidatedJob job, BackfillOptions options, JobLease lease, RunLog log, IOperationObserver observer,
        IReadOnlyList<string> keys, HashSet<string> applied, BackfillArtifacts artifacts)
    {
        (_job, _options, _lease, _log, _observer, _artifacts) = (job, options, lease, log, observer, artifacts);
        (Keys, Applied) = (keys, applied);
    }

    public Guid RunId => _lease.RunId;

    public string Name => _job.Job.Name;

    /// <summary>The keys in the order the run takes them.</summary>
    public IReadOnlyList<string> Keys { get; }

    /// <summary>Keys the ledger shows applied before this run (empty for -Reapply): skipped, by a dry run too, as the real run would.</summary>
    public HashSet<string> Applied { get; }

    /// <summary>Set once the run has decided to stop (failures, a lost database, a stopped pipeline): no new item starts.</summary>
    public bool Stopped => _stopped;

    /// <summary>
    /// The keys, the ledger's applied items and the run's files; if any of them fails, nothing ran yet:
    /// the run is recorded as ended and the job's lease released, so the next run starts at once.
    /// </summary>
    public static async Task<BackfillRunState> StartAsync(
        ValidatedJob job, DataOpsConnection connection, BackfillOptions options, JobLease lease, RunLog log, IOperationObserver observer, CancellationToken ct)
    {
        try
        {
            var keys = options.Keys ?? await BackfillRunner.ResolveKeysAsync(job, connection, ct).ConfigureAwait(false);
            var applied = options.Reapply ? [] : await LedgerStore.AppliedKeysAsync(connection, job.Job.Name, ct).ConfigureAwait(false);
            BackfillArtifacts artifacts;
            try
            {
                artifacts = new BackfillArtifacts(options.OutputDirectory, job.Job, lease.RunId, connection.ToString(), job.Job.BatchSize, options.DryRun);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
            {
                throw OutputDirectoryUnusable(options.OutputDirectory, ex, "Nothing was applied.");
            }

            if (lease.Abandoned.Count > 0)
            {
                await BackfillRunFiles.CompleteAbandonedAsync(connection, job.Job.Name, lease.RunId, lease.Abandoned, log, ct).ConfigureAwait(false);
            }

            return new BackfillRunState(job, options, lease, log, observer, keys, applied, artifacts);
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
        _log.Information("Run {RunId} of job {Job}: {Items} items, {AlreadyApplied} already applied, {PerMinute} items/minute, output {Directory}",
            RunId, Name, Keys.Count, Applied.Count(Keys.Contains), throttle.PerMinute, _artifacts.Directory);
        if (groups is not null)
        {
            _log.Information("Each item runs whole on the server as its own transaction{Verified}; {Group} items per round trip, {Workers} at a time",
                _options.DryRun ? ", rolled back (dry run)" : ", verified by dataops.verified()", throttle.GroupSize(GroupExecutor.GroupSize), Math.Max(1, _job.Job.MaxConcurrency));
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
        if (_watch.Elapsed - _lastProgress > TimeSpan.FromMilliseconds(200) || _done == Keys.Count || throttled > 0)
        {
            _lastProgress = _watch.Elapsed;
            var rate = _done / Math.Max(_watch.Elapsed.TotalSeconds, 1e-3);
            _observer.Progress(new OperationProgress($"Backfill {Name}", $"{_done} of {Keys.Count} items ({_failures} failed)",
                (int)(_done * 100L / Math.Max(Keys.Count, 1)), TimeSpan.FromSeconds((Keys.Count - _done) / rate), CurrentOperation: batch.Count > 0 ? batch[^1].Key : null));
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
        _observer.Progress(new OperationProgress($"Backfill {Name}", $"{done} of {Keys.Count} items; waiting ({hold.Reason}): {hold.Detail}", (int)(done * 100L / Math.Max(Keys.Count, 1))));
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

    /// <summary>The exception that ended the stream of batches, for the run's outcome.</summary>
    public void Failed(Exception ex) => _error = ex;

    /// <summary>Every item ran (unless the run stopped itself first).</summary>
    public void Complete()
    {
        if (!_stopped)
        {
            (_outcome, _reason) = ("completed", _failures > 0 ? $"{_failures} items failed" : null);
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
            await _lease.EndAsync(_outcome, JsonSerializer.Serialize(new
            {
                reason = _reason, failures = _failures, skipped = _skipped, directory = _artifacts.Directory,
                throttled = throttled.Held.ToDictionary(h => h.Key, h => Math.Round(h.Value.TotalSeconds, 3)),
                signals = throttled.Signals,
            }, BackfillArtifacts.Camel)).ConfigureAwait(false);
        }

        if (unwritten is not null)
        {
            throw unwritten;
        }

        _log.Information("Run {RunId} {Outcome}; summary {Summary}", RunId, _outcome, _artifacts.SummaryPath);
        // A completed run halting for review is the normal end: host output, not a warning that CI flags.
        // A run that failed or was stopped needs attention.
        var ending = _options.DryRun
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
    }

    private void Stop(string reason)
    {
        _stopped = true;
        (_outcome, _reason) = ("failed", reason);
        _log.Warning("Run {RunId} {Reason}", RunId, reason);
    }

    private static DataOpsException OutputDirectoryUnusable(string directory, Exception ex, string consequence) =>
        new("OutputDirectoryUnusable", DataOpsErrorKind.WriteError,
            $"The run's files cannot be written under -OutputDirectory '{directory}': {ex.Message}. {consequence} Give a folder you can write to.",
            directory, ex);
}
