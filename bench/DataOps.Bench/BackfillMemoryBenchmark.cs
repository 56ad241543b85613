using System.Collections;
using System.Diagnostics;
using System.Globalization;

namespace DataOps.Bench;

/// <summary>
/// Peak working set of a whole pwsh process (the pinned tool, module imported by its manifest) running one unthrottled
/// Invoke-Backfill over N items, for a small and a ten times larger N. The run keeps nothing per
/// item in memory (results and restore blocks go to the files as items commit), so the peak
/// should hardly grow with N; issue 14's target is large/small &lt;= 1.3.
/// </summary>
internal static class BackfillMemoryBenchmark
{
    public static void Run(int small, int large)
    {
        using var s = new BenchSession("bench-backfill-memory");
        var db = s.CreateDatabase("backfill_memory");
        var cs = s.ConnectionString(db);
        s.Invoke("Connect-DataOps -ConnectionString $cs | Out-Null; Install-DataOpsSchema -Component Core | Out-Null", new Hashtable { ["cs"] = cs });
        var dir = Directory.CreateTempSubdirectory("dataops-bench-mem-").FullName;
        var peaks = new List<(int Items, long Peak, TimeSpan Elapsed)>();
        foreach (var n in new[] { small, large })
        {
            var table = $"mem_items_{n}";
            s.Sql(db, $"CREATE TABLE {table} (id bigint PRIMARY KEY, val integer NOT NULL, note text); INSERT INTO {table} SELECT g, 0, 'item ' || g FROM generate_series(1, {n}) g;");
            s.Sql(db, $"VACUUM ANALYZE {table}");
            var job = BenchSession.IncrementJob(dir, $"mem-{n}", table, itemsPerMinute: 0);
            var watch = Stopwatch.StartNew();
            var peak = PeakOf($"Connect-DataOps -ConnectionString '{cs}' | Out-Null; Invoke-Backfill -Job '{job}' -ItemsPerMinute 0 -OutputDirectory '{dir}' -WarningAction SilentlyContinue | Out-Null; [System.Diagnostics.Process]::GetCurrentProcess().PeakWorkingSet64");
            watch.Stop();
            long applied;
            using (var conn = new Npgsql.NpgsqlConnection(cs))
            {
                conn.Open();
                using var count = new Npgsql.NpgsqlCommand($"SELECT count(*) FROM dataops.ledger WHERE job_name = 'mem-{n}' AND status = 'applied'", conn);
                applied = (long)count.ExecuteScalar()!;
            }

            if (applied != n)
            {
                throw new InvalidOperationException($"{applied} of {n} items applied");
            }

            peaks.Add((n, peak, watch.Elapsed));
            Console.WriteLine($"{n} items: peak working set {peak / 1048576.0:0} MB ({watch.Elapsed.TotalSeconds:0} s)");
        }

        Console.WriteLine();
        Console.WriteLine("| measure | result | ratio |");
        Console.WriteLine("| --- | --- | --- |");
        foreach (var (items, peak, elapsed) in peaks)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| peak working set, one process, Invoke-Backfill over {items:N0} items unthrottled ({elapsed.TotalSeconds:0} s) | {peak / 1048576.0:0} MB | {(double)peak / peaks[0].Peak:0.00} |"));
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| large / small (target <= 1.3) | | {(double)peaks[1].Peak / peaks[0].Peak:0.00} |"));
        Directory.Delete(dir, recursive: true);
    }

    /// <summary>Runs a command in a fresh pwsh process with the module imported and returns the number it prints last.</summary>
    internal static long PeakOf(string command)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        psi.Environment["NO_COLOR"] = "1";
        foreach (var a in new[] { StartupBenchmark.FindPwsh(), "-NoProfile", "-NonInteractive", "-Command", $"Import-Module '{BenchSession.FindManifest()}'; {command}" })
        {
            psi.ArgumentList.Add(a);
        }

        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stderr = p.StandardError.ReadToEndAsync();
        var lines = p.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        p.WaitForExit();
        if (p.ExitCode != 0 || lines.Length == 0)
        {
            throw new InvalidOperationException($"pwsh exited {p.ExitCode}: {stderr.Result}");
        }

        return long.Parse(lines[^1], CultureInfo.InvariantCulture);
    }
}
