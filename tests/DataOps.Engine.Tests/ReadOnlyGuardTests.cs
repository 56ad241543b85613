using DataOps.Engine.Connections;
using DataOps.Engine.Jobs;
using DataOps.Engine.Queries;
using Npgsql;

namespace DataOps.Engine.Tests;

/// <summary>
/// What a read-only command refuses although a READ ONLY transaction would run it: the guard reads
/// the text with the job lexer, so names in literals and comments are text, and every spelling of a
/// call (schema-qualified, quoted, upper case, Unicode-escaped, field notation) is a call.
/// </summary>
public sealed class ReadOnlyGuardTests
{
    [Theory]
    [InlineData("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", "calls pg_terminate_backend (at character 8)")]
    [InlineData("SELECT PG_TERMINATE_BACKEND(pid) FROM pg_stat_activity", "calls pg_terminate_backend (at character 8)")]
    [InlineData("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_stat_activity", "calls pg_terminate_backend (at character 19)")]
    [InlineData("SELECT \"pg_catalog\".\"pg_terminate_backend\"(pid) FROM pg_stat_activity", "calls pg_terminate_backend (at character 21)")]
    [InlineData("SELECT Pg_Catalog . pg_terminate_backend /* gap */ (pid) FROM pg_stat_activity", "calls pg_terminate_backend (at character 21)")]
    [InlineData("SELECT U&\"pg_t\\0065rminate_backend\"(1)", "calls pg_terminate_backend (at character 10)")]
    [InlineData("SELECT U&\"pg_t!0065rminate_backend\" UESCAPE '!' (1)", "calls pg_terminate_backend (at character 10)")]
    [InlineData("SELECT (pid).pg_terminate_backend FROM pg_stat_activity", "calls pg_terminate_backend (at character 14)")]
    [InlineData("SELECT (1234).pg_cancel_backend", "calls pg_cancel_backend")]
    [InlineData("SELECT count(*) FROM pg_stat_activity WHERE pg_cancel_backend(pid)", "calls pg_cancel_backend")]
    [InlineData("SELECT pg_advisory_lock(42)", "calls pg_advisory_lock")]
    [InlineData("SELECT pg_try_advisory_xact_lock(42)", "calls pg_try_advisory_xact_lock")]
    [InlineData("SELECT lo_import('/etc/passwd')", "calls lo_import")]
    [InlineData("SELECT lo_export(16400, '/tmp/x')", "calls lo_export")]
    [InlineData("SELECT lo_import('/etc/passwd') AS oid", "calls lo_import")]
    [InlineData("WITH r AS (SELECT lo_import('/etc/passwd') AS oid) SELECT oid FROM r", "calls lo_import")]
    [InlineData("SELECT set_config('work_mem', '1GB', false)", "calls set_config without is_local true")]
    [InlineData("SELECT set_config('work_mem', '1GB', (true))", "calls set_config without is_local true")]
    [InlineData("SELECT set_config('work_mem', '1GB')", "calls set_config without is_local true")]
    [InlineData("SELECT * FROM dblink('dbname=x', 'DELETE FROM t') AS r(x int)", "calls dblink")]
    [InlineData("SELECT dblink_exec('DELETE FROM t')", "calls dblink_exec")]
    [InlineData("SELECT pg_notify('ch', 'x')", "calls pg_notify")]
    [InlineData("SELECT pg_reload_conf()", "calls pg_reload_conf")]
    [InlineData("SELECT pg_switch_wal()", "calls pg_switch_wal")]
    [InlineData("SELECT pg_create_physical_replication_slot('s')", "calls pg_create_physical_replication_slot")]
    [InlineData("SELECT pg_replication_origin_create('o')", "calls pg_replication_origin_create")]
    [InlineData("SELECT pg_stat_reset()", "calls pg_stat_reset")]
    [InlineData("SELECT pg_stat_reset_shared('bgwriter')", "calls pg_stat_reset_shared")]
    [InlineData("SELECT pg_stat_statements_reset()", "calls pg_stat_statements_reset")]
    [InlineData("SELECT pg_prewarm('pg_class')", "calls pg_prewarm")]
    [InlineData("SELECT pg_nextoid('pg_class', 'oid', 'pg_class_oid_index')", "calls pg_nextoid")]
    [InlineData("SELECT autoprewarm_dump_now()", "calls autoprewarm_dump_now")]
    [InlineData("SELECT query_to_xml('SELECT pg_terminate_backend(1)', true, false, '')", "calls query_to_xml")]
    [InlineData("SELECT * FROM ts_stat('SELECT v FROM t')", "calls ts_stat")]
    [InlineData("SELECT * FROM crosstab('SELECT 1, 2, 3') AS c(a int, b int)", "calls crosstab")]
    [InlineData("SELECT pg_file_write('x', 'y', false)", "calls pg_file_write")]
    [InlineData("SELECT 1 WHERE pg_log_backend_memory_contexts(1)", "calls pg_log_backend_memory_contexts")]
    [InlineData("COPY (SELECT 1) TO PROGRAM 'id'", "is the statement COPY (at character 1)")]
    [InlineData("  -- first\n copy t TO '/tmp/x'", "is the statement COPY (at character 13)")]
    [InlineData("LOCK t IN ACCESS EXCLUSIVE MODE", "is the statement LOCK")]
    [InlineData("DO $$ BEGIN PERFORM 1; END $$", "is the statement DO")]
    [InlineData("CHECKPOINT", "is the statement CHECKPOINT")]
    [InlineData("ANALYZE t", "is the statement ANALYZE")]
    [InlineData("CLUSTER t USING t_pkey", "is the statement CLUSTER")]
    [InlineData("REINDEX TABLE t", "is the statement REINDEX")]
    [InlineData("VACUUM t", "is the statement VACUUM")]
    [InlineData("LOAD 'plpgsql'", "is the statement LOAD")]
    [InlineData("LISTEN ch", "is the statement LISTEN")]
    [InlineData("NOTIFY ch", "is the statement NOTIFY")]
    [InlineData("PREPARE TRANSACTION 'x'", "is the statement PREPARE TRANSACTION")]
    [InlineData("ROLLBACK PREPARED 'x'", "is the statement ROLLBACK PREPARED")]
    [InlineData("SELECT 0 AS \u20ac$a$, pg_cancel_backend(1) AS z$a$", "calls pg_cancel_backend (at character 19)")]
    [InlineData("SELECT * FROM crosstab('SELECT 1, 2, pg_cancel_backend(1)') AS (r text, c text)", "calls crosstab (at character 15)")]
    [InlineData("SELECT * FROM t, dblink('dbname=x', 'DELETE FROM t RETURNING 1') AS (a int)", "calls dblink (at character 18)")]
    [InlineData("SELECT * FROM ROWS FROM (dblink('dbname=x', 'SELECT 1') AS (update int))", "calls dblink")]
    [InlineData("SELECT x.pg_cancel_backend FROM unnest(ARRAY[1234]) AS x", "calls pg_cancel_backend (at character 10)")]
    [InlineData("SELECT \"x\".pg_advisory_lock FROM generate_series(42, 42) x", "calls pg_advisory_lock (at character 12)")]
    [InlineData("SELECT x.dblink FROM unnest(ARRAY['DELETE FROM t']) x", "calls dblink (at character 10)")]
    [InlineData("SELECT 0 AS x\u00a0$a$, pg_cancel_backend(1) AS z$a$", "calls pg_cancel_backend (at character 20)")]
    [InlineData("SELECT 0 AS \u20acE'\\', pg_cancel_backend(1) AS z --'", "calls pg_cancel_backend")]
    public void A_call_or_statement_that_changes_the_server_is_refused_with_its_position(string sql, string expected)
    {
        var problem = ReadOnlyGuard.Check("$.soak.checks[2].query", sql);

        Assert.NotNull(problem);
        Assert.StartsWith("$.soak.checks[2].query ", problem);
        Assert.Contains(expected, problem);
        Assert.EndsWith("which changes the server even in a read-only transaction; a read-only command refuses it.", problem);
    }

