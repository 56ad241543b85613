using System.Diagnostics;
using System.Net.Sockets;
using System.Text.Json;
using DataOps.Engine.Connections;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using Npgsql;
using Polly;

namespace DataOps.Engine.Backfill;

/// <summary>
/// The one-item path: an item as one transaction in two round trips. Round trip 1 locks and captures
/// the before-image, runs the steps, captures the after-image and verifies; round trip 2 writes the
/// ledger row and commits. Used for HTTP jobs (the before-image in a transaction of its own, then the
/// endpoint, then the rest), for the items of a group the server could not finish, and wherever a
/// group cannot run. Transient failures run the item again whole on a new connection; any other
/// failure is the item's outcome (recorded in the ledger), and a lost lease stops the run.
/// </summary>
internal sealed class ItemExecutor
{
    /// <summary>The reason a lock wait is reported under (per item, not a throttle episode of the run).</summary>
    internal const string LockReason = "lock";

    private readonly ValidatedJob _job;
    private readonly DataOpsConnection _connection;
    private readonly JobLease _lease;
    private readonly BackfillOptions _options;
    private readonly RunLog _log;
    private readonly ResiliencePipeline _retry;
    private readonly PlanFingerprint? _plan;
    private readonly HttpContext? _http;
    private readonly SecretRedactor _redactor;
    private readonly TimeSpan _lockTimeout;
    private readonly string[] _tables;

    /// <summary>-Reapply (not a dry run): this run's application becomes the ledger's live row (see Core/0005).</summary>
    private readonly bool _force;

    /// <summary>The run's job.</summary>
    internal ValidatedJob Job => _job;

    /// <summary>The run's log.</summary>
    internal RunLog Log => _log;

    /// <summary>A failure found outside the item's own attempts (a keyset chunk that timed out at its smallest size): recorded as the item's outcome.</summary>
    internal Task<BackfillItemResult> FailedAsync(Exception ex, string key, CancellationToken ct) =>
        FailedAsync(ex, _connection, _lease.RunId, _job.Job.Name, key, 1, TimeSpan.Zero, _log, record: !_options.DryRun, _redactor);

    /// <summary>A run worked by several workers: each applied item marks its claim done in its own transaction (<see cref="RunQueue"/>).</summary>
    public RunQueue? Queue { get; init; }

    /// <summary>Told when an item starts waiting for rows another session holds (the progress bar shows it) and with null when it stops waiting.</summary>
    public Action<ThrottleHold?>? Waiting { get; init; }

    public ItemExecutor(ValidatedJob job, DataOpsConnection connection, JobLease lease, BackfillOptions options, RunLog log)
    {
        (_job, _connection, _lease, _options, _log) = (job, connection, lease, options, log);
        _lockTimeout = options.LockTimeoutFor(job.Job);
        _retry = Retry.ItemPipeline(log, options.LockRetriesFor(job.Job), _lockTimeout);
        _tables = [.. job.Capture.Select(t => t.QualifiedName)];
        _plan = PlanFingerprint.From(job.Job);
        _force = options.Reapply && !options.DryRun;

        // One redactor for the run (the log's too): the secrets it resolves are the ones it hides.
        var redactor = options.Redactor ?? new SecretRedactor();
        connection.AddSecretsTo(redactor);
        _redactor = redactor;
        _http = job.Job.HasHttpSteps
            ? new HttpContext(options.ResolvedSecrets ?? HttpSteps.ResolveSecrets(job.Job, options.Credentials ?? new Dictionary<string, string>(), redactor), redactor)
            : null;
    }

    /// <summary>
    /// One key on <paramref name="work"/>: applied (or, for a dry run, tried and rolled back), stale
    /// (a plan's item whose rows changed: recorded as such), or failed. <paramref name="lockTimedOut"/>:
    /// the item's first attempt already ran (in a group) and timed out waiting for a lock; it counts as
    /// attempt 1 and the lock retries go on from there.
    /// </summary>
    public async Task<ItemOutcome> RunAsync(WorkConnection work, string key, CancellationToken ct, PostgresException? lockTimedOut = null)
    {
        var outcome = await ApplyAsync(work, key, ct, lockTimedOut).ConfigureAwait(false);
        return outcome.Result.Status == BackfillItemStatus.Stale
            ? new ItemOutcome(key, await StaleAsync(_connection, _lease, _job, key, outcome.Result.Duration, _options.DryRun, _log, outcome.Result.Attempts).ConfigureAwait(false), null)
            : outcome;
    }

