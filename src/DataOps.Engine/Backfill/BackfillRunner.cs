using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.RateLimiting;
using Dapper;
using DataOps.Engine.Connections;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using DataOps.Engine.Schema;
using Npgsql;
using Polly;
using Polly.Retry;
using ItemOutcome = (string Key, DataOps.Engine.Backfill.BackfillItemResult Result, System.Collections.Generic.IReadOnlyList<DataOps.Engine.Backfill.RestoreOp>? Restore);

namespace DataOps.Engine.Backfill;

/// <summary>
/// Applies a job item by item. Each item is one transaction: lock and capture the before-image,
/// run the steps, capture the after-image, verify, write the ledger row, commit. A run holds the
/// job's lease (<see cref="JobLease"/>, checked at the start of every item's transaction), so a
/// second run of the same job fails at once; items the ledger shows as applied are skipped, so a
/// re-run (after Ctrl+C or a killed process) resumes; the database refuses a second live application of a key.
/// </summary>
public static partial class BackfillRunner
{
    private const int StatementTimeoutSeconds = 60;

    /// <summary>Checks what a run needs before anything runs: Core installed, the job valid against this database.</summary>
    public static async Task<ValidatedJob> PrepareAsync(BackfillJob job, DataOpsConnection connection, CancellationToken ct)
    {
        await RequireCoreAsync(connection, ct).ConfigureAwait(false);
        return await JobValidator.ValidateAsync(job, connection, ct).ConfigureAwait(false);
    }

    /// <summary>Core installed at this version (the job lease and the ledger's guard came with Core/0005), or SchemaMissing.</summary>
    internal static Task RequireCoreAsync(DataOpsConnection connection, CancellationToken ct) =>
        SchemaInstaller.RequireAsync(connection, ct, SchemaComponent.Core);

    /// <summary>
    /// A fingerprinted plan (from Test-ProdHealth) only runs where and when it was made: the same
    /// cluster and database (WrongDatabase), and no older than <paramref name="maxAge"/> (StalePlan).
    /// </summary>
    public static async Task VerifyPlanAsync(BackfillJob job, DataOpsConnection connection, TimeSpan maxAge, CancellationToken ct)
    {
        if (PlanFingerprint.From(job) is not { } plan)
        {
            return;
        }

        var (system, database, installation) = await DatabaseIdentity.ReadAsync(connection, ct).ConfigureAwait(false);
        if (system != plan.SystemIdentifier || database != plan.Database || installation != plan.Installation)
        {
            throw new DataOpsException("WrongDatabase", DataOpsErrorKind.InvalidOperation,
                $"The plan '{job.SourcePath}' was made for database '{plan.Database}' (system {plan.SystemIdentifier}, installation {plan.Installation ?? "none"}), not for {connection} (database '{database}', system {system}, installation {installation ?? "none"}). Run Test-ProdHealth against this database for its own plan.",
                job.SourcePath);
        }

        var age = DateTimeOffset.UtcNow - plan.GeneratedAt;
        if (age > maxAge)
        {
            throw new DataOpsException("StalePlan", DataOpsErrorKind.InvalidOperation,
                $"The plan '{job.SourcePath}' was made {age.TotalHours:0.#} hours ago ({plan.GeneratedAt:u}), more than -MaxPlanAge {maxAge}. Run Test-ProdHealth again for a fresh plan.",
                job.SourcePath);
        }
    }

    /// <summary>The keys a run would process: the job's list, or its discover query (read-only).</summary>
    public static async Task<IReadOnlyList<string>> ResolveKeysAsync(ValidatedJob job, DataOpsConnection connection, CancellationToken ct)
    {
        if (job.Job.Keys is { } keys)
        {
            return keys;
        }

        // A read-only session and transaction, and the query as one statement that must return rows: discover changes nothing.
        await using var conn = await Database.OpenAsync(connection, ct, readOnly: true).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, ct).ConfigureAwait(false);
        await conn.ExecuteAsync(new CommandDefinition("SET TRANSACTION READ ONLY", transaction: tx, cancellationToken: ct)).ConfigureAwait(false);
        await using var query = BackfillSql.Batch(conn, tx, BackfillSql.Query(job.Job.DiscoverSql!), job.Job.Parameters, null);
        await using var reader = await query.ExecuteReaderAsync(ct).ConfigureAwait(false);
        int ordinal;
        try
        {
            ordinal = reader.GetOrdinal("key");
        }
        catch (IndexOutOfRangeException)
        {
            throw JobFile.Invalid(job.Job.SourcePath, ["$.items.discover: the query must return a column named key."]);
        }