    [Theory]
    [InlineData("SELECT 'pg_terminate_backend(1)' AS text")]
    [InlineData("SELECT $q$ pg_terminate_backend(1) $q$, E'\\' pg_cancel_backend(1)'")]
    [InlineData("SELECT 1 -- pg_terminate_backend(1)\n")]
    [InlineData("SELECT 1 /* pg_advisory_lock(1) /* nested */ lo_import('x') */")]
    [InlineData("SELECT pg_notify_count, lo_limit FROM stats")]
    [InlineData("SELECT s.pg_notify_count, p.lo_size, p.dblink_url FROM stats s, p")]
    [InlineData("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_terminate_backend%'")]
    [InlineData("SELECT set_config('statement_timeout', '5s', true), 1")]
    [InlineData("SELECT set_config('statement_timeout', '5s', TRUE)")]
    [InlineData("SELECT * FROM generate_series(1, 3) AS pg_notify(n)")]
    [InlineData("SELECT pg_cancel_backend FROM (SELECT 1) AS x(pg_cancel_backend)")]
    [InlineData("SELECT \"pg_terminate_backend\" FROM t")]
    [InlineData("WITH lo_stats(a, b) AS (SELECT 1, 2) SELECT a FROM lo_stats")]
    [InlineData("WITH x AS (SELECT 1), dblink_log(n) AS MATERIALIZED (SELECT 2) SELECT n FROM dblink_log")]
    [InlineData("WITH pg_notify(n) AS NOT MATERIALIZED (SELECT 2) SELECT n FROM pg_notify")]
    [InlineData("SELECT nextval_count, copy_id, lock_wait FROM t")]
    [InlineData("WITH copy AS (SELECT 1) SELECT * FROM copy")]
    [InlineData("EXPLAIN SELECT 1")]
    [InlineData("SELECT pg_stat_get_backend_pid(1), pg_is_in_recovery(), lo_get_something")]
    [InlineData("WITH RECURSIVE lo_tree(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM lo_tree WHERE id < 3) SELECT * FROM lo_tree")]
    [InlineData("WITH a AS (SELECT 1), lo_x(n) AS ((SELECT 2)) SELECT n FROM lo_x")]
    [InlineData("WITH dblink_hosts(h) AS (VALUES ('a')) SELECT h FROM dblink_hosts")]
    [InlineData("SELECT $\u00e9t\u00e9$ pg_terminate_backend(1) $\u00e9t\u00e9$, $\u20ac$ lo_import('x') $\u20ac$")]
    public void Names_in_literals_comments_columns_and_transaction_local_settings_are_not_calls(string sql) =>
        Assert.Null(ReadOnlyGuard.Check("$.health.checks[0].query", sql));

