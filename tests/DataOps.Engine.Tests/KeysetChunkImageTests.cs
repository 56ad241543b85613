using System.Text.Json.Nodes;
using DataOps.Engine.Backfill;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using DataOps.Engine.Schema;
using DataOps.Tests;
using Npgsql;

namespace DataOps.Engine.Tests;

/// <summary>
/// A keyset chunk's images in the chunk form (RowImages.ChunkBeforeSelect: json_agg of to_json, and
/// the keys as an array the after-image looks up): the ledger holds the same values the jsonb form
/// would, and the rollback script and Undo-Backfill put a table with awkward text keys back exactly,
/// rows the steps inserted and deleted included, also when rows hold the script's dollar-quote tags.
/// </summary>
public sealed class KeysetChunkImageTests
{
    /// <summary>Every row exactly, in key order.</summary>
    private const string Checksum = "SELECT md5(string_agg(x::text, E'\\n' ORDER BY k COLLATE \"C\")) FROM acct x";

    /// <summary>
    /// Update every row of the chunk, move some out of the capture predicate (n &gt;= 0: the after-image
    /// finds them by the before-image's keys), delete some, and insert rows right after others (inside
    /// the chunk's range and the predicate, so the capture sees them).
    /// </summary>
    private static readonly string[] Steps =
    [
        "UPDATE acct SET n = n + 1, f = f * 2, a = a || n, note = note || '''' WHERE k BETWEEN @lo AND @hi AND n >= 0",
        "UPDATE acct SET n = -n WHERE k BETWEEN @lo AND @hi AND n % 11 = 0",
        "DELETE FROM acct WHERE k BETWEEN @lo AND @hi AND n % 29 = 0",
        "INSERT INTO acct (k, n, f, t, a, note) SELECT k || '~', 0, 0.5, t, '{}', 'new $dataops$' FROM acct WHERE k BETWEEN @lo AND @hi AND n > 0 AND n % 5 = 0 AND k || '~' BETWEEN @lo AND @hi",
    ];

    [Fact]
    public async Task Chunks_of_a_text_keyed_table_keep_exact_images_and_their_rollback_script_and_undo_restore_it()
    {
        var db = await DatabaseAsync();
        var original = db.Scalar<string>(Checksum);
        var output = EngineRuns.Output();
        var job = await BackfillRunner.PrepareAsync(JobFile.Load(WriteJob(output, "chunk-form")), db.Connection, CancellationToken.None);
        Assert.True(RowImages.TakesChunkForm(job.Capture[0]));
        Assert.Equal("text", job.Capture[0].KeyType);

        var results = await EngineRuns.RunAsync(job, db, new BackfillOptions { OutputDirectory = output, ItemsPerMinute = 0 });

        Assert.True(results.Count >= 3, $"{results.Count} chunks");
        Assert.All(results, r => Assert.Equal(BackfillItemStatus.Applied, r.Status));
        Assert.NotEqual(original, db.Scalar<string>(Checksum));
        Assert.True(db.Scalar<long>("SELECT count(*) FROM acct WHERE k LIKE '%~'") > 0, "the steps inserted rows");
        Assert.True(db.Scalar<long>("SELECT count(*) FROM acct WHERE n < 0") > 0, "the steps moved rows out of the capture predicate");
        // Each before-image row is, as jsonb, exactly a row of the table as it was (the values the jsonb form would hold), and every row is in one.
        Assert.Equal(0L, db.Scalar<long>("""
            SELECT count(*) FROM dataops.ledger l, jsonb_array_elements(l.before_image -> 'public.acct') e
            WHERE l.status = 'applied' AND NOT EXISTS (SELECT 1 FROM acct_orig o WHERE to_jsonb(o.*) = e.value)
            """));
        Assert.Equal(db.Scalar<long>("SELECT count(*) FROM acct_orig"), db.Scalar<long>("SELECT sum(jsonb_array_length(before_image -> 'public.acct')) FROM dataops.ledger WHERE status = 'applied'"));
        // The after-images hold the rows as they are now, the inserted ones too.
        Assert.Equal(0L, db.Scalar<long>("""
            SELECT count(*) FROM dataops.ledger l, jsonb_array_elements(l.after_image -> 'public.acct') e
            WHERE l.status = 'applied' AND NOT EXISTS (SELECT 1 FROM acct x WHERE to_jsonb(x.*) = e.value)
            """));
        Assert.Equal(db.Scalar<long>("SELECT count(*) FROM acct"), db.Scalar<long>("SELECT sum(jsonb_array_length(after_image -> 'public.acct')) FROM dataops.ledger WHERE status = 'applied'"));
        Assert.Equal(results.Sum(r => r.RowsChanged), db.Scalar<long>("SELECT count(*) FROM acct_orig") + db.Scalar<long>("SELECT count(*) FROM acct WHERE k LIKE '%~'"));

        // The script: bulk statements, tags no row holds, and psql puts the table back exactly.
        var script = File.ReadAllText(JsonImageTests.Script(output));
        Assert.Contains("$dataops_1$ DECLARE", script, StringComparison.Ordinal);
        Assert.Contains("$dataops_item_1$", script, StringComparison.Ordinal);
        var (code, stdout, stderr) = JsonImageTests.Psql(db, JsonImageTests.Script(output));
        Assert.True(code == 0, stdout + stderr);
        Assert.Equal(original, db.Scalar<string>(Checksum));

        // The same script again: refused by name, in a few lines (no megabytes of the block as context).
        (code, stdout, stderr) = JsonImageTests.Psql(db, JsonImageTests.Script(output));
        Assert.NotEqual(0, code);
        Assert.Contains("were undone already", stderr, StringComparison.Ordinal);
        Assert.True(stdout.Length + stderr.Length < 4000, $"{stdout.Length + stderr.Length} characters of output");
        Assert.Equal(original, db.Scalar<string>(Checksum));

        // Again, undone from the ledger this time.
        var again = await BackfillRunner.PrepareAsync(JobFile.Load(WriteJob(EngineRuns.Output(), "chunk-form-2")), db.Connection, CancellationToken.None);
        var second = await EngineRuns.RunAsync(again, db, new BackfillOptions { OutputDirectory = EngineRuns.Output(), ItemsPerMinute = 0 });
        Assert.All(second, r => Assert.Equal(BackfillItemStatus.Applied, r.Status));
        Assert.NotEqual(original, db.Scalar<string>(Checksum));
        var undo = await JsonImageTests.UndoAsync(db, second[0].RunId);
        Assert.All(undo, r => Assert.Equal(BackfillItemStatus.Restored, r.Status));
        Assert.Equal(original, db.Scalar<string>(Checksum));
    }

