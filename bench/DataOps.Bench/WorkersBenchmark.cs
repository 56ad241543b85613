using System.Collections;
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace DataOps.Bench;

/// <summary>
/// Issue 18, item 2: the same 10,000-item job with 1, 2 and 4 workers (Invoke-Backfill -Workers, items claimed
/// from the database), unthrottled, against the one-client path and pgbench running the same UPDATE with
/// 1, 2 and 4 clients on the same sandbox: on two cores the server is the limit, and pgbench's own scaling
/// says how much room there is.
/// </summary>
internal static class WorkersBenchmark
{
    public static void Run(int items, int repeats)
    {
        using var s = new BenchSession("bench-workers");
        var db = s.CreateDatabase("workers");
        var cs = s.ConnectionString(db);
        s.Invoke("Connect-DataOps -ConnectionString $cs | Out-Null; Install-DataOpsSchema -Component Core | Out-Null", new Hashtable { ["cs"] = cs });
        var dir = Directory.CreateTempSubdirectory("dataops-bench-workers-").FullName;
        s.Sql(db, "ALTER TABLE dataops.ledger SET (autovacuum_enabled = false); ALTER TABLE dataops.run SET (autovacuum_enabled = false)");
        var n = 0;
        string Table()
        {
            var table = $"w_items_{++n}";
            s.Sql(db, $"CREATE TABLE {table} (id bigint PRIMARY KEY, val integer NOT NULL, note text) WITH (autovacuum_enabled = false); INSERT INTO {table} SELECT g, 0, 'item ' || g FROM generate_series(1, {items}) g;");
            s.Sql(db, $"VACUUM ANALYZE {table}");
            s.Sql(db, "VACUUM ANALYZE dataops.ledger");
            s.Sql(db, "CHECKPOINT");
            return table;
        }

        double Backfill(string? workers)
        {
            var table = Table();
            var job = BenchSession.IncrementJob(dir, $"bench-{table}", table, itemsPerMinute: 20);
            var watch = Stopwatch.StartNew();
            var results = s.Invoke($"Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out {workers} -WarningAction SilentlyContinue", new Hashtable { ["job"] = job, ["out"] = dir });
            watch.Stop();
            var applied = results.Count(x => x.Properties["Status"].Value.ToString() == "Applied");
            if (applied != items || Convert.ToInt64(s.Scalar(db, $"SELECT count(*) FROM {table} WHERE val = 1")) != items)
            {
                throw new InvalidOperationException($"{workers}: {applied} of {items} items applied, or not each once");
            }

            return items / watch.Elapsed.TotalSeconds;
        }

        double Pgbench(int clients)
        {
            var table = Table();
            var script = Path.Combine(dir, $"update_{table}.sql");
            File.WriteAllText(script, $"\\set id random(1, {items})\nUPDATE {table} SET val = val + 1 WHERE id = :id;\n");
            return BackfillBenchmark.Tps(s, db, script, items, clients);
        }

        // Warm-up (loading, JIT) on its own table, not measured.
        Backfill("-Workers 2");
        var paths = new (string Label, Func<double> Measure)[]
        {
            ("one client, no queue (the default path: server-side groups)", () => Backfill(null)),
            ("-Workers 1", () => Backfill("-Workers 1")),
            ("-Workers 2", () => Backfill("-Workers 2")),
            ("-Workers 4", () => Backfill("-Workers 4")),
            ("pgbench -c 1, the same UPDATE", () => Pgbench(1)),
            ("pgbench -c 2 -j 2", () => Pgbench(2)),
            ("pgbench -c 4 -j 4", () => Pgbench(4)),
        };
        var results = paths.ToDictionary(p => p.Label, _ => new List<double>());
        for (var r = 1; r <= repeats; r++)
        {
            foreach (var (label, measure) in paths)
            {
                results[label].Add(measure());
                Console.WriteLine($"repetition {r}: {label}: {results[label][^1]:0} items/s");
            }
        }

        var one = Stats.Median(results["-Workers 1"]);
        var pg1 = Stats.Median(results["pgbench -c 1, the same UPDATE"]);
        var sb = new StringBuilder();
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"| {items:N0} items, unthrottled (median of {repeats}) | items/s | x -Workers 1 | x pgbench -c 1 |");
        sb.AppendLine("| --- | --- | --- | --- |");
        foreach (var (label, _) in paths)
        {
            var median = Stats.Median(results[label]);
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {label} | {median:0} | {median / one:0.00} | {median / pg1:0.00} |");
        }

        Console.WriteLine(sb.ToString());
        Directory.Delete(dir, recursive: true);
    }
}
