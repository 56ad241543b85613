using System.Collections;
using System.Diagnostics;
using System.Text.Json.Nodes;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// Keyset jobs through the cmdlets: a table walked in chunks by a real pwsh process that is killed
/// hard mid-run, then finished by a re-run; every row is updated exactly once (a counter column
/// proves it) and the rollback scripts, run by real psql, restore the table's checksum.
/// </summary>
public sealed class KeysetTests
{
    /// <summary>Rows of the walked table: large enough for many chunks of the largest size.</summary>
    private const int Rows = 200_000;

    private static string Job(Action<JsonObject>? change = null)
    {
        var job = new JsonObject
        {
            ["version"] = 1,
            ["name"] = "acct-counter",
            ["items"] = new JsonObject { ["keyset"] = new JsonObject { ["table"] = "public.acct", ["key"] = "aid", ["chunkTime"] = "100ms", ["minChunkSize"] = 500, ["maxChunkSize"] = 10_000 } },
            ["throttle"] = new JsonObject { ["itemsPerMinute"] = 0 },
            ["capture"] = new JsonArray(new JsonObject { ["table"] = "public.acct", ["where"] = "aid BETWEEN @lo::int AND @hi::int" }),
            ["steps"] = new JsonArray(new JsonObject { ["name"] = "count", ["sql"] = "UPDATE acct SET n = n + 1, abalance = abalance + aid % 7 WHERE aid BETWEEN @lo::int AND @hi::int" }),
            ["verify"] = "SELECT NOT EXISTS (SELECT 1 FROM acct WHERE aid BETWEEN @lo::int AND @hi::int AND n <> 1)",
        };
        change?.Invoke(job);
        var path = Path.Combine(Directory.CreateTempSubdirectory("dataops-keyset-").FullName, "acct-counter.job.json");
        File.WriteAllText(path, job.ToJsonString());
        return path;
    }

    private static string Checksum(string cs) => (string)Sql.Scalar(cs, "SELECT md5(string_agg(aid || ':' || n || ':' || abalance || ':' || filler, ',' ORDER BY aid)) FROM acct")!;

    private static long Applied(string cs) => Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'applied'"));

