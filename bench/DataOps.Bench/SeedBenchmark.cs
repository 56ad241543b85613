using System.Collections;
using System.Diagnostics;
using System.Management.Automation;
using System.Text;
using Npgsql;

namespace DataOps.Bench;

/// <summary>
/// New-ScriptExecutionSeed against two references timed in the same run: pgbench -i -s 10 (1M rows,
/// the database's own bulk load) and 10,000-row multi-row INSERTs of the same rows with the foreign
/// keys in place (the original plan's approach). The seed/pgbench ratio is measured on two clusters:
/// the sandbox (fsync and full_page_writes off) and a second cluster with PostgreSQL's default
/// settings. Seeds and pgbench loads alternate (seed, pgbench, seed, pgbench, ...) so a machine that
/// other jobs load weighs on both sides of each pair; the figure is the median of the paired ratios.
/// </summary>
internal static class SeedBenchmark
{
    public static void Run(int repeats, long bigCount, bool skipInsert, string settings)
    {
        using var s = new BenchSession("bench-seed");
        using var defaults = settings is "both" or "default" ? new DefaultSettingsCluster(s.BinDirectory) : null;
        var clusters = new List<IBenchCluster>();
        if (settings is "both" or "sandbox")
        {
            clusters.Add(s);
        }

        if (defaults is not null)
        {
            Console.WriteLine($"default-settings cluster: {defaults.Settings}");
            clusters.Add(defaults);
        }

        var table = new StringBuilder();
        table.AppendLine();
        table.AppendLine("| cluster | New-ScriptExecutionSeed 1M (median) | pgbench -i -s 10 (median) | seed / pgbench, median of paired ratios | load average during the pairs |");
        table.AppendLine("| --- | --- | --- | --- | --- |");
        var breakdown = new StringBuilder();
        string? sandboxTemplate = null;
        double sandboxSeed = 0;
        foreach (var c in clusters)
        {
            var template = c.CreateDatabase("seedtpl");
            s.Invoke("Install-DataOpsSchema -Component ScriptExecution -Connection (Connect-DataOps -ConnectionString $cs -NoDefault) | Out-Null",
                new Hashtable { ["cs"] = c.ConnectionString(template) + ";Pooling=false" }); // a pooled session would block CREATE DATABASE ... TEMPLATE
            if (c == s)
            {
                sandboxTemplate = template;
            }

            // Warm-up: module load and first-call costs are not part of a load's speed; pgbench's binary and libpq get cached too.
            var (warm, _, _) = Seed(s, c, template, 10_000);
            c.Sql(c == s ? "dataops" : "postgres", $"DROP DATABASE {warm} WITH (FORCE)");
            Pgbench(c);

            var seedTimes = new List<double>();
            var pgbenchTimes = new List<double>();
            var ratios = new List<double>();
            var loads = new List<double> { LoadAverage() };
            var phases = new Dictionary<string, List<double>>();
            for (var i = 0; i < repeats; i++)
            {
                var (db, seconds, runPhases) = Seed(s, c, template, 1_000_000);
                c.Sql(c == s ? "dataops" : "postgres", $"DROP DATABASE {db} WITH (FORCE)");
                var pg = Pgbench(c);
                seedTimes.Add(seconds);
                pgbenchTimes.Add(pg);
                ratios.Add(seconds / pg);
                loads.Add(LoadAverage());
                foreach (var (phase, ms) in runPhases)
                {
                    (phases.TryGetValue(phase, out var list) ? list : phases[phase] = []).Add(ms);
                }

                Console.WriteLine($"{c.Label} pair {i + 1}: seed 1M {seconds:0.000} s, pgbench -i -s 10 {pg:0.000} s, ratio {seconds / pg:0.00}, load average {loads[^1]:0.0}");
            }

            table.AppendLine($"| {c.Label} | {Stats.Median(seedTimes):0.00} s | {Stats.Median(pgbenchTimes):0.00} s | {Stats.Median(ratios):0.00} (pairs {string.Join(", ", ratios.Select(r => r.ToString("0.00", System.Globalization.CultureInfo.InvariantCulture)))}; target <= 2.0) | {loads.Min():0.0}-{loads.Max():0.0} |");
            breakdown.AppendLine();
            breakdown.AppendLine($"{c.Label}, median of each phase (from -Verbose): " + string.Join("; ", phases.Select(p => $"{p.Key} {Stats.Median(p.Value):0} ms")));
            if (c == s)
            {
                sandboxSeed = Stats.Median(seedTimes);
            }
        }

        Console.WriteLine(table.ToString() + breakdown.ToString());
        if (sandboxTemplate is null)
        {
            return;
        }

        // Memory and scale on the sandbox: a 1M seed, then one of bigCount rows in the same process.
        var (source, _, _) = Seed(s, s, sandboxTemplate, 1_000_000);
        var peak1M = Stats.PeakWorkingSetMb();
        var alloc1M = AllocatedDuring(() => Seed(s, s, sandboxTemplate, 1_000_000));
        Console.WriteLine($"process peak working set after 1M seeds: {peak1M} MB; managed allocation during one 1M seed: {alloc1M / 1e6:0.0} MB");

        var (bigDb, bigSeconds) = (string.Empty, 0.0);
        var allocBig = AllocatedDuring(() => (bigDb, bigSeconds, _) = Seed(s, s, sandboxTemplate, bigCount));
        var peakBig = Stats.PeakWorkingSetMb();
        Console.WriteLine($"seed {bigCount / 1e6:0}M: {bigSeconds:0.000} s; peak working set {peakBig} MB; managed allocation {allocBig / 1e6:0.0} MB");
        s.Sql("dataops", $"DROP DATABASE {bigDb} WITH (FORCE)");

        var insertTimes = new List<double>();
        if (!skipInsert)
        {
            var rows = ReadRows(s.ConnectionString(source));
            for (var i = 0; i < Math.Min(repeats, 2); i++)
            {
                var t = InsertBatches(s, sandboxTemplate, rows);
                insertTimes.Add(t);
                Console.WriteLine($"10k-row multi-row INSERT run {i + 1}: {t:0.000} s");
            }
        }

        var sb = new StringBuilder();
        sb.AppendLine();
        sb.AppendLine("| measure (sandbox) | median | ratio |");
        sb.AppendLine("| --- | --- | --- |");
        if (insertTimes.Count > 0)
        {
            var insert = Stats.Median(insertTimes);
            sb.AppendLine($"| 10k-row multi-row INSERT, FKs in place | {insert:0.00} s | INSERT / seed = {insert / sandboxSeed:0.00} (target >= 5) |");
        }

        sb.AppendLine($"| New-ScriptExecutionSeed, {bigCount:N0} rows | {bigSeconds:0.00} s | per-row time vs 1M = {bigSeconds / bigCount * 1_000_000 / sandboxSeed:0.00} |");
        sb.AppendLine($"| process peak working set | {peak1M} MB after 1M, {peakBig} MB after {bigCount / 1e6:0}M | growth {peakBig - peak1M} MB (target < 20) |");
        sb.AppendLine($"| managed allocation per seed | {alloc1M / 1e6:0.0} MB for 1M, {allocBig / 1e6:0.0} MB for {bigCount / 1e6:0}M | |");
        Console.WriteLine(sb.ToString());
    }

