using System.Collections;
using System.Diagnostics;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// Issue 18, item 2: several workers on one run. The runs are real pwsh processes (Invoke-Backfill -Workers,
/// and -RunId -Join from a second process); PostgreSQL is the only thing they share. Rates and "exactly once"
/// are judged from the ledger's server timestamps and a counter column, never from the client's clock.
/// </summary>
public sealed class WorkerTests
{
    private const string JobName = "shared";

    private static (PsSession Session, string Cs, string Job, string Output) Setup(int keys)
    {
        var cs = TestCluster.CreateDatabaseWith("Core");
        Sql.Execute(cs, $"CREATE TABLE counted (k int PRIMARY KEY, n int NOT NULL DEFAULT 0); INSERT INTO counted (k) SELECT generate_series(1, {keys})");
        var s = new PsSession();
        var r = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return (s, cs, CountedJob.Write(JobName), Directory.CreateTempSubdirectory("dataops-workers-").FullName);
    }

    private static Process StartPwsh(string cs, string command)
    {
        var process = Process.Start(Repo.Pwsh($"Import-Module '{Repo.Manifest}'; Connect-DataOps -ConnectionString '{cs}' | Out-Null; {command}"))!;
        process.StandardInput.Close();
        _ = process.StandardOutput.ReadToEndAsync();
        _ = process.StandardError.ReadToEndAsync();
        return process;
    }

    private const string JoinedMembers = "SELECT member_id FROM dataops.run_member WHERE NOT coordinator";

    /// <summary>Invoke-Backfill -Workers in a pwsh process of its own.</summary>
    private static Process StartRun(string cs, string job, string output, int workers, int perMinute) =>
        StartPwsh(cs, $"Invoke-Backfill -Job '{job}' -Workers {workers} -ItemsPerMinute {perMinute} -OutputDirectory '{output}' -Force -WarningAction SilentlyContinue | Out-Null");

    /// <summary>Waits until the processes that joined the run have finished <paramref name="done"/> items.</summary>
    private static void WaitForJoined(string cs, int done) =>
        WaitFor(() => Long(cs, $"SELECT count(*) FROM dataops.run_item WHERE done AND claimed_by IN ({JoinedMembers})") >= done, TimeSpan.FromSeconds(120), "the joined process applied nothing");

    /// <summary>Waits for the run started with -Workers to publish its items; its run id.</summary>
    private static Guid Published(string cs)
    {
        WaitFor(() => Long(cs, "SELECT count(*) FROM dataops.run_queue") == 1, TimeSpan.FromSeconds(120), "the run did not publish its items");
        return (Guid)Sql.Scalar(cs, "SELECT run_id FROM dataops.run_queue")!;
    }

    /// <summary>Kills what is still running of <paramref name="processes"/> and disposes them.</summary>
    private static void End(params Process?[] processes)
    {
        foreach (var p in processes)
        {
            if (p is { HasExited: false })
            {
                p.Kill(entireProcessTree: true);
                p.WaitForExit();
            }

            p?.Dispose();
        }
    }