    [Fact]
    public async Task Tables_with_a_composite_or_array_key_or_json_columns_keep_the_jsonb_form_and_key_types_carry_their_schema()
    {
        var db = await DatabaseAsync();
        db.Execute("""
            CREATE TABLE pairs (a int, b int, PRIMARY KEY (a, b));
            CREATE TABLE docs (id int PRIMARY KEY, j jsonb);
            CREATE TABLE tagged (tags int[] PRIMARY KEY);
            CREATE DOMAIN intlist AS int[];
            CREATE DOMAIN intlist2 AS intlist;
            CREATE TABLE listed (l intlist2 PRIMARY KEY);
            CREATE SCHEMA other;
            CREATE DOMAIN other.code AS varchar(8);
            CREATE TABLE coded (c other.code PRIMARY KEY);
            """);
        var job = await BackfillRunner.PrepareAsync(JobFile.Load(WriteJob(EngineRuns.Output(), "forms", "pairs", "docs", "tagged", "listed", "coded")), db.Connection, CancellationToken.None);

        Assert.True(RowImages.TakesChunkForm(job.Capture[0]));
        Assert.False(RowImages.TakesChunkForm(job.Capture[1]));
        Assert.Null(job.Capture[1].KeyType);
        Assert.False(RowImages.TakesChunkForm(job.Capture[2]));
        Assert.Equal("integer", job.Capture[2].KeyType);
        // Arrays, and domains over them at any depth: an array of their keys is not an array of keys.
        Assert.False(RowImages.TakesChunkForm(job.Capture[3]));
        Assert.Null(job.Capture[3].KeyType);
        Assert.False(RowImages.TakesChunkForm(job.Capture[4]));
        Assert.Null(job.Capture[4].KeyType);
        // A type outside pg_catalog carries its schema, whatever search_path a step sets.
        Assert.True(RowImages.TakesChunkForm(job.Capture[5]));
        Assert.Equal("other.code", job.Capture[5].KeyType);
    }

