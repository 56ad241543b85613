using System.Diagnostics;
using System.Text.Json;
using Dapper;
using DataOps.Engine.Connections;
using DataOps.Engine.Logging;
using DataOps.Engine.Schema;
using Npgsql;
using NpgsqlTypes;

namespace DataOps.Engine.Seeding;

/// <summary>
/// Loads script_execution at close to bulk-load speed. One transaction: lock the table, make the
/// prerequisites, reserve an id range, drop the foreign keys (and, for a load larger than the
/// table, its secondary indexes and primary key), stream rows by binary COPY (frozen into an empty
/// table), re-add everything validated, record the run, commit. The validations are the proof that
/// no row breaks a constraint; -Verify adds a count by query. Any failure or Ctrl+C rolls all of it
/// back; readers wait on the lock and never see a half-loaded table.
/// </summary>
public static class ScriptExecutionSeeder
{
    public const string ReferencePrefix = "dataops-seed-script-";
    private const string Table = "script_execution";
    private const int ProgressEvery = 1 << 15;

    private static readonly (string Column, string Type, bool Nullable)[] V97Columns =
    [
        ("id", "bigint", false),
        ("script_reference_id", "bigint", false),
        ("script_version_id", "bigint", false),
        ("schedule_id", "bigint", true),
        ("planned", "timestamp with time zone", true),
        ("triggering_event_id", "bigint", true),
        ("created_at", "timestamp with time zone", false),
    ];

    /// <summary>Checks the options alone; throws before anything touches the database.</summary>
    public static (DateTimeOffset Since, DateTimeOffset Until, long Scheduled) Validate(ScriptExecutionSeedOptions o, DateTimeOffset now)
    {
        if (o.Count is <= 0 or > ScriptExecutionSeedOptions.MaxCount)
        {
            throw new DataOpsException("SeedCountInvalid", DataOpsErrorKind.InvalidArgument, $"-Count must be from 1 to {ScriptExecutionSeedOptions.MaxCount:N0}; got {o.Count:N0}.", o.Count);
        }

        if (double.IsNaN(o.ScheduledRatio) || o.ScheduledRatio is < 0 or > 1)
        {
            throw new DataOpsException("SeedRatioInvalid", DataOpsErrorKind.InvalidArgument,
                $"-ScheduledRatio must be between 0 and 1 (the share of scheduled rows); got {o.ScheduledRatio}.", o.ScheduledRatio);
        }

        var until = o.Until ?? now;
        var since = o.Since ?? until.AddDays(-365);
        if (since >= until)
        {
            throw new DataOpsException("SeedWindowInvalid", DataOpsErrorKind.InvalidArgument,
                $"-Since ({since:u}) must be before -Until ({until:u}).", $"{since:u} >= {until:u}");
        }

        if ((until - since).TotalMilliseconds < 10)
        {
            throw new DataOpsException("SeedWindowInvalid", DataOpsErrorKind.InvalidArgument,
                $"The window from {since:u} to {until:u} is too short; give it at least a second.", $"{since:u}..{until:u}");
        }

        foreach (var (name, value) in new[] { ("ScriptReferences", o.ScriptReferences), ("ScriptVersions", o.ScriptVersions), ("TaskSchedules", o.TaskSchedules), ("EventTriggers", o.EventTriggers) })
        {
            if (value < 1)
            {
                throw new DataOpsException("SeedParentCountInvalid", DataOpsErrorKind.InvalidArgument, $"-{name} must be at least 1; got {value}.", value);
            }
        }

        var scheduled = (long)Math.Round(o.Count * o.ScheduledRatio, MidpointRounding.AwayFromZero);
        return (since, until, scheduled);
    }