    /// <summary>pgbench -i -s 10 into a fresh database of the cluster (dropped after); its wall time in seconds.</summary>
    private static double Pgbench(IBenchCluster c)
    {
        var db = c.CreateDatabase("pgbench");
        var t = c.RunTool("pgbench", db, "-i", "-s", "10", "-q").TotalSeconds;
        c.Sql(c is BenchSession ? "dataops" : "postgres", $"DROP DATABASE {db} WITH (FORCE)");
        return t;
    }

    private static double LoadAverage() =>
        File.Exists("/proc/loadavg") ? double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) : double.NaN;

    private static (string Database, double Seconds, List<(string Phase, double Ms)> Phases) Seed(BenchSession s, IBenchCluster c, string template, long count)
    {
        var db = c.CreateDatabase("seed", template);
        var watch = Stopwatch.StartNew();
        var output = s.Invoke("New-ScriptExecutionSeed -Count $n -Seed 1 -Connection (Connect-DataOps -ConnectionString $cs -NoDefault) -Verbose 4>&1",
            new Hashtable { ["n"] = count, ["cs"] = c.ConnectionString(db) });
        watch.Stop();
        var result = output.Single(o => o.BaseObject is not VerboseRecord);
        if ((long)result.Properties["ConstraintViolations"].Value != 0)
        {
            throw new InvalidOperationException("violations");
        }

        var phases = output.Select(o => o.BaseObject).OfType<VerboseRecord>()
            .Select(v => System.Text.RegularExpressions.Regex.Match(v.Message, @"^(.*?) took (\d+) ms"))
            .Where(m => m.Success)
            .Select(m => (m.Groups[1].Value, double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture)))
            .ToList();
        return (db, watch.Elapsed.TotalSeconds, phases);
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