    [Fact]
    public async Task A_job_capturing_more_than_fifty_tables_records_its_chunks_and_items()
    {
        var db = await DatabaseAsync();
        db.Execute("DO $$ BEGIN FOR i IN 1..52 LOOP EXECUTE format('CREATE TABLE side_%s (id int PRIMARY KEY, v int)', i); EXECUTE format('INSERT INTO side_%s VALUES (1, 0)', i); END LOOP; END $$");
        var tables = Enumerable.Range(1, 52).Select(i => $"side_{i}").ToArray();
        var output = EngineRuns.Output();

        // A keyset job (the one-item path: its ledger row's images come from the transaction's settings)...
        var keyset = await BackfillRunner.PrepareAsync(JobFile.Load(WriteJob(output, "wide-keyset", tables)), db.Connection, CancellationToken.None);
        var chunks = await EngineRuns.RunAsync(keyset, db, new BackfillOptions { OutputDirectory = output, ItemsPerMinute = 0 });
        Assert.All(chunks, r => Assert.Equal(BackfillItemStatus.Applied, r.Status));
        Assert.Equal(53L, db.Scalar<long>("SELECT count(*) FROM (SELECT jsonb_object_keys(before_image) FROM dataops.ledger WHERE job_name = 'wide-keyset' AND status = 'applied' LIMIT 53) k"));

        // ...and a job of keys, its items run on the server in groups.
        var path = Path.Combine(output, "wide-keys.job.json");
        File.WriteAllText(path, new JsonObject
        {
            ["version"] = 1, ["name"] = "wide-keys", ["items"] = new JsonObject { ["keys"] = new JsonArray("1") },
            ["throttle"] = new JsonObject { ["itemsPerMinute"] = 0 },
            ["capture"] = new JsonArray([.. tables.Select(t => new JsonObject { ["table"] = $"public.{t}", ["where"] = "id = @key::int" })]),
            ["steps"] = new JsonArray(new JsonObject { ["name"] = "bump", ["sql"] = "UPDATE side_52 SET v = v + 1 WHERE id = @key::int" }),
            ["verify"] = "SELECT v = 1 FROM side_52 WHERE id = @key::int",
        }.ToJsonString());
        var keys = await BackfillRunner.PrepareAsync(JobFile.Load(path), db.Connection, CancellationToken.None);
        Assert.True(GroupExecutor.RunsOnServer(keys, new BackfillOptions { OutputDirectory = output }));
        var items = await EngineRuns.RunAsync(keys, db, new BackfillOptions { OutputDirectory = output, ItemsPerMinute = 0 });
        Assert.Equal(BackfillItemStatus.Applied, Assert.Single(items).Status);
        Assert.Equal(1, Assert.Single(items).RowsChanged);
        Assert.Equal(52L, db.Scalar<long>("SELECT count(*) FROM (SELECT jsonb_object_keys(after_image) FROM dataops.ledger WHERE job_name = 'wide-keys' AND status = 'applied') k"));
    }