    private static void WaitFor(Func<bool> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, what);
            Thread.Sleep(50);
        }
    }

    private static long Long(string cs, string sql) => Convert.ToInt64(Sql.Scalar(cs, sql));

    [Fact]
    public void Three_workers_in_two_processes_one_killed_its_claim_taken_over_every_item_once_the_rate_the_runs_and_one_rollback_script()
    {
        const int keys = 120, perMinute = 360;
        var (s, cs, job, output) = Setup(keys);
        using var _ = s;
        var coordinator = StartRun(cs, job, output, workers: 2, perMinute: perMinute);
        Process? joiner = null;
        try
        {
            var runId = Published(cs);
            joiner = StartPwsh(cs, $"Invoke-Backfill -RunId '{runId}' -Join -OutputDirectory '{output}' -Force -WarningAction SilentlyContinue | Out-Null");

            // The joined process works: it finished items, and it holds a claim when it is killed.
            const string joinedMember = JoinedMembers;
            WaitForJoined(cs, done: 5);
            // Get-BackfillRun shows the run's workers across its processes, and its queue.
            var live = s.Run("Get-BackfillRun -RunId $id", new Hashtable { ["id"] = runId }).Output.Single();
            Assert.Equal(3, live.Properties["Workers"].Value);
            Assert.Equal(2, live.Properties["WorkerProcesses"].Value);
            Assert.Equal(keys, live.Properties["QueuedItems"].Value);

            WaitFor(() => Long(cs, $"SELECT count(*) FROM dataops.run_item WHERE NOT done AND claimed_by IN ({joinedMember})") > 0, TimeSpan.FromSeconds(30), "the joined process held no claim");
            joiner.Kill(entireProcessTree: true);
            joiner.WaitForExit();
            var orphaned = Long(cs, $"SELECT count(*) FROM dataops.run_item WHERE NOT done AND claimed_by IN ({joinedMember})");

            Assert.True(coordinator.WaitForExit(180_000), "the run did not end");
            Assert.Equal(0, coordinator.ExitCode);

            // Every item applied exactly once: the counter says so for the rows, the ledger for the items.
            Assert.Equal("completed", Sql.Scalar(cs, $"SELECT status FROM dataops.run WHERE run_id = '{runId}'"));
            Assert.Equal((long)keys, Long(cs, "SELECT count(*) FROM counted WHERE n = 1"));
            Assert.Equal((long)keys, Long(cs, $"SELECT count(DISTINCT item_key) FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'applied'"));
            Assert.Equal((long)keys, Long(cs, $"SELECT count(*) FROM dataops.ledger WHERE run_id = '{runId}'"));
            Assert.Equal(0L, Long(cs, $"SELECT count(*) FROM dataops.run_item WHERE run_id = '{runId}' AND NOT done"));

            // The killed process's claims were taken over by the other process (claimed twice, run once).
            if (orphaned > 0)
            {
                Assert.True(Long(cs, $"SELECT count(*) FROM dataops.run_item WHERE run_id = '{runId}' AND claims > 1") >= 1, "no claim was taken over");
            }

            Assert.True(Long(cs, $"SELECT count(DISTINCT claimed_by) FROM dataops.run_item WHERE run_id = '{runId}'") >= 1);

            // The run's rate, not each worker's: no 10 s window of item starts holds more than the rate allows
            // (plus one item of slack for the time from a slot to the item's start), and the whole run is no faster.
            var busiest = Long(cs, $"""
                SELECT max((SELECT count(*) FROM dataops.ledger b WHERE b.run_id = a.run_id AND b.status = 'applied' AND b.started_at >= a.started_at AND b.started_at < a.started_at + interval '10 seconds'))
                FROM dataops.ledger a WHERE a.run_id = '{runId}' AND a.status = 'applied'
                """);
            Assert.InRange(busiest, 1, perMinute / 6 + 2);
            var span = Convert.ToDouble(Sql.Scalar(cs, $"SELECT extract(epoch FROM max(started_at) - min(started_at)) FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'applied'"));
            Assert.True((keys - 1) / span <= perMinute / 60.0 * 1.02, $"{keys - 1} items started in {span:0.00} s: faster than {perMinute}/min");

            // One rollback script for the whole run, whichever process ran each item: psql restores every row.
            var folder = Path.Combine(output, JobName, runId.ToString());
            var script = Directory.GetFiles(Path.Combine(folder, "backfill_logs"), "rollback_*.sql").Single();
            Assert.Equal(keys, RollbackScript.ItemKeys(script).Distinct().Count());
            Assert.True(Directory.Exists(Path.Combine(folder, "workers")), "the joined process kept no files of its own");
            var ended = s.Run("Get-BackfillRun -RunId $id", new Hashtable { ["id"] = runId }).Output.Single();
            Assert.Equal(0, ended.Properties["Workers"].Value);
            Assert.Equal((long)keys, Convert.ToInt64(ended.Properties["Applied"].Value));
            var (code, stdout, stderr) = PsqlClient.RunFile(cs, script);
            Assert.True(code == 0, stdout + stderr);
            Assert.Equal((long)keys, Long(cs, "SELECT count(*) FROM counted WHERE n = 0"));
        }
        finally
        {
            End(coordinator, joiner);
        }
    }

    [Fact]
    public void Four_workers_in_one_process_apply_each_item_once_and_report_every_item()
    {
        const int keys = 200;
        var (s, cs, job, output) = Setup(keys);
        using var _ = s;
        var vars = new Hashtable { ["job"] = job, ["out"] = output };

        // A first run stopped early (the pipeline stopped reading): its items are skipped, not published.
        Assert.False(s.Run("Invoke-Backfill -Job $job -OutputDirectory $out -ItemsPerMinute 6000 -Force -WarningAction SilentlyContinue | Select-Object -First 10 | Out-Null", vars).HadErrors);
        var before = Long(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'applied'");
        Assert.InRange(before, 10, 20);

        var r = s.Run("Invoke-Backfill -Job $job -Workers 4 -ItemsPerMinute 0 -OutputDirectory $out -Force", vars);
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        var results = r.Output.Select(o => (Key: (string)o.Properties["Key"].Value, Status: o.Properties["Status"].Value.ToString())).ToList();
        Assert.Equal(keys, results.Count);
        Assert.Equal(keys, results.Select(x => x.Key).Distinct().Count());
        Assert.Equal(keys - before, results.Count(x => x.Status == "Applied"));
        Assert.Equal(before, results.Count(x => x.Status == "Skipped"));
        Assert.Equal((long)keys, Long(cs, "SELECT count(*) FROM counted WHERE n = 1"));
        Assert.Equal(4L, Long(cs, "SELECT workers FROM dataops.run_member"));
        Assert.Equal(keys - before, Long(cs, "SELECT count(*) FROM dataops.run_item"));
        Assert.Equal("", Sql.Scalar(cs, "SELECT coalesce(string_agg(item_key || ':' || done || ':' || claims, ', '), '') FROM dataops.run_item WHERE NOT done OR claims <> 1"));
        Assert.Equal("", Sql.Scalar(cs, "SELECT coalesce(string_agg(member_id || ':' || coordinator || ':' || workers, ', '), '') FROM dataops.run_member WHERE left_at IS NULL"));

        // The run's files have every item; the rollback script restores exactly the items this run applied.
        var runId = (Guid)Sql.Scalar(cs, "SELECT run_id FROM dataops.run_queue")!;
        var script = Directory.GetFiles(Path.Combine(output, JobName, runId.ToString(), "backfill_logs"), "rollback_*.sql").Single();
        Assert.Equal(keys - before, RollbackScript.ItemKeys(script).Distinct().LongCount());
    }

    [Fact]
    public void Every_session_of_a_worker_run_killed_twice_the_run_goes_on_and_applies_each_item_once()
    {
        const int keys = 90;
        var (s, cs, job, output) = Setup(keys);
        using var _ = s;
        var run = StartPwsh(cs, $"Invoke-Backfill -Job '{job}' -Workers 3 -ItemsPerMinute 900 -OutputDirectory '{output}' -Force -WarningAction SilentlyContinue | Out-Null; exit $(if ($?) {{ 0 }} else {{ 1 }})");
        try
        {
            // pg_terminate_backend of every session of the database but this one (workers, heartbeat, control, lease): twice, mid-run.
            foreach (var atLeast in new[] { 15, 45 })
            {
                WaitFor(() => Long(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'applied'") >= atLeast, TimeSpan.FromSeconds(120), $"the run did not reach {atLeast} items");
                Assert.True(Long(cs, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()") > 0);
            }

            Assert.True(run.WaitForExit(180_000), "the run did not end");
            Assert.Equal(0, run.ExitCode);
        }
        finally
        {
            End(run);
        }

        Assert.Equal("completed", Sql.Scalar(cs, "SELECT status FROM dataops.run"));
        Assert.Equal((long)keys, Long(cs, "SELECT count(*) FROM counted WHERE n = 1"));
        Assert.Equal((long)keys, Long(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'applied'"));
        Assert.Equal(0L, Long(cs, "SELECT count(*) FROM dataops.run_item WHERE NOT done"));
    }

    [Fact]
    public void Stopped_with_a_joined_process_the_runs_one_rollback_script_still_has_every_item_and_the_joined_process_stops()
    {
        const int keys = 400;
        var (s, cs, job, output) = Setup(keys);
        using var _ = s;
        var coordinator = StartRun(cs, job, output, workers: 1, perMinute: 300);
        Process? joiner = null;
        try
        {
            var runId = Published(cs);
            joiner = StartPwsh(cs, $"Invoke-Backfill -RunId '{runId}' -Join -Workers 2 -OutputDirectory '{output}' -Force -WarningAction SilentlyContinue | Out-Null");
            WaitForJoined(cs, done: 10);

            var stop = s.Run("Stop-Backfill -RunId $id -Confirm:$false", new Hashtable { ["id"] = runId });
            Assert.False(stop.HadErrors, string.Join("\n", stop.Errors));
            Assert.True(coordinator.WaitForExit(120_000), "the starting process did not end");
            Assert.True(joiner.WaitForExit(60_000), "the joined process did not end");

            Assert.Equal("stopped", Sql.Scalar(cs, $"SELECT status FROM dataops.run WHERE run_id = '{runId}'"));
            var applied = Long(cs, $"SELECT count(*) FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'applied'");
            Assert.InRange(applied, 11, keys - 1);
            Assert.Equal(applied, Long(cs, "SELECT count(*) FROM counted WHERE n = 1"));
            Assert.Equal(0L, Long(cs, "SELECT count(*) FROM counted WHERE n > 1"));
            Assert.Equal(0L, Long(cs, $"SELECT count(*) FROM dataops.ledger WHERE run_id = '{runId}' AND started_at > (SELECT closed_at FROM dataops.run_queue)"));

            // Whichever process ran an item, the run's one script holds it, and psql restores every row.
            var script = Directory.GetFiles(Path.Combine(output, JobName, runId.ToString(), "backfill_logs"), "rollback_*.sql").Single();
            Assert.Equal(applied, RollbackScript.ItemKeys(script).Distinct().LongCount());
            var (code, stdout, stderr) = PsqlClient.RunFile(cs, script);
            Assert.True(code == 0, stdout + stderr);
            Assert.Equal((long)keys, Long(cs, "SELECT count(*) FROM counted WHERE n = 0"));
        }
        finally
        {
            End(coordinator, joiner);
        }
    }

    [Fact]
    public void Suspended_every_waiting_worker_holds_and_a_faster_rate_set_meanwhile_applies_at_once_on_resume()
    {
        var (s, cs, job, output) = Setup(keys: 300);
        using var _ = s;

        // Eight workers at 6 items a minute: each takes a slot up to 80 s ahead and sleeps until it.
        var run = StartRun(cs, job, output, workers: 8, perMinute: 6);
        try
        {
            WaitFor(() => Long(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'applied'") >= 1, TimeSpan.FromSeconds(120), "the run did not start");
            var runId = (Guid)Sql.Scalar(cs, "SELECT run_id FROM dataops.run_queue")!;
            var vars = new Hashtable { ["id"] = runId };
            Assert.False(s.Run("Suspend-Backfill -RunId $id", vars).HadErrors);
            WaitFor(() => (string?)Sql.Scalar(cs, $"SELECT state FROM dataops.run_control WHERE run_id = '{runId}'") == "suspended", TimeSpan.FromSeconds(30), "the run did not say it is suspended");
            var suspendedAt = (DateTime)Sql.Scalar(cs, $"SELECT state_at FROM dataops.run_control WHERE run_id = '{runId}'")!;
            Thread.Sleep(TimeSpan.FromSeconds(25));

            // Slots came due while suspended (one every 10 s): none of those items started.
            Assert.Equal(0L, Long(cs, $"SELECT count(*) FROM dataops.ledger WHERE started_at > '{suspendedAt:O}'::timestamp + interval '1 second'"));

            Assert.False(s.Run("Set-BackfillThrottle -RunId $id -ItemsPerMinute 600", vars).HadErrors);
            var resumedAt = (DateTime)Sql.Scalar(cs, "SELECT clock_timestamp()")!;
            Assert.False(s.Run("Resume-Backfill -RunId $id", vars).HadErrors);

            // The new rate holds from the resumption: not the slots taken at 6 a minute, 80 s ahead.
            WaitFor(() => Long(cs, $"SELECT count(*) FROM dataops.ledger WHERE started_at > '{resumedAt:O}'") >= 30, TimeSpan.FromSeconds(30), "the faster rate did not apply within 30 s");
            Assert.False(s.Run("Stop-Backfill -RunId $id -Confirm:$false", vars).HadErrors);
            Assert.True(run.WaitForExit(120_000), "the run did not end");
        }
        finally
        {
            End(run);
        }

        Assert.Equal(0L, Long(cs, "SELECT count(*) FROM counted WHERE n > 1"));
    }

    [Fact]
    public void The_starting_process_killed_the_joined_process_stops_within_seconds_and_a_new_run_finishes_the_job()
    {
        const int keys = 200;
        var (s, cs, job, output) = Setup(keys);
        using var _ = s;
        var coordinator = StartRun(cs, job, output, workers: 1, perMinute: 600);
        Process? joiner = null;
        try
        {
            var runId = Published(cs);
            joiner = StartPwsh(cs, $"Invoke-Backfill -RunId '{runId}' -Join -Workers 1 -OutputDirectory '{output}' -Force; exit $(if ($?) {{ 0 }} else {{ 3 }})");
            WaitForJoined(cs, done: 5);
            coordinator.Kill(entireProcessTree: true);
            coordinator.WaitForExit();
            var killedAt = (DateTime)Sql.Scalar(cs, "SELECT clock_timestamp()")!;

            // The joined process sees the starting one gone (same host) within its 1 s check, and stops with an error.
            Assert.True(joiner.WaitForExit(30_000), "the joined process went on");
            Assert.Equal(3, joiner.ExitCode);
            Assert.True(Long(cs, $"SELECT count(*) FROM dataops.ledger WHERE started_at > '{killedAt:O}'::timestamp + interval '3 seconds'") == 0, "items started after the starting process was killed");
        }
        finally
        {
            End(coordinator, joiner);
        }

        // A new run takes the job over and applies the rest, each item once.
        var rerun = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -Force -WarningAction SilentlyContinue | Out-Null", new Hashtable { ["job"] = job, ["out"] = output });
        Assert.False(rerun.HadErrors, string.Join("\n", rerun.Errors));
        Assert.Equal((long)keys, Long(cs, "SELECT count(*) FROM counted WHERE n = 1"));
    }

    [Fact]
    public void Join_refuses_what_it_cannot_join_with_specific_errors_and_changes_nothing()
    {
        var (s, cs, job, output) = Setup(keys: 5);
        using var _ = s;
        var vars = new Hashtable { ["job"] = job, ["out"] = output, ["missing"] = Guid.NewGuid() };

        var r = s.Run("Invoke-Backfill -RunId $missing -Join -Force", vars);
        Assert.Equal("BackfillRunNotFound,DataOps.PowerShell.Cmdlets.InvokeBackfillCommand", Assert.Single(r.Errors).FullyQualifiedErrorId);
        Assert.Contains(vars["missing"]!.ToString()!, r.Errors[0].Exception.Message);

        // A finished run, and a run started without -Workers: not joinable, and why.
        Assert.False(s.Run("Invoke-Backfill -Job $job -OutputDirectory $out -ItemsPerMinute 0 -Force | Out-Null", vars).HadErrors);
        vars["done"] = Sql.Scalar(cs, "SELECT run_id FROM dataops.run")!;
        r = s.Run("Invoke-Backfill -RunId $done -Join -Force", vars);
        var error = Assert.Single(r.Errors);
        Assert.Equal("BackfillRunNotJoinable,DataOps.PowerShell.Cmdlets.InvokeBackfillCommand", error.FullyQualifiedErrorId);
        Assert.Contains("not started with -Workers", error.Exception.Message);
        Assert.Equal("InvalidOperation", error.CategoryInfo.Category.ToString());

        // The run's own settings apply to a joined process: they cannot be given with -Join.
        r = s.Run("Invoke-Backfill -RunId $done -Join -ItemsPerMinute 5", vars);
        Assert.Contains("AmbiguousParameterSet", Assert.Single(r.Errors).FullyQualifiedErrorId);
        r = s.Run("Invoke-Backfill -Job $job -Workers 0", vars);
        Assert.Contains("ParameterArgumentValidationError", Assert.Single(r.Errors).FullyQualifiedErrorId);
        r = s.Run("Invoke-Backfill -Job $job -Workers 65", vars);
        Assert.Contains("ParameterArgumentValidationError", Assert.Single(r.Errors).FullyQualifiedErrorId);

        // A live worker run joined with another job file (same name, other bytes): refused before anything runs.
        Sql.Execute(cs, "UPDATE counted SET n = 0");
        var slow = StartRun(cs, job, output, workers: 1, perMinute: 6);
        try
        {
            vars["live"] = Published(cs);
            var other = CountedJob.Write(JobName, "UPDATE counted SET n = n + 2 WHERE k = @key::int");
            vars["other"] = other;
            r = s.Run("Invoke-Backfill -RunId $live -Join -Job $other -Force", vars);
            error = Assert.Single(r.Errors);
            Assert.Equal("BackfillJobMismatch,DataOps.PowerShell.Cmdlets.InvokeBackfillCommand", error.FullyQualifiedErrorId);
            Assert.Contains(other, error.Exception.Message);
            Assert.Equal(0L, Long(cs, "SELECT count(*) FROM dataops.run_member WHERE NOT coordinator"));
            Assert.Equal(0L, Long(cs, "SELECT count(*) FROM counted WHERE n > 1"));

            // -WhatIf says what it would join and joins nothing.
            r = s.Run("Invoke-Backfill -RunId $live -Join -Workers 3 -WhatIf", vars);
            Assert.False(r.HadErrors, string.Join("\n", r.Errors));
            Assert.Equal(0L, Long(cs, "SELECT count(*) FROM dataops.run_member WHERE NOT coordinator"));
        }
        finally
        {
            End(slow);
        }
    }
}
