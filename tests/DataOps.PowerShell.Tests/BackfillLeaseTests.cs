using System.Collections;
using System.Management.Automation;
using System.Text.Json;
using Npgsql;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// One run per job (issue 13, item 3): the job's lease and the ledger's unique index, against runs
/// that lose their connections, runs started while another applies, and undo during a run.
/// Every step of the job adds 1 to its row's counter, so "applied once" is visible in the data
/// itself, not only in the ledger.
/// </summary>
public sealed class BackfillLeaseTests
{
    private const int Keys = 40;
    private const string JobName = "count-once";

    /// <summary>A Core database with the counted table, a connected session, a job file and an output folder.</summary>
    private static (PsSession Session, string Cs, string Job, string Output) Setup(Func<string, string>? databaseSql = null)
    {
        var cs = TestCluster.CreateDatabaseWith("Core");
        Sql.Execute(cs, $"CREATE TABLE counted (k int PRIMARY KEY, n int NOT NULL DEFAULT 0); INSERT INTO counted (k) SELECT generate_series(1, {Keys})");
        if (databaseSql is not null)
        {
            // Before the session's first connection, so every connection of the module gets it.
            Sql.Execute(cs, databaseSql(new NpgsqlConnectionStringBuilder(cs).Database!));
        }

        var s = new PsSession();
        var r = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        var job = CountedJob.Write(JobName);
        return (s, cs, job, Directory.CreateTempSubdirectory("dataops-lease-").FullName);
    }