    [Fact]
    public async Task The_rollback_script_and_undo_restore_the_captured_table_under_another_search_path()
    {
        var db = await DatabaseAsync();
        // A table of the same name in a schema that comes first on the session's search_path of whoever restores.
        db.Execute("CREATE SCHEMA shadow; CREATE TABLE shadow.acct AS SELECT * FROM acct; ALTER TABLE shadow.acct ADD PRIMARY KEY (k)");
        var original = db.Scalar<string>(Checksum);
        var shadow = db.Scalar<string>(Checksum.Replace("FROM acct x", "FROM shadow.acct x", StringComparison.Ordinal));
        var output = EngineRuns.Output();
        var job = await BackfillRunner.PrepareAsync(JobFile.Load(WriteJob(output, "qualified")), db.Connection, CancellationToken.None);
        Assert.Equal("public.acct", job.Capture[0].QualifiedName);

        var results = await EngineRuns.RunAsync(job, db, new BackfillOptions { OutputDirectory = output, ItemsPerMinute = 0 });
        Assert.All(results, r => Assert.Equal(BackfillItemStatus.Applied, r.Status));
        Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM dataops.ledger WHERE job_name = 'qualified' AND status = 'applied' AND NOT before_image ? 'public.acct'"));

        var script = JsonImageTests.Script(output);
        File.WriteAllText(script, File.ReadAllText(script).Replace("BEGIN;\n", "BEGIN;\nSET search_path = shadow, public;\n", StringComparison.Ordinal));
        var (code, stdout, stderr) = JsonImageTests.Psql(db, script);
        Assert.True(code == 0, stdout + stderr);
        Assert.Equal(original, db.Scalar<string>(Checksum));
        Assert.Equal(shadow, db.Scalar<string>(Checksum.Replace("FROM acct x", "FROM shadow.acct x", StringComparison.Ordinal)));

        // Undo-Backfill on a connection whose search_path finds shadow.acct first.
        var again = await BackfillRunner.PrepareAsync(JobFile.Load(WriteJob(EngineRuns.Output(), "qualified-2")), db.Connection, CancellationToken.None);
        var second = await EngineRuns.RunAsync(again, db, new BackfillOptions { OutputDirectory = EngineRuns.Output(), ItemsPerMinute = 0 });
        var shadowed = DataOps.Engine.Connections.DataOpsConnection.FromConnectionString(new NpgsqlConnectionStringBuilder(db.Connection.ConnectionString) { SearchPath = "shadow,public" }.ConnectionString);
        using var log = EngineRuns.Log("keyset-chunk-image-test");
        await foreach (var r in UndoRunner.UndoAsync(shadowed, second[0].RunId, log, NullObserver.Instance, CancellationToken.None))
        {
            Assert.Equal(BackfillItemStatus.Restored, r.Status);
        }

        Assert.Equal(original, db.Scalar<string>(Checksum));
        Assert.Equal(shadow, db.Scalar<string>(Checksum.Replace("FROM acct x", "FROM shadow.acct x", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task A_syntax_error_in_a_where_fragment_is_reported_at_its_place_in_the_fragment()
    {
        var db = await DatabaseAsync();
        var path = Path.Combine(EngineRuns.Output(), "bad-where.job.json");
        var job = JsonNode.Parse(File.ReadAllText(WriteJob(EngineRuns.Output(), "bad-where")))!.AsObject();
        job["items"]!["keyset"]!["where"] = "n > 0 AND AND";
        job["capture"]![0]!["where"] = "k BETWEEN @lo AND @hi AND n = = 1";
        File.WriteAllText(path, job.ToJsonString());

        var error = await Assert.ThrowsAsync<DataOpsException>(() => BackfillRunner.PrepareAsync(JobFile.Load(path), db.Connection, CancellationToken.None));

        Assert.Equal("JobFileInvalid", error.ErrorId);
        Assert.Contains("$.items.keyset.where: PostgreSQL rejects the statement: 42601: syntax error at or near \"AND\" (at character 11).", error.Message, StringComparison.Ordinal);
        // After a parameter the server's count is of the driver's text ($1 for @lo): no position then.
        Assert.Contains("$.capture[0].where: PostgreSQL rejects the statement: 42601: syntax error at or near \"=\".", error.Message, StringComparison.Ordinal);
    }

    /// <summary>acct: 70 rows keyed by text that array literals, JSON and SQL quote (commas, quotes, braces, backslashes, spaces, "NULL", non-ASCII, dollar tags); acct_orig: a copy.</summary>
    private static async Task<DatabaseFixture> DatabaseAsync()
    {
        var db = new DatabaseFixture();
        using var log = EngineRuns.Log("keyset-chunk-image-test");
        await SchemaInstaller.InstallAsync(db.Connection, [SchemaComponent.Core], log);
        db.Execute("""
            CREATE TABLE acct (k text PRIMARY KEY, n int NOT NULL, f float8, t timestamp, a int[], note text);
            INSERT INTO acct
            SELECT k, i, i / 3.0, timestamp '2026-01-01 00:00:00' + i * interval '1 hour', ARRAY[i, NULL], CASE WHEN i % 9 = 0 THEN 'holds $dataops$ and $dataops_item$' ELSE 'it''s row ' || i END
            FROM unnest(ARRAY['a,b', 'q"uote', 'back\slash', '{brace}', 'NULL', ' spaced ', 'é', 'it''s', '$dataops$', '']
                        || ARRAY(SELECT 'k' || lpad(g::text, 3, '0') FROM generate_series(1, 60) g)) WITH ORDINALITY u(k, i);
            CREATE TABLE acct_orig AS SELECT * FROM acct;
            """);
        return db;
    }

    private static string WriteJob(string output, string name, params string[] tables)
    {
        tables = tables.Length == 0 ? ["acct"] : ["acct", .. tables];
        var path = Path.Combine(output, name + ".job.json");
        File.WriteAllText(path, new JsonObject
        {
            ["version"] = 1,
            ["name"] = name,
            ["items"] = new JsonObject { ["keyset"] = new JsonObject { ["table"] = "public.acct", ["key"] = "k", ["chunkTime"] = "2s", ["minChunkSize"] = 20, ["maxChunkSize"] = 20 } },
            ["throttle"] = new JsonObject { ["itemsPerMinute"] = 0 },
            ["capture"] = new JsonArray([.. tables.Select(t => new JsonObject { ["table"] = $"public.{t}", ["where"] = t == "acct" ? "k BETWEEN @lo AND @hi AND n >= 0" : "false AND @lo < @hi" })]),
            ["steps"] = new JsonArray([.. Steps.Select((sql, i) => new JsonObject { ["name"] = $"step{i}", ["sql"] = sql })]),
            ["verify"] = "SELECT NOT EXISTS (SELECT 1 FROM acct WHERE k BETWEEN @lo AND @hi AND n > 0 AND note NOT LIKE '%''')",
        }.ToJsonString());
        return path;
    }
}
