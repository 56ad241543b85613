using System.Collections;
using System.Diagnostics;
using System.Globalization;
using System.Management.Automation;
using System.Text;
using System.Text.RegularExpressions;

namespace DataOps.Bench;

/// <summary>
/// Get-ExecutionStats and Get-WorkflowExecution against the same SQL run by psql, on 1,000,000
/// executions over 1,000 workflows and 100 users generated in SQL.
/// </summary>
internal static partial class StatsBenchmark
{
    public static void Run(int repeats, bool listAll)
    {
        using var s = new BenchSession("bench-stats");
        var db = s.CreateDatabase("stats");
        var cs = s.ConnectionString(db);
        s.Invoke("Connect-DataOps -ConnectionString $cs | Out-Null; Install-DataOpsSchema -Component WorkflowExecution | Out-Null", new Hashtable { ["cs"] = cs });
        var watch = Stopwatch.StartNew();
        s.Sql(db, """
            INSERT INTO users (id, email) SELECT 'user-' || g, 'user-' || g || '@example.com' FROM generate_series(1, 100) g;
            INSERT INTO workflows (id, name, created_by)
              SELECT ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid, 'workflow-' || g, 'user-' || (1 + g % 100) FROM generate_series(1, 1000) g;
            INSERT INTO workflow_executions (workflow_id, temporal_workflow_id, temporal_run_id, status, started_at, completed_at, duration_ms, activities_executed, created_by)
              SELECT ('00000000-0000-0000-0000-' || lpad((1 + (g * 7919) % 1000)::text, 12, '0'))::uuid,
                     'tw-' || g, 'run-' || g, st,
                     timestamptz '2026-08-01' + (g % 7776000) * interval '1 second',
                     CASE WHEN st = 'running' THEN NULL ELSE timestamptz '2026-08-01' + (g % 7776000) * interval '1 second' + d * interval '1 millisecond' END,
                     CASE WHEN st = 'running' THEN NULL ELSE d END,
                     g % 20, 'user-' || (1 + (g * 31) % 100)
              FROM (SELECT g, (ARRAY['completed','completed','completed','completed','completed','completed','failed','cancelled','timed_out','running'])[1 + (g * 13) % 10] AS st,
                           (50 + (g * 104729) % 120000)::bigint AS d
                    FROM generate_series(1::bigint, 1000000::bigint) g) x;
            """);
        s.Sql(db, "VACUUM ANALYZE workflow_executions");
        s.Sql(db, "VACUUM ANALYZE workflows");
        Console.WriteLine($"generated 1,000,000 executions in {watch.Elapsed.TotalSeconds:0.0} s");

        var rows = new List<(string Name, double Cmdlet, double Psql)>();
        foreach (var (name, args) in new[] { ("Get-ExecutionStats", ""), ("Get-ExecutionStats -CreatedBy user-42", "-CreatedBy user-42"), ("Get-ExecutionStats -GroupBy Workflow", "-GroupBy Workflow") })
        {
            // The cmdlet prints the statement it runs; psql runs exactly that, with the value inlined.
            var sql = Verbose(s, $"Get-ExecutionStats {args} -Verbose").Single(v => v.StartsWith("SQL: ", StringComparison.Ordinal))[5..]
                .Replace("@createdBy", "'user-42'", StringComparison.Ordinal);
            var cmdlet = Median(repeats, () => PerCall(s, $"Get-ExecutionStats {args}"));
            var psql = Median(repeats, () => PsqlTime(s, db, sql));
            rows.Add((name, cmdlet, psql));
            Console.WriteLine($"{name}: cmdlet {cmdlet:0.0} ms, psql {psql:0.0} ms, ratio {cmdlet / psql:0.00}");
            if (args.Contains("CreatedBy", StringComparison.Ordinal))
            {
                Console.WriteLine("plan of the -CreatedBy statement:");
                Console.WriteLine(Psql(s, db, "EXPLAIN (ANALYZE, COSTS OFF) " + sql));
            }
        }

        var listSql = "SELECT e.id, e.workflow_id, w.name, w.description, e.temporal_workflow_id, e.temporal_run_id, e.status, e.started_at, e.completed_at, e.duration_ms, " +
                      "e.input::text, e.output::text, e.error_message, e.activities_executed, e.created_by FROM workflow_executions e JOIN workflows w ON w.id = e.workflow_id " +
                      "WHERE e.created_by = 'user-42' ORDER BY e.started_at DESC, e.id DESC OFFSET 5000 LIMIT 50";
        var page = Median(repeats, () => PerCall(s, "Get-WorkflowExecution -CreatedBy user-42 -First 50 -Skip 5000"));
        var empty = Median(repeats, () => Time(() => s.Invoke("$null")));
        Console.WriteLine($"(for scale: one PowerShell.Invoke of an empty script in this host costs {empty:0.0} ms; per-call figures exclude it)");
        var pagePsql = Median(repeats, () => PsqlTime(s, db, listSql));
        rows.Add(("Get-WorkflowExecution -CreatedBy user-42 -First 50 -Skip 5000", page, pagePsql));
        Console.WriteLine($"paged listing: cmdlet {page:0.0} ms, psql {pagePsql:0.0} ms");

        string? streaming = null;
        if (listAll)
        {
            var before = Stats.PeakWorkingSetMb();
            long count = 0;
            var t = Time(() => count = (long)s.Invoke("$n = 0L; Get-WorkflowExecution | ForEach-Object { $n++ }; $n").Single().BaseObject);
            if (count != 1_000_000)
            {
                throw new InvalidOperationException($"listed {count} rows, expected 1,000,000");
            }

            var after = Stats.PeakWorkingSetMb();
            streaming = $"| Get-WorkflowExecution, all 1,000,000 rows through ForEach-Object | {t / 1000:0.0} s | peak working set {before} MB before, {after} MB after |";
            Console.WriteLine(streaming);
        }

        var sb = new StringBuilder();
        sb.AppendLine();
        sb.AppendLine("| command | cmdlet (median) | psql, same SQL (median) | ratio |");
        sb.AppendLine("| --- | --- | --- | --- |");
        foreach (var (name, cmdlet, psql) in rows)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"| `{name}` | {cmdlet:0.0} ms | {psql:0.0} ms | {cmdlet / psql:0.00} |");
        }

        if (streaming is not null)
        {
            sb.AppendLine().AppendLine("| listing | time | memory |").AppendLine("| --- | --- | --- |").AppendLine(streaming);
        }

        Console.WriteLine(sb.ToString());
    }

    private static List<string> Verbose(BenchSession s, string script)
    {
        var output = s.Invoke($"& {{ {script} }} 4>&1");
        return [.. output.Where(o => o.BaseObject is VerboseRecord).Select(o => ((VerboseRecord)o.BaseObject).Message)];
    }

    /// <summary>
    /// The cost of one call of a command inside a session, as a runbook makes it: ten calls in one
    /// script, divided by ten (psql's \timing likewise measures a statement inside its session).
    /// </summary>
    private static double PerCall(BenchSession s, string command)
    {
        const int calls = 10;
        return Time(() => s.Invoke($"foreach ($i in 1..{calls}) {{ {command} | Out-Null }}")) / calls;
    }

    private static double Time(Action action)
    {
        var watch = Stopwatch.StartNew();
        action();
        return watch.Elapsed.TotalMilliseconds;
    }

    /// <summary>Median of the repeats after a warm-up long enough for the JIT's tiering to settle.</summary>
    private static double Median(int repeats, Func<double> measure)
    {
        var warm = Stopwatch.StartNew();
        for (var i = 0; i < WarmUp && (i < 2 || warm.Elapsed < TimeSpan.FromSeconds(3)); i++)
        {
            measure();
        }

        return Stats.Median(Enumerable.Range(0, repeats).Select(_ => measure()));
    }

    private const int WarmUp = 30;

    /// <summary>psql's own \timing of the statement: the round trip without process start or connect.</summary>
    private static double PsqlTime(BenchSession s, string db, string sql)
    {
        var output = Psql(s, db, "\\timing on", sql);
        var m = TimingLine().Match(output);
        return m.Success ? double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : throw new InvalidOperationException("no timing in psql output: " + output);
    }

    private static string Psql(BenchSession s, string db, params string[] commands)
    {
        var psi = new ProcessStartInfo(Path.Combine(s.BinDirectory, "psql")) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-X", "-q", "-h", "127.0.0.1", "-p", s.Port.ToString(CultureInfo.InvariantCulture), "-U", "postgres", "-d", db, "-o", "/dev/stdout" })
        {
            psi.ArgumentList.Add(a);
        }

        foreach (var c in commands)
        {
            psi.ArgumentList.Add("-c");
            psi.ArgumentList.Add(c);
        }

        psi.Environment["PGPASSWORD"] = s.Password;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return stdout + p.StandardError.ReadToEnd();
    }

    [GeneratedRegex(@"Time: ([0-9.]+) ms")]
    private static partial Regex TimingLine();
}
