using System.Text.Json;
using Dapper;
using DataOps.Engine.Connections;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using Npgsql;

namespace DataOps.Engine.Backfill;

/// <summary>
/// Items that run whole on the server. Each item is still its own transaction (BEGIN, before-image
/// FOR UPDATE, steps, then one statement that takes the after-image, runs verify through
/// dataops.verified() and writes the ledger row, COMMIT), but the client sends a group of items in
/// one round trip and learns each item's images from the ledger row's RETURNING. A failure stops
/// the server at that item (its transaction rolls back, later items are not run); the ledger then
/// says which items committed. An error the server reports fails that one item (recorded once, not
/// run again) and the next items go on in groups; anything else (a lost connection, a transient
/// error) sends the rest of the group through the one-item path, which reconnects and retries.
/// A dry run's group is the same but for its end: the item's images and verify come back from a
/// SELECT and the item rolls back, so a returned row is the whole item and nothing needs the ledger.
/// </summary>
internal sealed class GroupExecutor(ValidatedJob job, JobLease lease, bool force, bool dryRun, RunLog log)
{
    /// <summary>Items per round trip when the throttle is off.</summary>
    internal const int GroupSize = 128;

    private const string ItemMarker = "dataops_item";

    // Built once per run, not per group: a plan's fingerprint holds every item's hash.
    private readonly PlanFingerprint? _plan = PlanFingerprint.From(job.Job);
    private readonly string _itemEnd = dryRun ? DryRunStatement(job) : LedgerStatement(job);
    private readonly string _planCheck = PlanCheckStatement(job.Capture.Count);
    private readonly string[] _tables = [.. job.Capture.Select(t => t.QualifiedName)];
    private readonly string _primaryKeys = JsonSerializer.Serialize(job.Capture.Select(t => new object[] { t.QualifiedName, t.PrimaryKey }));

    /// <summary>
    /// SQL-only jobs: nothing needs the client between an item's statements, so the item can run whole
    /// on the server (dry runs too: they roll back instead of committing; a plan's items check their
    /// fingerprint on the server first). HTTP jobs keep their two transactions (the one-item path); a
    /// keyset job's chunks are found one at a time and are large (the one-item path's round trip is noise).
    /// </summary>
    internal static bool RunsOnServer(ValidatedJob job, BackfillOptions options) => !job.Job.HasHttpSteps && job.Job.Keyset is null;

    /// <summary>The group executor for a run whose items can run whole on the server, else null (the one-item path).</summary>
    public static GroupExecutor? For(ValidatedJob job, BackfillOptions options, JobLease lease, RunLog log, RunQueue? queue = null) =>
        RunsOnServer(job, options) ? new GroupExecutor(job, lease, options.Reapply && !options.DryRun, options.DryRun, log) { Queue = queue } : null;

    /// <summary>
    /// What a group run did: the items that committed (a prefix of the group, in order), whether
    /// Ctrl+C stopped it, and the item the server failed on when it says which one (the items after
    /// it did not run). <paramref name="LockTimedOut"/>: the next item after the committed ones timed
    /// out waiting for a lock (55P03); it goes to the one-item path for its lock retries (attempt 1 was
    /// this one), and the items after it go on in groups.
    /// </summary>
    /// <remarks><paramref name="ClaimLost"/>: in a run with a queue, the next item's claim had been taken over by another worker process (it rolled back here; the items after it go on).</remarks>
    internal sealed record GroupOutcome(IReadOnlyList<ItemOutcome> Committed, bool Cancelled, BackfillItemResult? Failed = null, DataOpsException? LeaseLost = null, PostgresException? LockTimedOut = null, bool ClaimLost = false);

    /// <summary>A run worked by several workers: each applied item marks its claim done in its own transaction (<see cref="RunQueue"/>).</summary>
    public RunQueue? Queue { get; init; }

