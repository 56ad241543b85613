using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using DataOps.Engine.Backfill;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using DataOps.Engine.Schema;
using DataOps.Tests;
using Npgsql;

namespace DataOps.Engine.Tests;

/// <summary>
/// Row images of tables with json columns. to_jsonb(row) shows a jsonb 'null' and SQL NULL alike and
/// turns json into jsonb (key order, duplicate keys and whitespace lost), so images also keep those
/// columns' text: Undo-Backfill and the rollback script put back exactly what was there, the drift
/// check sees a changed null state, and the server's counts and plan hashes agree with the client's.
/// </summary>
public sealed class JsonImageTests
{
    /// <summary>The rows, exactly: the record's text shows a jsonb 'null' as null and SQL NULL as nothing, and json as written.</summary>
    private const string Checksum = "SELECT md5(string_agg(x::text, E'\\n' ORDER BY id)) FROM docs x";

    /// <summary>Item 1 has 20 rows (restored by the bulk statement), items 2 to 5 two rows each (one statement per row).</summary>
    private static readonly string[] Keys = ["1", "2", "3", "4", "5"];

    /// <summary>
    /// Swaps jsonb 'null' and SQL NULL, also inside arrays and in a domain over jsonb, and rewrites json
    /// as jsonb would: changes to_jsonb(row) cannot see. Rows with id % 4 = 0 or 3 change only so.
    /// </summary>
    private const string FlipStep = """
        UPDATE docs SET
          b = CASE WHEN b IS NULL THEN 'null'::jsonb WHEN b = 'null'::jsonb THEN NULL ELSE b END,
          j = CASE WHEN j IS NULL THEN 'null'::json WHEN j::text = 'null' THEN NULL ELSE j::jsonb::json END,
          ba = (SELECT array_agg(CASE WHEN e IS NULL THEN 'null'::jsonb WHEN e = 'null'::jsonb THEN NULL ELSE e END ORDER BY o) FROM unnest(ba) WITH ORDINALITY u(e, o)),
          d = CASE WHEN d IS NULL THEN 'null'::jsonb WHEN d = 'null'::jsonb THEN NULL ELSE d END,
          c = CASE WHEN c IS NULL THEN NULL ELSE ROW((c).n, CASE WHEN (c).x IS NULL THEN 'null'::jsonb ELSE NULL END)::pair END,
          v = v + CASE WHEN id % 4 IN (1, 2) THEN 1 ELSE 0 END
        WHERE grp = @key::int
        """;

    [Theory]
    [InlineData(0)]
    [InlineData(1_000_000)]
    public async Task Undo_puts_back_jsonb_nulls_sql_nulls_and_json_text_exactly_on_the_server_side_group_path(int itemsPerMinute)
    {
        var db = await DatabaseAsync();
        var before = db.Scalar<string>(Checksum);
        var job = await JobAsync(db, "flip");
        Assert.True(GroupExecutor.RunsOnServer(job, new BackfillOptions { OutputDirectory = "." }));

        var results = await EngineRuns.RunAsync(job, db, new BackfillOptions { OutputDirectory = EngineRuns.Output(), ItemsPerMinute = itemsPerMinute });

        Assert.All(results, r => Assert.Equal(BackfillItemStatus.Applied, r.Status));
        // Every row changed (some only in ways to_jsonb cannot show): the server's count says so.
        Assert.Equal([20, 2, 2, 2, 2], results.OrderBy(r => r.Key, StringComparer.Ordinal).Select(r => r.RowsChanged));
        Assert.Equal("null|null", db.Scalar<string>("SELECT jsonb_typeof(b) || '|' || jsonb_typeof(d) FROM docs WHERE id = 5"));
        AssertRestoreOpsMatchTheLedger(db, job, results[0].RunId);

        var undo = await UndoAsync(db, results[0].RunId);

        Assert.All(undo, r => Assert.Equal(BackfillItemStatus.Restored, r.Status));
        Assert.Equal(before, db.Scalar<string>(Checksum));
        Assert.Equal("true|null|null", db.Scalar<string>("SELECT (b IS NOT NULL)::text || '|' || jsonb_typeof(b) || '|' || jsonb_typeof(d) FROM docs WHERE id = 4"));
        Assert.Equal("  {\"b\": 1,  \"a\": 2, \"a\": 3}  ", db.Scalar<string>("SELECT j::text FROM docs WHERE id = 4"));
        Assert.True(db.Scalar<bool>("SELECT b IS NULL AND d IS NULL FROM docs WHERE id = 5"));
    }

