using System.Text.Json.Nodes;
using DataOps.Engine.Backfill;
using DataOps.Engine.Jobs;
using DataOps.Engine.Schema;

namespace DataOps.Engine.Tests;

/// <summary>
/// A capture table with columns named like the table and like the aliases the images and restores use (r,
/// dataops_t): to_jsonb(name) would be that column, not the row. The images must still be whole rows, and
/// undo, the rollback script and the drift check must still work on them (the one-row and the bulk restore).
/// </summary>
public sealed class ShadowedRowTests
{
    private const string Checksum = "SELECT md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o";

    private static async Task<(DatabaseFixture Db, ValidatedJob Job)> SetupAsync(string name)
    {
        var db = new DatabaseFixture();
        using (var log = EngineRuns.Log("shadowed-row-test"))
        {
            await SchemaInstaller.InstallAsync(db.Connection, [SchemaComponent.Core], log);
        }

        // Item 1 has 20 rows (the bulk restore), items 2-4 two rows each.
        db.Execute("""
            CREATE TABLE orders (id int PRIMARY KEY, grp int NOT NULL, orders int, r int, dataops_t int, v int NOT NULL DEFAULT 0);
            INSERT INTO orders (id, grp, orders, r, dataops_t) SELECT i, CASE WHEN i <= 20 THEN 1 ELSE 2 + (i - 21) / 2 END, i * 10, i * 100, i * 1000 FROM generate_series(1, 26) i;
            """);
        var path = Path.Combine(EngineRuns.Output(), name + ".job.json");
        File.WriteAllText(path, new JsonObject
        {
            ["version"] = 1, ["name"] = name,
            ["items"] = new JsonObject { ["keys"] = new JsonArray("1", "2", "3", "4") },
            ["throttle"] = new JsonObject { ["itemsPerMinute"] = 0 },
            ["capture"] = new JsonArray(new JsonObject { ["table"] = "public.orders", ["where"] = "grp = @key::int" }),
            ["steps"] = new JsonArray(new JsonObject { ["name"] = "bump", ["sql"] = "UPDATE orders SET v = v + 1, r = r + 1, orders = NULL WHERE grp = @key::int" }),
            ["verify"] = "SELECT bool_and(v = 1) FROM orders WHERE grp = @key::int",
        }.ToJsonString());
        return (db, await BackfillRunner.PrepareAsync(JobFile.Load(path), db.Connection, CancellationToken.None));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1_000_000)]
    public async Task Images_are_whole_rows_and_undo_restores_them(int itemsPerMinute)
    {
        var (db, job) = await SetupAsync($"shadowed-undo-{itemsPerMinute}");
        var before = db.Scalar<string>(Checksum);

        var results = await EngineRuns.RunAsync(job, db, new BackfillOptions { OutputDirectory = EngineRuns.Output(), ItemsPerMinute = itemsPerMinute });

        Assert.All(results, r => Assert.Equal(BackfillItemStatus.Applied, r.Status));
        Assert.Equal(26, results.Sum(r => r.RowsChanged));
        // Each image row is the whole row (its keys are the columns), not the column "orders" or "r".
        Assert.Equal(26L, db.Scalar<long>("SELECT count(*) FROM dataops.ledger l, jsonb_each(l.before_image) t, jsonb_array_elements(t.value) e WHERE e ? 'id' AND e ? 'v' AND e ? 'dataops_t' AND (e ->> 'v')::int = 0"));
        Assert.Equal(26L, db.Scalar<long>("SELECT count(*) FROM dataops.ledger l, jsonb_each(l.after_image) t, jsonb_array_elements(t.value) e WHERE (e ->> 'v')::int = 1 AND e ? 'orders'"));

        var undo = await JsonImageTests.UndoAsync(db, results[0].RunId);

        Assert.All(undo, r => Assert.Equal(BackfillItemStatus.Restored, r.Status));
        Assert.Equal(before, db.Scalar<string>(Checksum));
    }

    [Fact]
    public async Task The_rollback_script_restores_them_and_refuses_a_row_changed_since()
    {
        var (db, job) = await SetupAsync("shadowed-script");
        var before = db.Scalar<string>(Checksum);
        var output = EngineRuns.Output();
        var results = await EngineRuns.RunAsync(job, db, new BackfillOptions { OutputDirectory = output, ItemsPerMinute = 0 });
        Assert.All(results, r => Assert.Equal(BackfillItemStatus.Applied, r.Status));

        // A row of the bulk item changed after the run, in the column named like the table: drift, nothing restored.
        db.Execute("UPDATE orders SET orders = 7 WHERE id = 3");
        var drifted = db.Scalar<string>(Checksum);
        var (code, stdout, stderr) = JsonImageTests.Psql(db, JsonImageTests.Script(output));
        Assert.NotEqual(0, code);
        Assert.Equal(drifted, db.Scalar<string>(Checksum));

        db.Execute("UPDATE orders SET orders = NULL WHERE id = 3");
        (code, stdout, stderr) = JsonImageTests.Psql(db, JsonImageTests.Script(output));
        Assert.True(code == 0, stdout + stderr);
        Assert.Equal(before, db.Scalar<string>(Checksum));
    }
}