    public async Task<GroupOutcome> ApplyAsync(WorkConnection work, IReadOnlyList<string> keys, CancellationToken ct)
    {
        var runId = lease.RunId;
        var committed = new List<ItemOutcome>(keys.Count);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        NpgsqlBatch? batch = null;
        var sent = false;
        try
        {
            var conn = await work.GetAsync(ct).ConfigureAwait(false);
            batch = GroupBatch(conn, keys);
            sent = true;
            await using var reader = await batch.ExecuteReaderAsync(ct).ConfigureAwait(false);
            do
            {
                var isItem = reader.FieldCount > 0 && reader.GetName(0) == ItemMarker;
                while (await reader.ReadAsync(ct).ConfigureAwait(false))
                {
                    if (isItem)
                    {
                        var item = ItemOutcome.Committed(job, runId, reader.GetString(0), reader.GetString(2), reader.GetString(3), reader.GetInt32(1), reader.GetFieldValue<TimeSpan>(4));
                        committed.Add(dryRun ? item with { Result = item.Result with { Status = BackfillItemStatus.WouldApply }, Restore = null } : item);
                    }
                }
            }
            while (await reader.NextResultAsync(ct).ConfigureAwait(false));

            return new GroupOutcome(committed, Cancelled: false);
        }
        catch (Exception ex) when (ex is NpgsqlException or OperationCanceledException or IOException or System.Net.Sockets.SocketException or InvalidOperationException or DataOpsException)
        {
            // The row of an item is no proof its COMMIT ran; the ledger is.
            await work.ResetAsync().ConfigureAwait(false);
            var cancelled = ct.IsCancellationRequested;
            if (!sent)
            {
                // Nothing reached the server (no connection): the one-item path retries with backoff.
                return new GroupOutcome([], cancelled);
            }

            // A dry run's rows are its items (nothing commits); a real run's come from the ledger.
            var ledger = dryRun ? committed : await CommittedByLedgerAsync(work.Profile, runId, keys).ConfigureAwait(false);
            if (cancelled)
            {
                return new GroupOutcome(ledger, Cancelled: true);
            }

            // The item after the committed prefix found the job's lease held by another run: the run stops.
            if (ex is PostgresException { SqlState: JobLease.LostState } lost)
            {
                return new GroupOutcome(ledger, Cancelled: false, LeaseLost: lease.MarkLost(lost.MessageText));
            }

            if (ex is PostgresException { SqlState: RunQueue.LostState } && ledger.Count < keys.Count)
            {
                return new GroupOutcome(ledger, Cancelled: false, ClaimLost: true);
            }

            // A plan's item whose rows changed: stale, recorded as such; the group goes on after it.
            if (ex is PostgresException { SqlState: StaleState } && ledger.Count < keys.Count)
            {
                return new GroupOutcome(ledger, Cancelled: false, await ItemExecutor.StaleAsync(work.Profile, lease, job, keys[ledger.Count], watch.Elapsed, dryRun, log).ConfigureAwait(false));
            }

            // The server stops at the first error: every item before it committed (the ledger has them),
            // so the failing item is the next one. Transient errors (a restart, a deadlock) go the
            // one-item way, which reconnects and runs the item again.
            if (ex is PostgresException pg && !Retry.IsTransient(pg) && ledger.Count < keys.Count
                && ledger.Select(c => c.Key).SequenceEqual(keys.Take(ledger.Count), StringComparer.Ordinal))
            {
                if (Retry.IsLockTimeout(pg))
                {
                    // Not recorded here: the one-item path retries it (and records its outcome once).
                    log.Information("Item {Key} waited for rows another session holds and gave up in its group; it runs again on its own, the items after it go on in groups", keys[ledger.Count]);
                    return new GroupOutcome(ledger, Cancelled: false, LockTimedOut: pg);
                }

                var failed = await ItemExecutor.FailedAsync(pg, work.Profile, runId, job.Job.Name, keys[ledger.Count], 1, watch.Elapsed, log, record: !dryRun).ConfigureAwait(false);
                return new GroupOutcome(ledger, Cancelled: false, failed);
            }

            log.Information("A group of {Count} items stopped at a failure ({Error}); the items after the last committed one run one by one", keys.Count, ex.Message);
            return new GroupOutcome(ledger, Cancelled: false);
        }
        finally
        {
            if (batch is not null)
            {
                await batch.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>The SQLSTATE dataops.verified() raises when verify is not true.</summary>
    internal const string VerifyFailedState = "DOV01";

    /// <summary>The SQLSTATE dataops.stale() raises when a plan's item's rows changed since the plan (Core/0008).</summary>
    internal const string StaleState = "DOS01";

    /// <summary>After a failed group: the items of <paramref name="keys"/> this run committed, from the ledger, in key order.</summary>
    private async Task<List<ItemOutcome>> CommittedByLedgerAsync(DataOpsConnection connection, Guid runId, IReadOnlyList<string> keys)
    {
        try
        {
            var rows = await Retry.Pipeline(log).ExecuteAsync(
                async token => await LedgerStore.AppliedItemsAsync(connection, runId, keys, token).ConfigureAwait(false), CancellationToken.None).ConfigureAwait(false);
            if (Queue is { } queue)
            {
                // In a run with several worker processes the run's ledger rows may be another process's (it took
                // these claims over): only the items this process marked done are its committed ones.
                var mine = await Retry.Pipeline(log).ExecuteAsync(async token =>
                {
                    await using var conn = await Database.OpenAsync(connection, token).ConfigureAwait(false);
                    return await queue.DoneByThisMemberAsync(conn, keys, token).ConfigureAwait(false);
                }, CancellationToken.None).ConfigureAwait(false);
                rows = rows.Where(r => mine.Contains(r.Key)).ToDictionary(r => r.Key, r => r.Value, StringComparer.Ordinal);
            }

            return [.. keys.Where(rows.ContainsKey).Select(k => ItemOutcome.Committed(job, runId, k, rows[k].Before, rows[k].After, rows[k].Rows, rows[k].Duration))];
        }
        catch (Exception ex) when (ex is NpgsqlException or IOException or DataOpsException)
        {
            // Running the rest could apply an item twice: stop, the ledger decides on the re-run.
            throw new DataOpsException("BackfillOutcomeUnknown", DataOpsErrorKind.ConnectionError,
                $"The connection to {connection} failed while a group of {keys.Count} items ran, and the ledger could not be read to learn which of them committed ({ex.Message}). Nothing is applied twice: run the job again when the database is reachable; it skips the committed items.",
                keys[0]);
        }
    }

    /// <summary>
    /// One batch for the whole group: the session's stable JSON and timeout settings, then per item
    /// BEGIN, before-images (FOR UPDATE), steps, for -Reapply the earlier application superseded, the
    /// ledger statement (which also checks the job's lease and locks it FOR SHARE until COMMIT),
    /// COMMIT. The key, the run and the table names are parameters.
    /// </summary>
    private NpgsqlBatch GroupBatch(NpgsqlConnection conn, IReadOnlyList<string> keys)
    {
        var runId = lease.RunId;
        var batch = new NpgsqlBatch(conn);
        batch.BatchCommands.Add(new NpgsqlBatchCommand(ItemExecutor.ItemSettingsSelect(local: false)));
        var (ledgerSql, plan, planCheck, primaryKeys) = (_itemEnd, _plan, _planCheck, _primaryKeys);
        foreach (var key in keys)
        {
            void Add(string sql)
            {
                var command = new NpgsqlBatchCommand(sql);
                BackfillSql.Bind(command.Parameters, sql, job.Job.Parameters, key);
                batch.BatchCommands.Add(command);
            }

            batch.BatchCommands.Add(new NpgsqlBatchCommand("BEGIN"));
            for (var i = 0; i < job.Capture.Count; i++)
            {
                Add(RowImages.BeforeImageSelect(job.Capture[i], i));
            }

            if (plan is not null)
            {
                // A plan's item runs only if its locked rows still have the plan's fingerprint (else DOS01: stale).
                var check = new NpgsqlBatchCommand(planCheck);
                check.Parameters.AddWithValue("key", NpgsqlTypes.NpgsqlDbType.Text, key);
                check.Parameters.AddWithValue("dataops_tables", NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Text, _tables);
                check.Parameters.AddWithValue("dataops_planned", NpgsqlTypes.NpgsqlDbType.Text, (object?)plan.Items.GetValueOrDefault(key) ?? DBNull.Value);
                batch.BatchCommands.Add(check);
            }

            foreach (var step in job.Job.Steps)
            {
                Add(step.Sql!);
            }

            if (force)
            {
                batch.BatchCommands.Add(ItemExecutor.SupersedeCommand(lease, key));
            }

            if (Queue is { } queue && !dryRun)
            {
                // Raises DOL02 if another worker process took the item's claim over: the item rolls back here.
                var done = new NpgsqlBatchCommand(RunQueue.DoneInTransactionSql);
                done.Parameters.AddWithValue("dataops_run", NpgsqlTypes.NpgsqlDbType.Uuid, runId);
                done.Parameters.AddWithValue("key", NpgsqlTypes.NpgsqlDbType.Text, key);
                queue.Bind(done.Parameters);
                batch.BatchCommands.Add(done);
            }

            // @key and the job's parameters; the dataops_ ones are the runner's own.
            var ledger = new NpgsqlBatchCommand(ledgerSql);
            BackfillSql.Bind(ledger.Parameters, ledgerSql, job.Job.Parameters, key);
            if (!dryRun)
            {
                ledger.Parameters.AddWithValue("dataops_run", runId);
                ledger.Parameters.AddWithValue("dataops_job", job.Job.Name);
            }

            ledger.Parameters.AddWithValue("dataops_keys", NpgsqlTypes.NpgsqlDbType.Jsonb, primaryKeys);
            for (var i = 0; i < job.Capture.Count; i++)
            {
                ledger.Parameters.AddWithValue($"dataops_table_{i}", NpgsqlTypes.NpgsqlDbType.Text, job.Capture[i].QualifiedName);
            }

            batch.BatchCommands.Add(ledger);
            batch.BatchCommands.Add(new NpgsqlBatchCommand(dryRun ? "ROLLBACK" : "COMMIT"));
        }

        return batch;
    }

    /// <summary>
    /// The after-images, verify, the lease check and the ledger row in one statement. dataops.verified
    /// and dataops.lease_lost raise, so the item rolls back; verified is called only when verify is not true (a PL/pgSQL call per item cost about
    /// 5% in pgbench). RETURNING gives the client what it needs for results and the rollback script.
    /// </summary>
    internal static string LedgerStatement(ValidatedJob job)
    {
        var (before, after) = ImageObjects(job);
        return LedgerStore.AppliedInsertOnServer(before, after, job.Job.VerifySql, ItemMarker);
    }

    /// <summary>
    /// A dry run's item end: the after-images and verify (through dataops.verified()) in one SELECT that
    /// returns what the ledger statement's RETURNING would, and writes nothing; the item then rolls back.
    /// </summary>
    internal static string DryRunStatement(ValidatedJob job)
    {
        var (before, after) = ImageObjects(job);
        return $"""
            SELECT @key AS {ItemMarker}, dataops.changed_rows(i.before_image, i.after_image, @dataops_keys) AS rows_changed, i.before_image::text, i.after_image::text, clock_timestamp() - now()
            FROM (SELECT {before} AS before_image, {after} AS after_image OFFSET 0) i
            WHERE CASE WHEN ({job.Job.VerifySql}) IS TRUE THEN true ELSE dataops.verified(({job.Job.VerifySql}), @key) END
            """;
    }

    /// <summary>An item's before- and after-image as jsonb objects: table name (@dataops_table_N), rows.</summary>
    private static (string Before, string After) ImageObjects(ValidatedJob job) => (
        RowImages.FromSettings("before", job.Capture.Count),
        RowImages.ImageObject(job.Capture.Select((t, i) => RowImages.AfterImageSelect(t, i))));

    /// <summary>
    /// A plan's item, after its before-images are locked: true if they still hash to the plan's
    /// fingerprint (dataops.image_hash computes PlanFingerprint.Hash), else dataops.stale() raises.
    /// Binds @key, @dataops_tables (text[]) and @dataops_planned (null for a key the plan lacks).
    /// </summary>
    internal static string PlanCheckStatement(int tables) =>
        $"SELECT CASE WHEN dataops.image_hash(@dataops_tables, ARRAY[{string.Join(", ", Enumerable.Range(0, tables).Select(i => $"current_setting('dataops.before_{i}')::jsonb"))}]::jsonb[]) = @dataops_planned THEN true ELSE dataops.stale(@key) END";
}