    [Fact]
    public async Task The_rollback_script_run_with_psql_puts_back_the_exact_rows()
    {
        var db = await DatabaseAsync();
        var before = db.Scalar<string>(Checksum);
        var job = await JobAsync(db, "flip-script");
        var output = EngineRuns.Output();

        var results = await EngineRuns.RunAsync(job, db, new BackfillOptions { OutputDirectory = output, ItemsPerMinute = 0 });
        Assert.All(results, r => Assert.Equal(BackfillItemStatus.Applied, r.Status));
        Assert.NotEqual(before, db.Scalar<string>(Checksum));

        var (code, stdout, stderr) = Psql(db, Script(output));

        Assert.True(code == 0, stdout + stderr);
        Assert.Equal(before, db.Scalar<string>(Checksum));
    }

    [Fact]
    public async Task A_row_whose_jsonb_changed_between_null_and_sql_null_after_the_run_is_drift_for_undo_and_the_script()
    {
        var db = await DatabaseAsync();
        var job = await JobAsync(db, "flip-drift");
        var output = EngineRuns.Output();
        var results = await EngineRuns.RunAsync(job, db, new BackfillOptions { OutputDirectory = output, ItemsPerMinute = 0 });
        Assert.All(results, r => Assert.Equal(BackfillItemStatus.Applied, r.Status));

        // After the run row 4 (item 1, bulk) and row 24 (item 3, one row) hold SQL NULL in b; someone sets the JSON null.
        db.Execute("UPDATE docs SET b = 'null'::jsonb WHERE id IN (4, 24) AND b IS NULL");
        var drifted = db.Scalar<string>(Checksum);

        var (code, stdout, stderr) = Psql(db, Script(output));
        Assert.NotEqual(0, code);
        Assert.Contains("changed since the backfill", stdout + stderr, StringComparison.Ordinal);
        Assert.Equal(drifted, db.Scalar<string>(Checksum));

        var undo = await UndoAsync(db, results[0].RunId);

        Assert.Equal(["1", "3"], undo.Where(r => r.Status == BackfillItemStatus.Drifted).Select(r => r.Key).Order(StringComparer.Ordinal));
        Assert.Equal(3, undo.Count(r => r.Status == BackfillItemStatus.Restored));
        Assert.Equal(2L, db.Scalar<long>("SELECT count(*) FROM docs WHERE id IN (4, 24) AND jsonb_typeof(b) = 'null'"));
        // The drifted items' other rows stay as the run left them.
        Assert.True(db.Scalar<bool>("SELECT b IS NULL FROM docs WHERE id = 8"));
    }