    public static async Task<ScriptExecutionSeedResult> RunAsync(DataOpsConnection connection, ScriptExecutionSeedOptions options, RunLog log, IOperationObserver observer, CancellationToken ct)
    {
        var (since, until, scheduledTotal) = Validate(options, DateTimeOffset.UtcNow);
        var seed = options.Seed ?? Random.Shared.Next();
        var start = Stopwatch.StartNew();
        await EnsureSchemaAsync(connection, ct).ConfigureAwait(false);
        var watch = Stopwatch.StartNew();
        // The session that loads the rows also records the run (committed before the load's transaction begins), so
        // a run whose session is gone without an outcome (a server restart, a killed client) is seen as abandoned
        // (AbandonedCondition): its rows went with its transaction.
        await using var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        var seedRunId = await RecordStartAsync(conn, options, seed, since, until, ct).ConfigureAwait(false);
        log.Information("Seed run {SeedRunId}: {Count} rows, {Scheduled} scheduled, seed {Seed}, window {Since:u} to {Until:u}",
            seedRunId, options.Count, scheduledTotal, seed, since, until);
        log.Information("Checking the schema and recording the run took {Ms} ms", start.ElapsedMilliseconds);

        try
        {
            var result = await LoadAsync(conn, connection, options, seedRunId, seed, since, until, scheduledTotal, log, observer, watch, ct).ConfigureAwait(false);
            log.Information("Seed run {SeedRunId} committed {Count} rows in {ElapsedMs} ms ({RowsPerSecond:0} rows/s)",
                seedRunId, result.Count, (long)result.Elapsed.TotalMilliseconds, result.RowsPerSecond);
            return result;
        }
        catch (Exception ex)
        {
            var cancelled = ex is OperationCanceledException;
            log.Error(cancelled ? null : ex, "Seed run {SeedRunId} {Outcome}; every change of the run was rolled back", seedRunId, cancelled ? "was cancelled" : "failed");
            await RecordEndAsync(connection, seedRunId, cancelled ? "cancelled" : "failed", ex.Message).ConfigureAwait(false);
            if (ex is DataOpsException or OperationCanceledException)
            {
                throw;
            }

            throw Database.Translate(ex, connection);
        }
        finally
        {
            observer.Progress(new OperationProgress("Seeding script_execution", "Done", Completed: true));
        }
    }

