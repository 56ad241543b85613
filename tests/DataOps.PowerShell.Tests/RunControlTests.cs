using System.Collections;
using System.Diagnostics;
using System.Management.Automation;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// Issue 17, item 4: a live run steered from another process. The run is a real pwsh process
/// (Invoke-Backfill); Suspend-, Resume-, Stop-Backfill and Set-BackfillThrottle come from this test
/// host's runspace, as from another session or machine. Timing is judged from the ledger's and the
/// control row's server timestamps, with generous waits, so a loaded machine slows the test, not fails it.
/// </summary>
public sealed class RunControlTests
{
    private const string JobName = "steered";

    /// <summary>A Core database with <paramref name="keys"/> counted rows, a connected session, a job file (its step <paramref name="step"/>) and an output folder.</summary>
    private static (PsSession Session, string Cs, string Job, string Output) Setup(int keys, string step = CountedJob.Increment)
    {
        var cs = TestCluster.CreateDatabaseWith("Core");
        Sql.Execute(cs, $"CREATE TABLE counted (k int PRIMARY KEY, n int NOT NULL DEFAULT 0); INSERT INTO counted (k) SELECT generate_series(1, {keys})");
        var s = new PsSession();
        var r = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs + ";Application Name=operator" });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        var job = CountedJob.Write(JobName, step);
        return (s, cs, job, Directory.CreateTempSubdirectory("dataops-control-").FullName);
    }

    /// <summary>Invoke-Backfill in a pwsh process of its own; returns once its run has applied <paramref name="atLeast"/> items, with its run id.</summary>
    private static (Process Process, Guid RunId) StartRun(string cs, string job, string output, int perMinute, int atLeast)
    {
        var psi = Repo.Pwsh($"Import-Module '{Repo.Manifest}'; Connect-DataOps -ConnectionString '{cs}' | Out-Null; Invoke-Backfill -Job '{job}' -ItemsPerMinute {perMinute} -OutputDirectory '{output}' -WarningAction SilentlyContinue | Out-Null");
        var process = Process.Start(psi)!;
        process.StandardInput.Close();
        _ = process.StandardOutput.ReadToEndAsync();
        _ = process.StandardError.ReadToEndAsync();
        WaitFor(() => Applied(cs) >= atLeast, TimeSpan.FromSeconds(120), "the run did not start applying");
        return (process, (Guid)Sql.Scalar(cs, "SELECT run_id FROM dataops.run WHERE kind = 'backfill' AND status = 'running'")!);
    }

    private static long Applied(string cs) => Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'applied'"));

    private static void WaitFor(Func<bool> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, what);
            Thread.Sleep(100);
        }
    }

    private static void End(Process process)
    {
        if (!process.WaitForExit(120_000))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail("the run's process did not end");
        }
    }

    private static PSObject Control(PsSession s, string command, Guid runId, string extra = "")
    {
        var r = s.Run($"{command} -RunId $id {extra}", new Hashtable { ["id"] = runId });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        var control = Assert.Single(r.Output);
        Assert.Equal("DataOps.Engine.Backfill.BackfillRunControl", control.TypeNames[0]);
        return control;
    }

    [Fact]
    public void Suspended_from_another_process_the_run_applies_nothing_then_resumes_at_the_rate_set_meanwhile_and_stops_with_its_files()
    {
        var (s, cs, job, output) = Setup(keys: 400);
        using var _ = s;
        var (process, runId) = StartRun(cs, job, output, perMinute: 600, atLeast: 3);
        using var __ = process;
        try
        {
            Assert.Equal("running", s.Run("(Get-BackfillRun -RunId $id).State", new Hashtable { ["id"] = runId }).Output.Single().BaseObject);

            // -WhatIf asks nothing of the run and records nothing.
            var whatIf = s.Run("Stop-Backfill -RunId $id -Abort -WhatIf", new Hashtable { ["id"] = runId });
            Assert.False(whatIf.HadErrors, string.Join("\n", whatIf.Errors));
            Assert.Empty(whatIf.Output);
            Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run_control_action"));
            Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run_control WHERE requested_state <> 'running'"));

            var suspended = Control(s, "Suspend-Backfill", runId);
            Assert.Equal("suspended", suspended.Properties["RequestedState"].Value);
            Assert.Equal(JobName, suspended.Properties["Job"].Value);
            Assert.Contains($"@{Environment.MachineName})", (string)suspended.Properties["RequestedBy"].Value);

            // The run says it is suspended once the item in flight is done; from then on no ledger row.
            WaitFor(() => (string?)Sql.Scalar(cs, $"SELECT state FROM dataops.run_control WHERE run_id = '{runId}'") == "suspended", TimeSpan.FromSeconds(30), "the run did not report itself suspended");
            var run = s.Run("Get-BackfillRun -RunId $id", new Hashtable { ["id"] = runId }).Output.Single();
            Assert.Equal("running", run.Properties["Status"].Value);
            Assert.Equal("suspended", run.Properties["State"].Value);
            Assert.Contains("suspended by", (string)run.Properties["StateReason"].Value);
            var appliedAtSuspension = Applied(cs);
            Thread.Sleep(TimeSpan.FromSeconds(28));

            // The new rate, set while suspended, applies from the resumption on.
            var throttled = Control(s, "Set-BackfillThrottle", runId, "-ItemsPerMinute 120");
            Assert.Equal(120, throttled.Properties["ItemsPerMinute"].Value);
            Assert.Equal("suspended", throttled.Properties["RequestedState"].Value);
            Thread.Sleep(TimeSpan.FromSeconds(3));
            Assert.Equal(appliedAtSuspension, Applied(cs));
            Assert.Equal(0L, Sql.Scalar(cs, $"SELECT count(*) FROM dataops.ledger WHERE finished_at > (SELECT state_at FROM dataops.run_control WHERE run_id = '{runId}')"));
            var quiet = Convert.ToDouble(Sql.Scalar(cs, $"SELECT extract(epoch FROM clock_timestamp() - (SELECT max(finished_at) FROM dataops.ledger))"));
            Assert.True(quiet >= 30, $"only {quiet:0.0} s without a ledger row");

            var resumedAt = (DateTime)Sql.Scalar(cs, "SELECT clock_timestamp()")!;
            Assert.Equal("running", Control(s, "Resume-Backfill", runId).Properties["RequestedState"].Value);

            // 120 items a minute from the first item after the resumption: counted in the ledger, by its timestamps.
            WaitFor(() => (bool)Sql.Scalar(cs, $"SELECT coalesce(max(finished_at) > min(finished_at) + interval '62 seconds', false) FROM dataops.ledger WHERE finished_at > '{resumedAt:O}'")!,
                TimeSpan.FromSeconds(180), "the run did not go on for a minute after the resumption");
            var inMinute = Convert.ToInt64(Sql.Scalar(cs, $"""
                WITH after AS (SELECT finished_at FROM dataops.ledger WHERE status = 'applied' AND finished_at > '{resumedAt:O}')
                SELECT count(*) FROM after WHERE finished_at < (SELECT min(finished_at) FROM after) + interval '60 seconds'
                """));
            Assert.InRange(inMinute, 118, 122);

            var stop = Control(s, "Stop-Backfill", runId, "-Confirm:$false");
            Assert.Equal("stopping", stop.Properties["RequestedState"].Value);
            End(process);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }

        // Stopped, with why and who, and its files as any run writes them.
        Assert.Equal("stopped", Sql.Scalar(cs, $"SELECT status FROM dataops.run WHERE run_id = '{runId}'"));
        var reason = (string)Sql.Scalar(cs, $"SELECT summary->>'reason' FROM dataops.run WHERE run_id = '{runId}'")!;
        Assert.Contains("stopped by Stop-Backfill", reason);
        Assert.Contains(Environment.MachineName, reason);
        var ended = s.Run("Get-BackfillRun -RunId $id", new Hashtable { ["id"] = runId }).Output.Single();
        Assert.Equal("stopped", ended.Properties["State"].Value);
        var folder = Path.Combine(output, JobName, runId.ToString());
        Assert.Contains("stopped", File.ReadAllText(Path.Combine(folder, "backfill_summary.md")));
        var script = Directory.GetFiles(Path.Combine(folder, "backfill_logs"), "rollback_*.sql").Single();
        Assert.Equal(Applied(cs), RollbackScript.ItemKeys(script).Distinct().LongCount());
        Assert.True(Applied(cs) < 400, "the run stopped before its last item");

        // Every request is in the history, with who (role, OS user, host) and when, in order.
        var actions = (string)Sql.Scalar(cs, $"SELECT string_agg(action || ':' || coalesce(value, ''), ',' ORDER BY action_id) FROM dataops.run_control_action WHERE run_id = '{runId}'")!;
        Assert.Equal("suspend:,throttle:120,resume:,stop:", actions);
        Assert.Equal(0L, Sql.Scalar(cs, $"SELECT count(*) FROM dataops.run_control_action WHERE db_user IS NULL OR os_user IS NULL OR host_name <> '{Environment.MachineName}'"));
    }

    [Fact]
    public void Abort_rolls_back_the_item_in_flight_and_ends_the_run_with_the_committed_items_in_its_rollback_script()
    {
        // Item 3 sleeps long inside its transaction, after its UPDATE: it is in flight when the abort comes.
        var (s, cs, job, output) = Setup(keys: 6, step: "UPDATE counted SET n = n + 1 + (SELECT 0 FROM pg_sleep(CASE WHEN @key::int = 3 THEN 45 ELSE 0 END)) WHERE k = @key::int");
        using var _ = s;
        var (process, runId) = StartRun(cs, job, output, perMinute: 600, atLeast: 2);
        using var __ = process;
        DateTime abortedAt;
        try
        {
            WaitFor(() => Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()")) > 0,
                TimeSpan.FromSeconds(30), "item 3 never started");
            abortedAt = (DateTime)Sql.Scalar(cs, "SELECT clock_timestamp()")!;
            var abort = Control(s, "Stop-Backfill", runId, "-Abort -Confirm:$false");
            Assert.Equal("aborting", abort.Properties["RequestedState"].Value);
            Assert.Equal("abort", abort.Properties["Action"].Value);
            End(process);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }

        // Ended well before the item's 45 s sleep would have: its statement was cancelled.
        var took = Convert.ToDouble(Sql.Scalar(cs, $"SELECT extract(epoch FROM finished_at - '{abortedAt:O}'::timestamptz) FROM dataops.run WHERE run_id = '{runId}'"));
        Assert.True(took < 30, $"the run took {took:0.0} s to end after the abort");
        Assert.Equal("stopped", Sql.Scalar(cs, $"SELECT status FROM dataops.run WHERE run_id = '{runId}'"));
        Assert.Contains("aborted by Stop-Backfill -Abort", (string)Sql.Scalar(cs, $"SELECT summary->>'reason' FROM dataops.run WHERE run_id = '{runId}'")!);

        // Item 3 rolled back: its row as before, no applied ledger row; items 1 and 2 stay, in the rollback script.
        Assert.Equal(0, Sql.Scalar(cs, "SELECT n FROM counted WHERE k = 3"));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE item_key = '3'"));
        Assert.Equal("1,2", Sql.Scalar(cs, "SELECT string_agg(item_key, ',' ORDER BY item_key) FROM dataops.ledger WHERE status = 'applied'"));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM counted WHERE k > 2 AND n <> 0"));
        var folder = Path.Combine(output, JobName, runId.ToString());
        var script = Directory.GetFiles(Path.Combine(folder, "backfill_logs"), "rollback_*.sql").Single();
        Assert.Equal(["1", "2"], RollbackScript.ItemKeys(script).Distinct().Order());
        Assert.True(File.Exists(Path.Combine(folder, "backfill_summary.md")));
    }

    [Fact]
    public void Bad_requests_are_refused_with_stable_error_ids_and_change_nothing()
    {
        var (s, cs, job, output) = Setup(keys: 3);
        using var _ = s;
        var done = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -WarningAction SilentlyContinue", new Hashtable { ["job"] = job, ["out"] = output });
        Assert.False(done.HadErrors, string.Join("\n", done.Errors));
        var completed = (Guid)done.Output[0].Properties["RunId"].Value;

        var unknown = s.Run("Suspend-Backfill -RunId $id", new Hashtable { ["id"] = Guid.NewGuid() });
        Assert.Equal("RunNotFound,DataOps.PowerShell.Cmdlets.SuspendBackfillCommand", Assert.Single(unknown.Errors).FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ObjectNotFound, unknown.Errors[0].CategoryInfo.Category);

        foreach (var command in new[] { "Suspend-Backfill", "Resume-Backfill", "Stop-Backfill -Confirm:$false", "Stop-Backfill -Abort -Confirm:$false", "Set-BackfillThrottle -ItemsPerMinute 10" })
        {
            var r = s.Run($"Get-BackfillRun -RunId $id | {command}", new Hashtable { ["id"] = completed });
            var error = Assert.Single(r.Errors);
            Assert.StartsWith("BackfillRunNotRunning,", error.FullyQualifiedErrorId);
            Assert.Contains("is completed, not running", error.Exception.Message);
            Assert.Equal(completed, error.TargetObject);
        }

        var rate = s.Run("Set-BackfillThrottle -RunId $id -ItemsPerMinute -1", new Hashtable { ["id"] = completed });
        Assert.StartsWith("ParameterArgumentValidationError,", Assert.Single(rate.Errors).FullyQualifiedErrorId);

        // -WhatIf on a run that ended: nothing asked, nothing recorded.
        Assert.Empty(s.Run("Suspend-Backfill -RunId $id -WhatIf", new Hashtable { ["id"] = completed }).Output);
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run_control_action"));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run_control WHERE requested_state <> 'running'"));
    }
}