    [Fact]
    public void Every_refused_query_field_of_a_job_is_named_in_one_QueryNotReadOnly_error()
    {
        var path = Path.Combine(Path.GetTempPath(), $"dataops-guard-{Guid.NewGuid():N}.json");
        var job = File.ReadAllText(Path.Combine(RepoRoot(), "examples", "jobs", "results-v1.2.1.job.json"));
        var doc = System.Text.Json.Nodes.JsonNode.Parse(job)!.AsObject();
        doc["soak"]!["checks"]![2]!["query"] = "SELECT count(*) FROM pg_stat_activity WHERE pg_terminate_backend(pid)";
        doc["health"]!["checks"]![0]!["baseline"] = new System.Text.Json.Nodes.JsonObject { ["query"] = "SELECT pg_advisory_lock(1)::int" };
        doc["throttle"] ??= new System.Text.Json.Nodes.JsonObject();
        doc["throttle"]!["signals"] = System.Text.Json.Nodes.JsonNode.Parse("""[{"kind":"query","query":"SELECT pg_switch_wal() IS NULL"}]""");
        File.WriteAllText(path, doc.ToJsonString());

        var ex = Assert.Throws<DataOpsException>(() => ReadOnlyGuard.EnsureJob(JobFile.Load(path)));

        Assert.Equal(("QueryNotReadOnly", DataOpsErrorKind.PermissionDenied, (object)Path.GetFullPath(path)), (ex.ErrorId, ex.Kind, ex.Target));
        Assert.Contains("$.soak.checks[2].query calls pg_terminate_backend (at character 45)", ex.Message);
        Assert.Contains("$.health.checks[0].baseline.query calls pg_advisory_lock (at character 8)", ex.Message);
        Assert.Contains("$.throttle.signals[0].query calls pg_switch_wal (at character 8)", ex.Message);
    }

    [Fact]
    public void Docs_security_lists_every_refused_function_and_statement()
    {
        var doc = File.ReadAllText(Path.Combine(RepoRoot(), "docs", "security.md"));

        Assert.All(ReadOnlyGuard.Listed(), name => Assert.Contains($"`{name}", doc));
    }

    [Fact]
    public void No_example_job_is_refused()
    {
        foreach (var file in Directory.GetFiles(Path.Combine(RepoRoot(), "examples", "jobs"), "*.json"))
        {
            var fields = ReadOnlyGuard.QueryFields(JobFile.Load(file)).Where(f => f.Sql is not null).ToList();

            Assert.NotEmpty(fields);
            Assert.All(fields, f => Assert.Null(ReadOnlyGuard.Check(f.Field, f.Sql)));
        }
    }