    private static async Task<ScriptExecutionSeedResult> LoadAsync(
        NpgsqlConnection conn, DataOpsConnection connection, ScriptExecutionSeedOptions options, long seedRunId, int seed, DateTimeOffset since, DateTimeOffset until,
        long scheduledTotal, RunLog log, IOperationObserver observer, Stopwatch watch, CancellationToken ct)
    {
        await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
        await conn.ExecuteAsync(new CommandDefinition(
            $"SET LOCAL synchronous_commit = off; SET LOCAL maintenance_work_mem = '512MB'; SET LOCAL lock_timeout = '30s'; LOCK TABLE {Table} IN ACCESS EXCLUSIVE MODE",
            transaction: tx, cancellationToken: ct)).ConfigureAwait(false);

        var parents = await EnsurePrerequisitesAsync(conn, tx, options, log, ct).ConfigureAwait(false);

        // Everything the plan needs, read in one round trip (each round trip is a wake-up of both processes; on a
        // fresh session they were ~30 ms of the fixed cost). Reserve ids: nobody else can insert while we hold the
        // lock, so the range is ours alone.
        long firstId, maxId;
        double existingRows;
        bool referenced, emptyWithoutTruncateTrigger;
        List<(string Name, string Definition)> foreignKeys, allIndexes, primaryKeys;
        await using (var plan = await conn.QueryMultipleAsync(new CommandDefinition(
            $"""
            SELECT nextval(pg_get_serial_sequence('{Table}', 'id'));
            SELECT seqmax FROM pg_sequence WHERE seqrelid = pg_get_serial_sequence('{Table}', 'id')::regclass;
            SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = '{Table}'::regclass AND contype = 'f' ORDER BY conname;
            SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = '{Table}'::regclass;
            SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE confrelid = '{Table}'::regclass AND contype = 'f');
            SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
            WHERE x.indrelid = '{Table}'::regclass AND NOT x.indisprimary AND NOT x.indisunique
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) ORDER BY 1;
            SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_index x ON x.indexrelid = c.conindid
            WHERE c.conrelid = '{Table}'::regclass AND c.contype = 'p' AND NOT x.indisreplident AND NOT x.indisclustered;
            SELECT NOT EXISTS (SELECT 1 FROM {Table})
               AND NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = '{Table}'::regclass AND NOT tgisinternal AND (tgtype & 32) <> 0)
            """, transaction: tx, cancellationToken: ct)).ConfigureAwait(false))
        {
            firstId = await plan.ReadSingleAsync<long>().ConfigureAwait(false);
            maxId = await plan.ReadSingleAsync<long>().ConfigureAwait(false);
            foreignKeys = (await plan.ReadAsync<(string Name, string Definition)>().ConfigureAwait(false)).ToList();
            existingRows = await plan.ReadSingleAsync<double>().ConfigureAwait(false);
            // A table that other tables' foreign keys point at keeps its primary key (they depend on it) and is never truncated.
            referenced = await plan.ReadSingleAsync<bool>().ConfigureAwait(false);
            allIndexes = (await plan.ReadAsync<(string Name, string Definition)>().ConfigureAwait(false)).ToList();
            primaryKeys = (await plan.ReadAsync<(string Name, string Definition)>().ConfigureAwait(false)).ToList();
            emptyWithoutTruncateTrigger = await plan.ReadSingleAsync<bool>().ConfigureAwait(false);
        }

        // setval is not undone by a rollback: check the range fits before moving the sequence, or a
        // failed seed would leave it exhausted for every later insert.
        if (options.Count - 1 > maxId - firstId)
        {
            throw new DataOpsException("SeedIdRangeExhausted", DataOpsErrorKind.InvalidArgument,
                $"{Table}.id has room for {maxId - firstId + 1:N0} more rows (next id {firstId:N0}, maximum {maxId:N0}); -Count {options.Count:N0} does not fit. Nothing was written.", options.Count);
        }

        var lastId = firstId + options.Count - 1;

        // pg_restore's order: data first, then indexes and constraints, each checked in one pass.
        // Rebuilding an index costs a sort of the whole table; maintaining it costs a random insert per row.
        var rebuild = options.Count * 4 >= existingRows;
        var indexes = rebuild ? allIndexes : [];
        // The primary key too: kept during COPY it costs an index insert and a WAL record per row (measured on a
        // default-settings cluster: 119 MB of WAL for the COPY with it, 53 MB without; backend CPU 1.29 s against
        // 0.56 s for the COPY plus 0.47 s to rebuild it). Kept when it is also the replica identity or the cluster index.
        (string Name, string Definition)? primaryKey = rebuild && !referenced && primaryKeys.Count == 1 ? primaryKeys[0] : null;
        // An empty table is truncated (a no-op under our lock) so COPY may write the rows frozen and their pages
        // all-visible, as pgbench -i does: every later scan of the load then skips the per-row visibility check
        // (backend CPU of the four FK validations 0.70 s -> 0.31 s). Not when a TRUNCATE trigger would fire.
        var freeze = !referenced && emptyWithoutTruncateTrigger;

        // The sequence, the drops and the TRUNCATE in one round trip.
        var prepare = new List<string> { $"SELECT setval(pg_get_serial_sequence('{Table}', 'id'), {lastId})" };
        prepare.AddRange(foreignKeys.Select(fk => $"ALTER TABLE {Table} DROP CONSTRAINT {Quote(fk.Name)}"));
        if (primaryKey is { } pk)
        {
            prepare.Add($"ALTER TABLE {Table} DROP CONSTRAINT {Quote(pk.Name)}");
        }

        prepare.AddRange(indexes.Select(index => $"DROP INDEX {Quote(index.Name)}"));
        if (freeze)
        {
            prepare.Add($"TRUNCATE {Table}");
        }

        await conn.ExecuteAsync(new CommandDefinition(string.Join(";\n", prepare), transaction: tx, cancellationToken: ct)).ConfigureAwait(false);

        log.Information("Dropped {ForeignKeys} foreign keys, {PrimaryKey} primary key and {Indexes} indexes for the load; ids {FirstId}..{LastId}; rows written frozen: {Freeze}",
            foreignKeys.Count, primaryKey is null ? 0 : 1, indexes.Count, firstId, lastId, freeze);

        var sinceMicros = (since.UtcTicks - DateTime.UnixEpoch.Ticks) / 10;
        var untilMicros = (until.UtcTicks - DateTime.UnixEpoch.Ticks) / 10;
        var generator = new SeedRowGenerator(options.Count, scheduledTotal, seed, sinceMicros, untilMicros, parents);
        log.Information("Locking, prerequisites and drops took {Ms} ms", watch.ElapsedMilliseconds);
        var phase = Stopwatch.StartNew();
        await CopyAsync(conn, generator, firstId, options.Count, freeze, observer, watch, ct).ConfigureAwait(false);
        log.Information("COPY of {Count} rows took {Ms} ms", options.Count, phase.ElapsedMilliseconds);
        phase.Restart();

        observer.Progress(new OperationProgress("Seeding script_execution", "Re-adding indexes and validating foreign keys", 99));
        try
        {
            if (primaryKey is { } key)
            {
                // Serial: the ids arrive sorted, so one process builds it faster than a parallel build merging
                // workers' runs (default-settings cluster, 2 cores, 1M rows: 0.47-0.51 s serial, 0.57-0.60 s with 2
                // workers). The other indexes keep the server's max_parallel_maintenance_workers (0.36-0.43 s each
                // with 2 workers, 0.55-0.63 s serial).
                await conn.ExecuteAsync(new CommandDefinition(
                    $"SET LOCAL max_parallel_maintenance_workers = 0; ALTER TABLE {Table} ADD CONSTRAINT {Quote(key.Name)} {key.Definition}; SET LOCAL max_parallel_maintenance_workers TO DEFAULT",
                    transaction: tx, commandTimeout: 0, cancellationToken: ct)).ConfigureAwait(false);
                log.Information("Rebuilding the primary key took {Ms} ms", phase.ElapsedMilliseconds);
                phase.Restart();
            }

            foreach (var index in indexes)
            {
                await conn.ExecuteAsync(new CommandDefinition(index.Definition, transaction: tx, commandTimeout: 0, cancellationToken: ct)).ConfigureAwait(false);
            }

            log.Information("Rebuilding {Indexes} indexes took {Ms} ms", indexes.Count, phase.ElapsedMilliseconds);
            phase.Restart();
            if (foreignKeys.Count > 0)
            {
                var add = string.Join(", ", foreignKeys.Select(fk => $"ADD CONSTRAINT {Quote(fk.Name)} {fk.Definition}"));
                await conn.ExecuteAsync(new CommandDefinition($"ALTER TABLE {Table} {add}", transaction: tx, commandTimeout: 0, cancellationToken: ct)).ConfigureAwait(false);
            }
        }
        catch (PostgresException pg) when (pg.SqlState.StartsWith("23", StringComparison.Ordinal))
        {
            // The validation itself found a row that breaks a constraint (23503 foreign key, 23505 primary key).
            throw new DataOpsException("SeedConstraintViolation", DataOpsErrorKind.InvalidData,
                $"A seeded row breaks {pg.ConstraintName ?? "a constraint"} of {Table} ({pg.SqlState}: {pg.MessageText}{(pg.Detail is { Length: > 0 } d ? " " + d : string.Empty)}); the seed was rolled back.",
                pg.ConstraintName ?? pg.SqlState, pg)
            { RecommendedAction = $"Look for what changes rows as they are written to {Table} (a trigger or rule), then run New-ScriptExecutionSeed again." };
        }

        log.Information("Re-adding and validating {ForeignKeys} foreign keys took {Ms} ms", foreignKeys.Count, phase.ElapsedMilliseconds);
        phase.Restart();

        // Every foreign key was just added with validation and chk_execution_source checked each copied row, so
        // no violating row can be in the table: the count below repeats that proof at the cost of another scan of
        // the load (0.3 s per million rows). It runs on -Verify, and when a foreign key was defined NOT VALID
        // (re-added as it was, it checks no existing row).
        var notValidated = foreignKeys.Where(fk => fk.Definition.EndsWith(" NOT VALID", StringComparison.Ordinal)).Select(fk => fk.Name).ToList();
        long violations = 0;
        if (options.Verify || notValidated.Count > 0)
        {
            violations = await CountViolationsAsync(conn, tx, firstId, lastId, ct).ConfigureAwait(false);
            log.Information("Violation count ({Reason}) found {Violations} in {Ms} ms",
                options.Verify ? "-Verify" : "NOT VALID foreign keys " + string.Join(", ", notValidated), violations, phase.ElapsedMilliseconds);
            if (violations != 0)
            {
                throw new DataOpsException("SeedConstraintViolation", DataOpsErrorKind.InvalidData,
                    $"{violations} seeded rows break chk_execution_source or a foreign key of {Table}; the seed was rolled back.", violations)
                { RecommendedAction = $"Look for what changes rows as they are written to {Table} (a trigger or rule), then run New-ScriptExecutionSeed again." };
            }
        }

        phase.Restart();
        await conn.ExecuteAsync(new CommandDefinition(
            """
            UPDATE dataops.seed_run SET status = 'completed', finished_at = clock_timestamp(), inserted_count = @count,
                   first_id = @firstId, last_id = @lastId, scheduled_count = @scheduled, triggered_count = @triggered
            WHERE seed_run_id = @seedRunId
            """,
            new { count = options.Count, firstId, lastId, scheduled = scheduledTotal, triggered = options.Count - scheduledTotal, seedRunId }, tx, cancellationToken: ct)).ConfigureAwait(false);
        await tx.CommitAsync(ct).ConfigureAwait(false);
        log.Information("Recording the outcome and committing took {Ms} ms", phase.ElapsedMilliseconds);

        observer.Progress(new OperationProgress("Seeding script_execution", "ANALYZE", 100));
        phase.Restart();
        await conn.ExecuteAsync(new CommandDefinition($"ANALYZE {Table}", commandTimeout: 0, cancellationToken: CancellationToken.None)).ConfigureAwait(false);
        log.Information("ANALYZE took {Ms} ms", phase.ElapsedMilliseconds);
        watch.Stop();

        return new ScriptExecutionSeedResult
        {
            SeedRunId = seedRunId,
            Count = options.Count,
            Scheduled = scheduledTotal,
            Triggered = options.Count - scheduledTotal,
            ConstraintViolations = violations,
            Elapsed = watch.Elapsed,
            RowsPerSecond = options.Count / Math.Max(watch.Elapsed.TotalSeconds, 1e-6),
            Seed = seed,
            FirstId = firstId,
            LastId = lastId,
            Since = since,
            Until = until,
            Database = connection.ToString(),
        };
    }

