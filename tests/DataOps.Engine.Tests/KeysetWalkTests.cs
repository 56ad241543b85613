using System.Text.Json;
using System.Text.Json.Nodes;
using DataOps.Engine.Backfill;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using DataOps.Engine.Schema;
using DataOps.Tests;

namespace DataOps.Engine.Tests;

/// <summary>
/// Keyset jobs ($.items.keyset) against a real database: the walk covers every row once in
/// contiguous chunks, sizes follow the target time, a stopped run resumes after its last committed
/// chunk, a chunk that hits the statement timeout is halved, and bad keyset jobs are refused.
/// </summary>
public sealed class KeysetWalkTests
{
    [Fact]
    public void A_chunks_key_is_readable_json_and_keys_written_with_escapes_read_the_same()
    {
        var chunk = new KeysetChunk("it's a \"k\"\\1", "é+1\n");

        Assert.Equal("[\"it's a \\\"k\\\"\\\\1\",\"é+1\\n\"]", chunk.Key);
        Assert.True(KeysetChunk.TryParse(chunk.Key, out var back));
        Assert.Equal(chunk, back);
        Assert.True(KeysetChunk.TryParse("[\"it\\u0027s a \\u0022k\\u0022\\\\1\",\"\\u00E9\\u002B1\\n\"]", out var old));
        Assert.Equal(chunk, old);
    }