    /// <summary>The control: a read-only transaction alone lets the call through, which is why the guard exists.</summary>
    [Fact]
    public async Task A_read_only_transaction_alone_does_not_stop_pg_terminate_backend()
    {
        var db = new DatabaseFixture();
        await using var victim = await OpenVictimAsync(db.Connection);
        var pid = victim.ProcessID;

        await using (var conn = new NpgsqlConnection(db.Connection.ConnectionString + ";Options=-c default_transaction_read_only=on"))
        {
            await conn.OpenAsync();
            await using var tx = await conn.BeginTransactionAsync();
            await using var cmd = new NpgsqlCommand("SET TRANSACTION READ ONLY; SELECT pg_terminate_backend(" + pid + ", 5000)", conn, tx);
            Assert.Equal(true, await cmd.ExecuteScalarAsync());
        }

        await Assert.ThrowsAnyAsync<Exception>(() => new NpgsqlCommand("SELECT 1", victim).ExecuteScalarAsync());
    }

    [Theory]
    [InlineData("SELECT pg_terminate_backend({0})")]
    [InlineData("SELECT pg_catalog.\"pg_terminate_backend\"({0}) /* 'x' */")]
    [InlineData("SELECT PG_CANCEL_BACKEND({0})")]
    [InlineData("SELECT ({0}).pg_terminate_backend")]
    public async Task Invoke_DataOpsQuery_ReadOnly_refuses_pg_terminate_backend_and_the_victim_lives(string template)
    {
        var db = new DatabaseFixture();
        await using var victim = await OpenVictimAsync(db.Connection);
        var sql = string.Format(System.Globalization.CultureInfo.InvariantCulture, template, victim.ProcessID);

        var ex = await Assert.ThrowsAsync<DataOpsException>(() => AdHocQuery.ScalarAsync(db.Connection, new QueryRequest { Sql = sql, ReadOnly = true }));

        Assert.Equal(("QueryNotReadOnly", DataOpsErrorKind.PermissionDenied, (object)sql), (ex.ErrorId, ex.Kind, ex.Target));
        Assert.StartsWith("The query calls pg_", ex.Message);
        Assert.Equal(1, await new NpgsqlCommand("SELECT 1", victim).ExecuteScalarAsync());
    }

    [Theory]
    [InlineData("SELECT pg_advisory_lock(4242)", "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND l.objid = 4242 AND d.datname = current_database()", 0L)]
    [InlineData("LOCK victim IN ACCESS EXCLUSIVE MODE", "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = 'victim'::regclass", 0L)]
    [InlineData("COPY victim TO PROGRAM 'touch /tmp/dataops-guard-copied'", "SELECT count(*) FROM victim", 1L)]
    [InlineData("SELECT set_config('default_transaction_read_only', 'off', false)", "SELECT count(*) FROM victim", 1L)]
    public async Task Invoke_DataOpsQuery_ReadOnly_refuses_locks_copy_and_session_settings_before_running(string sql, string check, long expected)
    {
        var db = new DatabaseFixture();
        db.Execute("CREATE TABLE victim (id int); INSERT INTO victim VALUES (1)");

        var ex = await Assert.ThrowsAsync<DataOpsException>(() => AdHocQuery.NonQueryAsync(db.Connection, new QueryRequest { Sql = sql, ReadOnly = true }));

        Assert.Equal("QueryNotReadOnly", ex.ErrorId);
        Assert.Equal(expected, db.Scalar<long>(check));
        Assert.False(File.Exists("/tmp/dataops-guard-copied"));
    }

    [Fact]
    public async Task Invoke_DataOpsQuery_ReadOnly_still_runs_transaction_local_settings_and_names_in_text()
    {
        var db = new DatabaseFixture();

        var value = await AdHocQuery.ScalarAsync(db.Connection, new QueryRequest
        {
            Sql = "SELECT set_config('statement_timeout', '5s', true) || ' pg_terminate_backend(1)' -- pg_cancel_backend(1)",
            ReadOnly = true,
        });

        Assert.Equal("5s pg_terminate_backend(1)", value);
    }

    private static async Task<NpgsqlConnection> OpenVictimAsync(DataOpsConnection connection)
    {
        var victim = new NpgsqlConnection(connection.ConnectionString + ";Pooling=false");
        await victim.OpenAsync();
        return victim;
    }

    private static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "DataOps.PowerShell.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("The repository root is not above " + AppContext.BaseDirectory);
    }
}