    [Fact]
    public void A_killed_walk_resumes_every_row_is_updated_once_and_the_rollback_scripts_restore_the_table()
    {
        var cs = TestCluster.CreateDatabaseWith("Core");
        Sql.Execute(cs, $"CREATE TABLE acct (aid int PRIMARY KEY, n int NOT NULL DEFAULT 0, abalance int NOT NULL DEFAULT 0, filler text NOT NULL DEFAULT repeat('x', 60)); INSERT INTO acct (aid) SELECT generate_series(1, {Rows}); ANALYZE acct;");
        var pristine = Checksum(cs);
        var job = Job();
        var output = Directory.CreateTempSubdirectory("dataops-keyset-out-").FullName;

        // A real pwsh process, killed hard with its process tree once a few chunks committed.
        var psi = Repo.Pwsh($"Import-Module '{Repo.Manifest}'; Connect-DataOps -ConnectionString '{cs}' | Out-Null; Invoke-Backfill -Job '{job}' -OutputDirectory '{output}' -Force | Out-Null");
        using (var process = Process.Start(psi)!)
        {
            var deadline = DateTime.UtcNow.AddSeconds(90);
            while (Applied(cs) < 3 && DateTime.UtcNow < deadline && !process.HasExited)
            {
                Thread.Sleep(20);
            }

            process.Kill(entireProcessTree: true);
            process.WaitForExit();
        }

        // Every committed chunk is in the ledger with its rows, and only those rows changed, once.
        var committedRows = Convert.ToInt64(Sql.Scalar(cs, "SELECT coalesce(sum(rows_changed), 0) FROM dataops.ledger WHERE status = 'applied'"));
        Assert.InRange(Applied(cs), 3, 1_000);
        Assert.InRange(committedRows, 1, Rows - 1);
        Assert.Equal(committedRows, Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM acct WHERE n = 1")));
        Assert.Equal(0L, Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM acct WHERE n > 1")));
        var killed = (Guid)Sql.Scalar(cs, "SELECT run_id FROM dataops.run WHERE kind = 'backfill'")!;

        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        var rerun = s.Run("Invoke-Backfill -Job $job -OutputDirectory $out -Force", new Hashtable { ["job"] = job, ["out"] = output });

        Assert.False(rerun.HadErrors, string.Join("\n", rerun.Errors));
        Assert.True(Rows == Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM acct WHERE n = 1")),
            string.Join("\n", rerun.Output.Select(o => $"{o.Properties["Key"].Value} {o.Properties["Status"].Value}").Concat(rerun.Warnings).Concat(rerun.Information.Select(i => i.ToString()))));
        Assert.All(rerun.Output, o => Assert.Equal("Applied", o.Properties["Status"].Value.ToString()));
        // The re-run started right after the killed run's last committed chunk.
        var lastKilled = Convert.ToInt64(Sql.Scalar(cs, $"SELECT max((item_key::jsonb ->> 1)::int) FROM dataops.ledger WHERE run_id = '{killed}' AND status = 'applied'"));
        Assert.Equal($"[\"{lastKilled + 1}\",", ((string)rerun.Output[0].Properties["Key"].Value)[..($"[\"{lastKilled + 1}\",".Length)]);
        Assert.Equal(rerun.Output.Count, Convert.ToInt32(Sql.Scalar(cs, $"SELECT count(*) FROM dataops.ledger WHERE run_id <> '{killed}' AND status = 'applied'")));

        // Real psql: the re-run's own rollback script, then the killed run's (exported from the ledger), put the table back exactly.
        var exportPath = Path.Combine(output, "killed.sql");
        var exported = s.Run("Export-BackfillRollback -RunId $id -Path $p", new Hashtable { ["id"] = killed, ["p"] = exportPath });
        Assert.False(exported.HadErrors, string.Join("\n", exported.Errors));
        var rerunId = (Guid)rerun.Output[0].Properties["RunId"].Value;
        var rerunScript = Directory.GetFiles(Path.Combine(output, "acct-counter", rerunId.ToString(), "backfill_logs"), "rollback_*.sql").Single();
        foreach (var script in new[] { rerunScript, exportPath })
        {
            var (code, stdout, stderr) = PsqlClient.RunFile(cs, script);
            Assert.True(code == 0, stderr + stdout);
        }

        Assert.Equal(pristine, Checksum(cs));
    }

    [Fact]
    public void A_chunks_rollback_is_one_checked_statement_that_stops_on_drift_keeps_hostile_data_inert_and_Undo_Backfill_restores_it_too()
    {
        var cs = TestCluster.CreateDatabaseWith("Core");
        var marker = Path.Combine(Path.GetTempPath(), $"dataops-pwned-{Guid.NewGuid():N}");
        var values = RollbackScriptSafetyTests.HostileValues(marker);
        Sql.Execute(cs, "CREATE TABLE hostile (id int PRIMARY KEY, note text NOT NULL, n int NOT NULL DEFAULT 0)");
        for (var i = 1; i <= 40; i++)
        {
            using var conn = new Npgsql.NpgsqlConnection(cs);
            conn.Open();
            using var cmd = new Npgsql.NpgsqlCommand("INSERT INTO hostile (id, note) VALUES (@id, @note)", conn);
            cmd.Parameters.AddWithValue("id", i);
            cmd.Parameters.AddWithValue("note", values[i % values.Length]);
            cmd.ExecuteNonQuery();
        }

        var job = Job(j =>
        {
            j["name"] = "hostile-chunks";
            j["parameters"] = new JsonObject { ["suffix"] = $"\n\\! touch {marker}\n$dataops$'" };
            j["items"] = new JsonObject { ["keyset"] = new JsonObject { ["table"] = "hostile", ["key"] = "id", ["minChunkSize"] = 40, ["maxChunkSize"] = 40 } };
            j["capture"] = new JsonArray(new JsonObject { ["table"] = "hostile", ["where"] = "id BETWEEN @lo::int AND @hi::int" });
            j["steps"] = new JsonArray(new JsonObject { ["name"] = "append", ["sql"] = "UPDATE hostile SET note = note || @suffix, n = n + 1 WHERE id BETWEEN @lo::int AND @hi::int" });
            j["verify"] = "SELECT NOT EXISTS (SELECT 1 FROM hostile WHERE id BETWEEN @lo::int AND @hi::int AND n <> 1)";
        });
        const string checksum = "SELECT md5(string_agg(to_jsonb(h)::text, ',' ORDER BY id)) FROM hostile h";
        var pristine = Sql.Scalar(cs, checksum);
        var output = Directory.CreateTempSubdirectory("dataops-keyset-rb-").FullName;
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });

        var run = s.Run("Invoke-Backfill -Job $job -OutputDirectory $out -Force", new Hashtable { ["job"] = job, ["out"] = output });

        Assert.False(run.HadErrors, string.Join("\n", run.Errors));
        Assert.Equal(40, Assert.Single(run.Output).Properties["RowsChanged"].Value);

        var script = Directory.GetFiles(output, "rollback_*.sql", SearchOption.AllDirectories).Single();
        Assert.Contains("update 40 rows of public.hostile", File.ReadAllText(script));
        Assert.DoesNotContain("DO $dataops$ BEGIN", File.ReadAllText(script)); // no row-by-row block

        // Drift on one row: the script stops, naming how many rows drifted, and restores nothing.
        Sql.Execute(cs, "UPDATE hostile SET n = 5 WHERE id = 17");
        var drifted = Sql.Scalar(cs, checksum);
        var (code, stdout, stderr) = PsqlClient.RunFile(cs, script);
        Assert.NotEqual(0, code);
        Assert.Contains("1 of 40 rows of public.hostile", stderr + stdout);
        Assert.Equal(drifted, Sql.Scalar(cs, checksum));

        Sql.Execute(cs, "UPDATE hostile SET n = 1 WHERE id = 17");
        (code, stdout, stderr) = PsqlClient.RunFile(cs, script);
        Assert.True(code == 0, stderr + stdout);
        Assert.False(File.Exists(marker), "psql ran a shell command taken from data");
        Assert.Equal(pristine, Sql.Scalar(cs, checksum));

        // Again, undone by Undo-Backfill this time (the same one statement, parameterized): drift first, then all of it.
        var again = s.Run("Invoke-Backfill -Job $job -OutputDirectory $out -Force", new Hashtable { ["job"] = job, ["out"] = output });
        Assert.False(again.HadErrors, string.Join("\n", again.Errors));
        var runId = (Guid)Assert.Single(again.Output).Properties["RunId"].Value;
        Sql.Execute(cs, "UPDATE hostile SET n = 5 WHERE id IN (3, 4)");
        var undo = s.Run("Undo-Backfill -RunId $id -Force", new Hashtable { ["id"] = runId });
        var item = Assert.Single(undo.Output);
        Assert.Equal("Drifted", item.Properties["Status"].Value.ToString());
        Assert.Contains("2 of 40 rows of public.hostile changed since the backfill", (string)item.Properties["Error"].Value);

        Sql.Execute(cs, "UPDATE hostile SET n = 1 WHERE id IN (3, 4)");
        var undone = s.Run("Undo-Backfill -RunId $id -Force", new Hashtable { ["id"] = runId });
        Assert.Equal("Restored", Assert.Single(undone.Output).Properties["Status"].Value.ToString());
        Assert.Equal(pristine, Sql.Scalar(cs, checksum));
    }