        var list = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            var value = reader.GetValue(ordinal);
            var key = value is DBNull ? null : Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture);
            if (key is not null && seen.Add(key))
            {
                list.Add(key);
            }
        }

        return list;
    }

    /// <summary>
    /// Runs the job and streams one result per item. Artifacts are written even when the run stops
    /// early. The run holds the job's lease (<see cref="JobLease"/>) from its first statement to its
    /// last; losing it stops the run with BackfillLeaseLost.
    /// </summary>
    public static async IAsyncEnumerable<BackfillItemResult> RunAsync(
        ValidatedJob job, DataOpsConnection connection, BackfillOptions options, RunLog log, IOperationObserver observer,
        [EnumeratorCancellation] CancellationToken ct = default)
    {
        var name = job.Job.Name;
        var lease = await JobLease.AcquireAsync(
            connection, name, options.DryRun ? "dryrun" : "backfill",
            JsonSerializer.Serialize(new { jobFile = job.Job.SourcePath, job.Job.Parameters, options.ItemsPerMinute, options.MaxFailures, options.Reapply, options.DryRun }),
            Path.GetFullPath(options.OutputDirectory), log,
            holder => new DataOpsException("BackfillAlreadyRunning", DataOpsErrorKind.ResourceUnavailable,
                $"Another run of job '{name}' is in progress on {connection}: {holder} holds the job's lease. Wait for it to finish; Get-BackfillRun -Job {name} shows it. " +
                $"If its process is gone, the lease expires by itself at {holder.ExpiresAt:u} (at once on its own host).",
                name),
            ct).ConfigureAwait(false);
        await using (lease.ConfigureAwait(false))
        {
            // Losing the lease cancels the run's work (a throttled run may be waiting for its next
            // token); the cancellation then surfaces as the lease's error, not as a Ctrl+C.
            using var work = CancellationTokenSource.CreateLinkedTokenSource(ct, lease.LostToken);
            await using var items = RunLeasedAsync(job, connection, options, log, observer, lease, work.Token).GetAsyncEnumerator(work.Token);
            while (true)
            {
                try
                {
                    if (!await items.MoveNextAsync().ConfigureAwait(false))
                    {
                        break;
                    }
                }
                catch (OperationCanceledException) when (lease.LostError is { } lost && !ct.IsCancellationRequested)
                {
                    throw lost;
                }

                yield return items.Current;
            }
        }
    }

    private static async IAsyncEnumerable<BackfillItemResult> RunLeasedAsync(
        ValidatedJob job, DataOpsConnection connection, BackfillOptions options, RunLog log, IOperationObserver observer, JobLease lease,
        [EnumeratorCancellation] CancellationToken ct)
    {
        var name = job.Job.Name;
        var runId = lease.RunId;
        IReadOnlyList<string> keys;
        HashSet<string> applied;
        BackfillArtifacts artifacts;
        try
        {
            keys = options.Keys ?? await ResolveKeysAsync(job, connection, ct).ConfigureAwait(false);
            applied = options.Reapply || options.DryRun ? [] : await LedgerStore.AppliedKeysAsync(connection, name, ct).ConfigureAwait(false);
            try
            {
                artifacts = new BackfillArtifacts(options.OutputDirectory, job.Job, runId, connection.ToString(), job.Job.BatchSize, options.DryRun);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
            {
                throw OutputDirectoryUnusable(options.OutputDirectory, ex, "Nothing was applied.");
            }
        }
        catch (Exception ex)
        {
            // Nothing ran yet: the run is recorded as ended and the job's lease released, so the next
            // run starts at once (the advisory lock stayed on a pooled connection here).
            var (status, why) = ex is OperationCanceledException ? ("stopped", "stopped before the first item (Ctrl+C)") : ("failed", "did not start: " + ex.Message);
            await lease.EndAsync(status, JsonSerializer.Serialize(new { reason = why, failures = 0, skipped = 0 })).ConfigureAwait(false);
            throw;
        }

        // Items this run's forced re-application makes the ledger's live row (see Core/0005).
        var force = options.Reapply && !options.DryRun;
        var perMinute = options.ItemsPerMinute ?? job.Job.ItemsPerMinute;
        using var limiter = Throttle.Create(perMinute);
        var retry = RetryPipeline(log);
        // One redactor for the run (the log's too): the secrets it resolves are the ones it hides.
        var redactor = options.Redactor ?? new SecretRedactor();
        connection.AddSecretsTo(redactor);
        var http = job.Job.HasHttpSteps
            ? new HttpContext(options.ResolvedSecrets ?? HttpSteps.ResolveSecrets(job.Job, options.Credentials ?? new Dictionary<string, string>(), redactor), redactor)
            : null;
        await using var work = new WorkConnection(connection, options.LockTimeout);
        log.Information("Run {RunId} of job {Job}: {Items} items, {AlreadyApplied} already applied, {PerMinute} items/minute, output {Directory}",
            runId, name, keys.Count, applied.Count(keys.Contains), perMinute, artifacts.Directory);

        if (RunsOnServer(job, options) && job.Job.MaxConcurrency <= 1)
        {
            log.Information("Each item runs whole on the server as its own transaction, verified by dataops.verified(); {Group} items per round trip", perMinute > 0 ? 1 : ServerSideGroupSize);
        }

        var outcome = "stopped";
        string? reason = null;
        Exception? error = null;
        var failures = 0;
        var skipped = 0;
        var watch = Stopwatch.StartNew();
        var lastProgress = TimeSpan.FromSeconds(-1);
        var stop = false;

        // One key's work: skip what the ledger shows as applied, else wait for the throttle and apply.
        async Task WaitForTokenAsync()
        {
            while (limiter is not null)
            {
                // Concurrent workers queue for tokens; a lease is granted in order, one per period.
                using var lease = await limiter.AcquireAsync(1, ct).ConfigureAwait(false);
                if (lease.IsAcquired)
                {
                    break;
                }
            }
        }

        async Task<ItemOutcome> ProcessAsync(string key, WorkConnection connectionForItem, bool throttle = true)
        {
            if (applied.Contains(key))
            {
                return (key, new BackfillItemResult { RunId = runId, Job = name, Key = key, Status = BackfillItemStatus.Skipped }, null);
            }

            if (throttle)
            {
                await WaitForTokenAsync().ConfigureAwait(false);
            }

            var (result, restore) = await ApplyItemAsync(job, connectionForItem, lease, key, options.DryRun, force, retry, log, ct, http).ConfigureAwait(false);
            if (result.Status == BackfillItemStatus.Stale && !options.DryRun)
            {
                log.Warning("Item {Key} is stale: its rows changed since the plan was made; not applied", key);
                await RecordFailureAsync(connection, runId, name, key, BackfillErrorCategory.None, result.Error!, result.Attempts, result.Duration, "stale").ConfigureAwait(false);
            }

            return (key, result, restore);
        }

        // One item after the other on one connection. Items that can run whole on the server go in
        // groups, one round trip each (one item per group while throttled); the rest, and the items
        // of a group after a failure, go one by one. Unthrottled, the server runs the next group
        // while this one is reported.
        async IAsyncEnumerable<IReadOnlyList<ItemOutcome>> Sequential()
        {
            var serverSide = RunsOnServer(job, options);
            var next = 0;
            Task<GroupOutcome>? ahead = null;
            List<string>? aheadKeys = null;
            var groupStart = 0;
            var aheadStart = 0;
            List<string>? TakeGroup()
            {
                if (!serverSide || next >= keys.Count || applied.Contains(keys[next]))
                {
                    return null;
                }

                groupStart = next;

                var taken = new List<string>();
                while (next < keys.Count && taken.Count < (limiter is null ? ServerSideGroupSize : 1) && !applied.Contains(keys[next]))
                {
                    taken.Add(keys[next++]);
                }

                return taken;
            }

            try
            {
                while ((ahead is not null || next < keys.Count) && !stop)
                {
                    List<string> group;
                    GroupOutcome outcome;
                    int start;
                    if (ahead is not null)
                    {
                        (group, outcome, ahead, start) = (aheadKeys!, await ahead.ConfigureAwait(false), null, aheadStart);
                    }
                    else if (TakeGroup() is { } taken)
                    {
                        (group, start) = (taken, groupStart);
                        await WaitForTokenAsync().ConfigureAwait(false);
                        outcome = await ApplyGroupAsync(job, work, lease, group, force, log, ct).ConfigureAwait(false);
                    }
                    else
                    {
                        yield return [await ProcessAsync(keys[next++], work).ConfigureAwait(false)];
                        continue;
                    }

                    if (limiter is null && !outcome.Cancelled && outcome.Committed.Count == group.Count && TakeGroup() is { } following)
                    {
                        (aheadKeys, aheadStart) = (following, groupStart);
                        ahead = Task.Run(() => ApplyGroupAsync(job, work, lease, following, force, log, ct), CancellationToken.None);
                    }

                    if (outcome.Committed.Count > 0)
                    {
                        yield return outcome.Committed;
                    }

                    if (outcome.LeaseLost is { } lost)
                    {
                        // What committed before is reported above; nothing after it runs.
                        throw lost;
                    }

                    if (outcome.Cancelled)
                    {
                        ct.ThrowIfCancellationRequested();
                    }

                    if (outcome.Failed is { } failed)
                    {
                        // The server named the failing item: it is recorded; the items after it did not run and go in the next group.
                        yield return [(failed.Key, failed, null)];
                        next = start + outcome.Committed.Count + 1;
                        continue;
                    }

                    var committed = outcome.Committed.Select(c => c.Key).ToHashSet(StringComparer.Ordinal);
                    foreach (var key in group.Where(k => !committed.Contains(k)))
                    {
                        if (stop)
                        {
                            yield break;
                        }

                        yield return [await ProcessAsync(key, work, throttle: false).ConfigureAwait(false)];
                    }
                }
            }
            finally
            {
                if (ahead is not null)
                {
                    // Stopped while the next group ran: what of it committed belongs in the artifacts too.
                    Record((await ahead.ConfigureAwait(false)).Committed);
                }
            }
        }

        async IAsyncEnumerable<IReadOnlyList<ItemOutcome>> OneByOne(int width)
        {
            await foreach (var item in Concurrent(width).ConfigureAwait(false))
            {
                yield return [item];
            }
        }

        // Independent items in parallel (HTTP endpoints): each worker has its own connection, the rate limit is shared.
        async IAsyncEnumerable<ItemOutcome> Concurrent(int width)
        {
            var done = System.Threading.Channels.Channel.CreateUnbounded<ItemOutcome>();
            var pool = new System.Collections.Concurrent.ConcurrentBag<WorkConnection>();
            var producer = Task.Run(async () =>
            {
                using var slots = new SemaphoreSlim(width);
                var running = new List<Task>();
                try
                {
                    foreach (var key in keys)
                    {
                        await slots.WaitAsync(ct).ConfigureAwait(false);
                        if (stop)
                        {
                            slots.Release();
                            break;
                        }

                        running.Add(Task.Run(async () =>
                        {
                            var mine = pool.TryTake(out var w) ? w : new WorkConnection(connection, options.LockTimeout);
                            try
                            {
                                done.Writer.TryWrite(await ProcessAsync(key, mine).ConfigureAwait(false));
                            }
                            finally
                            {
                                pool.Add(mine);
                                slots.Release();
                            }
                        }, CancellationToken.None));
                    }
                }
                finally
                {
                    try
                    {
                        await Task.WhenAll(running).ConfigureAwait(false);
                        done.Writer.TryComplete();
                    }
                    catch (Exception ex)
                    {
                        done.Writer.TryComplete(ex);
                    }
                }
            }, CancellationToken.None);

            try
            {
                await foreach (var item in done.Reader.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
                {
                    yield return item;
                }

                await producer.ConfigureAwait(false);
            }
            finally
            {
                foreach (var w in pool)
                {
                    await w.DisposeAsync().ConfigureAwait(false);
                }
            }
        }

        var done = 0;
        // The group's results and restore blocks go to the files in one write each, flushed to the OS
        // (not fsynced) before the group is reported: a killed process leaves them on disk. On the
        // server-side path the next group is already running on the server meanwhile.
        void Record(IReadOnlyList<ItemOutcome> group)
        {
            try
            {
                foreach (var (_, result, restore) in group)
                {
                    if (result.Status == BackfillItemStatus.Skipped)
                    {
                        skipped++;
                    }
                    else if (result.Status == BackfillItemStatus.Failed)
                    {
                        failures++;
                    }

                    artifacts.Add(result, restore);
                    done++;
                }

                artifacts.Flush();
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                outcome = "failed";
                reason = "its files could not be written: " + ex.Message;
                throw OutputDirectoryUnusable(options.OutputDirectory, ex, $"The run stopped; the items it applied are in the ledger: Undo-Backfill -RunId {runId} needs no files, and Export-BackfillRollback -RunId {runId} writes the rollback script anywhere.");
            }
        }

        try
        {
            if (lease.Abandoned.Count > 0)
            {
                await BackfillRunFiles.CompleteAbandonedAsync(connection, name, runId, lease.Abandoned, log, ct).ConfigureAwait(false);
            }

            var source = job.Job.MaxConcurrency > 1 ? OneByOne(job.Job.MaxConcurrency) : Sequential();
            await foreach (var group in Observed(source, ex => error = ex).ConfigureAwait(false))
            {
                // A whole group is in the artifacts before any of it is reported: Ctrl+C while reporting loses none.
                Record(group);

                if (watch.Elapsed - lastProgress > TimeSpan.FromMilliseconds(200) || done == keys.Count || limiter is not null)
                {
                    lastProgress = watch.Elapsed;
                    var rate = done / Math.Max(watch.Elapsed.TotalSeconds, 1e-3);
                    observer.Progress(new OperationProgress($"Backfill {name}", $"{done} of {keys.Count} items ({failures} failed)",
                        (int)(done * 100L / Math.Max(keys.Count, 1)), TimeSpan.FromSeconds((keys.Count - done) / rate), CurrentOperation: group[^1].Key));
                }

                foreach (var (_, result, _) in group)
                {
                    yield return result;
                }

                if (!stop && group.FirstOrDefault(g => g.Result.DatabaseUnreachable) is { Key: not null } gone)
                {
                    // The database stayed unreachable through every retry: the next items would only fail the same way.
                    stop = true;
                    outcome = "failed";
                    reason = $"stopped: the database connection was lost and did not come back within {MaxRetries} retries (item {gone.Key}: {gone.Result.Error}). " +
                        "Run the job again when the database is back; applied items are skipped";
                    log.Warning("Run {RunId} {Reason}", runId, reason);
                }

                if (failures >= options.MaxFailures && !stop)
                {
                    stop = true;
                    outcome = "failed";
                    reason = $"stopped after {failures} failed items (-MaxFailures {options.MaxFailures})";
                    log.Warning("Run {RunId} {Reason}", runId, reason);
                }
            }

            if (stop)
            {
                yield break;
            }

            outcome = "completed";
            reason = failures > 0 ? $"{failures} items failed" : null;
        }
        finally
        {
            if (lease.LostError is { } lost)
            {
                outcome = "failed";
                reason = lost.Message;
            }
            else if (outcome == "stopped" && reason is null)
            {
                // Ended early without an outcome of its own: Ctrl+C, an error, or a pipeline that stopped reading.
                (outcome, reason) = ct.IsCancellationRequested || error is OperationCanceledException
                    ? ("stopped", "stopped before the end (Ctrl+C)")
                    : error is not null
                        ? ("failed", "stopped by an error: " + (options.Redactor?.Redact(error.Message) ?? error.Message))
                        : ("stopped", "stopped before the end: the pipeline stopped reading its results (for example Select-Object -First)");
            }

            observer.Progress(new OperationProgress($"Backfill {name}", "Done", Completed: true));
            DataOpsException? unwritten = null;
            try
            {
                artifacts.Finish(outcome, reason, options.DryRun);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Reported only if nothing else failed first (that error is already on its way).
                log.Error(ex, "Run {RunId}: the closing files could not be written", runId);
                if (outcome == "completed")
                {
                    (outcome, reason) = ("failed", "its closing files could not be written: " + ex.Message);
                    unwritten = OutputDirectoryUnusable(options.OutputDirectory, ex, "Every item ran; the ledger has them, and Undo-Backfill -RunId needs no files.");
                }
            }
            finally
            {
                // The outcome and the lease's release in one transaction, on any exit.
                await lease.EndAsync(outcome, JsonSerializer.Serialize(new { reason, failures, skipped, directory = artifacts.Directory })).ConfigureAwait(false);
            }

            if (unwritten is not null)
            {
                throw unwritten;
            }

            log.Information("Run {RunId} {Outcome}; summary {Summary}", runId, outcome, artifacts.SummaryPath);
            observer.Warning(options.DryRun
                ? $"Dry run {runId} of '{name}' {outcome}: nothing was changed. Review {artifacts.SummaryPath}."
                : $"Backfill run {runId} of '{name}' {outcome} and has halted for review: read {artifacts.SummaryPath} before starting the soak. Nothing moves to the next phase by itself.");
        }
    }

    private static async Task<(BackfillItemResult, IReadOnlyList<RestoreOp>?)> ApplyItemAsync(
        ValidatedJob job, WorkConnection work, JobLease lease, string key, bool dryRun, bool force, ResiliencePipeline retry, RunLog log, CancellationToken ct, HttpContext? http = null)
    {
        var connection = work.Profile;
        var runId = lease.RunId;
        var plan = PlanFingerprint.From(job.Job);
        var watch = Stopwatch.StartNew();
        var attempts = 0;
        try
        {
            return await retry.ExecuteAsync(async token =>
            {
                attempts++;
                if (attempts > 1)
                {
                    // Never the connection of the failed attempt: it may be broken, or open in an aborted transaction.
                    await work.ResetAsync().ConfigureAwait(false);
                }

                var conn = await work.GetAsync(token).ConfigureAwait(false);
                if (attempts > 1 && !dryRun && await AppliedByLedgerAsync(conn, job, runId, key, token).ConfigureAwait(false) is { } committed)
                {
                    // The failed attempt's COMMIT reached the server before the connection went: the
                    // ledger says the item is applied; running it again would apply it twice.
                    log.Information("Item {Key} committed before the connection failed; not run again", key);
                    return (committed.Result with { Duration = watch.Elapsed, Attempts = attempts }, (IReadOnlyList<RestoreOp>?)committed.Restore);
                }
                ItemImage? knownBefore = null;
                if (job.Job.HasHttpSteps)
                {
                    knownBefore = await CaptureBeforeAsync(conn, job, lease, key, token).ConfigureAwait(false);
                    if (plan is not null && (!plan.Items.TryGetValue(key, out var plannedHash) || plannedHash != PlanFingerprint.Hash(knownBefore, job.Capture)))
                    {
                        return (new BackfillItemResult
                        {
                            RunId = runId, Job = job.Job.Name, Key = key, Status = BackfillItemStatus.Stale, Duration = watch.Elapsed, Attempts = attempts,
                            Error = "the item's rows changed since the plan was made; run Test-ProdHealth again for a fresh plan",
                        }, (IReadOnlyList<RestoreOp>?)null);
                    }

                    // The endpoint's writes are its own; a dry run does not call it.
                    if (!dryRun)
                    {
                        foreach (var step in job.Job.Steps.Where(s => s.Http is not null))
                        {
                            await HttpSteps.CallAsync(step.Http!, step.Name, key, job.Job.Parameters, http!.Secrets, http.Redactor, log, token).ConfigureAwait(false);
                        }
                    }
                }

                var inTransaction = false;
                if (plan is not null && knownBefore is null)
                {
                    // A plan's item is checked against its fingerprint before any step runs: a row deleted
                    // or changed since the plan is Stale, not a step's constraint error.
                    knownBefore = await LockBeforeAsync(conn, job, key, token).ConfigureAwait(false);
                    inTransaction = true;
                    if (!plan.Items.TryGetValue(key, out var lockedHash) || lockedHash != PlanFingerprint.Hash(knownBefore, job.Capture))
                    {
                        await RollbackAsync(conn).ConfigureAwait(false);
                        return (new BackfillItemResult
                        {
                            RunId = runId, Job = job.Job.Name, Key = key, Status = BackfillItemStatus.Stale, Duration = watch.Elapsed, Attempts = attempts,
                            Error = "the item's rows changed since the plan was made; run Test-ProdHealth again for a fresh plan",
                        }, (IReadOnlyList<RestoreOp>?)null);
                    }
                }

                var (before, after, verified) = await RunStepsAsync(conn, job, key, token, knownBefore, inTransaction).ConfigureAwait(false);
                if (plan is not null && (!plan.Items.TryGetValue(key, out var planned) || planned != PlanFingerprint.Hash(before, job.Capture)))
                {
                    // The rows changed since the plan was made: apply nothing blindly.
                    await RollbackAsync(conn).ConfigureAwait(false);
                    return (new BackfillItemResult
                    {
                        RunId = runId, Job = job.Job.Name, Key = key, Status = BackfillItemStatus.Stale, Duration = watch.Elapsed, Attempts = attempts,
                        Error = "the item's rows changed since the plan was made; run Test-ProdHealth again for a fresh plan",
                    }, (IReadOnlyList<RestoreOp>?)null);
                }

                if (verified is not true)
                {
                    await RollbackAsync(conn).ConfigureAwait(false);
                    throw new VerifyFailedException($"verify returned {(verified is null or DBNull ? "no row or NULL" : verified)} instead of true");
                }

                var restore = RestoreOp.ForItem(key, before, after, job.Capture);
                if (dryRun)
                {
                    await RollbackAsync(conn).ConfigureAwait(false);
                    return (new BackfillItemResult
                    {
                        RunId = runId, Job = job.Job.Name, Key = key, Status = BackfillItemStatus.WouldApply, RowsChanged = restore.Count,
                        Duration = watch.Elapsed, Attempts = attempts,
                    }, (IReadOnlyList<RestoreOp>?)null);
                }

                // Round trip 2: the ledger row and COMMIT together. Once sent, the commit's outcome must
                // be known, so it is never cancelled half-way.
                await using (var commit = new NpgsqlBatch(conn))
                {
                    if (force)
                    {
                        commit.BatchCommands.Add(SupersedeCommand(lease, key));
                    }

                    var ledger = new NpgsqlBatchCommand(LedgerStore.AppliedInsert());
                    lease.Bind(ledger.Parameters);
                    ledger.Parameters.AddWithValue("key", key);
                    ledger.Parameters.AddWithValue("before", before.ToJson());
                    ledger.Parameters.AddWithValue("after", after.ToJson());
                    ledger.Parameters.AddWithValue("rows", restore.Count);
                    ledger.Parameters.AddWithValue("attempts", attempts);
                    ledger.Parameters.AddWithValue("seconds", watch.Elapsed.TotalSeconds);
                    ledger.Parameters.AddWithValue("ms", (int)watch.ElapsedMilliseconds);
                    commit.BatchCommands.Add(ledger);
                    commit.BatchCommands.Add(new NpgsqlBatchCommand("COMMIT"));
                    await commit.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
                }

                return (new BackfillItemResult
                {
                    RunId = runId, Job = job.Job.Name, Key = key, Status = BackfillItemStatus.Applied, RowsChanged = restore.Count, Duration = watch.Elapsed, Attempts = attempts,
                }, (IReadOnlyList<RestoreOp>?)restore);
            }, ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            await work.ResetAsync().ConfigureAwait(false);
            throw;
        }
        catch (PostgresException pg) when (pg.SqlState == JobLease.LostState)
        {
            // Not an item failure: the run no longer holds the job, so it stops here.
            await work.ResetAsync().ConfigureAwait(false);
            throw lease.MarkLost(pg.MessageText);
        }
        catch (Exception ex) when (ex is not DataOpsException { Kind: DataOpsErrorKind.InvalidData })
        {
            await work.ResetAsync().ConfigureAwait(false);
            return (await FailedAsync(ex, connection, runId, job.Job.Name, key, attempts, watch.Elapsed, log, record: !dryRun, http?.Redactor).ConfigureAwait(false), null);
        }
    }

    /// <summary>The items of <paramref name="source"/>, telling <paramref name="failed"/> the exception that ends it, if one does.</summary>
    private static async IAsyncEnumerable<T> Observed<T>(IAsyncEnumerable<T> source, Action<Exception> failed)
    {
        await using var items = source.GetAsyncEnumerator();
        while (true)
        {
            try
            {
                if (!await items.MoveNextAsync().ConfigureAwait(false))
                {
                    yield break;
                }
            }
            catch (Exception ex)
            {
                failed(ex);
                throw;
            }

            yield return items.Current;
        }
    }

    /// <summary>This run's ledger row for the item if the item committed (a retry whose first COMMIT's answer was lost).</summary>
    private static async Task<(BackfillItemResult Result, IReadOnlyList<RestoreOp> Restore)?> AppliedByLedgerAsync(NpgsqlConnection conn, ValidatedJob job, Guid runId, string key, CancellationToken ct)
    {
        if (await LedgerStore.AppliedItemAsync(conn, runId, key, ct).ConfigureAwait(false) is not { } r)
        {
            return null;
        }

        var (_, result, restore) = Committed(job, runId, key, r.Before, r.After, r.Rows, TimeSpan.Zero);
        return (result, restore!);
    }

    /// <summary>A failed item: categorised, logged, recorded in the ledger (unless a dry run), as a result.</summary>
    private static async Task<BackfillItemResult> FailedAsync(Exception ex, DataOpsConnection connection, Guid runId, string job, string key, int attempts, TimeSpan elapsed, RunLog log, bool record = true, SecretRedactor? redactor = null)
    {
        // Redacted once, here, so the ledger, the result, the log and the artifacts all get the same safe text.
        var (category, message) = Categorise(ex, connection);
        message = redactor?.Redact(message) ?? message;
        log.Warning("Item {Key} failed ({Category}) after {Attempts} attempts: {Error}", key, category, attempts, message);
        if (record)
        {
            await RecordFailureAsync(connection, runId, job, key, category, message, attempts, elapsed).ConfigureAwait(false);
        }

        return new BackfillItemResult
        {
            RunId = runId, Job = job, Key = key, Status = BackfillItemStatus.Failed, Duration = elapsed, Attempts = attempts,
            ErrorCategory = category, Error = message,
            DatabaseUnreachable = category == BackfillErrorCategory.ConnectionLost && ex is not HttpStepException,
        };
    }

    /// <summary>
    /// Round trip 1, one batch: BEGIN, session settings, lock and capture each table's before-image
    /// (kept in transaction-local settings, so the server needs no temp tables), the steps, the
    /// after-images, verify, and the images back to the client. The transaction stays open.
    /// </summary>
    private static async Task<(ItemImage Before, ItemImage After, object? Verified)> RunStepsAsync(NpgsqlConnection conn, ValidatedJob job, string key, CancellationToken ct, ItemImage? knownBefore = null, bool inTransaction = false)
    {
        await using var batch = new NpgsqlBatch(conn);
        void Add(string sql, bool bindJob = true)
        {
            var command = new NpgsqlBatchCommand(sql);
            if (bindJob)
            {
                BackfillSql.Bind(command.Parameters, sql, job.Job.Parameters, key);
            }

            batch.BatchCommands.Add(command);
        }

        // inTransaction: LockBeforeAsync began the transaction, made the settings and keeps the locked before-images.
        if (!inTransaction)
        {
            Add("BEGIN", bindJob: false);
            Add(ItemSettingsSelect(local: true), bindJob: false);
        }

        for (var i = 0; i < job.Capture.Count && !inTransaction; i++)
        {
            var t = job.Capture[i];
            if (knownBefore is null)
            {
                Add(RowImages.BeforeImageSelect(t, i));
            }
            else
            {
                // HTTP jobs: the before-image was taken (and its transaction ended) before the call.
                var given = new NpgsqlBatchCommand($"SELECT set_config('dataops.before_{i}', @dataops_before, true)");
                given.Parameters.AddWithValue("dataops_before", "[" + string.Join(",", knownBefore.Tables.GetValueOrDefault(t.QualifiedName) ?? []) + "]");
                batch.BatchCommands.Add(given);
            }
        }

        foreach (var step in job.Job.Steps.Where(s => s.Sql is not null))
        {
            Add(step.Sql!);
        }

        for (var i = 0; i < job.Capture.Count; i++)
        {
            var t = job.Capture[i];
            Add($"SELECT set_config('dataops.after_{i}', {RowImages.AfterImageSelect(t, i)}::text, true)");
        }

        Add($"SELECT ({job.Job.VerifySql})");
        Add("SELECT " + string.Join(", ", job.Capture.Select((_, i) => $"current_setting('dataops.before_{i}'), current_setting('dataops.after_{i}')")), bindJob: false);

        object? verified = null;
        var before = new ItemImage();
        var after = new ItemImage();
        await using (var reader = await batch.ExecuteReaderAsync(ct).ConfigureAwait(false))
        {
            // Result sets come in order; steps that return rows add their own, so the last two are verify and the images.
            var sets = new List<object?[]>();
            do
            {
                object?[]? row = null;
                while (await reader.ReadAsync(ct).ConfigureAwait(false))
                {
                    row ??= new object?[reader.FieldCount];
                    reader.GetValues(row!);
                }

                sets.Add(row ?? []);
            }
            while (await reader.NextResultAsync(ct).ConfigureAwait(false));

            var images = sets[^1];
            verified = sets[^2].Length > 0 ? sets[^2][0] : null;
            for (var i = 0; i < job.Capture.Count; i++)
            {
                before.Tables[job.Capture[i].QualifiedName] = RowImages.Rows((string)images[2 * i]!);
                after.Tables[job.Capture[i].QualifiedName] = RowImages.Rows((string)images[(2 * i) + 1]!);
            }
        }

        return (before, after, verified);
    }

    /// <summary>
    /// For plans: BEGIN, the item settings and each table's before-image locked FOR UPDATE (kept in
    /// dataops.before_N), returned to the client while the transaction stays open, so the fingerprint
    /// is checked before any step runs.
    /// </summary>
    private static async Task<ItemImage> LockBeforeAsync(NpgsqlConnection conn, ValidatedJob job, string key, CancellationToken ct)
    {
        await using var batch = new NpgsqlBatch(conn);
        batch.BatchCommands.Add(new NpgsqlBatchCommand("BEGIN"));
        batch.BatchCommands.Add(new NpgsqlBatchCommand(ItemSettingsSelect(local: true)));
        for (var i = 0; i < job.Capture.Count; i++)
        {
            var command = new NpgsqlBatchCommand(RowImages.BeforeImageSelect(job.Capture[i], i));
            BackfillSql.Bind(command.Parameters, command.CommandText, job.Job.Parameters, key);
            batch.BatchCommands.Add(command);
        }

        batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT " + string.Join(", ", job.Capture.Select((_, i) => $"current_setting('dataops.before_{i}')"))));
        var image = new ItemImage();
        await using var reader = await batch.ExecuteReaderAsync(ct).ConfigureAwait(false);
        object?[]? last = null;
        do
        {
            while (await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                last = new object?[reader.FieldCount];
                reader.GetValues(last!);
            }
        }
        while (await reader.NextResultAsync(ct).ConfigureAwait(false));

        for (var i = 0; i < job.Capture.Count; i++)
        {
            image.Tables[job.Capture[i].QualifiedName] = RowImages.Rows((string)last![i]!);
        }

        return image;
    }

    /// <summary>
    /// For HTTP jobs: the before-image in a transaction of its own, which ends before the endpoint is
    /// called, so the endpoint never waits on our row locks.
    /// </summary>
    private static async Task<ItemImage> CaptureBeforeAsync(NpgsqlConnection conn, ValidatedJob job, JobLease lease, string key, CancellationToken ct)
    {
        await using var batch = new NpgsqlBatch(conn);
        batch.BatchCommands.Add(new NpgsqlBatchCommand("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));

        // A run that lost the job's lease does not call the endpoint (read-only: checked, not locked).
        batch.BatchCommands.Add(LeaseCheckCommand(lease, lockRow: false));
        batch.BatchCommands.Add(new NpgsqlBatchCommand($"SELECT {BackfillSql.StableJsonSettingsSelect(local: true)}"));
        foreach (var t in job.Capture)
        {
            var command = new NpgsqlBatchCommand($"SELECT {RowImages.ImageSelect(t, forUpdate: false)}");
            BackfillSql.Bind(command.Parameters, command.CommandText, job.Job.Parameters, key);
            batch.BatchCommands.Add(command);
        }

        batch.BatchCommands.Add(new NpgsqlBatchCommand("COMMIT"));
        var arrays = new List<string>();
        await using (var reader = await batch.ExecuteReaderAsync(ct).ConfigureAwait(false))
        {
            do
            {
                // The images are the one-column text results (the lease check's is boolean).
                if (reader.FieldCount == 1 && reader.GetFieldType(0) == typeof(string) && await reader.ReadAsync(ct).ConfigureAwait(false))
                {
                    arrays.Add(reader.GetString(0));
                }
            }
            while (await reader.NextResultAsync(ct).ConfigureAwait(false));
        }

        var image = new ItemImage();
        for (var i = 0; i < job.Capture.Count; i++)
        {
            image.Tables[job.Capture[i].QualifiedName] = RowImages.Rows(arrays[arrays.Count - job.Capture.Count + i]);
        }

        return image;
    }

    /// <summary>
    /// The session settings of item work: stable to_jsonb() text and the statement timeout, for the
    /// transaction or the session. The lock timeout is the work connection's own (-LockTimeout).
    /// </summary>
    internal static string ItemSettingsSelect(bool local) =>
        $"SELECT {BackfillSql.StableJsonSettingsSelect(local)}, set_config('statement_timeout', '{StatementTimeoutSeconds}s', {(local ? "true" : "false")})";

    private static async Task RollbackAsync(NpgsqlConnection conn)
    {
        if (conn.State == System.Data.ConnectionState.Open)
        {
            await using var rollback = new NpgsqlCommand("ROLLBACK", conn);
            await rollback.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    private static async Task RecordFailureAsync(DataOpsConnection connection, Guid runId, string job, string key, string category, string message, int attempts, TimeSpan elapsed, string status = "failed")
    {
        try
        {
            await LedgerStore.RecordFailureAsync(connection, runId, job, key, category, message, attempts, elapsed, status).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or DataOpsException)
        {
            // The item is rolled back either way; the artifacts still record the failure.
        }
    }

    private static DataOpsException OutputDirectoryUnusable(string directory, Exception ex, string consequence) =>
        new("OutputDirectoryUnusable", DataOpsErrorKind.WriteError,
            $"The run's files cannot be written under -OutputDirectory '{directory}': {ex.Message}. {consequence} Give a folder you can write to.",
            directory, ex);

    /// <summary>The lease check an item's transaction starts with (see <see cref="JobLease.CheckSql"/>).</summary>
    private static NpgsqlBatchCommand LeaseCheckCommand(JobLease lease, bool lockRow = true)
    {
        var command = new NpgsqlBatchCommand(JobLease.CheckSql(lockRow));
        lease.Bind(command.Parameters);
        return command;
    }

    /// <summary>
    /// -Reapply re-applies applied items: in the item's transaction, before its ledger row, the earlier
    /// live application is marked superseded by this run, so ledger_applied_once still holds.
    /// </summary>
    private static NpgsqlBatchCommand SupersedeCommand(JobLease lease, string key)
    {
        var command = new NpgsqlBatchCommand(LedgerStore.Supersede);
        lease.Bind(command.Parameters);
        command.Parameters.AddWithValue("key", NpgsqlTypes.NpgsqlDbType.Text, key);
        return command;
    }

    /// <summary>How many times an item is run again after a transient failure.</summary>
    internal const int MaxRetries = 5;

    /// <summary>
    /// Transient connection failures retry the whole item on a new connection: up to
    /// <see cref="MaxRetries"/> times, waiting 0.25, 0.5, 1, 2 and 4 s (with jitter), which rides out a
    /// server restart of several seconds.
    /// </summary>
    internal static ResiliencePipeline RetryPipeline(RunLog log) => new ResiliencePipelineBuilder()
        .AddRetry(new RetryStrategyOptions
        {
            ShouldHandle = new PredicateBuilder().Handle<Exception>(IsTransient),
            MaxRetryAttempts = MaxRetries,
            BackoffType = DelayBackoffType.Exponential,
            UseJitter = true,
            Delay = TimeSpan.FromMilliseconds(250),
            OnRetry = args =>
            {
                log.Warning("Transient failure ({Error}); retrying the item whole, attempt {Attempt}", args.Outcome.Exception?.Message, args.AttemptNumber + 2);
                return default;
            },
        })
        .Build();

    /// <summary>
    /// Whether running the item again on a new connection can succeed: the connection or the server
    /// went away (<see cref="Database.IsConnectionLevel"/>: pg_terminate_backend, a restart, a crash,
    /// idle_session_timeout, no free connection slot), or the transaction lost a deadlock or a
    /// serialization check (40P01, 40001). A lock timeout (55P03) is not: the other session may hold
    /// its rows for hours, so the item fails as LockTimeout and the run goes on.
    /// </summary>
    internal static bool IsTransient(Exception ex) => ex switch
    {
        PostgresException pg => Database.IsConnectionLevel(pg.SqlState) || pg.SqlState is "40P01" or "40001",
        NpgsqlException n => n.IsTransient,
        DataOpsException d => d.Kind == DataOpsErrorKind.ConnectionError,
        SocketException or IOException => true,
        _ => false,
    };

    private static (string, string) Categorise(Exception ex, DataOpsConnection connection) => ex switch
    {
        HttpStepException h => (h.Category, h.Message),
        VerifyFailedException v => (BackfillErrorCategory.VerifyFailed, "Verify failed: " + v.Message),
        PostgresException { SqlState: VerifyFailedState } pg => (BackfillErrorCategory.VerifyFailed, "Verify failed: " + pg.MessageText),
        PostgresException { SqlState: var s } pg when s.StartsWith("23", StringComparison.Ordinal) => (BackfillErrorCategory.Constraint, $"{pg.SqlState}: {pg.MessageText}{(pg.ConstraintName is null ? string.Empty : $" ({pg.ConstraintName})")}"),
        PostgresException { SqlState: "55P03" or "40P01" or "40001" } pg => (BackfillErrorCategory.LockTimeout, $"{pg.SqlState}: {pg.MessageText}"),
        PostgresException { SqlState: "57014" } pg => (BackfillErrorCategory.Timeout, $"{pg.SqlState}: {pg.MessageText}"),
        PostgresException pg when IsTransient(pg) => (BackfillErrorCategory.ConnectionLost, $"{pg.SqlState}: {pg.MessageText}"),
        PostgresException pg => (BackfillErrorCategory.Other, $"{pg.SqlState}: {pg.MessageText}"),
        DataOpsException { Kind: DataOpsErrorKind.ConnectionError } d => (BackfillErrorCategory.ConnectionLost, d.Message),
        NpgsqlException or SocketException or IOException or TimeoutException => (BackfillErrorCategory.ConnectionLost, Database.Translate(ex, connection).Message),
        DataOpsException d => (BackfillErrorCategory.Other, d.Message),
        _ => (BackfillErrorCategory.Other, $"{ex.GetType().Name}: {ex.Message}"),
    };

    private sealed class VerifyFailedException(string message) : Exception(message);

    /// <summary>The resolved secrets of a job's HTTP steps and the redactor that hides them.</summary>
    private sealed record HttpContext(IReadOnlyDictionary<string, string> Secrets, SecretRedactor Redactor);

    /// <summary>
    /// The run's one connection for item work; dropped after any failure, reopened on the next use.
    /// Its session waits at most <paramref name="lockTimeout"/> for a row lock (55P03 then, an item
    /// outcome), and the client waits longer than the server's statement timeout, so a slow or
    /// blocked item ends with the server's answer on a connection still in a known state, never
    /// with a client-side timeout mid-transaction.
    /// </summary>
    private sealed class WorkConnection(DataOpsConnection profile, TimeSpan lockTimeout) : IAsyncDisposable
    {
        private readonly string _connectionString = WorkConnectionString(profile, lockTimeout);
        private NpgsqlConnection? _connection;

        public DataOpsConnection Profile => profile;

        public async Task<NpgsqlConnection> GetAsync(CancellationToken ct)
        {
            if (_connection is { State: System.Data.ConnectionState.Open })
            {
                return _connection;
            }

            await ResetAsync().ConfigureAwait(false);
            _connection = new NpgsqlConnection(_connectionString);
            try
            {
                await _connection.OpenAsync(ct).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                await ResetAsync().ConfigureAwait(false);
                throw Database.Translate(ex, profile);
            }

            return _connection;
        }

        private static string WorkConnectionString(DataOpsConnection profile, TimeSpan lockTimeout)
        {
            var builder = new NpgsqlConnectionStringBuilder(profile.BatchConnectionString) { CommandTimeout = StatementTimeoutSeconds + 15 };
            var ms = (long)Math.Ceiling(lockTimeout.TotalMilliseconds);
            builder.Options = $"{builder.Options} -c lock_timeout={ms.ToString(System.Globalization.CultureInfo.InvariantCulture)}".Trim();
            return builder.ConnectionString;
        }

        /// <summary>Ends any transaction left open by a failure and drops the connection.</summary>
        public async Task ResetAsync()
        {
            if (_connection is not null)
            {
                try
                {
                    await RollbackAsync(_connection).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException)
                {
                    // A broken connection has no transaction left to end.
                }

                await _connection.DisposeAsync().ConfigureAwait(false);
                _connection = null;
            }
        }

        public ValueTask DisposeAsync() => new(ResetAsync());
    }
}