    /// <summary>Rows of the id range that break chk_execution_source (as V97 defines it) or a foreign key, counted by query.</summary>
    private static Task<long> CountViolationsAsync(NpgsqlConnection conn, NpgsqlTransaction tx, long firstId, long lastId, CancellationToken ct) =>
        conn.ExecuteScalarAsync<long>(new CommandDefinition(
            $"""
            SELECT count(*) FROM {Table} e
            LEFT JOIN script_reference r ON r.id = e.script_reference_id
            LEFT JOIN script_version v ON v.id = e.script_version_id
            LEFT JOIN task_schedule s ON s.id = e.schedule_id
            LEFT JOIN event_trigger t ON t.id = e.triggering_event_id
            WHERE e.id BETWEEN @firstId AND @lastId
              AND (NOT ((e.schedule_id IS NOT NULL AND e.triggering_event_id IS NULL) OR (e.schedule_id IS NULL AND e.triggering_event_id IS NOT NULL))
                   OR r.id IS NULL OR v.id IS NULL
                   OR (e.schedule_id IS NOT NULL AND s.id IS NULL)
                   OR (e.triggering_event_id IS NOT NULL AND t.id IS NULL))
            """, new { firstId, lastId }, tx, commandTimeout: 0, cancellationToken: ct));

    private static async Task CopyAsync(NpgsqlConnection conn, SeedRowGenerator generator, long firstId, long count, bool freeze, IOperationObserver observer, Stopwatch watch, CancellationToken ct)
    {
        var raw = await conn.BeginRawBinaryCopyAsync(
            $"COPY {Table} (id, script_reference_id, script_version_id, schedule_id, planned, triggering_event_id, created_at) FROM STDIN (FORMAT BINARY{(freeze ? ", FREEZE" : string.Empty)})", ct).ConfigureAwait(false);
        try
        {
            await Task.Run(() => BinaryCopyWriter.WriteRows(raw, generator, firstId, count, observer, watch, ct), ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException && (conn.FullState.HasFlag(System.Data.ConnectionState.Broken) || conn.State != System.Data.ConnectionState.Open))
        {
            // The server ended the session (a restart, a crash, pg_terminate_backend) or the network went:
            // the COPY stream reports only that it is gone; say what happened instead.
            throw new DataOpsException("SeedConnectionLost", DataOpsErrorKind.ConnectionError,
                $"The connection to the database was lost while loading rows ({ex.GetType().Name}: {ex.Message}): the server restarted or ended the session, or the network failed. " +
                "Every row of this seed run was rolled back with its transaction; run New-ScriptExecutionSeed again when the database is reachable.",
                null, ex);
        }
        catch
        {
            await raw.CancelAsync().ConfigureAwait(false);
            await raw.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        await raw.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Creates the missing prerequisites (named dataops-seed-script-N) and returns the ones to use.</summary>
    private static async Task<SeedParents> EnsurePrerequisitesAsync(NpgsqlConnection conn, NpgsqlTransaction tx, ScriptExecutionSeedOptions o, RunLog log, CancellationToken ct)
    {
        // One round trip: the references, then each parent table topped up to its count (round-robin over the
        // references, numbered on from the rows already there), then what to use. The statements run in order
        // in the transaction, so each sees the rows the ones before it added.
        const string references = "(SELECT array_agg(id ORDER BY id) FROM (SELECT id FROM script_reference WHERE name LIKE @pattern ORDER BY id LIMIT @refs) r)";
        static string TopUp(string table, string wanted, string columns, string values) =>
            $"""
            INSERT INTO {table} (script_reference_id, {columns})
            SELECT refs.a[n % cardinality(refs.a) + 1], {values}
            FROM (SELECT {references} AS a) refs,
                 LATERAL generate_series((SELECT least(count(*), {wanted})::int FROM {table} WHERE script_reference_id = ANY(refs.a)), {wanted} - 1) n
            ORDER BY n
            """;
        static string Existing(string table, string wanted) =>
            $"SELECT id, script_reference_id FROM {table} WHERE script_reference_id = ANY({references}::bigint[]) ORDER BY id LIMIT {wanted}";

        var sql = string.Join(";\n",
            """
            WITH wanted AS (SELECT @prefix || g AS name FROM generate_series(1, @refs) g),
                 added AS (INSERT INTO script_reference (name, description)
                           SELECT name, 'Created by New-ScriptExecutionSeed' FROM wanted
                           WHERE NOT EXISTS (SELECT 1 FROM script_reference r WHERE r.name = wanted.name)
                           RETURNING 1)
            SELECT count(*) FROM added
            """,
            TopUp("script_version", "@versions", "version, content", "'seed-' || n, '-- seeded'"),
            TopUp("task_schedule", "@schedules", "robot_id, cron", "n, (n % 60) || ' * * * *'"),
            TopUp("event_trigger", "@triggers", "robot_id, event_type", "n, 'seed-event-' || (n % 7)"),
            "SELECT id FROM script_reference WHERE name LIKE @pattern ORDER BY id LIMIT @refs",
            Existing("script_version", "@versions"),
            Existing("task_schedule", "@schedules"),
            Existing("event_trigger", "@triggers"));

        long created;
        long[] referenceIds;
        List<(long Id, long ReferenceId)> versions, schedules, triggers;
        await using (var grid = await conn.QueryMultipleAsync(new CommandDefinition(sql,
            new { prefix = ReferencePrefix, pattern = ReferencePrefix + "%", refs = o.ScriptReferences, versions = o.ScriptVersions, schedules = o.TaskSchedules, triggers = o.EventTriggers },
            tx, cancellationToken: ct)).ConfigureAwait(false))
        {
            created = await grid.ReadSingleAsync<long>().ConfigureAwait(false);
            referenceIds = (await grid.ReadAsync<long>().ConfigureAwait(false)).ToArray();
            versions = (await grid.ReadAsync<(long, long)>().ConfigureAwait(false)).ToList();
            schedules = (await grid.ReadAsync<(long, long)>().ConfigureAwait(false)).ToList();
            triggers = (await grid.ReadAsync<(long, long)>().ConfigureAwait(false)).ToList();
        }

        var versionsByReference = versions.GroupBy(v => v.ReferenceId).ToDictionary(g => g.Key, g => g.Select(v => v.Id).ToArray());
        foreach (var r in referenceIds.Where(r => !versionsByReference.ContainsKey(r)))
        {
            // Fewer versions than references: a reference without its own version gets one, so every row is consistent.
            var id = await conn.ExecuteScalarAsync<long>(new CommandDefinition(
                "INSERT INTO script_version (script_reference_id, version, content) VALUES (@r, 'seed-extra', '-- seeded') RETURNING id", new { r }, tx, cancellationToken: ct)).ConfigureAwait(false);
            versionsByReference[r] = [id];
        }

        log.Information("Prerequisites: {References} references ({Created} new), {Versions} versions, {Schedules} schedules, {Triggers} triggers",
            referenceIds.Length, created, versions.Count, schedules.Count, triggers.Count);
        return new SeedParents(schedules, triggers, versionsByReference);
    }

    /// <summary>Core and ScriptExecution must be installed and script_execution must have its V97 shape.</summary>
    internal static async Task EnsureSchemaAsync(DataOpsConnection connection, CancellationToken ct)
    {
        // Core must be installed by us; script_execution may also be an application's own V97 table.
        var installed = await SchemaInstaller.InstalledComponentsAsync(connection, ct).ConfigureAwait(false);
        await using var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        bool tableExists, hasCheck;
        Dictionary<string, (string Column, string Type, string Nullable, bool HasDefault)> columns;
        await using (var shape = await conn.QueryMultipleAsync(new CommandDefinition(
            $"""
            SELECT to_regclass('{Table}') IS NOT NULL;
            SELECT column_name, data_type, is_nullable, column_default IS NOT NULL FROM information_schema.columns WHERE table_name = @Table AND table_schema = current_schema();
            SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass('{Table}') AND conname = 'chk_execution_source')
            """, new { Table }, cancellationToken: ct)).ConfigureAwait(false))
        {
            tableExists = await shape.ReadSingleAsync<bool>().ConfigureAwait(false);
            columns = (await shape.ReadAsync<(string Column, string Type, string Nullable, bool HasDefault)>().ConfigureAwait(false)).ToDictionary(c => c.Column);
            hasCheck = await shape.ReadSingleAsync<bool>().ConfigureAwait(false);
        }

        var missing = new List<SchemaComponent>();
        if (!installed.Contains(SchemaComponent.Core))
        {
            missing.Add(SchemaComponent.Core);
        }

        if (!tableExists)
        {
            missing.Add(SchemaComponent.ScriptExecution);
        }

        if (missing.Count > 0)
        {
            throw SchemaInstaller.Missing(connection, missing);
        }

        var problems = new List<string>();
        foreach (var (column, type, nullable) in V97Columns)
        {
            if (!columns.TryGetValue(column, out var actual))
            {
                problems.Add($"column {column} is missing");
            }
            else if (actual.Type != type || (actual.Nullable == "YES") != nullable)
            {
                problems.Add($"column {column} is {actual.Type} {(actual.Nullable == "YES" ? "NULL" : "NOT NULL")}, expected {type} {(nullable ? "NULL" : "NOT NULL")}");
            }
        }

        foreach (var extra in columns.Values.Where(c => V97Columns.All(v => v.Column != c.Column) && c.Nullable == "NO" && !c.HasDefault))
        {
            problems.Add($"extra column {extra.Column} is NOT NULL without a default");
        }

        if (!hasCheck)
        {
            problems.Add("the CHECK constraint chk_execution_source is missing");
        }

        if (problems.Count > 0)
        {
            throw new DataOpsException("SchemaMismatch", DataOpsErrorKind.InvalidData,
                $"{Table} in {connection} does not have the V97 shape the seeder writes: {string.Join("; ", problems)}. Nothing was written.",
                string.Join("; ", problems));
        }
    }

    /// <summary>A 'running' seed run whose loading session no longer exists.</summary>
    private const string AbandonedCondition =
        "s.status = 'running' AND s.backend_pid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = s.backend_pid AND a.backend_start = s.backend_start)";

    private const string AbandonedReason =
        "abandoned: its loading session ended without recording an outcome (the server restarted or the client was killed); its rows were rolled back with its transaction";

    private static Task<long> RecordStartAsync(NpgsqlConnection conn, ScriptExecutionSeedOptions o, int seed, DateTimeOffset since, DateTimeOffset until, CancellationToken ct)
    {
        var parameters = JsonSerializer.Serialize(new { o.ScheduledRatio, since, until, o.ScriptReferences, o.ScriptVersions, o.TaskSchedules, o.EventTriggers });
        return conn.ExecuteScalarAsync<long>(new CommandDefinition(
            $"""
            WITH abandoned AS (UPDATE dataops.seed_run s SET status = 'abandoned', finished_at = clock_timestamp(), error_message = @reason WHERE {AbandonedCondition} RETURNING 1)
            INSERT INTO dataops.seed_run (target_table, seed, requested_count, parameters, backend_pid, backend_start)
            SELECT @Table, @seed, @count, @parameters::jsonb, pg_backend_pid(), (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())
            RETURNING seed_run_id
            """,
            new { reason = AbandonedReason, Table, seed, count = o.Count, parameters }, cancellationToken: ct));
    }

    private static async Task RecordEndAsync(DataOpsConnection connection, long seedRunId, string status, string error)
    {
        try
        {
            await using var conn = await Database.OpenAsync(connection, CancellationToken.None).ConfigureAwait(false);
            await conn.ExecuteAsync(
                "UPDATE dataops.seed_run SET status = @status, finished_at = clock_timestamp(), error_message = @error WHERE seed_run_id = @seedRunId AND status = 'running'",
                new { status, error, seedRunId }).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or DataOpsException)
        {
            // The run itself is already rolled back; a missing end mark only leaves it 'running' in the history.
        }
    }

    /// <summary>Completed seed runs (and, with all, every recorded run).</summary>
    public static async Task<IReadOnlyList<SeedRun>> ListAsync(DataOpsConnection connection, long? seedRunId, bool all, CancellationToken ct)
    {
        await EnsureSchemaAsync(connection, ct).ConfigureAwait(false);
        await using var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        var rows = await conn.QueryAsync<SeedRunRow>(new CommandDefinition(
            $"""
            SELECT seed_run_id AS SeedRunId, CASE WHEN {AbandonedCondition} THEN 'abandoned' ELSE status END AS Status, requested_count AS RequestedCount, inserted_count AS InsertedCount,
                   first_id AS FirstId, last_id AS LastId, seed AS Seed, started_at AS StartedAt, finished_at AS FinishedAt, removed_count AS Removed
            FROM dataops.seed_run s
            WHERE target_table = 'script_execution' AND (@seedRunId::bigint IS NULL OR seed_run_id = @seedRunId) AND (@all OR status = 'completed')
            ORDER BY seed_run_id
            """, new { seedRunId, all }, cancellationToken: ct)).ConfigureAwait(false);
        return [.. rows.Select(r => r.ToSeedRun())];
    }

    /// <summary>Deletes the rows of completed seed runs, by the id range each recorded, and marks them removed.</summary>
    public static async Task<SeedRun> RemoveAsync(DataOpsConnection connection, SeedRun run, RunLog log, CancellationToken ct)
    {
        if (run.Status != "completed" || run.FirstId is null || run.LastId is null)
        {
            throw new DataOpsException("SeedRunNotRemovable", DataOpsErrorKind.InvalidOperation,
                $"Seed run {run.SeedRunId} is {run.Status}; only completed runs have rows to remove.", run.SeedRunId);
        }

        await using var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
        var removed = await conn.ExecuteAsync(new CommandDefinition(
            $"DELETE FROM {Table} WHERE id BETWEEN @FirstId AND @LastId", new { run.FirstId, run.LastId }, tx, commandTimeout: 0, cancellationToken: ct)).ConfigureAwait(false);
        await conn.ExecuteAsync(new CommandDefinition(
            "UPDATE dataops.seed_run SET status = 'removed', removed_count = @removed WHERE seed_run_id = @SeedRunId",
            new { removed = (long)removed, run.SeedRunId }, tx, cancellationToken: ct)).ConfigureAwait(false);
        await tx.CommitAsync(ct).ConfigureAwait(false);
        log.Information("Removed {Removed} rows of seed run {SeedRunId} (ids {FirstId}..{LastId})", removed, run.SeedRunId, run.FirstId, run.LastId);
        return new SeedRun
        {
            SeedRunId = run.SeedRunId, Status = "removed", RequestedCount = run.RequestedCount, InsertedCount = run.InsertedCount,
            FirstId = run.FirstId, LastId = run.LastId, Seed = run.Seed, StartedAt = run.StartedAt, FinishedAt = run.FinishedAt, Removed = removed,
        };
    }

    private static string Quote(string identifier) => Database.QuoteIdentifier(identifier);

    private sealed record SeedRunRow(long SeedRunId, string Status, long RequestedCount, long? InsertedCount, long? FirstId, long? LastId, int? Seed, DateTime StartedAt, DateTime? FinishedAt, long? Removed)
    {
        public SeedRun ToSeedRun() => new()
        {
            SeedRunId = SeedRunId, Status = Status, RequestedCount = RequestedCount, InsertedCount = InsertedCount, FirstId = FirstId, LastId = LastId,
            Seed = Seed, StartedAt = new DateTimeOffset(DateTime.SpecifyKind(StartedAt, DateTimeKind.Utc)),
            FinishedAt = FinishedAt is { } f ? new DateTimeOffset(DateTime.SpecifyKind(f, DateTimeKind.Utc)) : null, Removed = Removed,
        };
    }
}
