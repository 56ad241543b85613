using Dapper;
using DataOps.Engine.Connections;
using Npgsql;

namespace DataOps.Engine.Backfill;

/// <summary>
/// Every statement on dataops.run and dataops.ledger (Core/0001, 0005, 0007) in one place (the control
/// row of Core/0009 is read here for Get-BackfillRun; its writes are RunControl's and BackfillControl's): the
/// ledger rows an item's transaction writes (as text, since they travel in the item's own batch),
/// the run rows a lease writes, and the reads of runs, the files and undo make. The lease's own
/// table (dataops.job_lease) is JobLease's.
/// </summary>
internal static class LedgerStore
{
    /// <summary>An applied row (alias <c>l</c>) that no undo has restored yet.</summary>
    internal const string NotUndone = "NOT EXISTS (SELECT 1 FROM dataops.ledger u WHERE u.undo_of = l.ledger_id)";

    /// <summary>
    /// The applied row of an item run from the client, written only while the run holds the job's
    /// lease; the images come from the item's transaction-local settings (dataops.before_N, after_N).
    /// Binds @dataops_run, @dataops_job, @key, @dataops_table_N, @rows, @attempts, @seconds, @ms.
    /// </summary>
    internal static string AppliedInsert(int tables) =>
        $"""
        INSERT INTO dataops.ledger (run_id, job_name, item_key, status, before_image, after_image, rows_changed, attempts, started_at, finished_at, duration_ms)
        SELECT @dataops_run, @dataops_job, @key, 'applied', {Jobs.RowImages.FromSettings("before", tables)}, {Jobs.RowImages.FromSettings("after", tables)}, @rows, @attempts, clock_timestamp() - make_interval(secs => @seconds), clock_timestamp(), @ms
        WHERE {JobLease.HeldCondition()}
        """;

    /// <summary>The status of the run <paramref name="runIdSql"/> names, as a scalar subquery (NULL when the run row is gone); for the job lease's takeover checks.</summary>
    internal static string RunStatusOf(string runIdSql) => $"(SELECT r.status FROM dataops.run r WHERE r.run_id = {runIdSql})";

    /// <summary>
    /// The applied row of an item run whole on the server: the images come from the item's
    /// transaction-local settings, verify and the lease are checked in the same statement, and the
    /// row comes back (its first column named <paramref name="marker"/>) for the results and the script.
    /// The images come from a subquery kept whole by OFFSET 0: flattened, the planner copied the
    /// after-image query into each place that reads it (the column and changed_rows), so it ran twice.
    /// </summary>
    internal static string AppliedInsertOnServer(string beforeObject, string afterObject, string verifySql, string marker) =>
        $"""
        INSERT INTO dataops.ledger (run_id, job_name, item_key, status, before_image, after_image, rows_changed, attempts, started_at, finished_at, duration_ms)
        SELECT @dataops_run, @dataops_job, @key, 'applied', i.before_image, i.after_image, dataops.changed_rows(i.before_image, i.after_image, @dataops_keys), 1,
               now(), clock_timestamp(), (extract(epoch FROM clock_timestamp() - now()) * 1000)::integer
        FROM (SELECT {beforeObject} AS before_image, {afterObject} AS after_image OFFSET 0) i
        WHERE CASE WHEN ({verifySql}) IS TRUE THEN true ELSE dataops.verified(({verifySql}), @key) END
          AND {JobLease.HeldCondition()}
        RETURNING item_key AS {marker}, rows_changed, before_image::text, after_image::text, finished_at - started_at
        """;

    /// <summary>
    /// -Reapply: the earlier live application of the item is superseded by this run, in the item's
    /// transaction before its new row, so ledger_applied_once still holds. Binds @dataops_run, @dataops_job, @key.
    /// </summary>
    internal const string Supersede =
        "UPDATE dataops.ledger SET superseded_by = @dataops_run WHERE job_name = @dataops_job AND item_key = @key AND status = 'applied' AND undone_by IS NULL AND superseded_by IS NULL";

