using System.Text.Json.Nodes;
using DataOps.Engine.Backfill;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using DataOps.Engine.Schema;

namespace DataOps.Engine.Tests;

/// <summary>
/// dataops.changed_rows (the ledger's rows_changed, computed on the server) must count what the
/// client counts as restore operations, for small images (loops) and large ones (the set-based path).
/// </summary>
public sealed class ChangedRowsTests
{
    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(3, 8, 2)]
    [InlineData(6, 5, 7)]
    [InlineData(30, 40, 3)] // 30 x 40 rows: the set-based path
    [InlineData(0, 12, 4)]
    [InlineData(9, 0, 5)]
    public async Task Server_count_equals_the_restore_operations(int beforeRows, int afterRows, int seed)
    {
        var db = new DatabaseFixture();
        using (var log = RunLog.Open("changed-rows-test", NullObserver.Instance, directory: Path.Combine(TestCluster.Root, "logs")))
        {
            await SchemaInstaller.InstallAsync(db.Connection, [SchemaComponent.Core], log);
        }

        var random = new Random(seed);
        var single = new CaptureTable(new CaptureSpec("s", "id = @key", "$.capture[0]"), "public.s", "s", ["id"]);
        var composite = new CaptureTable(new CaptureSpec("c", "a = @key", "$.capture[1]"), "public.c", "c", ["a", "b"]);
        var before = new ItemImage();
        var after = new ItemImage();
        // Keys overlap partly, so some rows are only before (deleted), some only after (inserted), some in both (changed or not).
        before.Tables[single.QualifiedName] = [.. Enumerable.Range(0, beforeRows).Select(i => Row(("id", i), ("v", random.Next(3))))];
        after.Tables[single.QualifiedName] = [.. Enumerable.Range(beforeRows / 2, afterRows).Select(i => Row(("id", i), ("v", random.Next(3))))];
        before.Tables[composite.QualifiedName] = [.. Enumerable.Range(0, beforeRows).Select(i => Row(("a", i % 4), ("b", i / 4), ("v", random.Next(2))))];
        after.Tables[composite.QualifiedName] = [.. Enumerable.Range(1, afterRows).Select(i => Row(("a", i % 4), ("b", i / 4), ("v", random.Next(2))))];
        var keys = System.Text.Json.JsonSerializer.Serialize(new[] { single, composite }.Select(t => new object[] { t.QualifiedName, t.PrimaryKey }));

        var expected = RestoreOp.ForItem("k", before, after, [single, composite]).Count;
        var actual = db.Scalar<int>($"SELECT dataops.changed_rows('{before.ToJson()}'::jsonb, '{after.ToJson()}'::jsonb, '{keys}'::jsonb)");

        Assert.Equal(expected, actual);
        Assert.True(expected > 0 || beforeRows + afterRows == 0);
    }

    [Fact]
    public async Task Verify_gate_passes_true_only()
    {
        var db = new DatabaseFixture();
        using (var log = RunLog.Open("verify-gate-test", NullObserver.Instance, directory: Path.Combine(TestCluster.Root, "logs")))
        {
            await SchemaInstaller.InstallAsync(db.Connection, [SchemaComponent.Core], log);
        }

        Assert.True(db.Scalar<bool>("SELECT dataops.verified(true, 'k')"));
        foreach (var value in new[] { "false", "NULL" })
        {
            var ex = Assert.ThrowsAny<Npgsql.PostgresException>(() => db.Scalar<bool>($"SELECT dataops.verified({value}, 'key-7')"));
            Assert.Equal("DOV01", ex.SqlState);
            Assert.Equal($"verify returned {(value == "NULL" ? "no row or NULL" : value)} instead of true", ex.MessageText);
        }
    }

    private static string Row(params (string Name, int Value)[] columns)
    {
        var o = new JsonObject();
        foreach (var (name, value) in columns)
        {
            o[name] = value;
        }

        return o.ToJsonString();
    }
}
