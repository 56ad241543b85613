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
    public static void Run(int items, bool skipThrottle, int repeats)
    {
        using var s = new BenchSession("bench-backfill");
        var db = s.CreateDatabase("backfill");
        var cs = s.ConnectionString(db);
        s.Invoke("Connect-DataOps -ConnectionString $cs | Out-Null; Install-DataOpsSchema -Component Core | Out-Null", new Hashtable { ["cs"] = cs });
        var dir = Directory.CreateTempSubdirectory("dataops-bench-bf-").FullName;
        string Table(string table, int rows)
        {
            s.Sql(db, $"CREATE TABLE {table} (id bigint PRIMARY KEY, val integer NOT NULL, note text) WITH (autovacuum_enabled = false); INSERT INTO {table} SELECT g, 0, 'item ' || g FROM generate_series(1, {rows}) g;");
            Settle(table);
            return table;
        }

        // Autovacuum is off for the bench's tables and vacuum runs explicitly before each measurement, so
        // neither side shares the two cores with a background worker that happens to start.
        s.Sql(db, "ALTER TABLE dataops.ledger SET (autovacuum_enabled = false); ALTER TABLE dataops.run SET (autovacuum_enabled = false)");
        void Settle(string table)
        {
            s.Sql(db, $"VACUUM ANALYZE {table}");
            s.Sql(db, "VACUUM ANALYZE dataops.ledger");
            s.Sql(db, "CHECKPOINT");
        }

        // pgbench -c 1 with the same UPDATE on the same table, right after the run it is paired with.
        double PgbenchOn(string table)
        {
            var script = Path.Combine(dir, $"update_{table}.sql");
            File.WriteAllText(script, $"\\set id random(1, {items})\nUPDATE {table} SET val = val + 1 WHERE id = :id;\n");
            return Tps(s, db, script, items);
        }

        string Job(string name, string table) => BenchSession.IncrementJob(dir, name, table, itemsPerMinute: 20);

        // Warm-up, as any benchmark harness does: the first run in a process also pays for loading and
        // JIT-compiling the module's code (methods called once per round trip reach optimised code after
        // about 30 round trips). It is its own job on its own table; its rate is printed too.
        const int warmupItems = 5_000;
        var warmup = Stopwatch.StartNew();
        s.Invoke("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -WarningAction SilentlyContinue | Out-Null", new Hashtable { ["job"] = Job("bench-warmup", Table("warmup_items", warmupItems)), ["out"] = dir });
        warmup.Stop();
        var coldRate = warmupItems / warmup.Elapsed.TotalSeconds;
        Console.WriteLine($"warm-up: first Invoke-Backfill in the process, {warmupItems} items: {coldRate:0} items/s");

        // Each repetition: a fresh table of `items` rows, the backfill over all of it, then pgbench with
        // the same UPDATE on that table. Pairs run back to back, so both see the same machine.
        var rates = new List<double>();
        var tps = new List<double>();
        string? firstJob = null;
        for (var r = 1; r <= repeats; r++)
        {
            var table = Table($"bench_items_{r}", items);
            var job = Job($"bench-increment-{r}", table);
            firstJob ??= job;
            Settle(table);
            var watch = Stopwatch.StartNew();
            var results = s.Invoke("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -WarningAction SilentlyContinue", new Hashtable { ["job"] = job, ["out"] = dir });
            watch.Stop();
            var applied = results.Count(x => x.Properties["Status"].Value.ToString() == "Applied");
            if (applied != items)
            {
                throw new InvalidOperationException($"{applied} of {items} items applied");
            }

            rates.Add(items / watch.Elapsed.TotalSeconds);
            Settle(table);
            tps.Add(PgbenchOn(table));
            Console.WriteLine($"repetition {r}: Invoke-Backfill {items} items unthrottled {rates[^1]:0} items/s ({watch.Elapsed.TotalSeconds:0.00} s); pgbench, same UPDATE, 1 client: {tps[^1]:0} tps; ratio {rates[^1] / tps[^1]:0.00}");
        }

        var rate = Stats.Median(rates);
        var pgbench = Stats.Median(tps);
        var ratios = rates.Zip(tps, (a, b) => a / b).ToList();
        var sb = new StringBuilder();
        sb.AppendLine();
        sb.AppendLine("| measure | result | ratio |");
        sb.AppendLine("| --- | --- | --- |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Invoke-Backfill, {items:N0} items, throttle off (median of {repeats}) | {rate:0} items/s | {Stats.Median(ratios):0.00} x pgbench, median of the pairs ({string.Join(", ", ratios.Select(x => x.ToString("0.00", CultureInfo.InvariantCulture)))}; target >= 0.25) |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| pgbench -n -c 1 -t {items:N0}, the same UPDATE per transaction (median of {repeats}) | {pgbench:0} tps | 1.00 |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| the same, its fastest run (the strictest reference) | {tps.Max():0} tps | Invoke-Backfill median / this: {rate / tps.Max():0.00} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| warm-up: the process's first Invoke-Backfill, {warmupItems:N0} items (loading, JIT) | {coldRate:0} items/s | {coldRate / pgbench:0.00} x pgbench |");

        // Every other path a run can take, each on a fresh table and paired with its own pgbench run.
        sb.AppendLine();
        sb.AppendLine("| path (10,000-item runs, throttle off) | median items/s | median ratio to its paired pgbench -c 1 (each pair) |");
        sb.AppendLine("| --- | --- | --- |");
        foreach (var (path, expected) in new[] { ("dry run (-DryRun)", "WouldApply"), ("maxConcurrency 4", "Applied"), ("Test-ProdHealth plan", "Applied") })
        {
            var pathRates = new List<double>();
            var pathRatios = new List<double>();
            for (var r = 1; r <= Math.Min(repeats, 3); r++)
            {
                var slug = new string(path.Where(char.IsLetterOrDigit).ToArray()).ToLowerInvariant();
                var table = Table($"bench_{slug}_{r}", items);
                var job = BenchSession.IncrementJob(dir, $"bench-{slug}-{r}", table, itemsPerMinute: 20, maxConcurrency: path.StartsWith("maxConcurrency", StringComparison.Ordinal) ? 4 : 1);
                var args = new Hashtable { ["job"] = job, ["out"] = dir, ["plan"] = Path.Combine(dir, $"plan-{slug}-{r}.json") };
                if (path.StartsWith("Test-ProdHealth", StringComparison.Ordinal))
                {
                    s.Invoke("Test-ProdHealth -Job $job -OutputDirectory $out -PlanPath $plan -WarningAction SilentlyContinue -InformationAction SilentlyContinue | Out-Null", args);
                    args["job"] = args["plan"];
                }

                Settle(table);
                var watch = Stopwatch.StartNew();
                var results = s.Invoke($"Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out{(expected == "WouldApply" ? " -DryRun" : string.Empty)} -WarningAction SilentlyContinue", args);
                watch.Stop();
                var done = results.Count(x => x.Properties["Status"].Value.ToString() == expected);
                if (done != items)
                {
                    throw new InvalidOperationException($"{path}: {done} of {items} items {expected}");
                }

                pathRates.Add(items / watch.Elapsed.TotalSeconds);
                Settle(table);
                var pathTps = PgbenchOn(table);
                pathRatios.Add(pathRates[^1] / pathTps);
                Console.WriteLine($"{path}, repetition {r}: {pathRates[^1]:0} items/s ({watch.Elapsed.TotalSeconds:0.00} s); pgbench {pathTps:0} tps; ratio {pathRatios[^1]:0.00}");
            }

            sb.AppendLine(CultureInfo.InvariantCulture, $"| {path} | {Stats.Median(pathRates):0} | {Stats.Median(pathRatios):0.00} ({string.Join(", ", pathRatios.Select(x => x.ToString("0.00", CultureInfo.InvariantCulture)))}; target >= 0.5) |");
        }

        if (!skipThrottle)
        {
            s.Sql(db, "UPDATE bench_items_1 SET val = 0; DELETE FROM dataops.ledger;");
            var count = ThrottledFor(s, firstJob!, dir, TimeSpan.FromMinutes(3));
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

    /// <summary>pgbench's tps for <paramref name="transactions"/> runs of <paramref name="script"/> in all, over <paramref name="clients"/> clients (and as many threads).</summary>
    internal static double Tps(BenchSession s, string db, string script, int transactions, int clients = 1)
    {
        var psi = new ProcessStartInfo(Path.Combine(s.BinDirectory, "pgbench")) { RedirectStandardOutput = true, RedirectStandardError = true };
        var (c, t) = (clients.ToString(CultureInfo.InvariantCulture), (transactions / clients).ToString(CultureInfo.InvariantCulture));
        foreach (var a in new[] { "-h", "127.0.0.1", "-p", s.Port.ToString(CultureInfo.InvariantCulture), "-U", "postgres", "-n", "-c", c, "-j", c, "-t", t, "-f", script, db })
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
