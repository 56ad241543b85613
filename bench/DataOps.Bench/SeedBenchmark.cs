using System.Collections;
using System.Diagnostics;
using System.Text;
using Npgsql;

namespace DataOps.Bench;

/// <summary>
/// New-ScriptExecutionSeed against two references timed in the same run on the same sandbox:
/// pgbench -i -s 10 (1M rows, the database's own bulk load) and 10,000-row multi-row INSERTs of
/// the same rows with the foreign keys in place (the original plan's approach).
/// </summary>
internal static class SeedBenchmark
{
    public static void Run(int repeats, long bigCount, bool skipInsert)
    {
        using var s = new BenchSession("bench-seed");
        var template = s.CreateDatabase("seedtpl");
        s.Invoke("Install-DataOpsSchema -Component ScriptExecution -Connection (Connect-DataOps -ConnectionString $cs -NoDefault) | Out-Null",
            new Hashtable { ["cs"] = s.ConnectionString(template) });

        // Warm-up: module load and first-call costs are not part of a load's speed.
        Seed(s, template, 10_000);

        var seedTimes = new List<double>();
        string? source = null;
        for (var i = 0; i < repeats; i++)
        {
            var (db, seconds, _) = Seed(s, template, 1_000_000);
            seedTimes.Add(seconds);
            Console.WriteLine($"seed 1M run {i + 1}: {seconds:0.000} s");
            if (source is null)
            {
                source = db;
            }
            else
            {
                s.Sql("dataops", $"DROP DATABASE {db} WITH (FORCE)");
            }
        }

        var peak1M = Stats.PeakWorkingSetMb();
        var alloc1M = AllocatedDuring(() => Seed(s, template, 1_000_000));
        Console.WriteLine($"process peak working set after 1M seeds: {peak1M} MB; managed allocation during one 1M seed: {alloc1M / 1e6:0.0} MB");

        var (bigDb, bigSeconds, _) = (string.Empty, 0.0, 0L);
        long allocBig = 0;
        allocBig = AllocatedDuring(() => (bigDb, bigSeconds, _) = Seed(s, template, bigCount));
        var peakBig = Stats.PeakWorkingSetMb();
        Console.WriteLine($"seed {bigCount / 1e6:0}M: {bigSeconds:0.000} s; peak working set {peakBig} MB; managed allocation {allocBig / 1e6:0.0} MB");
        s.Sql("dataops", $"DROP DATABASE {bigDb} WITH (FORCE)");

        var pgbenchTimes = new List<double>();
        for (var i = 0; i < repeats; i++)
        {
            var db = s.CreateDatabase("pgbench");
            var t = s.RunTool("pgbench", db, "-i", "-s", "10", "-q").TotalSeconds;
            pgbenchTimes.Add(t);
            Console.WriteLine($"pgbench -i -s 10 run {i + 1}: {t:0.000} s");
            s.Sql("dataops", $"DROP DATABASE {db} WITH (FORCE)");
        }

        var insertTimes = new List<double>();
        if (!skipInsert)
        {
            var rows = ReadRows(s.ConnectionString(source!));
            for (var i = 0; i < Math.Min(repeats, 2); i++)
            {
                var t = InsertBatches(s, template, rows);
                insertTimes.Add(t);
                Console.WriteLine($"10k-row multi-row INSERT run {i + 1}: {t:0.000} s");
            }
        }

        var seed = Stats.Median(seedTimes);
        var pgbench = Stats.Median(pgbenchTimes);
        var sb = new StringBuilder();
        sb.AppendLine();
        sb.AppendLine("| measure | median | ratio |");
        sb.AppendLine("| --- | --- | --- |");
        sb.AppendLine($"| New-ScriptExecutionSeed, 1,000,000 rows | {seed:0.00} s | 1.00 |");
        sb.AppendLine($"| pgbench -i -s 10 (1,000,000 rows) | {pgbench:0.00} s | seed / pgbench = {seed / pgbench:0.00} (target <= 2.0) |");
        if (insertTimes.Count > 0)
        {
            var insert = Stats.Median(insertTimes);
            sb.AppendLine($"| 10k-row multi-row INSERT, FKs in place | {insert:0.00} s | INSERT / seed = {insert / seed:0.00} (target >= 5) |");
        }

        sb.AppendLine($"| New-ScriptExecutionSeed, {bigCount:N0} rows | {bigSeconds:0.00} s | per-row time vs 1M = {bigSeconds / bigCount * 1_000_000 / seed:0.00} |");
        sb.AppendLine($"| process peak working set | {peak1M} MB after 1M, {peakBig} MB after {bigCount / 1e6:0}M | growth {peakBig - peak1M} MB (target < 20) |");
        sb.AppendLine($"| managed allocation per seed | {alloc1M / 1e6:0.0} MB for 1M, {allocBig / 1e6:0.0} MB for {bigCount / 1e6:0}M | |");
        Console.WriteLine(sb.ToString());
    }