    /// <summary>
    /// Another session whose connections come from another Npgsql pool (the pool is keyed by the
    /// connection string), as a second process's would: it cannot reuse the first run's connections.
    /// </summary>
    private static PsSession OtherProcessSession(string cs)
    {
        var other = new PsSession();
        var r = other.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs + ";Application Name=second process" });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return other;
    }

    private static long Applied(string cs) => Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'applied'"));

    /// <summary>A throttled run in the background; returns once it has applied at least <paramref name="atLeast"/> items.</summary>
    private static (System.Management.Automation.PowerShell Ps, IAsyncResult Handle, PSDataCollection<PSObject> Results) StartRun(PsSession s, string cs, string job, string output, int perMinute, int atLeast = 3)
    {
        var ps = System.Management.Automation.PowerShell.Create(s.Runspace);
        ps.AddCommand("Invoke-Backfill").AddParameter("Job", job).AddParameter("ItemsPerMinute", perMinute).AddParameter("OutputDirectory", output);
        var results = new PSDataCollection<PSObject>();
        var handle = ps.BeginInvoke<PSObject, PSObject>(null, results);
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (Applied(cs) < atLeast && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(50);
        }

        Assert.True(Applied(cs) >= atLeast, "the first run did not start applying");
        return (ps, handle, results);
    }

    /// <summary>No key has two live applications, and no row was changed by two applications.</summary>
    private static void AssertNothingAppliedTwice(string cs, bool includeHistory = true)
    {
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM (SELECT item_key FROM dataops.ledger WHERE status = 'applied' AND undone_by IS NULL AND superseded_by IS NULL GROUP BY item_key HAVING count(*) > 1) x"));
        if (includeHistory)
        {
            Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM (SELECT item_key FROM dataops.ledger WHERE status = 'applied' GROUP BY item_key HAVING count(*) > 1) x"));
        }

        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM counted WHERE n > 1"));
    }

    /// <summary>Whatever the runs above left undone, one more run finishes: then every key was applied exactly once.</summary>
    private static void AssertAFinalRunCompletesEachKeyExactlyOnce(PsSession s, string cs, string job, string output)
    {
        var rest = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = output });
        Assert.False(rest.HadErrors, string.Join("\n", rest.Errors));
        Assert.Equal((long)Keys, Sql.Scalar(cs, "SELECT count(*) FROM counted WHERE n = 1"));
        Assert.Equal((long)Keys, Sql.Scalar(cs, "SELECT count(DISTINCT item_key) FROM dataops.ledger WHERE status = 'applied'"));
        AssertNothingAppliedTwice(cs);
    }

    [Fact]
    public void Connections_killed_with_pg_terminate_backend_do_not_let_a_second_run_apply_the_same_keys()
    {
        var (s, cs, job, output) = Setup();
        using var _ = s;
        using var other = OtherProcessSession(cs);
        var (ps, handle, _) = StartRun(s, cs, job, output, perMinute: 300);
        using var __ = ps;

        // Every connection the first run has (the old advisory lock lived on one of them).
        var killed = Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()) t"));
        Assert.True(killed >= 1);
        var second = other.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = output });

        var error = Assert.Single(second.Errors);
        Assert.StartsWith("BackfillAlreadyRunning,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ResourceUnavailable, error.CategoryInfo.Category);
        Assert.Empty(second.Output);
        ps.EndInvoke(handle);
        Assert.Equal(1L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run WHERE kind = 'backfill'"));
        Assert.Equal("completed", Sql.Scalar(cs, "SELECT status FROM dataops.run WHERE kind = 'backfill'"));
        AssertNothingAppliedTwice(cs);
        AssertAFinalRunCompletesEachKeyExactlyOnce(s, cs, job, output);
    }

    [Fact]
    public void Idle_connections_dropped_by_idle_session_timeout_do_not_let_a_second_run_apply_the_same_keys()
    {
        var (s, cs, job, output) = Setup(database => $"ALTER DATABASE {database} SET idle_session_timeout = '1s'");
        using var _ = s;
        using var other = OtherProcessSession(cs);
        var (ps, handle, _) = StartRun(s, cs, job, output, perMinute: 300);
        using var __ = ps;

        // Long enough for the server to end every connection the run left idle for a second.
        Thread.Sleep(2500);
        Assert.True(Applied(cs) < Keys, "the first run finished too early for the test");
        var second = other.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = output });

        var error = Assert.Single(second.Errors);
        Assert.StartsWith("BackfillAlreadyRunning,", error.FullyQualifiedErrorId);
        Assert.Empty(second.Output);
        ps.EndInvoke(handle);
        Assert.Equal("completed", Sql.Scalar(cs, "SELECT status FROM dataops.run WHERE kind = 'backfill'"));
        AssertNothingAppliedTwice(cs);
        Assert.Equal((long)Keys, Sql.Scalar(cs, "SELECT count(*) FROM counted WHERE n = 1"));
    }

    [Theory]
    [InlineData(600)] // the next item's own transaction finds the lease gone
    [InlineData(6)] // ten seconds between items: the renewal (every 5 s) finds it gone first
    public void A_run_whose_lease_was_taken_over_stops_with_BackfillLeaseLost_and_applies_nothing_more(int perMinute)
    {
        var (s, cs, job, output) = Setup();
        using var _ = s;
        var (ps, handle, results) = StartRun(s, cs, job, output, perMinute, atLeast: 1);
        using var __ = ps;
        var runId = (Guid)Sql.Scalar(cs, "SELECT run_id FROM dataops.run WHERE kind = 'backfill'")!;

        // What a run elsewhere does once this run's lease expired (say its process was frozen for longer than the TTL).
        var taker = Guid.NewGuid();
        Sql.Execute(cs, $"INSERT INTO dataops.run (run_id, kind, job_name) VALUES ('{taker}', 'backfill', '{JobName}'); UPDATE dataops.job_lease SET run_id = '{taker}', host_name = 'elsewhere', process_id = 1, acquired_at = now(), expires_at = now() + interval '1 hour'");
        var takenAt = (DateTime)Sql.Scalar(cs, "SELECT clock_timestamp()")!;
        var watch = System.Diagnostics.Stopwatch.StartNew();

        var ex = Assert.ThrowsAny<RuntimeException>(() => ps.EndInvoke(handle));
        watch.Stop();

        Assert.StartsWith("BackfillLeaseLost,", ex.ErrorRecord.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ResourceUnavailable, ex.ErrorRecord.CategoryInfo.Category);
        Assert.Contains($"run {taker}", ex.Message);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(8), $"noticed after {watch.Elapsed}");
        Assert.Equal(0L, Sql.Scalar(cs, $"SELECT count(*) FROM dataops.ledger WHERE run_id = '{runId}' AND finished_at > '{takenAt:O}'::timestamptz"));
        var applied = Convert.ToInt64(Sql.Scalar(cs, $"SELECT count(*) FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'applied'"));
        Assert.Equal(applied, Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM counted WHERE n = 1")));
        Assert.Equal(applied, results.Count(r => r.Properties["Status"].Value.ToString() == "Applied"));
        Assert.Equal("failed", Sql.Scalar(cs, $"SELECT status FROM dataops.run WHERE run_id = '{runId}'"));
        Assert.Contains("lost the job's lease", (string)Sql.Scalar(cs, $"SELECT summary->>'reason' FROM dataops.run WHERE run_id = '{runId}'")!);
        var outcome = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, JobName, runId.ToString(), "backfill_logs", "execution_results.json"))).RootElement;
        Assert.Equal("failed", outcome.GetProperty("outcome").GetString());
        // It did not release the lease it no longer holds.
        Assert.Equal(taker, Sql.Scalar(cs, $"SELECT run_id FROM dataops.job_lease WHERE job_name = '{JobName}'"));
        AssertNothingAppliedTwice(cs);
    }

    [Fact]
    public void A_lease_held_elsewhere_refuses_the_run_until_it_expires_then_the_run_takes_over_and_marks_the_holder_abandoned()
    {
        var (s, cs, job, output) = Setup();
        using var _ = s;
        var holder = Guid.NewGuid();
        Sql.Execute(cs, $"INSERT INTO dataops.run (run_id, kind, job_name) VALUES ('{holder}', 'backfill', '{JobName}'); INSERT INTO dataops.job_lease (job_name, run_id, host_name, process_id, expires_at) VALUES ('{JobName}', '{holder}', 'elsewhere', 4242, now() + interval '1 hour')");
        var vars = new Hashtable { ["job"] = job, ["out"] = output };

        var refused = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", vars);

        var error = Assert.Single(refused.Errors);
        Assert.StartsWith("BackfillAlreadyRunning,", error.FullyQualifiedErrorId);
        Assert.Contains($"run {holder} (host elsewhere, process 4242", error.Exception.Message);
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT sum(n) FROM counted"));
        Assert.Equal(1L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run")); // a refused run leaves no row

        Sql.Execute(cs, "UPDATE dataops.job_lease SET expires_at = now() - interval '1 second'");
        var run = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", vars);

        Assert.False(run.HadErrors, string.Join("\n", run.Errors));
        Assert.Equal(Keys, run.Output.Count);
        Assert.Equal("abandoned", Sql.Scalar(cs, $"SELECT status FROM dataops.run WHERE run_id = '{holder}'"));
        Assert.Contains("lease expired", (string)Sql.Scalar(cs, $"SELECT summary->>'reason' FROM dataops.run WHERE run_id = '{holder}'")!);
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.job_lease")); // released at the end
        AssertNothingAppliedTwice(cs);
    }

    [Theory]
    [InlineData(false)] // -OutputDirectory cannot be created
    [InlineData(true)] // the run's folder disappears while it applies
    public void A_run_that_fails_on_its_output_directory_does_not_leave_the_job_locked(bool midRun)
    {
        var (s, cs, job, output) = Setup();
        using var _ = s;
        using var other = OtherProcessSession(cs);

        // Pooled connections, as by default outside the tests: the old advisory lock stayed on one.
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs + ";Pooling=true" });
        ErrorRecord error;
        if (midRun)
        {
            var (ps, handle, _) = StartRun(s, cs, job, output, perMinute: 600);
            using var __ = ps;
            var runDir = Directory.GetDirectories(Path.Combine(output, JobName)).Single();
            Directory.Delete(runDir, recursive: true);
            File.WriteAllText(runDir, "not a folder any more");
            error = Assert.ThrowsAny<RuntimeException>(() => ps.EndInvoke(handle)).ErrorRecord;
            Assert.InRange(Applied(cs), 3, Keys - 1);
        }
        else
        {
            var file = Path.Combine(output, "a-file");
            File.WriteAllText(file, "not a folder");
            var failed = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = Path.Combine(file, "runs") });
            error = Assert.Single(failed.Errors);
            Assert.Equal(0L, Sql.Scalar(cs, "SELECT sum(n) FROM counted"));
            Assert.Contains("did not start", (string)Sql.Scalar(cs, "SELECT summary->>'reason' FROM dataops.run WHERE kind = 'backfill'")!);
        }

        Assert.StartsWith("OutputDirectoryUnusable,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.WriteError, error.CategoryInfo.Category);
        Assert.Equal("failed", Sql.Scalar(cs, "SELECT status FROM dataops.run WHERE kind = 'backfill'"));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.job_lease"));

        var next = other.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = Directory.CreateTempSubdirectory("dataops-lease-").FullName });

        Assert.False(next.HadErrors, string.Join("\n", next.Errors));
        Assert.Equal((long)Keys, Sql.Scalar(cs, "SELECT count(*) FROM counted WHERE n = 1"));
        AssertNothingAppliedTwice(cs);
    }

    [Fact]
    public void Undo_of_a_run_that_is_still_applying_is_refused_and_restores_nothing()
    {
        var (s, cs, job, output) = Setup();
        using var _ = s;
        using var other = OtherProcessSession(cs);
        var (ps, handle, results) = StartRun(s, cs, job, output, perMinute: 300);
        using var __ = ps;
        var runId = (Guid)Sql.Scalar(cs, "SELECT run_id FROM dataops.run WHERE kind = 'backfill'")!;

        var error = other.Terminating("Undo-Backfill", new Hashtable { ["RunId"] = runId, ["Confirm"] = false });

        Assert.StartsWith("BackfillRunInProgress,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ResourceUnavailable, error.CategoryInfo.Category);
        Assert.Contains("still applying", error.Exception.Message);
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE status IN ('undone', 'drifted')"));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run WHERE kind = 'undo'"));
        ps.EndInvoke(handle);
        Assert.Equal((long)Keys, Sql.Scalar(cs, "SELECT count(*) FROM counted WHERE n = 1")); // nothing was restored under the run

        // Once the run has finished, the undo restores every item.
        var undo = other.Run("Undo-Backfill -RunId $id -Confirm:$false", new Hashtable { ["id"] = runId });
        Assert.False(undo.HadErrors, string.Join("\n", undo.Errors));
        Assert.Equal(Keys, undo.Output.Count(o => o.Properties["Status"].Value.ToString() == "Restored"));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT sum(n) FROM counted"));
        Assert.Equal((long)Keys, Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'applied' AND undone_by IS NOT NULL"));
        Assert.Equal(Keys, results.Count);
    }

    [Fact]
    public void The_database_refuses_a_second_live_application_of_a_key()
    {
        var (s, cs, job, output) = Setup();
        using var _ = s;
        var vars = new Hashtable { ["job"] = job, ["out"] = output };
        var run = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", vars);
        Assert.False(run.HadErrors, string.Join("\n", run.Errors));
        const string second = "INSERT INTO dataops.ledger (run_id, job_name, item_key, status) SELECT run_id, job_name, item_key, 'applied' FROM dataops.ledger WHERE status = 'applied' AND item_key = '7'";

        var ex = Assert.Throws<PostgresException>(() => Sql.Execute(cs, second));

        Assert.Equal("23505", ex.SqlState);
        Assert.Equal("ledger_applied_once", ex.ConstraintName);

        // An undone application (here by a hand-written undo row, as the psql rollback script writes
        // them) no longer counts; a forced re-run supersedes the live one in its own transaction.
        Sql.Execute(cs, "UPDATE counted SET n = 0 WHERE k = 7; INSERT INTO dataops.ledger (run_id, job_name, item_key, status, undo_of) SELECT run_id, job_name, item_key, 'undone', ledger_id FROM dataops.ledger WHERE status = 'applied' AND item_key = '7'");
        var again = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", vars);
        Assert.Equal("Applied", Assert.Single(again.Output, o => o.Properties["Status"].Value.ToString() != "Skipped").Properties["Status"].Value.ToString());
        var forced = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -Reapply", vars);
        Assert.False(forced.HadErrors, string.Join("\n", forced.Errors));
        Assert.All(forced.Output, o => Assert.Equal("Applied", o.Properties["Status"].Value.ToString()));
        Assert.Equal((long)Keys, Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'applied' AND superseded_by IS NOT NULL"));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM (SELECT item_key FROM dataops.ledger WHERE status = 'applied' AND undone_by IS NULL AND superseded_by IS NULL GROUP BY item_key HAVING count(*) <> 1) x"));
    }

    [Fact]
    public void A_ledger_from_before_the_lease_is_refused_until_upgraded_and_its_undone_and_doubled_applications_are_closed()
    {
        var (s, cs, job, output) = Setup();
        using var _ = s;
        // Put Core back to what the previous version installed, with what it let happen: key 1
        // applied by two runs at once, key 2 applied then undone, key 3 applied.
        Sql.Execute(cs, """
            DROP INDEX dataops.ledger_applied_once; DROP TRIGGER ledger_close_undone ON dataops.ledger; DROP FUNCTION dataops.ledger_close_undone();
            DROP FUNCTION dataops.lease_lost(text, uuid); DROP TABLE dataops.job_lease;
            ALTER TABLE dataops.ledger DROP COLUMN undone_by, DROP COLUMN superseded_by;
            DELETE FROM dataops.schema_versions WHERE scriptname LIKE '%0005_backfill_job_lease%';
            INSERT INTO dataops.run (run_id, kind, job_name, status) VALUES ('00000000-0000-0000-0000-00000000000a', 'backfill', 'count-once', 'stopped'), ('00000000-0000-0000-0000-00000000000b', 'backfill', 'count-once', 'completed');
            INSERT INTO dataops.ledger (run_id, job_name, item_key, status) VALUES
              ('00000000-0000-0000-0000-00000000000a', 'count-once', '1', 'applied'), ('00000000-0000-0000-0000-00000000000b', 'count-once', '1', 'applied'),
              ('00000000-0000-0000-0000-00000000000a', 'count-once', '2', 'applied'), ('00000000-0000-0000-0000-00000000000a', 'count-once', '3', 'applied');
            INSERT INTO dataops.ledger (run_id, job_name, item_key, status, undo_of) SELECT run_id, job_name, item_key, 'undone', ledger_id FROM dataops.ledger WHERE item_key = '2';
            UPDATE counted SET n = 1 WHERE k IN (1, 3);
            """);

        var error = s.Terminating("Invoke-Backfill", new Hashtable { ["Job"] = job, ["OutputDirectory"] = output, ["ItemsPerMinute"] = 0 });

        Assert.StartsWith("SchemaMissing,", error.FullyQualifiedErrorId);
        Assert.Contains("older version", error.Exception.Message);

        var upgrade = s.Run("Install-DataOpsSchema -Component Core");
        Assert.False(upgrade.HadErrors, string.Join("\n", upgrade.Errors));
        Assert.Equal("00000000-0000-0000-0000-00000000000b", Sql.Scalar(cs, "SELECT string_agg(superseded_by::text, ',') FROM dataops.ledger WHERE item_key = '1'"));
        Assert.Equal(1L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE item_key = '2' AND status = 'applied' AND undone_by IS NOT NULL"));
        var run = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = output });
        Assert.False(run.HadErrors, string.Join("\n", run.Errors));
        Assert.Equal(Keys - 2, run.Output.Count(o => o.Properties["Status"].Value.ToString() == "Applied"));
        Assert.Equal((long)Keys, Sql.Scalar(cs, "SELECT count(*) FROM counted WHERE n = 1"));
        AssertNothingAppliedTwice(cs, includeHistory: false);
    }
}
