using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Dapper;
using DataOps.Engine.Connections;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using Npgsql;

namespace DataOps.Engine.Backfill;

/// <summary>
/// Undo-Backfill: restores a run's before-images newest item first, one transaction per item. A
/// row is restored only if it still equals its after-image; otherwise the item is Drifted and
/// nothing of it changes. Each restored item gets an 'undone' ledger row, so the job can apply it again.
/// </summary>
public static class UndoRunner
{
    /// <summary>The run id recorded in a run folder or its execution_results.json.</summary>
    public static Guid RunIdFromPath(string path)
    {
        var file = Directory.Exists(path) ? Path.Combine(path, "backfill_logs", "execution_results.json") : path;
        if (!File.Exists(file))
        {
            throw new DataOpsException("RunNotFound", DataOpsErrorKind.ObjectNotFound,
                $"'{path}' is neither a backfill run folder nor its {Path.Combine("backfill_logs", "execution_results.json")}.", path);
        }

        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(file));
            return doc.RootElement.GetProperty("runId").GetGuid();
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or FormatException or InvalidOperationException)
        {
            throw new DataOpsException("RunNotFound", DataOpsErrorKind.InvalidData, $"'{file}' does not name a backfill run: {ex.Message}", file);
        }
    }

    /// <summary>What an undo of a run would do: the run's job, its applied items, and those not yet restored.</summary>
    public sealed record UndoCheck(string Job, long Applied, long Remaining, string? UndoneBy);

    /// <summary>
    /// The run to undo, checked before anyone is asked to confirm: RunNotFound if there is no such
    /// run, UndoOfDryRun or UndoOfUndoRun if it is not a backfill run, RunAlreadyUndone if every item
    /// it applied was restored by earlier undos.
    /// </summary>
    public static async Task<UndoCheck> CheckAsync(DataOpsConnection connection, Guid runId, CancellationToken ct)
    {
        await BackfillRunner.RequireCoreAsync(connection, ct).ConfigureAwait(false);
        await using var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        var check = await LedgerStore.UndoCheckAsync(conn, runId, ct).ConfigureAwait(false);
        if (check is null)
        {
            throw await NotUndoableAsync(conn, connection, runId, ct).ConfigureAwait(false);
        }

        if (check.Applied > 0 && check.Remaining == 0)
        {
            throw new DataOpsException("RunAlreadyUndone", DataOpsErrorKind.InvalidOperation,
                $"Run {runId} of job '{check.Job}' in {connection} is already undone: all {check.Applied} items it applied were restored by undo run {check.UndoneBy}. Nothing was changed.",
                runId) { RecommendedAction = $"Get-BackfillRun -JobName {check.Job}" };
        }

        return check;
    }

    /// <summary>Why a run id is not a backfill run to undo: there is no such run, or it is a dry run (which changed nothing) or an undo run.</summary>
    private static async Task<DataOpsException> NotUndoableAsync(NpgsqlConnection conn, DataOpsConnection connection, Guid runId, CancellationToken ct)
    {
        var run = await LedgerStore.RunKindAsync(conn, runId, ct).ConfigureAwait(false);
        return run switch
        {
            { Kind: "dryrun" } r => new DataOpsException("UndoOfDryRun", DataOpsErrorKind.InvalidOperation,
                $"Run {runId} of job '{r.Job}' in {connection} was a dry run (Invoke-Backfill -DryRun): each of its items ran and was rolled back, so it changed nothing and there is nothing to undo. " +
                "Undo-Backfill takes a backfill run (Get-BackfillRun lists them with Kind 'backfill'). Nothing was changed.",
                runId) { RecommendedAction = $"Get-BackfillRun -JobName {r.Job}" },
            { Kind: "undo" } r => new DataOpsException("UndoOfUndoRun", DataOpsErrorKind.InvalidOperation,
                $"Run {runId} of job '{r.Job}' in {connection} is an undo run{(r.UndoOf is null ? string.Empty : $" (it restored rows of run {r.UndoOf})")}: an undo cannot be undone. " +
                "To apply the restored items again, run the job again (Invoke-Backfill applies only the items not applied). Nothing was changed.",
                runId) { RecommendedAction = $"Get-BackfillRun -JobName {r.Job}" },
            _ => NotFound(connection, runId),
        };
    }

    private static DataOpsException NotFound(DataOpsConnection connection, Guid runId) =>
        new("RunNotFound", DataOpsErrorKind.ObjectNotFound, $"There is no backfill run {runId} in {connection}. Get-BackfillRun lists the runs there.", runId);

    public static async IAsyncEnumerable<BackfillItemResult> UndoAsync(DataOpsConnection connection, Guid runId, RunLog log, IOperationObserver observer, [EnumeratorCancellation] CancellationToken ct)
    {
        await BackfillRunner.RequireCoreAsync(connection, ct).ConfigureAwait(false);
        await using var meta = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        var run = await LedgerStore.RunAsync(meta, runId, ct).ConfigureAwait(false);
        if (run is null || run.Kind != "backfill")
        {
            throw await NotUndoableAsync(meta, connection, runId, ct).ConfigureAwait(false);
        }

        var job = run.Job;

        // The undo holds the job's lease while it restores: a run of the job that is still applying
        // (this one or another) makes it refuse, and no run can start until it is done.
        var lease = await JobLease.AcquireAsync(
            connection, job, "undo", JsonSerializer.Serialize(new { undoOf = runId }), null, log,
            holder => new DataOpsException("BackfillRunInProgress", DataOpsErrorKind.ResourceUnavailable,
                holder.RunId == runId
                    ? $"Run {runId} of job '{job}' is still applying on {connection} ({holder}); undoing it now would restore rows while it changes more. Nothing was restored. Stop it (Ctrl+C) or let it finish, then run Undo-Backfill again."
                    : $"Another run of job '{job}' is in progress on {connection}: {holder}. Nothing was restored. Run Undo-Backfill again when it has finished.",
                runId) { RecommendedAction = $"Get-BackfillRun -JobName {job}" },
            ct).ConfigureAwait(false);
        await using var leaseScope = lease.ConfigureAwait(false);
        var undoRun = lease.RunId;
        var status = "stopped";
        string? reason = null;
        var restored = 0;
        var drifted = 0;
        var locked = 0;
        var retry = Retry.Pipeline(log);
        try
        {
            var items = (await meta.QueryAsync<(long LedgerId, string Key, string Before, string After)>(new CommandDefinition(
                LedgerStore.LiveApplied(newestFirst: true), new { runId }, cancellationToken: ct)).ConfigureAwait(false)).ToList();
            log.Information("Undo {UndoRun} of run {RunId} (job {Job}): {Items} applied items to restore", undoRun, runId, job, items.Count);

            var tables = new Dictionary<string, CaptureTable>(StringComparer.Ordinal);
            var n = 0;
            foreach (var item in items)
            {
                BackfillItemResult result;
                var attempts = 0;
                try
                {
                    // A lost connection or a server restart runs the item again on a new connection;
                    // its restore and its 'undone' row commit together, so a retry never restores twice.
                    result = await retry.ExecuteAsync(async token =>
                    {
                        attempts++;
                        return await UndoItemAsync(connection, meta, tables, lease, job, item, token).ConfigureAwait(false);
                    }, ct).ConfigureAwait(false);
                }
                catch (PostgresException pg) when (pg.SqlState == JobLease.LostState)
                {
                    status = "failed";
                    throw lease.MarkLost(pg.MessageText);
                }
                catch (PostgresException pg) when (pg.SqlState is "55P03" or "40P01" or "40001")
                {
                    // Another session holds the item's rows: nothing of it is restored; the next items go on.
                    var message = $"{pg.SqlState}: {pg.MessageText}; another session holds the item's rows, nothing of it was restored. Run Undo-Backfill -RunId {runId} again to restore the rest.";
                    log.Warning("Item {Key} not restored: {Error}", item.Key, message);
                    result = new BackfillItemResult
                    {
                        RunId = undoRun, Job = job, Key = item.Key, Status = BackfillItemStatus.Failed, ErrorCategory = BackfillErrorCategory.LockTimeout, Error = message, Attempts = attempts,
                    };
                }
                catch (Exception ex) when (Retry.IsTransient(ex))
                {
                    status = "failed";
                    reason = $"the database connection was lost and did not come back within {Retry.MaxRetries} retries: {ex.Message}";
                    throw new DataOpsException("UndoConnectionLost", DataOpsErrorKind.ConnectionError,
                        $"Undo {undoRun} of run {runId} stopped: {reason}. The {restored} items restored before it stay restored (each with its ledger row); " +
                        $"run Undo-Backfill -RunId {runId} again when {connection} is reachable: it restores only the rest.",
                        runId, ex) { RecommendedAction = $"Undo-Backfill -RunId {runId}" };
                }

                restored += result.Status == BackfillItemStatus.Restored ? 1 : 0;
                drifted += result.Status == BackfillItemStatus.Drifted ? 1 : 0;
                locked += result.Status == BackfillItemStatus.Failed ? 1 : 0;
                n++;
                observer.Progress(new OperationProgress($"Undo {job}", $"{n} of {items.Count} items ({drifted} drifted)", (int)(n * 100L / items.Count), CurrentOperation: item.Key));
                yield return result;
            }

            status = "completed";
        }
        finally
        {
            observer.Progress(new OperationProgress($"Undo {job}", "Done", Completed: true));
            reason = lease.LostError?.Message ?? reason ?? (status == "stopped" ? (ct.IsCancellationRequested ? "stopped before the end (Ctrl+C)" : "stopped before the end") : null);
            await lease.EndAsync(status, JsonSerializer.Serialize(new { undoOf = runId, restored, drifted, lockTimeouts = locked, reason })).ConfigureAwait(false);
            log.Information("Undo {UndoRun} {Status}: {Restored} items restored, {Drifted} drifted", undoRun, status, restored, drifted);
        }
    }

    private static async Task<BackfillItemResult> UndoItemAsync(
        DataOpsConnection connection, NpgsqlConnection meta, Dictionary<string, CaptureTable> tables, JobLease lease, string job,
        (long LedgerId, string Key, string Before, string After) item, CancellationToken ct)
    {
        var undoRun = lease.RunId;
        var watch = Stopwatch.StartNew();
        var before = ItemImage.FromJson(item.Before);
        var after = ItemImage.FromJson(item.After);
        foreach (var name in before.Tables.Keys.Concat(after.Tables.Keys).Where(n => !tables.ContainsKey(n)))
        {
            tables[name] = await DescribeAsync(meta, name, ct).ConfigureAwait(false);
        }

        var ops = RestoreOp.ForItem(item.Key, before, after, [.. before.Tables.Keys.Select(n => tables[n])]);
        await using var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
        await conn.ExecuteAsync(new CommandDefinition(BackfillSql.StableJsonSettings, transaction: tx, cancellationToken: ct)).ConfigureAwait(false);
        await conn.ExecuteAsync(new CommandDefinition(LockTimeoutSql, transaction: tx, cancellationToken: ct)).ConfigureAwait(false);

        // Like a run's items: only while this undo holds the job's lease (locked until COMMIT).
        await conn.ExecuteAsync(new CommandDefinition(JobLease.CheckSql(), new { dataops_job = job, dataops_run = undoRun }, tx, cancellationToken: ct)).ConfigureAwait(false);
        foreach (var step in RestoreOp.Steps(ops))
        {
            // A run of many updates of one table (a keyset chunk) is one statement; anything else one row at a time.
            var op = step[0];
            var bulk = step.Count > 1;
            await using var cmd = new NpgsqlCommand(bulk ? RestoreOp.BulkUpdateSql(step) : op.Sql, conn, tx);
            if (op.Before is not null)
            {
                cmd.Parameters.Add(new NpgsqlParameter("before", NpgsqlTypes.NpgsqlDbType.Text) { Value = bulk ? RestoreOp.Array(step, before: true) : op.Before });
            }

            if (op.After is not null)
            {
                cmd.Parameters.Add(new NpgsqlParameter("after", NpgsqlTypes.NpgsqlDbType.Text) { Value = bulk ? RestoreOp.Array(step, before: false) : op.After });
            }

            var updated = await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            if (updated != step.Count)
            {
                await tx.RollbackAsync(CancellationToken.None).ConfigureAwait(false);
                var message = bulk
                    ? $"{step.Count - updated} of {step.Count} rows of {op.Table} changed since the backfill (they no longer equal their after-images); nothing of item {item.Key} was restored."
                    : $"{op.RowLabel} changed since the backfill (it no longer equals the after-image); nothing of item {item.Key} was restored.";
                await conn.ExecuteAsync(
                    LedgerStore.DriftedInsert,
                    new { undoRun, job, key = item.Key, message }).ConfigureAwait(false);
                return new BackfillItemResult { RunId = undoRun, Job = job, Key = item.Key, Status = BackfillItemStatus.Drifted, ErrorCategory = BackfillErrorCategory.Drift, Error = message, Duration = watch.Elapsed, Attempts = 1 };
            }
        }

        await conn.ExecuteAsync(new CommandDefinition(
            LedgerStore.UndoneInsert,
            new { undoRun, job, key = item.Key, ledgerId = item.LedgerId, rows = ops.Count, ms = (int)watch.ElapsedMilliseconds }, tx, cancellationToken: ct)).ConfigureAwait(false);
        await tx.CommitAsync(CancellationToken.None).ConfigureAwait(false);
        return new BackfillItemResult { RunId = undoRun, Job = job, Key = item.Key, Status = BackfillItemStatus.Restored, RowsChanged = ops.Count, Duration = watch.Elapsed, Attempts = 1 };
    }

    /// <summary>An undo item waits this long for rows another session holds, then fails as LockTimeout (the undo goes on).</summary>
    private static readonly string LockTimeoutSql = $"SET LOCAL lock_timeout = '{(long)BackfillOptions.DefaultLockTimeout.TotalMilliseconds}ms'";

    internal static async Task<CaptureTable> DescribeAsync(NpgsqlConnection conn, string table, CancellationToken ct)
    {
        var pk = await Database.PrimaryKeyAsync(conn, table, null, ct).ConfigureAwait(false);
        if (pk.Count == 0)
        {
            throw new DataOpsException("UndoImpossible", DataOpsErrorKind.InvalidOperation, $"The table {table} no longer exists or has no primary key; its rows cannot be restored.", table);
        }

        var relname = await conn.ExecuteScalarAsync<string>(new CommandDefinition("SELECT relname::text FROM pg_class WHERE oid = to_regclass(@table)", new { table }, cancellationToken: ct)).ConfigureAwait(false);
        return new CaptureTable(new CaptureSpec(table, "true", "$"), table, relname!, pk);
    }

    /// <summary>Run summaries from the ledger, newest first.</summary>
    public static async Task<IReadOnlyList<BackfillRun>> ListRunsAsync(DataOpsConnection connection, string? job, Guid? runId, CancellationToken ct, string? jobLike = null)
    {
        // Without Core there is no run to list: SchemaMissing says what to install, not a raw 42P01.
        await BackfillRunner.RequireCoreAsync(connection, ct).ConfigureAwait(false);
        var rows = await LedgerStore.RunsAsync(connection, job, runId, ct, jobLike).ConfigureAwait(false);
        return [.. rows.Select(r =>
        {
            // A run 'running' without a live lease ended without recording how (its process was killed,
            // or the database went away as it finished): abandoned. The next run of the job records it so.
            var (status, reason) = (r.Status, r.Reason);
            if (r.Status == "running")
            {
                if (!r.HasLease)
                {
                    (status, reason) = ("abandoned", "it holds the job's lease no more and recorded no outcome: its process or its database connection went away before it finished");
                }
                else if (r.LeaseExpired)
                {
                    (status, reason) = ("abandoned", $"its lease expired at {r.LeaseExpiresAt:u} without renewal and it recorded no outcome: its process or its database connection went away");
                }
                else if (JobLease.HolderGone(r.RunId, r.LeaseHost!, r.LeaseProcess ?? 0, r.LeaseProcessStartedAt) is { } gone)
                {
                    (status, reason) = ("abandoned", $"{gone}, and it recorded no outcome");
                }
            }

            // A live run says what it is doing in its control row (Core/0009); an ended one is its status.
            var live = status == "running";
            return new BackfillRun
            {
                RunId = r.RunId, Kind = r.Kind, Job = r.Job, Status = status, Reason = reason,
                State = live ? r.LiveState ?? "running" : status, StateReason = live ? r.LiveStateReason : null,
                StateAt = live && r.LiveStateAt is { } at ? new DateTimeOffset(DateTime.SpecifyKind(at, DateTimeKind.Utc)) : null, StartedAt = new DateTimeOffset(DateTime.SpecifyKind(r.StartedAt, DateTimeKind.Utc)),
                FinishedAt = r.FinishedAt is { } f ? new DateTimeOffset(DateTime.SpecifyKind(f, DateTimeKind.Utc)) : null,
                Applied = r.Applied, Failed = r.Failed, Undone = r.Undone, Skipped = r.Skipped, OutputDirectory = r.OutputDirectory,
                Workers = live ? r.Workers ?? 0 : 0, WorkerProcesses = live ? r.WorkerProcesses ?? 0 : 0, QueuedItems = r.QueuedItems,
                ThrottledTime = r.Throttled is null
                    ? new Dictionary<string, TimeSpan>()
                    : System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, double>>(r.Throttled)!.ToDictionary(t => t.Key, t => TimeSpan.FromSeconds(t.Value), StringComparer.Ordinal),
                Signals = r.Signals is null ? [] : System.Text.Json.JsonSerializer.Deserialize<List<BackfillSignalPeak>>(r.Signals, BackfillArtifacts.Camel)!,
            };
        })];
    }

}