    /// <summary>An item an undo restored, in the restore's transaction. Binds @undoRun, @job, @key, @ledgerId, @rows, @ms.</summary>
    internal const string UndoneInsert =
        "INSERT INTO dataops.ledger (run_id, job_name, item_key, status, undo_of, rows_changed, finished_at, duration_ms) VALUES (@undoRun, @job, @key, 'undone', @ledgerId, @rows, now(), @ms)";

    /// <summary>An item an undo left alone because its rows changed since the run. Binds @undoRun, @job, @key, @message.</summary>
    internal const string DriftedInsert =
        "INSERT INTO dataops.ledger (run_id, job_name, item_key, status, error_category, error_message, finished_at) VALUES (@undoRun, @job, @key, 'drifted', 'Drift', @message, now())";

    /// <summary>A run's applied, not yet undone items with their images, in commit order (or newest first). Binds @runId.</summary>
    internal static string LiveApplied(bool newestFirst) =>
        $"""
        SELECT l.ledger_id, l.item_key, coalesce(l.before_image, '{"{}"}')::text, coalesce(l.after_image, '{"{}"}')::text FROM dataops.ledger l
        WHERE l.run_id = @runId AND l.status = 'applied' AND {NotUndone}
        ORDER BY l.ledger_id{(newestFirst ? " DESC" : string.Empty)}
        """;

    /// <summary>
    /// The rollback script's guard (for psql, inside a DO block that declares <c>missing</c>): how many
    /// items the run applied that the script's temp table lacks. The run id is a GUID, so the text is constant.
    /// </summary>
    internal static string ScriptMissingItems(Guid runId) =>
        $"""
          SELECT count(*) INTO missing FROM dataops.ledger l
          WHERE l.run_id = '{runId}' AND l.status = 'applied' AND {NotUndone}
            AND NOT EXISTS (SELECT 1 FROM pg_temp.dataops_rollback r WHERE r.item_key = l.item_key);
        """;

    /// <summary>The rollback script's second check: items the file holds whose application an undo already put back (the script run twice, or after Undo-Backfill).</summary>
    internal static string ScriptUndoneItems(Guid runId) =>
        $"""
          SELECT count(*) INTO undone FROM pg_temp.dataops_rollback r
          WHERE EXISTS (SELECT 1 FROM dataops.ledger l WHERE l.run_id = '{runId}' AND l.status = 'applied' AND l.item_key = r.item_key AND NOT {NotUndone});
        """;

    /// <summary>The rollback script's record of what it restored, so a later run applies those items again.</summary>
    internal static string ScriptMarkUndone(Guid runId) =>
        $"""
        INSERT INTO dataops.ledger (run_id, job_name, item_key, status, undo_of, finished_at)
        SELECT run_id, job_name, item_key, 'undone', ledger_id, now() FROM dataops.ledger l
        WHERE run_id = '{runId}' AND status = 'applied' AND {NotUndone}
          AND EXISTS (SELECT 1 FROM pg_temp.dataops_rollback r WHERE r.item_key = l.item_key);
        """;