    [Fact]
    public async Task A_keyset_walk_one_item_at_a_time_restores_chunks_exactly_through_the_bulk_statement_of_its_script()
    {
        var db = await DatabaseAsync();
        var before = db.Scalar<string>(Checksum);
        var path = WriteJob("flip-keyset", new JsonObject { ["keyset"] = new JsonObject { ["table"] = "public.docs", ["key"] = "id", ["chunkTime"] = "2s", ["minChunkSize"] = 20, ["maxChunkSize"] = 20 } },
            FlipStep.Replace("grp = @key::int", "id BETWEEN @lo::int AND @hi::int", StringComparison.Ordinal), "id BETWEEN @lo::int AND @hi::int");
        var job = await BackfillRunner.PrepareAsync(JobFile.Load(path), db.Connection, CancellationToken.None);
        Assert.False(GroupExecutor.RunsOnServer(job, new BackfillOptions { OutputDirectory = "." }));
        var output = EngineRuns.Output();

        var results = await EngineRuns.RunAsync(job, db, new BackfillOptions { OutputDirectory = output, ItemsPerMinute = 0 });

        Assert.All(results, r => Assert.Equal(BackfillItemStatus.Applied, r.Status));
        Assert.Equal(28, results.Sum(r => r.RowsChanged));
        AssertRestoreOpsMatchTheLedger(db, job, results[0].RunId);
        Assert.Contains(RestoreOp.Steps(OpsOf(db, job, results[0].RunId)), s => s.Count >= RestoreOp.BulkRows);

        var (code, stdout, stderr) = Psql(db, Script(output));

        Assert.True(code == 0, stdout + stderr);
        Assert.Equal(before, db.Scalar<string>(Checksum));
    }

