using System.Collections;
using System.Diagnostics;
using System.Globalization;
using System.Management.Automation;
using System.Text;
using System.Text.RegularExpressions;

namespace DataOps.Bench;

/// <summary>
/// Invoke-Backfill unthrottled over 10,000 items against pgbench running the same single UPDATE per
/// transaction on the same sandbox, and the throttle's accuracy at 20 items/minute over 3 minutes.
/// </summary>
internal static partial class BackfillBenchmark
{
    public static void Run(int items, bool skipThrottle)
    {
        using var s = new BenchSession("bench-backfill");
        var db = s.CreateDatabase("backfill");
        var cs = s.ConnectionString(db);
        s.Invoke("Connect-DataOps -ConnectionString $cs | Out-Null; Install-DataOpsSchema -Component Core | Out-Null", new Hashtable { ["cs"] = cs });
        s.Sql(db, $"CREATE TABLE bench_items (id bigint PRIMARY KEY, val integer NOT NULL, note text); INSERT INTO bench_items SELECT g, 0, 'item ' || g FROM generate_series(1, {items}) g;");
        s.Sql(db, "VACUUM ANALYZE bench_items");
        var dir = Directory.CreateTempSubdirectory("dataops-bench-bf-").FullName;
        var job = Path.Combine(dir, "bench.job.json");
        File.WriteAllText(job, """
            {
              "version": 1, "name": "bench-increment",
              "items": { "discover": "SELECT id::text AS key FROM bench_items ORDER BY id" },
              "throttle": { "itemsPerMinute": 20, "batchSize": 500 },
              "capture": [ { "table": "bench_items", "where": "id = @key::bigint" } ],
              "steps": [ { "name": "increment", "sql": "UPDATE bench_items SET val = val + 1 WHERE id = @key::bigint" } ],
              "verify": "SELECT val > 0 FROM bench_items WHERE id = @key::bigint"
            }
            """);

        var watch = Stopwatch.StartNew();
        var results = s.Invoke("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -WarningAction SilentlyContinue", new Hashtable { ["job"] = job, ["out"] = dir });
        watch.Stop();
        var applied = results.Count(r => r.Properties["Status"].Value.ToString() == "Applied");
        if (applied != items)
        {
            throw new InvalidOperationException($"{applied} of {items} items applied");
        }

        var backfillRate = items / watch.Elapsed.TotalSeconds;
        Console.WriteLine($"Invoke-Backfill, {items} items unthrottled: {watch.Elapsed.TotalSeconds:0.00} s, {backfillRate:0} items/s");

        var script = Path.Combine(dir, "update.sql");
        File.WriteAllText(script, $"\\set id random(1, {items})\nUPDATE bench_items SET val = val + 1 WHERE id = :id;\n");
        var pgbench = Tps(s, db, script, items);
        Console.WriteLine($"pgbench, same UPDATE, one transaction each, 1 client: {pgbench:0} tps");

        var sb = new StringBuilder();
        sb.AppendLine();
        sb.AppendLine("| measure | result | ratio |");
        sb.AppendLine("| --- | --- | --- |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Invoke-Backfill, {items:N0} items, throttle off | {backfillRate:0} items/s ({watch.Elapsed.TotalSeconds:0.0} s) | {backfillRate / pgbench:0.00} x pgbench (target >= 0.25) |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| pgbench -n -c 1 -t {items:N0}, the same UPDATE per transaction | {pgbench:0} tps | 1.00 |");

        if (!skipThrottle)
        {
            s.Sql(db, "UPDATE bench_items SET val = 0; DELETE FROM dataops.ledger;");
            var count = ThrottledFor(s, job, dir, TimeSpan.FromMinutes(3));
            Console.WriteLine($"throttle at 20 items/minute for 3 minutes: {count} items (target 60 +/- 1)");
            sb.AppendLine(CultureInfo.InvariantCulture, $"| Invoke-Backfill at 20 items/minute, stopped after 3 minutes | {count} items applied | target 60 +/- 1 |");
        }

        Console.WriteLine(sb.ToString());
        Directory.Delete(dir, recursive: true);
    }

    /// <summary>Runs the job at its own 20 items/minute and stops it after the window; counts applied items.</summary>
    private static int ThrottledFor(BenchSession s, string job, string dir, TimeSpan window)
    {
        using var ps = s.NewPowerShell();
        ps.AddCommand("Invoke-Backfill").AddParameter("Job", job).AddParameter("OutputDirectory", dir).AddParameter("WarningAction", "SilentlyContinue");
        var output = new PSDataCollection<PSObject>();
        var handle = ps.BeginInvoke<PSObject, PSObject>(null, output);
        Thread.Sleep(window);
        ps.Stop();
        try
        {
            ps.EndInvoke(handle);
        }
        catch (PipelineStoppedException)
        {
        }

        return output.Count(r => r.Properties["Status"].Value.ToString() == "Applied");
    }

    private static double Tps(BenchSession s, string db, string script, int transactions)
    {
        var psi = new ProcessStartInfo(Path.Combine(s.BinDirectory, "pgbench")) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-h", "127.0.0.1", "-p", s.Port.ToString(CultureInfo.InvariantCulture), "-U", "postgres", "-n", "-c", "1", "-t", transactions.ToString(CultureInfo.InvariantCulture), "-f", script, db })
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["PGPASSWORD"] = s.Password;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        var m = TpsLine().Match(stdout);
        return m.Success ? double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : throw new InvalidOperationException("pgbench: " + stdout + p.StandardError.ReadToEnd());
    }

    [GeneratedRegex(@"tps = ([0-9.]+)")]
    private static partial Regex TpsLine();
}