    /// <summary>A plan's item whose rows changed since the plan: not applied, logged, and (unless a dry run) recorded as stale.</summary>
    internal static async Task<BackfillItemResult> StaleAsync(DataOpsConnection connection, JobLease lease, ValidatedJob job, string key, TimeSpan elapsed, bool dryRun, RunLog log, int attempts = 1)
    {
        var result = StaleResult(lease.RunId, job.Job.Name, key, elapsed, attempts);
        if (!dryRun)
        {
            log.Warning("Item {Key} is stale: its rows changed since the plan was made; not applied", key);
            await RecordFailureAsync(connection, lease.RunId, job.Job.Name, key, BackfillErrorCategory.None, result.Error!, attempts, elapsed, "stale").ConfigureAwait(false);
        }

        return result;
    }

    private async Task<ItemOutcome> ApplyAsync(WorkConnection work, string key, CancellationToken ct, PostgresException? lockTimedOut)
    {
        var (job, lease, log, http, plan, dryRun) = (_job, _lease, _log, _http, _plan, _options.DryRun);
        var connection = work.Profile;
        var runId = lease.RunId;
        var watch = Stopwatch.StartNew();
        var attempts = 0;
        var wait = new LockWait(key);
        var maxAttempts = _options.LockRetriesFor(job.Job) + 1;
        var waited = false;
        void Waits(string blocker)
        {
            waited = true;
            Waiting?.Invoke(new ThrottleHold(LockReason, $"item {key} (attempt {wait.Attempts} of {maxAttempts}) waits for {blocker}", TimeSpan.Zero));
        }

        var context = ResilienceContextPool.Shared.Get(ct);
        context.Properties.Set(Retry.LockWaitKey, wait);
        try
        {
            return await _retry.ExecuteAsync(async ctx =>
            {
                var token = ctx.CancellationToken;
                attempts++;
                wait.Attempts = attempts;
                wait.Blocker = null;
                if (lockTimedOut is { } grouped)
                {
                    // The grouped attempt (attempt 1) timed out; nobody watched it wait, so the likely holder is looked up now.
                    lockTimedOut = null;
                    wait.Blocker = await LockWatch.LikelyHolderAsync(connection, _tables, 0, _lockTimeout, _redactor).ConfigureAwait(false);
                    Waits(wait.Blocker?.ToString() ?? "rows another session holds");
                    throw grouped;
                }

                if (attempts > 1)
                {
                    // Never the connection of the failed attempt: it may be broken, or open in an aborted transaction.
                    await work.ResetAsync().ConfigureAwait(false);
                }

                var conn = await work.GetAsync(token).ConfigureAwait(false);
                var waiter = conn.ProcessID;
                await using var lockWatch = LockWatch.Start(connection, waiter, _lockTimeout, _redactor, blocker =>
                {
                    log.Information("Item {Key} is waiting for rows another session holds: {Blocker}", key, blocker);
                    Waits(blocker.ToString()!);
                }, token);
                try
                {
                    if (attempts > 1 && !dryRun && await AppliedByLedgerAsync(conn, job, runId, key, token).ConfigureAwait(false) is { } committed)
                    {
                        // The failed attempt's COMMIT reached the server before the connection went: the
                        // ledger says the item is applied; running it again would apply it twice.
                        log.Information("Item {Key} committed before the connection failed; not run again", key);
                        return committed with { Result = committed.Result with { Duration = watch.Elapsed, Attempts = attempts } };
                    }
                    ItemImage? knownBefore = null;
                    if (job.Job.HasHttpSteps)
                    {
                        knownBefore = await CaptureBeforeAsync(conn, job, lease, key, token).ConfigureAwait(false);
                        if (plan is not null && (!plan.Items.TryGetValue(key, out var plannedHash) || plannedHash != PlanFingerprint.Hash(knownBefore, job.Capture)))
                        {
                            return Stale(key, watch.Elapsed, attempts);
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
                            await WorkConnection.RollbackAsync(conn).ConfigureAwait(false);
                            return Stale(key, watch.Elapsed, attempts);
                        }
                    }

                    var (before, after, verified) = await RunStepsAsync(conn, job, key, token, knownBefore, inTransaction).ConfigureAwait(false);
                    if (plan is not null && (!plan.Items.TryGetValue(key, out var planned) || planned != PlanFingerprint.Hash(before, job.Capture)))
                    {
                        // The rows changed since the plan was made: apply nothing blindly.
                        await WorkConnection.RollbackAsync(conn).ConfigureAwait(false);
                        return Stale(key, watch.Elapsed, attempts);
                    }

                    if (verified is not true)
                    {
                        await WorkConnection.RollbackAsync(conn).ConfigureAwait(false);
                        throw new VerifyFailedException($"verify returned {(verified is null or DBNull ? "no row or NULL" : verified)} instead of true");
                    }

                    var restore = RestoreOp.ForItem(key, before, after, job.Capture);
                    if (dryRun)
                    {
                        await WorkConnection.RollbackAsync(conn).ConfigureAwait(false);
                        return new ItemOutcome(key, new BackfillItemResult
                        {
                            RunId = runId, Job = job.Job.Name, Key = key, Status = BackfillItemStatus.WouldApply, RowsChanged = restore.Count,
                            Duration = watch.Elapsed, Attempts = attempts,
                        }, null);
                    }

                    // Round trip 2: the ledger row and COMMIT together. Once sent, the commit's outcome must
                    // be known, so it is never cancelled half-way.
                    await using (var commit = new NpgsqlBatch(conn))
                    {
                        if (_force)
                        {
                            commit.BatchCommands.Add(SupersedeCommand(lease, key));
                        }

                        if (Queue is { } queue)
                        {
                            // Raises DOL02 if another worker took the claim over meanwhile: the item rolls back here.
                            var done = new NpgsqlBatchCommand(RunQueue.DoneInTransactionSql);
                            done.Parameters.AddWithValue("dataops_run", NpgsqlTypes.NpgsqlDbType.Uuid, lease.RunId);
                            queue.Bind(done.Parameters);
                            done.Parameters.AddWithValue("key", key);
                            commit.BatchCommands.Add(done);
                        }

                        // The images go into the ledger from the transaction's settings: not sent back from here.
                        var ledger = new NpgsqlBatchCommand(LedgerStore.AppliedInsert(job.Capture.Count));
                        lease.Bind(ledger.Parameters);
                        ledger.Parameters.AddWithValue("key", key);
                        for (var i = 0; i < job.Capture.Count; i++)
                        {
                            ledger.Parameters.AddWithValue($"dataops_table_{i}", NpgsqlTypes.NpgsqlDbType.Text, job.Capture[i].QualifiedName);
                        }

                        ledger.Parameters.AddWithValue("rows", restore.Count);
                        ledger.Parameters.AddWithValue("attempts", attempts);
                        ledger.Parameters.AddWithValue("seconds", watch.Elapsed.TotalSeconds);
                        ledger.Parameters.AddWithValue("ms", (int)watch.ElapsedMilliseconds);
                        commit.BatchCommands.Add(ledger);
                        commit.BatchCommands.Add(new NpgsqlBatchCommand("COMMIT"));
                        await commit.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
                    }

                    return new ItemOutcome(key, new BackfillItemResult
                    {
                        RunId = runId, Job = job.Job.Name, Key = key, Status = BackfillItemStatus.Applied, RowsChanged = restore.Count, Duration = watch.Elapsed, Attempts = attempts,
                    }, restore);
                }
                catch (PostgresException pg) when (Retry.IsLockTimeout(pg))
                {
                    // Who held the rows: seen while the attempt waited, else the likely holder, looked up now.
                    wait.Blocker = await lockWatch.StopAsync().ConfigureAwait(false)
                        ?? await LockWatch.LikelyHolderAsync(connection, _tables, waiter, _lockTimeout, _redactor).ConfigureAwait(false);
                    throw;
                }
            }, context).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            await work.ResetAsync().ConfigureAwait(false);
            throw;
        }
        catch (PostgresException pg) when (pg.SqlState is "57014" or "54000" && _job.Job.Keyset is not null && !ct.IsCancellationRequested)
        {
            // A keyset chunk that hit its statement timeout, or a limit of the server (54000: an image over jsonb's
            // 256 MB, wide rows in a large chunk), is not an outcome: the walk halves the chunk and runs it again.
            await work.ResetAsync().ConfigureAwait(false);
            throw new ChunkTimedOutException(key, watch.Elapsed, pg);
        }
        catch (PostgresException pg) when (pg.SqlState == RunQueue.LostState)
        {
            // Not an outcome here: the worker that took the item over runs it.
            await work.ResetAsync().ConfigureAwait(false);
            throw new RunQueue.ClaimLostException(key, pg.MessageText);
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
            return new ItemOutcome(key, await FailedAsync(ex, connection, runId, job.Job.Name, key, attempts, watch.Elapsed, log, record: !dryRun, _redactor, wait.Blocker).ConfigureAwait(false), null);
        }
        finally
        {
            if (waited)
            {
                Waiting?.Invoke(null);
            }

            ResilienceContextPool.Shared.Return(context);
        }
    }

