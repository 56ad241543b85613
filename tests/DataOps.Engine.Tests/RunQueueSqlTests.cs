using DataOps.Engine.Logging;
using DataOps.Engine.Schema;
using Npgsql;

namespace DataOps.Engine.Tests;

/// <summary>The run queue's SQL (Core/0010) on its own: the claim guard and the run-global rate slots.</summary>
public sealed class RunQueueSqlTests
{
    private static async Task<DatabaseFixture> CoreAsync()
    {
        var db = new DatabaseFixture();
        using var log = RunLog.Open("run-queue-test", NullObserver.Instance, directory: Path.Combine(TestCluster.Root, "logs"));
        await SchemaInstaller.InstallAsync(db.Connection, [SchemaComponent.Core], log);
        db.Execute("""
            INSERT INTO dataops.run (run_id, kind, job_name, host_name, user_name, parameters) VALUES ('00000000-0000-0000-0000-000000000001', 'backfill', 'j', 'h', 'u', '{}');
            INSERT INTO dataops.run_queue (run_id, items, job_sha256) VALUES ('00000000-0000-0000-0000-000000000001', 2, 'x');
            INSERT INTO dataops.run_item (run_id, ordinal, item_key, claimed_by) VALUES
                ('00000000-0000-0000-0000-000000000001', 0, 'a', '00000000-0000-0000-0000-00000000000a'),
                ('00000000-0000-0000-0000-000000000001', 1, 'b', '00000000-0000-0000-0000-00000000000b');
            """);
        return db;
    }

    [Fact]
    public async Task Claim_done_marks_only_the_holders_item_and_raises_DOL02_for_anyone_else()
    {
        var db = await CoreAsync();
        Assert.True(db.Scalar<bool>("SELECT dataops.claim_done('00000000-0000-0000-0000-000000000001', 'a', '00000000-0000-0000-0000-00000000000a')"));
        Assert.True(db.Scalar<bool>("SELECT done FROM dataops.run_item WHERE item_key = 'a'"));

        // b is claimed by member b: member a (whose claim was taken over) cannot mark it, and nothing changes.
        var lost = Assert.Throws<PostgresException>(() => db.Scalar<bool>("SELECT dataops.claim_done('00000000-0000-0000-0000-000000000001', 'b', '00000000-0000-0000-0000-00000000000a')"));
        Assert.Equal("DOL02", lost.SqlState);
        Assert.Contains("item b of run", lost.MessageText);
        Assert.False(db.Scalar<bool>("SELECT done FROM dataops.run_item WHERE item_key = 'b'"));

        // Done once: a second mark by the holder raises too (an item commits once).
        Assert.Equal("DOL02", Assert.Throws<PostgresException>(() => db.Scalar<bool>("SELECT dataops.claim_done('00000000-0000-0000-0000-000000000001', 'a', '00000000-0000-0000-0000-00000000000a')")).SqlState);
    }

    [Fact]
    public async Task The_rate_is_the_databases_set_by_Set_BackfillThrottle_else_the_runs_not_the_callers()
    {
        var db = await CoreAsync();
        db.Execute("UPDATE dataops.run_queue SET base_per_minute = 60");

        // A caller that still believes in 1,000,000 a minute gets the run's 60: one second apart.
        var waits = db.Scalar<double[]>("SELECT array_agg(dataops.rate_slot('00000000-0000-0000-0000-000000000001', 1000000) ORDER BY g) FROM generate_series(1, 3) g");
        Assert.InRange(waits[1] - waits[0], 0.95, 1.0 + 1e-6);
        Assert.InRange(waits[2] - waits[1], 0.95, 1.0 + 1e-6);

        // Set-BackfillThrottle's rate wins over the run's, and starts its slots from now.
        db.Execute("INSERT INTO dataops.run_control (run_id, items_per_minute) VALUES ('00000000-0000-0000-0000-000000000001', 600)");
        waits = db.Scalar<double[]>("SELECT array_agg(dataops.rate_slot('00000000-0000-0000-0000-000000000001', 60) ORDER BY g) FROM generate_series(1, 3) g");
        Assert.InRange(waits[0], 0, 0.05);
        Assert.InRange(waits[2] - waits[0], 0.15, 0.2 + 1e-6);

        // Unthrottled (0): no wait, no slot taken.
        db.Execute("UPDATE dataops.run_control SET items_per_minute = 0");
        Assert.Null(db.Scalar<object>("SELECT dataops.rate_slot('00000000-0000-0000-0000-000000000001', 60)") as double?);
    }

    [Theory]
    [InlineData(600, 10)]
    [InlineData(1_000_000, 50)]
    [InlineData(1, 3)]
    public async Task Rate_slots_space_every_callers_items_by_one_items_share_of_a_minute(int perMinute, int calls)
    {
        var db = await CoreAsync();

        // Asked back to back, as many workers would: each wait is one interval longer than the one before.
        var waits = db.Scalar<double[]>($"SELECT array_agg(dataops.rate_slot('00000000-0000-0000-0000-000000000001', {perMinute}) ORDER BY g) FROM generate_series(1, {calls}) g");
        var interval = 60.0 / perMinute;
        Assert.Equal(calls, waits.Length);
        Assert.InRange(waits[0], 0, 0.05);
        for (var i = 1; i < calls; i++)
        {
            // Time passes between the calls, so each wait is at most one interval more, and at least that minus the time the calls took.
            Assert.InRange(waits[i] - waits[i - 1], interval - 0.05, interval + 1e-6);
        }

        Assert.True(waits[^1] >= (calls - 1) * interval - 0.2, $"the last of {calls} callers waits {waits[^1]:0.000} s, not about {(calls - 1) * interval:0.000} s");
    }
}