    [Fact]
    public async Task A_walk_updates_every_row_present_at_the_start_once_in_contiguous_chunks_that_grow_to_the_target()
    {
        var db = await DatabaseAsync(20_000);
        // The first chunk inserts a row past the largest key: not present at the start, so not taken.
        // A target of 2 s: every chunk here takes far less, so sizes double up to the largest, whatever the machine's load.
        var job = await JobAsync(db, "walk", k => (k["maxChunkSize"], k["chunkTime"]) = (4_000, "2s"),
            extraStep: "INSERT INTO t (id) SELECT 1000000 WHERE @lo = '1' AND @hi <> ''");

        var results = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0 });

        Assert.All(results, r => Assert.Equal(BackfillItemStatus.Applied, r.Status));
        Assert.Equal(20_000L, db.Scalar<long>("SELECT count(*) FROM t WHERE v = 1"));
        Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM t WHERE v > 1"));
        Assert.Equal(0, db.Scalar<int>("SELECT v FROM t WHERE id = 1000000"));
        var chunks = results.Select(r => KeysetChunk.TryParse(r.Key, out var c) ? (Lo: int.Parse(c.Lo), Hi: int.Parse(c.Hi), Rows: r.RowsChanged) : throw new InvalidOperationException(r.Key)).ToList();
        Assert.Equal(1, chunks[0].Lo);
        Assert.Equal(20_000, chunks[^1].Hi);
        Assert.All(chunks.Zip(chunks.Skip(1)), p => Assert.Equal(p.First.Hi + 1, p.Second.Lo));
        Assert.Equal(100, chunks[0].Hi - chunks[0].Lo + 1);
        Assert.Equal(4_000, chunks.Max(c => c.Hi - c.Lo + 1)); // chunks grow (at most doubling) while they take less than the target time
        Assert.All(chunks.SkipLast(1), c => Assert.InRange(c.Hi - c.Lo + 1, 100, 4_000)); // the last one takes what is left
        Assert.Equal(results.Count, db.Scalar<long>($"SELECT count(*) FROM dataops.ledger WHERE run_id = '{results[0].RunId}' AND status = 'applied'"));

        // Run again: it resumes after the last committed chunk and takes the row present at its own start; then nothing is left.
        var again = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0 });
        Assert.Equal(["[\"1000000\",\"1000000\"]"], again.Select(r => r.Key));
        Assert.Equal(1, db.Scalar<int>("SELECT v FROM t WHERE id = 1000000"));
        Assert.Empty(await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0 }));
        Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM t WHERE v > 1"));
    }

    [Fact]
    public async Task A_stopped_walk_resumes_after_its_last_committed_chunk_and_every_row_is_updated_once()
    {
        var db = await DatabaseAsync(5_000);
        var job = await JobAsync(db, "resume", k => (k["minChunkSize"], k["maxChunkSize"]) = (50, 50));
        using var log = Log();

        var first = new List<BackfillItemResult>();
        await using (var items = BackfillRunner.RunAsync(job, db.Connection, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0 }, log, NullObserver.Instance).GetAsyncEnumerator())
        {
            while (first.Count < 7 && await items.MoveNextAsync())
            {
                first.Add(items.Current);
            }
        }

        var committed = db.Scalar<long>("SELECT count(*) FROM t WHERE v = 1");
        Assert.InRange(committed, 7 * 50, 5_000 - 1);
        var rest = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0 });

        Assert.Equal(5_000L, db.Scalar<long>("SELECT count(*) FROM t WHERE v = 1"));
        Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM t WHERE v > 1"));
        Assert.True(KeysetChunk.TryParse(rest[0].Key, out var resumed));
        Assert.Equal(committed + 1, long.Parse(resumed.Lo));
    }

    [Fact]
    public async Task A_chunk_that_hits_the_statement_timeout_is_halved_and_run_again_and_nothing_fails()
    {
        var db = await DatabaseAsync(3_000);
        // Chunks of 400 rows or more sleep past the 500 ms statement timeout; the target time (10 s) would grow them to 1,600.
        var job = await JobAsync(db, "halve", k => (k["minChunkSize"], k["maxChunkSize"], k["chunkTime"], k["statementTimeout"]) = (100, 1_600, "10s", "500ms"),
            extraStep: "SELECT pg_sleep(CASE WHEN @hi::int - @lo::int + 1 >= 400 THEN 1 ELSE 0 END)");

        var results = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0 });

        Assert.All(results, r => Assert.Equal(BackfillItemStatus.Applied, r.Status));
        Assert.Equal(3_000L, db.Scalar<long>("SELECT count(*) FROM t WHERE v = 1"));
        Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM t WHERE v > 1"));
        Assert.All(results, r => Assert.InRange(r.RowsChanged, 1, 399));
        Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM dataops.ledger WHERE status <> 'applied'"));
    }

    [Fact]
    public async Task The_keysets_where_narrows_the_rows_and_a_failed_chunk_stops_the_walk_where_the_next_run_resumes()
    {
        var db = await DatabaseAsync(1_000);
        db.Execute("CREATE TABLE fail_at (id int)");
        var job = await JobAsync(db, "narrow", k => (k["where"], k["minChunkSize"], k["maxChunkSize"]) = ("id % 2 = 0", 100, 100),
            extraStep: "SELECT 1 / (SELECT CASE WHEN EXISTS (SELECT 1 FROM fail_at f WHERE f.id BETWEEN @lo::int AND @hi::int) THEN 0 ELSE 1 END)");
        db.Execute("INSERT INTO fail_at VALUES (500)");

        var first = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0 });

        var failed = Assert.Single(first, r => r.Status == BackfillItemStatus.Failed);
        Assert.Equal(first[^1], failed);
        Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM t WHERE v <> 0 AND id % 2 = 1"));
        Assert.Equal(first.Count(r => r.Status == BackfillItemStatus.Applied) * 100L, db.Scalar<long>("SELECT count(*) FROM t WHERE v = 1"));

        db.Execute("DELETE FROM fail_at");
        var second = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0 });
        Assert.Equal(failed.Key, second[0].Key);
        Assert.Equal(500L, db.Scalar<long>("SELECT count(*) FROM t WHERE v = 1"));
        Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM t WHERE v <> 0 AND id % 2 = 1"));
    }

    [Fact]
    public async Task A_finished_walk_of_a_text_key_in_a_collation_other_than_the_databases_takes_nothing_on_a_rerun()
    {
        // In "C" order 'B0001' < 'a0001'; in the column's ICU order 'a...' < 'B...': the resume point must sort as the walk does.
        var db = await DatabaseAsync(0);
        db.Execute("""
            CREATE TABLE tc (k text COLLATE "und-x-icu" PRIMARY KEY, v int NOT NULL DEFAULT 0);
            INSERT INTO tc (k) SELECT 'a' || lpad(i::text, 4, '0') FROM generate_series(1, 50) i UNION ALL SELECT 'B' || lpad(i::text, 4, '0') FROM generate_series(1, 50) i;
            """);
        var path = Path.Combine(Output(), "coll.job.json");
        File.WriteAllText(path, new JsonObject
        {
            ["version"] = 1, ["name"] = "coll",
            ["items"] = new JsonObject { ["keyset"] = new JsonObject { ["table"] = "public.tc", ["key"] = "k", ["minChunkSize"] = 10, ["maxChunkSize"] = 10 } },
            ["capture"] = new JsonArray(new JsonObject { ["table"] = "public.tc", ["where"] = "k BETWEEN @lo AND @hi" }),
            ["steps"] = new JsonArray(new JsonObject { ["name"] = "set", ["sql"] = "UPDATE tc SET v = v + 1 WHERE k BETWEEN @lo AND @hi" }),
            ["verify"] = "SELECT NOT EXISTS (SELECT 1 FROM tc WHERE k BETWEEN @lo AND @hi AND v <> 1)",
        }.ToJsonString());
        var job = await BackfillRunner.PrepareAsync(JobFile.Load(path), db.Connection, CancellationToken.None);

        var first = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output() });
        var again = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output() });

        Assert.Equal(10, first.Count(r => r.Status == BackfillItemStatus.Applied));
        Assert.Empty(again);
        Assert.Equal(100L, db.Scalar<long>("SELECT count(*) FROM tc WHERE v = 1"));
    }

    [Theory]
    [InlineData("public.\"Accounts\"", "AccountId")]
    [InlineData("\"Accounts\"", "\"AccountId\"")]
    [InlineData("\"Ledger Schema\".\"Accounts\"", "\"AccountId\"")]
    public async Task A_walk_of_a_mixed_case_table_by_a_mixed_case_key_updates_every_row_once(string table, string key)
    {
        var db = await DatabaseAsync(0);
        db.Execute("""
            CREATE SCHEMA "Ledger Schema";
            CREATE TABLE "Accounts" ("AccountId" int PRIMARY KEY, "Seen" int NOT NULL DEFAULT 0);
            INSERT INTO "Accounts" ("AccountId") SELECT generate_series(1, 250);
            CREATE TABLE "Ledger Schema"."Accounts" (LIKE "Accounts" INCLUDING ALL);
            INSERT INTO "Ledger Schema"."Accounts" SELECT * FROM "Accounts";
            """);
        var sqlTable = table.Contains("Ledger") ? "\"Ledger Schema\".\"Accounts\"" : "\"Accounts\"";
        var path = Path.Combine(Output(), "mixed.job.json");
        File.WriteAllText(path, new JsonObject
        {
            ["version"] = 1, ["name"] = "mixed",
            ["items"] = new JsonObject { ["keyset"] = new JsonObject { ["table"] = table, ["key"] = key, ["minChunkSize"] = 100, ["maxChunkSize"] = 100 } },
            ["capture"] = new JsonArray(new JsonObject { ["table"] = table, ["where"] = "\"AccountId\" BETWEEN @lo::int AND @hi::int" }),
            ["steps"] = new JsonArray(new JsonObject { ["name"] = "set", ["sql"] = $"UPDATE {sqlTable} SET \"Seen\" = \"Seen\" + 1 WHERE \"AccountId\" BETWEEN @lo::int AND @hi::int" }),
            ["verify"] = $"SELECT NOT EXISTS (SELECT 1 FROM {sqlTable} WHERE \"AccountId\" BETWEEN @lo::int AND @hi::int AND \"Seen\" <> 1)",
        }.ToJsonString());
        var job = await BackfillRunner.PrepareAsync(JobFile.Load(path), db.Connection, CancellationToken.None);

        var first = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output() });
        var again = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output() });

        Assert.Equal(["[\"1\",\"100\"]", "[\"101\",\"200\"]", "[\"201\",\"250\"]"], first.Select(r => r.Key));
        Assert.All(first, r => Assert.Equal(BackfillItemStatus.Applied, r.Status));
        Assert.Empty(again);
        Assert.Equal(250L, db.Scalar<long>($"SELECT count(*) FROM {sqlTable} WHERE \"Seen\" = 1"));

        // The undo restores the chunks by the table's own name as the row reference.
        using (var log = Log())
        {
            await foreach (var _ in UndoRunner.UndoAsync(db.Connection, first[0].RunId, log, NullObserver.Instance, CancellationToken.None))
            {
            }
        }

        Assert.Equal(250L, db.Scalar<long>($"SELECT count(*) FROM {sqlTable} WHERE \"Seen\" = 0"));
    }

    [Fact]
    public async Task A_mixed_case_table_or_key_spelled_in_another_case_is_refused_with_the_spelling_that_works()
    {
        var db = await DatabaseAsync(0);
        db.Execute("""CREATE TABLE "Accounts" ("AccountId" int PRIMARY KEY, "Seen" int NOT NULL DEFAULT 0)""");
        var unquoted = JobFile.Load(WriteJob("unquoted", new JsonObject { ["table"] = "public.Accounts", ["key"] = "AccountId" }));
        var lower = JobFile.Load(WriteJob("lower", new JsonObject { ["table"] = "public.\"Accounts\"", ["key"] = "accountid" }));

        var e1 = await Assert.ThrowsAsync<DataOpsException>(() => BackfillRunner.PrepareAsync(unquoted, db.Connection, CancellationToken.None));
        var e2 = await Assert.ThrowsAsync<DataOpsException>(() => BackfillRunner.PrepareAsync(lower, db.Connection, CancellationToken.None));

        Assert.Equal(("JobFileInvalid", "JobFileInvalid"), (e1.ErrorId, e2.ErrorId));
        Assert.Contains("$.items.keyset.table: the table 'public.Accounts' does not exist. PostgreSQL reads a name without double quotes in lower case ('public.accounts')", e1.Message);
        Assert.Contains("\"public.\\\"Accounts\\\"\"", e1.Message);
        Assert.Contains("$.items.keyset.key: the table 'public.\"Accounts\"' has no column 'accountid'; it has 'AccountId': give the name as the table has it (\"key\": \"AccountId\")", e2.Message);
    }

    [Fact]
    public async Task Chunks_undone_before_a_chunk_still_applied_leave_a_gap_a_run_refuses_until_the_rest_is_undone()
    {
        var db = await DatabaseAsync(40);
        var job = await JobAsync(db, "gap", k => (k["minChunkSize"], k["maxChunkSize"]) = (10, 10));
        var run = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0 });
        Assert.Equal(4, run.Count(r => r.Status == BackfillItemStatus.Applied));

        // A row of the second chunk changed since: the undo restores chunks 1, 3 and 4 and leaves chunk 2 applied.
        db.Execute("UPDATE t SET v = 5 WHERE id = 15");
        using (var log = Log())
        {
            await foreach (var _ in UndoRunner.UndoAsync(db.Connection, run[0].RunId, log, NullObserver.Instance, CancellationToken.None))
            {
            }
        }

        var gap = await Assert.ThrowsAsync<DataOpsException>(() => RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0 }));
        Assert.Equal("KeysetWalkHasGap", gap.ErrorId);
        Assert.Equal(10L, db.Scalar<long>("SELECT count(*) FROM t WHERE v <> 0"));

        db.Execute("UPDATE t SET v = 1 WHERE id = 15");
        using (var log = Log())
        {
            await foreach (var _ in UndoRunner.UndoAsync(db.Connection, run[0].RunId, log, NullObserver.Instance, CancellationToken.None))
            {
            }
        }

        var rerun = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0 });
        Assert.Equal(4, rerun.Count(r => r.Status == BackfillItemStatus.Applied));
        Assert.Equal(40L, db.Scalar<long>("SELECT count(*) FROM t WHERE v = 1"));
    }

    [Theory]
    [InlineData("""{"table": "public.t", "key": ["id", "v"]}""", "give one column")]
    [InlineData("""{"table": "public.t", "key": "id", "minChunkSize": 500, "maxChunkSize": 100}""", "minChunkSize 500 is larger than maxChunkSize 100")]
    [InlineData("""{"table": "public.t", "key": "id", "chunkTime": "1h"}""", "$.items.keyset.chunkTime: \"1h\" is out of range")]
    [InlineData("""{"table": "public.t", "key": "id", "statementTimeout": "soon"}""", "$.items.keyset.statementTimeout: \"soon\" is not a duration")]
    [InlineData("""{"table": "public.t", "key": "id", "where": "id > @lo"}""", "$.items.keyset.where: @lo is not available here")]
    [InlineData("""{"table": "public.\"t", "key": "id"}""", "$.items.keyset.table: 'public.\"t' is not a table name")]
    [InlineData("""{"table": "public.t; DROP TABLE t", "key": "id"}""", "is not a table name")]
    [InlineData("""{"table": "public.t", "key": "id v"}""", "$.items.keyset.key: 'id v' is not a column name")]
    [InlineData("""{"table": "public.t", "key": "\"id\" v"}""", "is not a column name")]
    public void Bad_keyset_sections_are_refused_with_their_json_path(string keyset, string expected)
    {
        var path = WriteJob("bad", JsonNode.Parse(keyset)!.AsObject());

        var error = Assert.Throws<DataOpsException>(() => JobFile.Load(path));

        Assert.Equal("JobFileInvalid", error.ErrorId);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void Keyset_job_sql_must_use_lo_and_hi_and_cannot_run_concurrently()
    {
        var keyset = new JsonObject { ["table"] = "public.t", ["key"] = "id" };
        var unbounded = Assert.Throws<DataOpsException>(() => JobFile.Load(WriteJob("rules", keyset, step: "UPDATE t SET v = v + 1 WHERE id = @key::int")));
        var concurrent = Assert.Throws<DataOpsException>(() => JobFile.Load(WriteJob("rules2", keyset.DeepClone().AsObject(), maxConcurrency: 2)));

        Assert.Contains("$.steps[0].sql: does not use both @lo and @hi", unbounded.Message);
        Assert.Contains("$.throttle.maxConcurrency: 2: a keyset walk runs one chunk at a time", concurrent.Message);
    }

    [Fact]
    public async Task A_key_without_an_index_or_a_missing_column_is_refused_by_the_database_check_and_keys_or_reapply_by_the_run()
    {
        var db = await DatabaseAsync(10);
        var unindexed = JobFile.Load(WriteJob("unindexed", new JsonObject { ["table"] = "public.t", ["key"] = "v" }));
        var missing = JobFile.Load(WriteJob("missing", new JsonObject { ["table"] = "public.t", ["key"] = "nope" }));

        var e1 = await Assert.ThrowsAsync<DataOpsException>(() => BackfillRunner.PrepareAsync(unindexed, db.Connection, CancellationToken.None));
        var e2 = await Assert.ThrowsAsync<DataOpsException>(() => BackfillRunner.PrepareAsync(missing, db.Connection, CancellationToken.None));
        Assert.Contains("no index of 'public.t' starts with 'v'", e1.Message);
        Assert.Contains("has no column 'nope'", e2.Message);

        var job = await JobAsync(db, "options");
        var keys = await Assert.ThrowsAsync<DataOpsException>(() => RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0, Keys = ["1"] }));
        var reapply = await Assert.ThrowsAsync<DataOpsException>(() => RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0, Reapply = true }));
        Assert.Equal(("KeysetOptionUnsupported", "KeysetOptionUnsupported"), (keys.ErrorId, reapply.ErrorId));
        Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM t WHERE v <> 0"));
        Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM dataops.run"));
    }

    [Fact]
    public async Task A_key_that_is_not_unique_is_refused_naming_the_column_and_the_table_and_a_unique_index_of_its_own_is_enough()
    {
        var db = await DatabaseAsync(10);
        db.Execute("""
            CREATE INDEX t_v ON t (v);
            ALTER TABLE t ADD COLUMN w int, ADD COLUMN code text;
            CREATE UNIQUE INDEX t_w_id ON t (w, id);
            CREATE UNIQUE INDEX t_code ON t (code) INCLUDE (v);
            UPDATE t SET code = 'c' || lpad(id::text, 3, '0');
            """);
        var repeated = JobFile.Load(WriteJob("repeated", new JsonObject { ["table"] = "public.t", ["key"] = "v" }));
        var leading = JobFile.Load(WriteJob("leading", new JsonObject { ["table"] = "public.t", ["key"] = "w" }));
        var unique = JobFile.Load(WriteJob("unique", new JsonObject { ["table"] = "public.t", ["key"] = "code", ["minChunkSize"] = 4, ["maxChunkSize"] = 4 }));

        var e1 = await Assert.ThrowsAsync<DataOpsException>(() => BackfillRunner.PrepareAsync(repeated, db.Connection, CancellationToken.None));
        var e2 = await Assert.ThrowsAsync<DataOpsException>(() => BackfillRunner.PrepareAsync(leading, db.Connection, CancellationToken.None));
        var job = await BackfillRunner.PrepareAsync(unique, db.Connection, CancellationToken.None);

        Assert.Equal(("JobFileInvalid", "JobFileInvalid"), (e1.ErrorId, e2.ErrorId));
        Assert.Contains("$.items.keyset.key: the column 'v' of 'public.t' is not unique", e1.Message);
        Assert.Contains("CREATE UNIQUE INDEX CONCURRENTLY ON t (\"v\")", e1.Message);
        Assert.Contains("$.items.keyset.key: the column 'w' of 'public.t' is not unique", e2.Message);
        Assert.Equal("code", job.Keyset!.KeyColumn);
    }

    [Fact]
    public void Chunk_sizes_follow_the_rows_per_second_seen_within_half_and_double_and_the_limits()
    {
        var spec = new KeysetSpec("t", "id", null, TimeSpan.FromSeconds(1), 100, 10_000, KeysetSpec.DefaultStatementTimeout);

        Assert.Equal(200, spec.NextChunkSize(100, 100, TimeSpan.FromMilliseconds(10)));    // fast: at most double
        Assert.Equal(1_000, spec.NextChunkSize(1_000, 1_000, TimeSpan.FromSeconds(1)));   // on target: the same
        Assert.Equal(1_250, spec.NextChunkSize(1_000, 1_000, TimeSpan.FromMilliseconds(800)));
        Assert.Equal(500, spec.NextChunkSize(1_000, 1_000, TimeSpan.FromSeconds(30)));    // slow: at most half
        Assert.Equal(100, spec.NextChunkSize(150, 150, TimeSpan.FromSeconds(30)));        // never below the minimum
        Assert.Equal(10_000, spec.NextChunkSize(8_000, 8_000, TimeSpan.FromMilliseconds(1)));
        Assert.Equal(200, spec.NextChunkSize(100, 100, TimeSpan.Zero));
    }

    private static async Task<DatabaseFixture> DatabaseAsync(int rows)
    {
        var db = new DatabaseFixture();
        using var log = Log();
        await SchemaInstaller.InstallAsync(db.Connection, [SchemaComponent.Core], log);
        db.Execute($"CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0); INSERT INTO t (id) SELECT generate_series(1, {rows}); ANALYZE t;");
        return db;
    }

    private static string WriteJob(string name, JsonObject keyset, string step = "UPDATE t SET v = v + 1 WHERE id BETWEEN @lo::int AND @hi::int", string? extraStep = null, int maxConcurrency = 1)
    {
        var steps = new JsonArray();
        if (extraStep is not null)
        {
            steps.Add(new JsonObject { ["name"] = "extra", ["sql"] = extraStep });
        }

        // The keyset's where picks the chunks' bounds; a chunk's range still holds the other rows, so the steps filter too.
        steps.Add(new JsonObject { ["name"] = "set", ["sql"] = step + (keyset["where"] is { } w0 ? $" AND ({w0})" : string.Empty) });
        var job = new JsonObject
        {
            ["version"] = 1,
            ["name"] = name,
            ["items"] = new JsonObject { ["keyset"] = keyset },
            ["throttle"] = new JsonObject { ["itemsPerMinute"] = 0, ["maxConcurrency"] = maxConcurrency },
            ["capture"] = new JsonArray(new JsonObject { ["table"] = "public.t", ["where"] = "id BETWEEN @lo::int AND @hi::int" + (keyset["where"] is { } w ? $" AND ({w})" : string.Empty) }),
            ["steps"] = steps,
            ["verify"] = "SELECT NOT EXISTS (SELECT 1 FROM t WHERE id BETWEEN @lo::int AND @hi::int" + (keyset["where"] is { } w2 ? $" AND ({w2})" : string.Empty) + " AND v <> 1)",
        };
        var path = Path.Combine(Output(), name + ".job.json");
        File.WriteAllText(path, job.ToJsonString());
        return path;
    }

    private static Task<ValidatedJob> JobAsync(DatabaseFixture db, string name, Action<JsonObject>? keyset = null, string? extraStep = null)
    {
        var k = new JsonObject { ["table"] = "public.t", ["key"] = "id", ["chunkTime"] = "50ms" };
        keyset?.Invoke(k);
        return BackfillRunner.PrepareAsync(JobFile.Load(WriteJob(name, k, extraStep: extraStep)), db.Connection, CancellationToken.None);
    }

    private static Task<List<BackfillItemResult>> RunAsync(ValidatedJob job, DatabaseFixture db, BackfillOptions options) => EngineRuns.RunAsync(job, db, options, "keyset-test");

    private static RunLog Log() => EngineRuns.Log("keyset-test");

    private static string Output() => EngineRuns.Output();
}