    private ItemOutcome Stale(string key, TimeSpan elapsed, int attempts) => new(key, StaleResult(_lease.RunId, _job.Job.Name, key, elapsed, attempts), null);

    private static BackfillItemResult StaleResult(Guid runId, string job, string key, TimeSpan elapsed, int attempts) => new()
    {
        RunId = runId, Job = job, Key = key, Status = BackfillItemStatus.Stale, Duration = elapsed, Attempts = attempts,
        Error = "the item's rows changed since the plan was made; run Test-ProdHealth again for a fresh plan",
    };

    /// <summary>This run's ledger row for the item if the item committed (a retry whose first COMMIT's answer was lost).</summary>
    private static async Task<ItemOutcome?> AppliedByLedgerAsync(NpgsqlConnection conn, ValidatedJob job, Guid runId, string key, CancellationToken ct) =>
        await LedgerStore.AppliedItemAsync(conn, runId, key, ct).ConfigureAwait(false) is { } r
            ? ItemOutcome.Committed(job, runId, key, r.Before, r.After, r.Rows, TimeSpan.Zero)
            : null;

    /// <summary>A failed item: categorised, logged, recorded in the ledger (unless a dry run), as a result.</summary>
    internal static async Task<BackfillItemResult> FailedAsync(Exception ex, DataOpsConnection connection, Guid runId, string job, string key, int attempts, TimeSpan elapsed, RunLog log, bool record = true, SecretRedactor? redactor = null, LockBlocker? blocker = null)
    {
        // Redacted once, here, so the ledger, the result, the log and the artifacts all get the same safe text.
        var (category, message) = Categorise(ex, connection);
        if (Retry.IsLockTimeout(ex))
        {
            // The blocker's query was redacted when it was read; the whole text is again below.
            message += blocker is null
                ? $" ({attempts} attempt{(attempts == 1 ? string.Empty : "s")}); the session holding the rows was not found (it may have ended)"
                : $" ({attempts} attempt{(attempts == 1 ? string.Empty : "s")}); {blocker}";
        }

        message = redactor?.Redact(message) ?? message;
        log.Warning("Item {Key} failed ({Category}) after {Attempts} attempts: {Error}", key, category, attempts, message);
        if (record)
        {
            await RecordFailureAsync(connection, runId, job, key, category, message, attempts, elapsed).ConfigureAwait(false);
        }

        return new BackfillItemResult
        {
            RunId = runId, Job = job, Key = key, Status = BackfillItemStatus.Failed, Duration = elapsed, Attempts = attempts,
            ErrorCategory = category, Error = message, Blocker = Retry.IsLockTimeout(ex) ? blocker : null,
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
            Add(ItemSettingsSelect(local: true, job.Job.Keyset?.StatementTimeout), bindJob: false);
        }

        // A keyset chunk's tables take the chunk form of the images where they can (thousands of rows).
        bool Chunk(CaptureTable t) => job.Job.Keyset is not null && knownBefore is null && !inTransaction && RowImages.TakesChunkForm(t);
        for (var i = 0; i < job.Capture.Count && !inTransaction; i++)
        {
            var t = job.Capture[i];
            if (knownBefore is null)
            {
                Add(Chunk(t) ? RowImages.ChunkBeforeSelect(t, i) : RowImages.BeforeImageSelect(t, i));
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
            Add($"SELECT set_config('dataops.after_{i}', {(Chunk(t) ? RowImages.ChunkAfterSelect(t, i) : RowImages.AfterImageSelect(t, i))}::text, true)");
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
        batch.BatchCommands.Add(new NpgsqlBatchCommand(ItemSettingsSelect(local: true, job.Job.Keyset?.StatementTimeout)));
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
    /// The session settings of item work: stable to_jsonb() text and the statement timeout (a keyset
    /// job's own, else the work connection's), for the transaction or the session. The lock timeout is
    /// the work connection's own (-LockTimeout).
    /// </summary>
    internal static string ItemSettingsSelect(bool local, TimeSpan? statementTimeout = null) =>
        $"SELECT {BackfillSql.StableJsonSettingsSelect(local)}, set_config('statement_timeout', '{(statementTimeout is { } t ? $"{(long)t.TotalMilliseconds}ms" : $"{WorkConnection.StatementTimeoutSeconds}s")}', {(local ? "true" : "false")})";

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
    internal static NpgsqlBatchCommand SupersedeCommand(JobLease lease, string key)
    {
        var command = new NpgsqlBatchCommand(LedgerStore.Supersede);
        lease.Bind(command.Parameters);
        command.Parameters.AddWithValue("key", NpgsqlTypes.NpgsqlDbType.Text, key);
        return command;
    }

    private static (string, string) Categorise(Exception ex, DataOpsConnection connection) => ex switch
    {
        HttpStepException h => (h.Category, h.Message),
        VerifyFailedException v => (BackfillErrorCategory.VerifyFailed, "Verify failed: " + v.Message),
        PostgresException { SqlState: GroupExecutor.VerifyFailedState } pg => (BackfillErrorCategory.VerifyFailed, "Verify failed: " + pg.MessageText),
        PostgresException { SqlState: var s } pg when s.StartsWith("23", StringComparison.Ordinal) => (BackfillErrorCategory.Constraint, $"{pg.SqlState}: {pg.MessageText}{(pg.ConstraintName is null ? string.Empty : $" ({pg.ConstraintName})")}"),
        PostgresException { SqlState: "55P03" or "40P01" or "40001" } pg => (BackfillErrorCategory.LockTimeout, $"{pg.SqlState}: {pg.MessageText}"),
        PostgresException { SqlState: "57014" } pg => (BackfillErrorCategory.Timeout, $"{pg.SqlState}: {pg.MessageText}"),
        PostgresException pg when Retry.IsTransient(pg) => (BackfillErrorCategory.ConnectionLost, $"{pg.SqlState}: {pg.MessageText}"),
        PostgresException pg => (BackfillErrorCategory.Other, $"{pg.SqlState}: {pg.MessageText}"),
        DataOpsException { Kind: DataOpsErrorKind.ConnectionError } d => (BackfillErrorCategory.ConnectionLost, d.Message),
        NpgsqlException or SocketException or IOException or TimeoutException => (BackfillErrorCategory.ConnectionLost, Database.Translate(ex, connection).Message),
        DataOpsException d => (BackfillErrorCategory.Other, d.Message),
        _ => (BackfillErrorCategory.Other, $"{ex.GetType().Name}: {ex.Message}"),
    };


    private sealed class VerifyFailedException(string message) : Exception(message);

    /// <summary>A keyset chunk's statement hit the job's statement timeout or a limit of the server (54000); nothing of it committed or was recorded.</summary>
    internal sealed class ChunkTimedOutException(string key, TimeSpan elapsed, PostgresException inner)
        : Exception(inner.SqlState == "54000"
            ? $"chunk {key} hit a limit of the server after {elapsed.TotalSeconds:0.###} s ({inner.MessageText})"
            : $"chunk {key} hit the statement timeout after {elapsed.TotalSeconds:0.###} s", inner)
    {
        public string Key => key;
    }

    /// <summary>The resolved secrets of a job's HTTP steps and the redactor that hides them.</summary>
    private sealed record HttpContext(IReadOnlyDictionary<string, string> Secrets, SecretRedactor Redactor);
}