    [Fact]
    public void Test_ProdHealth_of_a_keyset_job_reports_the_pending_rows_and_recommends_the_job_itself_instead_of_a_plan()
    {
        var cs = TestCluster.CreateDatabaseWith("Core");
        Sql.Execute(cs, "CREATE TABLE acct (aid int PRIMARY KEY, n int NOT NULL DEFAULT 0, abalance int NOT NULL DEFAULT 0, filler text NOT NULL DEFAULT ''); INSERT INTO acct (aid) SELECT generate_series(1, 300); ANALYZE acct;");
        var job = Job(j => j["health"] = new JsonObject { ["discover"] = "SELECT aid::text AS key FROM acct WHERE n = 0 ORDER BY aid", ["sampleSize"] = 5 });
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        var output = Directory.CreateTempSubdirectory("dataops-keyset-health-").FullName;

        var report = s.Run("Test-ProdHealth -Job $job -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = output }).Output.Single();

        Assert.Equal((false, 300), ((bool)report.Properties["Healthy"].Value, (int)report.Properties["PendingCount"].Value));
        Assert.Null(report.Properties["PlanPath"].Value);
        Assert.Contains($"Invoke-Backfill -Job '{job}'", File.ReadAllText((string)report.Properties["ReportPath"].Value));

        s.Run("Invoke-Backfill -Job $job -OutputDirectory $out -Force | Out-Null", new Hashtable { ["job"] = job, ["out"] = output });
        var after = s.Run("Test-ProdHealth -Job $job -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = output }).Output.Single();
        Assert.True((bool)after.Properties["Healthy"].Value);
    }

    [Fact]
    public void A_uuid_chunks_key_which_is_not_a_valid_wildcard_pattern_finds_its_own_item_with_Get_BackfillItem_Key()
    {
        var cs = TestCluster.CreateDatabaseWith("Core");
        Sql.Execute(cs, "CREATE TABLE tu (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), n int NOT NULL DEFAULT 0); INSERT INTO tu (n) SELECT 0 FROM generate_series(1, 60); ANALYZE tu;");
        var job = Job(j =>
        {
            j["name"] = "uuid-chunks";
            j["items"] = new JsonObject { ["keyset"] = new JsonObject { ["table"] = "tu", ["key"] = "id", ["minChunkSize"] = 20, ["maxChunkSize"] = 20 } };
            j["capture"] = new JsonArray(new JsonObject { ["table"] = "tu", ["where"] = "id BETWEEN @lo::uuid AND @hi::uuid" });
            j["steps"] = new JsonArray(new JsonObject { ["name"] = "count", ["sql"] = "UPDATE tu SET n = n + 1 WHERE id BETWEEN @lo::uuid AND @hi::uuid" });
            j["verify"] = "SELECT NOT EXISTS (SELECT 1 FROM tu WHERE id BETWEEN @lo::uuid AND @hi::uuid AND n <> 1)";
        });
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        var run = s.Run("Invoke-Backfill -Job $job -OutputDirectory $out -Force", new Hashtable { ["job"] = job, ["out"] = Directory.CreateTempSubdirectory("dataops-keyset-uuid-").FullName });
        Assert.Equal(3, run.Output.Count);

        var key = (string)run.Output[1].Properties["Key"].Value;
        var item = s.Run("Get-BackfillItem -RunId $id -Key $key", new Hashtable { ["id"] = run.Output[1].Properties["RunId"].Value, ["key"] = key });

        Assert.False(item.HadErrors, string.Join("\n", item.Errors));
        Assert.Equal(key, Assert.Single(item.Output).Properties["Key"].Value);
    }

    [Fact]
    public void WhatIf_describes_the_walk_and_Keys_or_Reapply_are_refused_before_anything_runs()
    {
        var cs = TestCluster.CreateDatabaseWith("Core");
        Sql.Execute(cs, "CREATE TABLE acct (aid int PRIMARY KEY, n int NOT NULL DEFAULT 0, abalance int NOT NULL DEFAULT 0, filler text NOT NULL DEFAULT ''); INSERT INTO acct (aid) SELECT generate_series(1, 1000); ANALYZE acct;");
        var job = Job();
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });

        var whatIf = s.Run("Invoke-Backfill -Job $job -WhatIf -Verbose", new Hashtable { ["job"] = job });
        var reapply = s.Run("Invoke-Backfill -Job $job -Reapply -Force", new Hashtable { ["job"] = job });
        var fleet = s.Run("Invoke-Backfill -Job $job -Connection $cs, $cs -WhatIf -Verbose", new Hashtable { ["job"] = job, ["cs"] = cs });

        Assert.False(fleet.HadErrors, string.Join("\n", fleet.Errors));
        Assert.Equal(2, fleet.Verbose.Count(line => line.Contains("A keyset walk of rows of acct with aid from the first key up to 1000", StringComparison.Ordinal)));

        Assert.False(whatIf.HadErrors, string.Join("\n", whatIf.Errors));
        Assert.Contains(whatIf.Verbose, line => line.Contains("rows of acct with aid from the first key up to 1000", StringComparison.Ordinal) && line.Contains("nothing was changed", StringComparison.Ordinal));
        var error = Assert.Single(reapply.Errors);
        Assert.Equal("KeysetOptionUnsupported,DataOps.PowerShell.Cmdlets.InvokeBackfillCommand", error.FullyQualifiedErrorId);
        Assert.Equal(0L, Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM acct WHERE n <> 0")));
        Assert.Equal(0L, Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM dataops.run")));
    }
}