    /// <summary>
    /// Keys with a live application for this job: exactly what the unique index ledger_applied_once
    /// guards (Core/0005), so a key this says is not applied can be applied without violating it.
    /// </summary>
    public static async Task<HashSet<string>> AppliedKeysAsync(DataOpsConnection connection, string job, CancellationToken ct)
    {
        await using var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        var keys = await conn.QueryAsync<string>(new CommandDefinition(
            "SELECT item_key FROM dataops.ledger WHERE job_name = @job AND status = 'applied' AND undone_by IS NULL AND superseded_by IS NULL",
            new { job }, cancellationToken: ct)).ConfigureAwait(false);
        return keys.ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>
    /// Where a keyset job's next run starts: the largest last key (the second element of the item key
    /// ["lo","hi"]) of the job's live applied chunks, cast to the key's type <paramref name="keyType"/>
    /// (from the catalog) for the comparison; null when none is applied.
    /// </summary>
    public static Task<(string? After, string? UndoneLo)> KeysetResumeAfterAsync(NpgsqlConnection conn, string job, string keyType, string collate, CancellationToken ct) =>
        conn.QuerySingleAsync<(string?, string?)>(new CommandDefinition(
            $"""
            WITH chunks AS (
                SELECT CAST(item_key::jsonb ->> 0 AS {keyType}){collate} AS lo, CAST(item_key::jsonb ->> 1 AS {keyType}){collate} AS hi, undone_by IS NOT NULL AS undone
                FROM dataops.ledger WHERE job_name = @job AND status = 'applied' AND superseded_by IS NULL AND item_key LIKE '["%'),
            resume AS (SELECT hi FROM chunks WHERE NOT undone ORDER BY hi DESC LIMIT 1)
            SELECT (SELECT hi::text FROM resume),
                   (SELECT c.lo::text FROM chunks c, resume r WHERE c.undone AND c.lo < r.hi ORDER BY c.lo LIMIT 1)
            """,
            new { job }, cancellationToken: ct));

    /// <summary>A failed (or stale) item's row, on a connection of its own: the item's transaction is already rolled back.</summary>
    public static async Task RecordFailureAsync(DataOpsConnection connection, Guid runId, string job, string key, string category, string message, int attempts, TimeSpan elapsed, string status)
    {
        await using var conn = await Database.OpenAsync(connection, CancellationToken.None).ConfigureAwait(false);
        await conn.ExecuteAsync(
            """
            INSERT INTO dataops.ledger (run_id, job_name, item_key, status, error_category, error_message, attempts, finished_at, duration_ms)
            VALUES (@runId, @job, @key, @status, @category, @message, @attempts, clock_timestamp(), @ms)
            """,
            new { runId, job, key, status, category = category.ToString(), message, attempts, ms = (int)elapsed.TotalMilliseconds }).ConfigureAwait(false);
    }

    /// <summary>The run's applied row of one item, if it committed.</summary>
    public static Task<(string Before, string After, int Rows)?> AppliedItemAsync(NpgsqlConnection conn, Guid runId, string key, CancellationToken ct) =>
        conn.QuerySingleOrDefaultAsync<(string Before, string After, int Rows)?>(new CommandDefinition(
            "SELECT before_image::text, after_image::text, rows_changed FROM dataops.ledger WHERE run_id = @runId AND item_key = @key AND status = 'applied'",
            new { runId, key }, cancellationToken: ct));

    /// <summary>The run's applied rows of these keys, by key.</summary>
    public static async Task<Dictionary<string, (string Key, string Before, string After, int Rows, TimeSpan Duration)>> AppliedItemsAsync(
        DataOpsConnection connection, Guid runId, IReadOnlyList<string> keys, CancellationToken ct)
    {
        await using var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        return (await conn.QueryAsync<(string Key, string Before, string After, int Rows, TimeSpan Duration)>(new CommandDefinition(
            """
            SELECT item_key, before_image::text, after_image::text, rows_changed, finished_at - started_at
            FROM dataops.ledger WHERE run_id = @runId AND status = 'applied' AND item_key = ANY(@keys)
            """, new { runId, keys = keys.ToArray() }, cancellationToken: ct)).ConfigureAwait(false)).ToDictionary(r => r.Key, StringComparer.Ordinal);
    }

    /// <summary>The run's applied, failed and stale items except <paramref name="except"/>, with their images, in commit order.</summary>
    public static async Task<List<RunItemRow>> RunItemsExceptAsync(DataOpsConnection connection, Guid runId, string[] except, CancellationToken ct)
    {
        await using var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        return (await conn.QueryAsync<RunItemRow>(new CommandDefinition(
            """
            SELECT item_key AS Key, status AS Status, before_image::text AS Before, after_image::text AS After, rows_changed AS Rows, attempts AS Attempts,
                   duration_ms AS Ms, error_category AS Category, error_message AS Error
            FROM dataops.ledger WHERE run_id = @runId AND status IN ('applied', 'failed', 'stale') AND NOT (item_key = ANY(@except))
            ORDER BY ledger_id
            """, new { runId, except }, cancellationToken: ct)).ConfigureAwait(false)).ToList();
    }

    /// <summary>A recorded run's job, kind, start and output folder, or null.</summary>
    public static Task<RunInfo?> RunAsync(NpgsqlConnection conn, Guid runId, CancellationToken ct) =>
        conn.QuerySingleOrDefaultAsync<RunInfo?>(new CommandDefinition(
            "SELECT job_name AS Job, kind AS Kind, started_at AS StartedAt, output_directory AS OutputDirectory FROM dataops.run WHERE run_id = @runId",
            new { runId }, cancellationToken: ct));

    /// <summary>A run's kind and job, and for an undo run the run it undid: why a run id that is not a backfill run cannot be undone.</summary>
    public static Task<(string Kind, string? Job, string? UndoOf)?> RunKindAsync(NpgsqlConnection conn, Guid runId, CancellationToken ct) =>
        conn.QuerySingleOrDefaultAsync<(string Kind, string? Job, string? UndoOf)?>(new CommandDefinition(
            "SELECT kind, job_name, parameters->>'undoOf' FROM dataops.run WHERE run_id = @runId", new { runId }, cancellationToken: ct));

    /// <summary>The run's items as the ledger has them (applied, failed, stale), in order; no images.</summary>
    public static async Task<IEnumerable<(string Key, string Status, int? Rows, int? Attempts, int? Ms, string? Category, string? Error)>> ItemsAsync(
        DataOpsConnection connection, Guid runId, CancellationToken ct)
    {
        await using var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        return await conn.QueryAsync<(string Key, string Status, int? Rows, int? Attempts, int? Ms, string? Category, string? Error)>(new CommandDefinition(
            """
            SELECT item_key, status, rows_changed, attempts, duration_ms, error_category, error_message FROM dataops.ledger
            WHERE run_id = @runId AND status IN ('applied', 'failed', 'stale') ORDER BY ledger_id
            """, new { runId }, cancellationToken: ct)).ConfigureAwait(false);
    }

    /// <summary>
    /// One run's ledger rows, in commit order, for Get-BackfillItem: only <paramref name="statuses"/>
    /// (ledger names; null: all), only keys matching one of <paramref name="keysLike"/> (ILIKE patterns;
    /// null: all), the images only when asked (their TOASTed values are not read otherwise). Streamed:
    /// a run can hold many items.
    /// </summary>
    public static IAsyncEnumerable<LedgerItemRow> ItemRowsAsync(NpgsqlConnection conn, Guid runId, string[]? statuses, string[]? keysLike, bool images) =>
        conn.QueryUnbufferedAsync<LedgerItemRow>(
            """
            SELECT l.ledger_id AS LedgerId, l.job_name AS Job, l.item_key AS Key, l.status AS Status, l.rows_changed AS RowsChanged, l.attempts AS Attempts,
                   l.duration_ms AS DurationMs, l.started_at AS StartedAt, l.finished_at AS FinishedAt, l.error_category AS ErrorCategory, l.error_message AS Error,
                   u.run_id AS UndoneBy, l.superseded_by AS SupersededBy,
                   CASE WHEN @images THEN l.before_image::text END AS BeforeImage, CASE WHEN @images THEN l.after_image::text END AS AfterImage
            FROM dataops.ledger l LEFT JOIN dataops.ledger u ON u.ledger_id = l.undone_by
            WHERE l.run_id = @runId AND (@statuses::text[] IS NULL OR l.status = ANY(@statuses)) AND (@keysLike::text[] IS NULL OR l.item_key ILIKE ANY(@keysLike))
            ORDER BY l.ledger_id
            """, new { runId, statuses, keysLike, images });

    /// <summary>What an undo of a backfill run would do (null: no such backfill run).</summary>
    public static Task<UndoRunner.UndoCheck?> UndoCheckAsync(NpgsqlConnection conn, Guid runId, CancellationToken ct) =>
        conn.QuerySingleOrDefaultAsync<UndoRunner.UndoCheck?>(new CommandDefinition(
            $"""
            SELECT r.job_name AS Job, count(l.ledger_id) AS Applied,
                   count(l.ledger_id) FILTER (WHERE {NotUndone}) AS Remaining,
                   (SELECT string_agg(DISTINCT u.run_id::text || ' (' || to_char(u.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || 'Z)', ', ')
                    FROM dataops.ledger u JOIN dataops.ledger a ON a.ledger_id = u.undo_of WHERE a.run_id = r.run_id) AS UndoneBy
            FROM dataops.run r LEFT JOIN dataops.ledger l ON l.run_id = r.run_id AND l.status = 'applied'
            WHERE r.run_id = @runId AND r.kind = 'backfill'
            GROUP BY r.run_id, r.job_name
            """, new { runId }, cancellationToken: ct));

    /// <summary>Run rows with their ledger counts and lease, newest first (Get-BackfillRun).</summary>
    /// <remarks><paramref name="jobLike"/>: an ILIKE pattern on the job name (backslash escapes), to narrow a wildcard lookup in the database.</remarks>
    public static async Task<IEnumerable<RunRow>> RunsAsync(DataOpsConnection connection, string? job, Guid? runId, CancellationToken ct, string? jobLike = null)
    {
        await using var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        return await conn.QueryAsync<RunRow>(new CommandDefinition(
            """
            SELECT r.run_id AS RunId, r.kind AS Kind, r.job_name AS Job, r.status AS Status, r.started_at AS StartedAt, r.finished_at AS FinishedAt,
                   r.output_directory AS OutputDirectory,
                   count(*) FILTER (WHERE l.status = 'applied') AS Applied, count(*) FILTER (WHERE l.status = 'failed') AS Failed,
                   count(*) FILTER (WHERE l.status = 'undone') AS Undone,
                   coalesce((r.summary->>'skipped')::bigint, 0) AS Skipped, r.summary->>'reason' AS Reason,
                   jl.run_id IS NOT NULL AS HasLease, coalesce(jl.expires_at < clock_timestamp(), false) AS LeaseExpired, jl.expires_at AS LeaseExpiresAt,
                   jl.host_name AS LeaseHost, jl.process_id AS LeaseProcess, jl.process_started_at AS LeaseProcessStartedAt,
                   rc.state AS LiveState, rc.state_reason AS LiveStateReason, rc.state_at AS LiveStateAt,
                   (r.summary->'throttled')::text AS Throttled, (r.summary->'signals')::text AS Signals,
                   (SELECT sum(m.workers) FROM dataops.run_member m WHERE m.run_id = r.run_id AND m.left_at IS NULL AND m.expires_at >= clock_timestamp())::int AS Workers,
                   (SELECT count(*) FROM dataops.run_member m WHERE m.run_id = r.run_id AND m.left_at IS NULL AND m.expires_at >= clock_timestamp())::int AS WorkerProcesses,
                   (SELECT q.items FROM dataops.run_queue q WHERE q.run_id = r.run_id) AS QueuedItems
            FROM dataops.run r LEFT JOIN dataops.ledger l ON l.run_id = r.run_id
                 LEFT JOIN dataops.job_lease jl ON jl.job_name = r.job_name AND jl.run_id = r.run_id
                 LEFT JOIN dataops.run_control rc ON rc.run_id = r.run_id
            WHERE r.kind IN ('backfill', 'dryrun', 'undo') AND (@job::text IS NULL OR r.job_name = @job) AND (@jobLike::text IS NULL OR r.job_name ILIKE @jobLike) AND (@runId::uuid IS NULL OR r.run_id = @runId)
            GROUP BY r.run_id, jl.job_name, rc.run_id ORDER BY r.started_at DESC
            """, new { job, jobLike, runId }, cancellationToken: ct)).ConfigureAwait(false);
    }

    /// <summary>A new run's row, in the transaction that takes the job's lease.</summary>
    public static Task InsertRunAsync(NpgsqlConnection conn, NpgsqlTransaction tx, Guid runId, string kind, string job, string parameters, string? outputDirectory, CancellationToken ct) =>
        conn.ExecuteAsync(new CommandDefinition(
            "INSERT INTO dataops.run (run_id, kind, job_name, host_name, user_name, parameters, output_directory) VALUES (@runId, @kind, @job, @host, @user, @parameters::jsonb, @outputDirectory)",
            new { runId, kind, job, host = Environment.MachineName, user = Environment.UserName, parameters, outputDirectory }, tx, cancellationToken: ct));

    /// <summary>
    /// Runs of the job still 'running' that hold no lease now (<paramref name="runId"/> took it): they
    /// ended without recording an outcome. Marked abandoned, with why, and returned.
    /// </summary>
    public static async Task<List<AbandonedRun>> MarkAbandonedAsync(NpgsqlConnection conn, NpgsqlTransaction tx, string job, Guid runId, Guid? takeFrom, string why, CancellationToken ct) =>
        (await conn.QueryAsync<AbandonedRun>(new CommandDefinition(
            """
            UPDATE dataops.run SET status = 'abandoned', finished_at = coalesce(finished_at, now()),
                   summary = coalesce(summary, '{}'::jsonb) || jsonb_build_object('reason',
                       'abandoned: it ended without recording an outcome (' || CASE WHEN run_id = @takeFrom THEN @why ELSE 'it no longer held the job''s lease' END
                       || '); run ' || @runId::text || ' took the job over')
            WHERE job_name = @job AND kind IN ('backfill', 'dryrun', 'undo') AND status = 'running' AND run_id <> @runId
            RETURNING run_id AS RunId, kind AS Kind, output_directory AS OutputDirectory, started_at AS StartedAt, summary->>'reason' AS Reason, parameters->>'jobFile' AS JobFile
            """, new { job, runId, takeFrom, why }, tx, cancellationToken: ct)).ConfigureAwait(false)).ToList();

    /// <summary>How a run ended, in the transaction that releases its lease.</summary>
    public static Task EndRunAsync(NpgsqlConnection conn, NpgsqlTransaction tx, Guid runId, string status, string summary) =>
        conn.ExecuteAsync(
            "UPDATE dataops.run SET status = @status, finished_at = now(), summary = @summary::jsonb WHERE run_id = @runId",
            new { status, summary, runId }, tx);

    internal sealed record LedgerItemRow(
        long LedgerId, string Job, string Key, string Status, int? RowsChanged, int? Attempts, int? DurationMs, DateTime StartedAt, DateTime? FinishedAt,
        string? ErrorCategory, string? Error, Guid? UndoneBy, Guid? SupersededBy, string? BeforeImage, string? AfterImage);

    internal sealed record RunItemRow(string Key, string Status, string? Before, string? After, int? Rows, int? Attempts, int? Ms, string? Category, string? Error);

    internal sealed record RunInfo(string Job, string Kind, DateTime StartedAt, string? OutputDirectory);

    internal sealed record RunRow(
        Guid RunId, string Kind, string Job, string Status, DateTime StartedAt, DateTime? FinishedAt, string? OutputDirectory, long Applied, long Failed, long Undone, long Skipped,
        string? Reason, bool HasLease, bool LeaseExpired, DateTime? LeaseExpiresAt, string? LeaseHost, int? LeaseProcess, DateTime? LeaseProcessStartedAt,
        string? LiveState, string? LiveStateReason, DateTime? LiveStateAt, string? Throttled, string? Signals, int? Workers, int? WorkerProcesses, int? QueuedItems);
}