    private static (string Database, double Seconds, long Count) Seed(BenchSession s, string template, long count)
    {
        var db = s.CreateDatabase("seed", template);
        var watch = Stopwatch.StartNew();
        var result = s.Invoke("New-ScriptExecutionSeed -Count $n -Seed 1 -Connection (Connect-DataOps -ConnectionString $cs -NoDefault)",
            new Hashtable { ["n"] = count, ["cs"] = s.ConnectionString(db) }).Single();
        watch.Stop();
        if ((long)result.Properties["ConstraintViolations"].Value != 0)
        {
            throw new InvalidOperationException("violations");
        }

        return (db, watch.Elapsed.TotalSeconds, count);
    }

    private static long AllocatedDuring(Action action)
    {
        var before = GC.GetTotalAllocatedBytes(precise: true);
        action();
        return GC.GetTotalAllocatedBytes(precise: true) - before;
    }

    private sealed record Row(long Ref, long Version, long? Schedule, DateTime? Planned, long? Trigger, DateTime Created);

    private static List<Row> ReadRows(string cs)
    {
        var rows = new List<Row>(1_000_000);
        using var conn = new NpgsqlConnection(cs);
        conn.Open();
        using var cmd = new NpgsqlCommand("SELECT script_reference_id, script_version_id, schedule_id, planned, triggering_event_id, created_at FROM script_execution ORDER BY id", conn);
        using var r = cmd.ExecuteReader();
        while (r.Read())
        {
            rows.Add(new Row(r.GetInt64(0), r.GetInt64(1), r.IsDBNull(2) ? null : r.GetInt64(2), r.IsDBNull(3) ? null : r.GetDateTime(3),
                r.IsDBNull(4) ? null : r.GetInt64(4), r.GetDateTime(5)));
        }

        return rows;
    }

    /// <summary>The reference: the same rows in 10,000-row INSERT ... VALUES statements, every constraint checked per row.</summary>
    private static double InsertBatches(BenchSession s, string template, List<Row> rows)
    {
        var db = s.CreateDatabase("insert", template);
        // The same prerequisites, made by the seeder and its rows removed again.
        s.Invoke("$c = Connect-DataOps -ConnectionString $cs -NoDefault; New-ScriptExecutionSeed -Count 1 -Seed 1 -Connection $c | Remove-ScriptExecutionSeed -Connection $c -Confirm:$false | Out-Null",
            new Hashtable { ["cs"] = s.ConnectionString(db) });
        using var conn = new NpgsqlConnection(s.ConnectionString(db));
        conn.Open();
        const int batch = 10_000;
        var watch = Stopwatch.StartNew();
        using var tx = conn.BeginTransaction();
        for (var start = 0; start < rows.Count; start += batch)
        {
            var n = Math.Min(batch, rows.Count - start);
            using var cmd = new NpgsqlCommand { Connection = conn, Transaction = tx };
            var sql = new StringBuilder("INSERT INTO script_execution (script_reference_id, script_version_id, schedule_id, planned, triggering_event_id, created_at) VALUES ");
            for (var i = 0; i < n; i++)
            {
                var row = rows[start + i];
                var p = i * 6;
                sql.Append(i == 0 ? "" : ",").Append($"(${p + 1},${p + 2},${p + 3},${p + 4},${p + 5},${p + 6})");
                cmd.Parameters.Add(new NpgsqlParameter { Value = row.Ref });
                cmd.Parameters.Add(new NpgsqlParameter { Value = row.Version });
                cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)row.Schedule ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Bigint });
                cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)row.Planned ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.TimestampTz });
                cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)row.Trigger ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Bigint });
                cmd.Parameters.Add(new NpgsqlParameter { Value = row.Created, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.TimestampTz });
            }

            cmd.CommandText = sql.ToString();
            cmd.ExecuteNonQuery();
        }

        tx.Commit();
        watch.Stop();
        s.Sql("dataops", $"DROP DATABASE {db} WITH (FORCE)");
        return watch.Elapsed.TotalSeconds;
    }
}