    [Fact]
    public async Task A_dry_run_counts_the_rows_a_real_run_changes_and_a_plan_made_by_the_client_is_not_stale_on_the_server()
    {
        var db = await DatabaseAsync();
        var job = await JobAsync(db, "flip-dry");

        var dry = await EngineRuns.RunAsync(job, db, new BackfillOptions { OutputDirectory = EngineRuns.Output(), ItemsPerMinute = 0, DryRun = true });
        Assert.Equal([20, 2, 2, 2, 2], dry.OrderBy(r => r.Key, StringComparer.Ordinal).Select(r => r.RowsChanged));

        // The plan's fingerprint as Test-ProdHealth computes it (the client's hash of the images it reads)...
        var image = new ItemImage();
        var table = job.Capture[0];
        image.Tables[table.QualifiedName] = RowImages.Rows(await ImageAsync(db, job, "1"));
        var client = PlanFingerprint.Hash(image, job.Capture);
        // ...and the server's, in the item, over the locked before-image.
        await using var conn = new NpgsqlConnection(db.Connection.ConnectionString);
        await conn.OpenAsync();
        await using var tx = await conn.BeginTransactionAsync();
        var beforeSql = RowImages.BeforeImageSelect(table, 0);
        await using (var lockRows = new NpgsqlCommand(beforeSql, conn, tx))
        {
            BackfillSql.Bind(lockRows.Parameters, beforeSql, job.Job.Parameters, "1");
            await lockRows.ExecuteNonQueryAsync();
        }

        await using var hash = new NpgsqlCommand("SELECT dataops.image_hash(ARRAY[@table], ARRAY[current_setting('dataops.before_0')::jsonb])", conn, tx);
        hash.Parameters.AddWithValue("table", table.QualifiedName);
        Assert.Equal(client, (string)(await hash.ExecuteScalarAsync())!);
        Assert.Contains($"\"{RowImages.JsonKey}\": {{", image.Tables[table.QualifiedName][0], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Images_without_the_json_text_restore_as_before_and_other_tables_keep_the_plain_image()
    {
        var db = await DatabaseAsync();
        var job = await JobAsync(db, "flip-old");
        Assert.Equal(["b", "j", "d"], job.Capture[0].JsonColumns);
        Assert.Equal(["ba", "c"], job.Capture[0].HoldsJsonColumns);
        db.Execute("CREATE TABLE plain (id int PRIMARY KEY, v jsonb[] NOT NULL DEFAULT '{}', w text)");
        var plain = await BackfillRunner.PrepareAsync(JobFile.Load(WriteJob("plain", new JsonObject { ["keys"] = new JsonArray("1") }, "SELECT @key", "id = @key::int", "plain")), db.Connection, CancellationToken.None);
        Assert.Equal(["v"], plain.Capture[0].HoldsJsonColumns);
        db.Execute("ALTER TABLE plain ALTER COLUMN v TYPE text[] USING v::text[]");
        plain = await BackfillRunner.PrepareAsync(JobFile.Load(WriteJob("plain2", new JsonObject { ["keys"] = new JsonArray("1") }, "SELECT @key", "id = @key::int", "plain")), db.Connection, CancellationToken.None);
        Assert.Equal("coalesce((SELECT jsonb_agg(to_jsonb(r.*) ORDER BY r.\"id\") FROM (SELECT * FROM public.plain WHERE (id = @key::int) ORDER BY \"id\") r), '[]'::jsonb)::text", RowImages.ImageSelect(plain.Capture[0], forUpdate: false));

        // A ledger row written before images kept json text: plain to_jsonb rows. They restore as they always did.
        var oldBefore = db.Scalar<string>("SELECT to_jsonb(x)::text FROM docs x WHERE id = 2");
        db.Execute("UPDATE docs SET v = 7, b = '{\"k\": 2}' WHERE id = 2");
        var oldAfter = db.Scalar<string>("SELECT to_jsonb(x)::text FROM docs x WHERE id = 2");
        var op = Assert.Single(RestoreOp.ForItem("1", Image(oldBefore), Image(oldAfter), job.Capture));
        Assert.DoesNotContain("dataops:", op.Sql, StringComparison.Ordinal);
        Assert.Equal(1, Execute(db, op.Sql, op.Before, op.After));
        Assert.Equal("0|{\"k\": [1, null]}", db.Scalar<string>("SELECT v || '|' || b::text FROM docs WHERE id = 2"));
    }

    [Fact]
    public async Task A_capture_table_with_a_column_named_like_the_images_json_key_is_refused()
    {
        var db = await DatabaseAsync();
        db.Execute("CREATE TABLE clash (id int PRIMARY KEY, \"dataops:json\" text)");

        var error = await Assert.ThrowsAsync<DataOpsException>(() => BackfillRunner.PrepareAsync(JobFile.Load(WriteJob("clash", new JsonObject { ["keys"] = new JsonArray("1") }, "SELECT @key", "id = @key::int", "clash")), db.Connection, CancellationToken.None));

        Assert.Equal("JobFileInvalid", error.ErrorId);
        Assert.Contains("'dataops:json'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Restore_statements_of_json_images_take_values_from_the_text_and_compare_the_same_image()
    {
        var table = new CaptureTable(new CaptureSpec("public.docs", "grp = @key::int", "$.capture[0]"), "public.docs", "docs", ["id"]) { JsonColumns = ["b"], HoldsJsonColumns = ["ba"] };
        var before = Image("""{"id": 1, "b": null, "ba": null, "v": 0, "dataops:json": {"b": "null"}, "dataops:holds-json": {"ba": null}}""");
        var after = Image("""{"id": 1, "b": null, "ba": null, "v": 1, "dataops:json": {"b": null}, "dataops:holds-json": {"ba": null}}""");

        var op = Assert.Single(RestoreOp.ForItem("1", before, after, [table]));

        Assert.Equal(RestoreKind.Update, op.Kind);
        Assert.Equal(
            "UPDATE public.docs SET (\"id\", \"b\", \"ba\", \"v\") = (SELECT dataops_r.\"id\", ((dataops_i.i -> 'dataops:json') ->> 'b')::json, dataops_r.\"ba\", dataops_r.\"v\" " +
            "FROM (SELECT @before::jsonb AS i) dataops_i, LATERAL jsonb_populate_record(NULL::public.docs, dataops_i.i || coalesce(dataops_i.i -> 'dataops:holds-json', '{}'::jsonb)) dataops_r) " +
            "WHERE (\"id\") = (SELECT dataops_r.\"id\" FROM (SELECT @before::jsonb AS i) dataops_i, LATERAL jsonb_populate_record(NULL::public.docs, dataops_i.i || coalesce(dataops_i.i -> 'dataops:holds-json', '{}'::jsonb)) dataops_r) " +
            "AND (to_jsonb(\"docs\".*) || jsonb_build_object('dataops:json', jsonb_build_object('b', \"docs\".\"b\"::text), 'dataops:holds-json', jsonb_build_object('ba', \"docs\".\"ba\"::text))) = @after::jsonb",
            op.Sql);
        Assert.Equal(RowImages.RowImage("\"docs\"", table.JsonColumns, table.HoldsJsonColumns), RowImages.RowImage(table, "\"docs\""));
    }

    private static ItemImage Image(string row, string table = "public.docs")
    {
        var image = new ItemImage();
        image.Tables[table] = [row];
        return image;
    }

    private static int Execute(DatabaseFixture db, string sql, string? before, string? after)
    {
        using var conn = new NpgsqlConnection(db.Connection.ConnectionString);
        conn.Open();
        using var cmd = new NpgsqlCommand(sql, conn);
        if (before is not null)
        {
            cmd.Parameters.Add(new NpgsqlParameter("before", NpgsqlTypes.NpgsqlDbType.Text) { Value = before });
        }

        if (after is not null)
        {
            cmd.Parameters.Add(new NpgsqlParameter("after", NpgsqlTypes.NpgsqlDbType.Text) { Value = after });
        }

        return cmd.ExecuteNonQuery();
    }

    /// <summary>The client's restore operations of every applied item number what the server counted (dataops.changed_rows).</summary>
    private static void AssertRestoreOpsMatchTheLedger(DatabaseFixture db, ValidatedJob job, Guid runId)
    {
        using var conn = new NpgsqlConnection(db.Connection.ConnectionString);
        conn.Open();
        using var cmd = new NpgsqlCommand($"SELECT item_key, before_image::text, after_image::text, rows_changed FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'applied'", conn);
        using var reader = cmd.ExecuteReader();
        var n = 0;
        while (reader.Read())
        {
            var ops = RestoreOp.ForItem(reader.GetString(0), ItemImage.FromJson(reader.GetString(1)), ItemImage.FromJson(reader.GetString(2)), job.Capture);
            Assert.Equal(reader.GetInt32(3), ops.Count);
            n++;
        }

        Assert.True(n > 0);
    }

    private static List<RestoreOp> OpsOf(DatabaseFixture db, ValidatedJob job, Guid runId)
    {
        using var conn = new NpgsqlConnection(db.Connection.ConnectionString);
        conn.Open();
        using var cmd = new NpgsqlCommand($"SELECT item_key, before_image::text, after_image::text FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'applied' ORDER BY ledger_id", conn);
        using var reader = cmd.ExecuteReader();
        var ops = new List<RestoreOp>();
        while (reader.Read())
        {
            ops.AddRange(RestoreOp.ForItem(reader.GetString(0), ItemImage.FromJson(reader.GetString(1)), ItemImage.FromJson(reader.GetString(2)), job.Capture));
        }

        return ops;
    }

    private static async Task<string> ImageAsync(DatabaseFixture db, ValidatedJob job, string key)
    {
        await using var conn = new NpgsqlConnection(db.Connection.ConnectionString);
        await conn.OpenAsync();
        await using var settings = new NpgsqlCommand(BackfillSql.StableJsonSettings, conn);
        await settings.ExecuteNonQueryAsync();
        var sql = $"SELECT {RowImages.ImageSelect(job.Capture[0], forUpdate: false)}";
        await using var select = new NpgsqlCommand(sql, conn);
        BackfillSql.Bind(select.Parameters, sql, job.Job.Parameters, key);
        return (string)(await select.ExecuteScalarAsync())!;
    }

    internal static async Task<List<BackfillItemResult>> UndoAsync(DatabaseFixture db, Guid runId)
    {
        using var log = EngineRuns.Log("json-image-test");
        var results = new List<BackfillItemResult>();
        await foreach (var r in UndoRunner.UndoAsync(db.Connection, runId, log, NullObserver.Instance, CancellationToken.None))
        {
            results.Add(r);
        }

        return results;
    }

    internal static string Script(string output) => Directory.GetFiles(output, "rollback_*.sql", SearchOption.AllDirectories).Single();

    internal static (int Code, string Out, string Err) Psql(DatabaseFixture db, string script)
    {
        var b = new NpgsqlConnectionStringBuilder(db.Connection.ConnectionString);
        var psi = new ProcessStartInfo(Path.Combine(TestCluster.Sandbox.BinDirectory!, "psql")) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in new[] { "-X", "-v", "ON_ERROR_STOP=1", "-h", b.Host!, "-p", b.Port.ToString(CultureInfo.InvariantCulture), "-U", b.Username!, "-d", b.Database!, "-f", script })
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["PGPASSWORD"] = b.Password;
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(60_000), "psql did not finish in 60 s");
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>
    /// docs: item (grp) 1 has rows 1-20, items 2-5 rows 21-28, two each. Columns: jsonb, json, jsonb[],
    /// a domain over jsonb and a composite with a jsonb field, cycling through JSON null, SQL NULL and
    /// json text that jsonb would rewrite.
    /// </summary>
    private static async Task<DatabaseFixture> DatabaseAsync()
    {
        var db = new DatabaseFixture();
        using var log = EngineRuns.Log("json-image-test");
        await SchemaInstaller.InstallAsync(db.Connection, [SchemaComponent.Core], log);
        db.Execute("""
            CREATE DOMAIN doc AS jsonb;
            CREATE TYPE pair AS (n int, x jsonb);
            CREATE TABLE docs (id int PRIMARY KEY, grp int NOT NULL, b jsonb, j json, ba jsonb[], d doc, c pair, v int NOT NULL DEFAULT 0);
            INSERT INTO docs (id, grp, b, j, ba, d, c)
            SELECT i, CASE WHEN i <= 20 THEN 1 ELSE 2 + (i - 21) / 2 END,
                   (ARRAY['null'::jsonb, NULL, '{"k": [1, null]}', '"s"'])[i % 4 + 1],
                   (ARRAY['  {"b": 1,  "a": 2, "a": 3}  '::json, 'null', NULL, '[1,  2 ]'])[i % 4 + 1],
                   CASE i % 4 WHEN 0 THEN ARRAY['null'::jsonb, NULL] WHEN 1 THEN NULL WHEN 2 THEN ARRAY[NULL, '{"z": null}'::jsonb] ELSE NULL END,
                   (ARRAY['null'::jsonb, NULL, '{}', '{"x": 1}'])[i % 4 + 1],
                   CASE WHEN i % 4 = 3 THEN NULL ELSE ROW(i, CASE WHEN i % 2 = 0 THEN 'null'::jsonb END)::pair END
            FROM generate_series(1, 28) i;
            """);
        return db;
    }

    private static Task<ValidatedJob> JobAsync(DatabaseFixture db, string name) =>
        BackfillRunner.PrepareAsync(JobFile.Load(WriteJob(name, new JsonObject { ["keys"] = new JsonArray([.. Keys.Select(k => JsonValue.Create(k))]) }, FlipStep, "grp = @key::int")), db.Connection, CancellationToken.None);

    private static string WriteJob(string name, JsonObject items, string step, string where, string table = "docs")
    {
        var path = Path.Combine(EngineRuns.Output(), name + ".job.json");
        File.WriteAllText(path, new JsonObject
        {
            ["version"] = 1,
            ["name"] = name,
            ["items"] = items,
            ["throttle"] = new JsonObject { ["itemsPerMinute"] = 0, ["maxConcurrency"] = 1 },
            ["capture"] = new JsonArray(new JsonObject { ["table"] = $"public.{table}", ["where"] = where }),
            ["steps"] = new JsonArray(new JsonObject { ["name"] = "flip", ["sql"] = step }),
            ["verify"] = $"SELECT count(*) >= 0 FROM public.{table} WHERE {where}",
        }.ToJsonString());
        return path;
    }
}
