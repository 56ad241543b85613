using System.Diagnostics;
using System.Globalization;
using System.Text;
using Npgsql;

namespace DataOps.Bench;

/// <summary>
/// Keyset chunks (issue 18): a keyset job over pgbench_accounts (pgbench -i -s SCALE), one UPDATE per
/// row in chunks sized to a target time, run by Invoke-Backfill in a pwsh process of its own (for its
/// peak working set), against the same UPDATEs as a psql script of one transaction per chunk with the
/// very chunk bounds the run chose (read back from the ledger), in the same run on the same table
/// (VACUUM ANALYZE and CHECKPOINT before each). Reports throughput (rows/s) of both, their ratio, the
/// chunk times against the target, and the process's peak working set for each scale.
/// </summary>
internal static class KeysetBenchmark
{
    public static void Run(IReadOnlyList<int> scales, string chunkTime)
    {
        using var s = new BenchSession("bench-keyset");
        var dir = Directory.CreateTempSubdirectory("dataops-bench-keyset-").FullName;
        var rows = new List<string>();
        foreach (var scale in scales)
        {
            var db = s.CreateDatabase($"keyset_{scale}");
            var cs = s.ConnectionString(db);
            s.Invoke("Install-DataOpsSchema -Connection (Connect-DataOps -ConnectionString $cs -NoDefault) -Component Core | Out-Null", new System.Collections.Hashtable { ["cs"] = cs });
            s.RunTool("pgbench", db, "-i", "-s", scale.ToString(CultureInfo.InvariantCulture), "-q");
            var total = scale * 100_000L;
            var job = Job(dir, $"keyset-{scale}", chunkTime);
            Prepare(s, db);
            var watch = Stopwatch.StartNew();
            var peak = BackfillMemoryBenchmark.PeakOf($"Connect-DataOps -ConnectionString '{cs}' | Out-Null; Invoke-Backfill -Job '{job}' -OutputDirectory '{dir}' -Force -WarningAction SilentlyContinue | Out-Null; [System.Diagnostics.Process]::GetCurrentProcess().PeakWorkingSet64");
            watch.Stop();
            var (chunks, applied, durations) = Ledger(cs, $"keyset-{scale}");
            if (applied != total || Scalar(cs, "SELECT count(*) FROM pgbench_accounts WHERE abalance <> 1") != 0)
            {
                throw new InvalidOperationException($"{applied} of {total} rows applied");
            }

            // The reference: the same UPDATE on the same chunks, one transaction each, through psql.
            var script = Path.Combine(dir, $"reference-{scale}.sql");
            using (var writer = new StreamWriter(script))
            {
                writer.WriteLine("\\set ON_ERROR_STOP on");
                foreach (var (lo, hi) in chunks)
                {
                    writer.WriteLine(string.Create(CultureInfo.InvariantCulture, $"BEGIN; UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN {lo} AND {hi}; COMMIT;"));
                }
            }

            Prepare(s, db);
            var psql = s.RunTool("psql", db, "-q", "-X", "-f", script);
            var target = TimeSpan.FromMilliseconds(double.Parse(chunkTime.TrimEnd('m', 's'), CultureInfo.InvariantCulture));
            var within = durations.Count(d => d >= target * 0.5 && d <= target * 1.5);
            var steady = durations.Skip(Math.Min(10, durations.Count / 10)).ToList();
            var withinSteady = steady.Count(d => d >= target * 0.5 && d <= target * 1.5);
            var moduleRate = total / watch.Elapsed.TotalSeconds;
            var psqlRate = total / psql.TotalSeconds;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"scale {scale} ({total:N0} rows): Invoke-Backfill {watch.Elapsed.TotalSeconds:0.0} s ({moduleRate:0} rows/s, {chunks.Count} chunks, peak working set {peak / 1048576.0:0} MB); psql, same chunks {psql.TotalSeconds:0.0} s ({psqlRate:0} rows/s); ratio {moduleRate / psqlRate:0.00}; chunk time median {Median(durations):0} ms, within 0.5x-1.5x of {target.TotalMilliseconds:0} ms: {within} of {durations.Count} ({withinSteady} of {steady.Count} after the first {durations.Count - steady.Count})"));
            rows.Add(string.Create(CultureInfo.InvariantCulture,
                $"| {total:N0} rows (pgbench -s {scale}) | {watch.Elapsed.TotalSeconds:0.0} s, {moduleRate:0} rows/s | {psql.TotalSeconds:0.0} s, {psqlRate:0} rows/s | **{moduleRate / psqlRate:0.00}** | {chunks.Count} chunks, median {Median(durations):0} ms; {100.0 * within / durations.Count:0}% within 0.5x-1.5x ({100.0 * withinSteady / Math.Max(1, steady.Count):0}% after the first {durations.Count - steady.Count}) | {peak / 1048576.0:0} MB |"));
            s.Sql("dataops", $"DROP DATABASE {db} WITH (FORCE)");
            foreach (var runDir in Directory.GetDirectories(dir))
            {
                Directory.Delete(runDir, recursive: true);
            }
        }

        Console.WriteLine();
        Console.WriteLine($"| table | Invoke-Backfill (keyset, chunkTime {chunkTime}) | psql, one transaction per chunk, same bounds | ratio (target >= 0.5) | chunk times | process peak working set |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- |");
        rows.ForEach(Console.WriteLine);
        Directory.Delete(dir, recursive: true);
    }

    private static string Job(string dir, string name, string chunkTime)
    {
        var path = Path.Combine(dir, name + ".job.json");
        File.WriteAllText(path, $$"""
            {
              "version": 1, "name": "{{name}}",
              "items": { "keyset": { "table": "pgbench_accounts", "key": "aid", "chunkTime": "{{chunkTime}}", "minChunkSize": 1000, "maxChunkSize": 100000 } },
              "throttle": { "itemsPerMinute": 0, "batchSize": 100 },
              "capture": [ { "table": "pgbench_accounts", "where": "aid BETWEEN @lo::int AND @hi::int" } ],
              "steps": [ { "name": "increment", "sql": "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN @lo::int AND @hi::int" } ],
              "verify": "SELECT NOT EXISTS (SELECT 1 FROM pgbench_accounts WHERE aid BETWEEN @lo::int AND @hi::int AND abalance <> 1)"
            }
            """);
        return path;
    }

    private static void Prepare(BenchSession s, string db)
    {
        s.Sql(db, "VACUUM ANALYZE pgbench_accounts");
        s.Sql(db, "CHECKPOINT");
    }

    private static (List<(long Lo, long Hi)> Chunks, long Rows, List<TimeSpan> Durations) Ledger(string cs, string job)
    {
        using var conn = new NpgsqlConnection(cs);
        conn.Open();
        // A chunk's time is the time from the commit of the chunk before to its own (the first: its own
        // duration): its boundary query, the statements, the client's share and its commit, all of it.
        using var cmd = new NpgsqlCommand("""
            SELECT (item_key::jsonb ->> 0)::bigint, (item_key::jsonb ->> 1)::bigint, rows_changed,
                   coalesce((extract(epoch FROM finished_at - lag(finished_at) OVER (ORDER BY ledger_id)) * 1000)::integer, duration_ms)
            FROM dataops.ledger WHERE job_name = @job AND status = 'applied' ORDER BY ledger_id
            """, conn);
        cmd.Parameters.AddWithValue("job", job);
        using var reader = cmd.ExecuteReader();
        var chunks = new List<(long, long)>();
        var durations = new List<TimeSpan>();
        long total = 0;
        while (reader.Read())
        {
            chunks.Add((reader.GetInt64(0), reader.GetInt64(1)));
            total += reader.GetInt32(2);
            durations.Add(TimeSpan.FromMilliseconds(reader.GetInt32(3)));
        }

        return (chunks, total, durations);
    }

    private static long Scalar(string cs, string sql)
    {
        using var conn = new NpgsqlConnection(cs);
        conn.Open();
        using var cmd = new NpgsqlCommand(sql, conn);
        return Convert.ToInt64(cmd.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    private static double Median(IReadOnlyList<TimeSpan> values) => Stats.Median(values.Select(v => v.TotalMilliseconds));
}
