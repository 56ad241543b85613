using System.Collections;
using System.Management.Automation;
using System.Text.Json;
using System.Text.Json.Nodes;
using Npgsql;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// Faults a backfill or an undo meets in production: rows another session holds, a terminated
/// backend, a server restart, a server that stays down. Each ends in an outcome, never a raw error
/// or a run left 'running'.
/// </summary>
public sealed class BackfillFaultTests
{
    private const string JobName = "results-v1.2.1";

    private const string PendingSql =
        "SELECT string_agg(s.id::text, ',' ORDER BY s.completed_at, s.id) FROM prism.sessions s LEFT JOIN prism.profiles p ON p.session_id = s.id WHERE s.status = 'completed' AND (p.id IS NULL OR p.results_version IS DISTINCT FROM 'v1.2.1' OR s.fc_kind <> 'functions')";

    private static (PsSession Session, string Cs, string Output) Setup(int seed, string? cs = null)
    {
        cs ??= TestCluster.CreateDatabaseWith("Prism");
        var s = new PsSession();
        var output = Directory.CreateTempSubdirectory("dataops-fault-").FullName;
        var r = s.Run($"Connect-DataOps -ConnectionString $cs | Out-Null; New-PrismSampleData -Sessions 40 -Seed {seed} -PendingShare 0.5 | Out-Null", new Hashtable { ["cs"] = cs });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return (s, cs, output);
    }

    private static List<string> PendingKeys(string cs) =>
        (Sql.Scalar(cs, PendingSql) as string ?? string.Empty).Split(',', StringSplitOptions.RemoveEmptyEntries).ToList();

    private static long DuplicateApplications(string cs) => Convert.ToInt64(Sql.Scalar(cs,
        "SELECT count(*) FROM (SELECT item_key FROM dataops.ledger WHERE status = 'applied' AND undone_by IS NULL AND superseded_by IS NULL GROUP BY item_key HAVING count(*) > 1) x"));

    /// <summary>The sample job with a slow first step, so a fault can land while an item is in flight.</summary>
    private static string SlowJob(double seconds) => SampleJobs.With(j => j["steps"]!.AsArray().Insert(0, new JsonObject
    {
        ["name"] = "take a moment",
        ["sql"] = $"SELECT pg_sleep({seconds.ToString(System.Globalization.CultureInfo.InvariantCulture)}) FROM prism.sessions WHERE id = @key::uuid",
    }));

    private static string PlanFor(PsSession s, string job, string output) =>
        (string)s.Run("Test-ProdHealth -Job $job -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = output }).Output.Single().Properties["PlanPath"].Value;

    /// <summary>Another session holding a row lock in an open transaction, as an application would.</summary>
    private static NpgsqlConnection HoldRow(string cs, string table, string where)
    {
        var holder = new NpgsqlConnection(cs);
        holder.Open();
        using var lockIt = new NpgsqlCommand($"BEGIN; SELECT 1 FROM {table} WHERE {where} FOR UPDATE", holder);
        lockIt.ExecuteNonQuery();
        return holder;
    }

    private static PSObject ItemOf(PsResult r, string key) => r.Output.Single(o => o.Properties["Key"]?.Value as string == key);

    /// <summary>The Blocker property of an item's result, as PowerShell shows it.</summary>
    private static PSObject? BlockerOf(PSObject item) => item.Properties["Blocker"].Value is { } b ? PSObject.AsPSObject(b) : null;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Rows_another_session_holds_fail_their_item_as_LockTimeout_after_its_retries_naming_the_holder_and_the_other_items_go_on(bool plan)
    {
        var (s, cs, output) = Setup(seed: plan ? 61 : 62);
        using var _ = s;
        var keys = PendingKeys(cs);
        var locked = keys[2];
        var job = plan ? PlanFor(s, SampleJobs.Path, output) : SampleJobs.Path;
        using var holder = HoldRow(cs, "prism.sessions", $"id = '{locked}'");

        var run = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -LockTimeout 150ms -LockRetries 2 -OutputDirectory $out -Verbose", new Hashtable { ["job"] = job, ["out"] = output });

        Assert.False(run.HadErrors, string.Join("\n", run.Errors));
        var item = ItemOf(run, locked);
        Assert.Equal("Failed", item.Properties["Status"].Value.ToString());
        Assert.Equal("LockTimeout", item.Properties["ErrorCategory"].Value.ToString());
        var error = (string)item.Properties["Error"].Value;
        Assert.Contains("55P03", error);
        Assert.Equal(3, item.Properties["Attempts"].Value);

        // The error and the Blocker property name the session holding the row: its pid, state and query text.
        var blocker = BlockerOf(item);
        Assert.NotNull(blocker);
        Assert.Equal(holder.ProcessID, blocker.Properties["Pid"].Value);
        Assert.Equal("idle in transaction", blocker.Properties["State"].Value);
        Assert.Contains("FOR UPDATE", (string)blocker.Properties["Query"].Value);
        Assert.Contains($"pid {holder.ProcessID} (idle in transaction", error);
        Assert.Contains("FOR UPDATE", error);

        Assert.Equal(keys.Count - 1, run.Output.Count(o => o.Properties["Status"].Value.ToString() == "Applied"));
        Assert.Equal([locked], PendingKeys(cs));
        var runId = (Guid)item.Properties["RunId"].Value;
        Assert.Equal((long)keys.Count - 1, Sql.Scalar(cs, $"SELECT count(*) FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'applied'"));
        Assert.Equal("LockTimeout", Sql.Scalar(cs, $"SELECT error_category FROM dataops.ledger WHERE run_id = '{runId}' AND item_key = '{locked}'"));
        Assert.Contains($"pid {holder.ProcessID}", (string)Sql.Scalar(cs, $"SELECT error_message FROM dataops.ledger WHERE run_id = '{runId}' AND item_key = '{locked}'")!);
        Assert.Equal(3, Sql.Scalar(cs, $"SELECT attempts FROM dataops.ledger WHERE run_id = '{runId}' AND item_key = '{locked}'"));
        Assert.Equal("completed", Sql.Scalar(cs, $"SELECT status FROM dataops.run WHERE run_id = '{runId}'"));
        var runFolder = Path.Combine(output, JobName, runId.ToString());
        Assert.Contains($"pid {holder.ProcessID}", File.ReadAllText(Path.Combine(runFolder, "backfill_summary.md")));
        var batches = string.Join("\n", Directory.GetFiles(Path.Combine(runFolder, "backfill_logs"), "batch_*.json").Select(File.ReadAllText));
        Assert.Contains($"\"Pid\":{holder.ProcessID}", batches);

        // -Verbose tells of the wait, the retries and the holder.
        Assert.Contains(run.Verbose, v => v.Contains(locked, StringComparison.Ordinal) && v.Contains("trying again", StringComparison.Ordinal) && v.Contains($"pid {holder.ProcessID}", StringComparison.Ordinal));
        // The progress bar says what the run waits for, not only how many items are done; -Verbose says how long it can take.
        Assert.Contains(run.Progress, p => p.StatusDescription.Contains($"waiting (lock): item {locked} (attempt ", StringComparison.Ordinal) && p.StatusDescription.Contains($"pid {holder.ProcessID}", StringComparison.Ordinal));
        Assert.Contains(run.Verbose, v => v.Contains("3 attempts with backoff: up to about", StringComparison.Ordinal));

        // The other session was never disturbed: its transaction goes on and commits.
        using (var stillThere = new NpgsqlCommand($"UPDATE prism.sessions SET status = status WHERE id = '{locked}'; COMMIT", holder))
        {
            Assert.Equal(1, stillThere.ExecuteNonQuery());
        }

        var rerun = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", new Hashtable { ["job"] = plan ? PlanFor(s, SampleJobs.Path, output) : job, ["out"] = output });

        Assert.False(rerun.HadErrors, string.Join("\n", rerun.Errors));
        Assert.Equal("Applied", ItemOf(rerun, locked).Properties["Status"].Value.ToString());
        Assert.Empty(PendingKeys(cs));
        Assert.Equal(0L, DuplicateApplications(cs));
    }

    [Fact]
    public void The_job_files_lockTimeout_and_lockRetries_apply_and_the_parameters_override_them()
    {
        var (s, cs, output) = Setup(seed: 65);
        using var _ = s;
        var keys = PendingKeys(cs);
        var locked = keys[0];
        var job = SampleJobs.With(j => { j["lockTimeout"] = "100ms"; j["lockRetries"] = 1; });
        using var holdSession = HoldRow(cs, "prism.sessions", $"id = '{locked}'");

        var fromFile = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = output });
        var overridden = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -LockRetries 0 -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = output });

        Assert.False(fromFile.HadErrors, string.Join("\n", fromFile.Errors));
        Assert.Equal(2, ItemOf(fromFile, locked).Properties["Attempts"].Value);
        Assert.Equal(holdSession.ProcessID, BlockerOf(ItemOf(fromFile, locked))!.Properties["Pid"].Value);
        Assert.Equal(1, ItemOf(overridden, locked).Properties["Attempts"].Value);
        Assert.Equal("LockTimeout", ItemOf(overridden, locked).Properties["ErrorCategory"].Value.ToString());
        Assert.Equal(holdSession.ProcessID, BlockerOf(ItemOf(overridden, locked))!.Properties["Pid"].Value);
    }

    [Fact]
    public async Task A_holder_that_lets_go_during_the_backoff_lets_the_item_apply_on_a_retry()
    {
        var (s, cs, output) = Setup(seed: 66);
        using var _ = s;
        var keys = PendingKeys(cs);
        var locked = keys[3];
        var holder = HoldRow(cs, "prism.sessions", $"id = '{locked}'");
        const string Waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";

        var running = Task.Run(() => s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -LockTimeout 300ms -LockRetries 5 -OutputDirectory $out", new Hashtable { ["job"] = SampleJobs.Path, ["out"] = output }));

        // The first attempt waits for the row, gives up after 300 ms; during its backoff the holder commits.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while ((long)Sql.Scalar(cs, Waiting)! == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10);
        }

        while ((long)Sql.Scalar(cs, Waiting)! > 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10);
        }

        using (var commit = new NpgsqlCommand("COMMIT", holder))
        {
            commit.ExecuteNonQuery();
        }

        holder.Dispose();
        var run = await running;

        Assert.False(run.HadErrors, string.Join("\n", run.Errors));
        var item = ItemOf(run, locked);
        Assert.Equal("Applied", item.Properties["Status"].Value.ToString());
        Assert.InRange((int)item.Properties["Attempts"].Value, 2, 6);
        Assert.All(run.Output, o => Assert.Equal("Applied", o.Properties["Status"].Value.ToString()));
        Assert.Empty(PendingKeys(cs));
        Assert.Equal(0L, DuplicateApplications(cs));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(60.001)]
    [InlineData(86400)]
    public void A_LockTimeout_out_of_range_is_refused_before_anything_runs(double seconds)
    {
        var (s, cs, output) = Setup(seed: 63);
        using var _ = s;

        var error = s.Terminating("Invoke-Backfill", new Hashtable { ["Job"] = SampleJobs.Path, ["LockTimeout"] = TimeSpan.FromSeconds(seconds), ["OutputDirectory"] = output, ["Confirm"] = false });

        Assert.StartsWith("LockTimeoutOutOfRange,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run"));
    }

    [Fact]
    public void Undo_goes_on_past_held_rows_reports_unknown_piped_runs_per_item_and_says_when_a_run_is_already_undone()
    {
        var (s, cs, output) = Setup(seed: 64);
        using var _ = s;
        var keys = PendingKeys(cs);
        var applied = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", new Hashtable { ["job"] = SampleJobs.Path, ["out"] = output });
        Assert.False(applied.HadErrors, string.Join("\n", applied.Errors));
        var runId = (Guid)applied.Output[0].Properties["RunId"].Value;
        var locked = keys[5];

        PsResult undo;
        using (var holder = HoldRow(cs, "prism.profiles", $"session_id = '{locked}'"))
        {
            undo = s.Run("Undo-Backfill -RunId $id -Confirm:$false", new Hashtable { ["id"] = runId });
        }

        Assert.False(undo.HadErrors, string.Join("\n", undo.Errors));
        var stuck = ItemOf(undo, locked);
        Assert.Equal("Failed", stuck.Properties["Status"].Value.ToString());
        Assert.Equal("LockTimeout", stuck.Properties["ErrorCategory"].Value.ToString());
        Assert.Equal(keys.Count - 1, undo.Output.Count(o => o.Properties["Status"].Value.ToString() == "Restored"));
        Assert.Equal([locked], keys.Except(PendingKeys(cs)).ToList());

        // The second undo restores only what is left; unknown run ids piped beside it are errors of their own.
        var unknown = Guid.NewGuid();
        var again = s.Run("$unknown, $id | ForEach-Object { [pscustomobject]@{ RunId = $_ } } | Undo-Backfill -Confirm:$false; 'after'", new Hashtable { ["id"] = runId, ["unknown"] = unknown });

        var notFound = Assert.Single(again.Errors);
        Assert.StartsWith("RunNotFound,", notFound.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ObjectNotFound, notFound.CategoryInfo.Category);
        Assert.Equal(unknown, notFound.TargetObject);
        Assert.Equal("Restored", ItemOf(again, locked).Properties["Status"].Value.ToString());
        Assert.Equal("after", again.Output[^1].BaseObject);
        Assert.Equal(keys.Order(), PendingKeys(cs).Order());

        var third = s.Run("Undo-Backfill -RunId $id -Confirm:$false; 'after'", new Hashtable { ["id"] = runId });

        var undone = Assert.Single(third.Errors);
        Assert.StartsWith("RunAlreadyUndone,", undone.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidOperation, undone.CategoryInfo.Category);
        Assert.Contains($"all {keys.Count} items", undone.Exception.Message);
        Assert.Equal("after", Assert.Single(third.Output).BaseObject);
        Assert.Equal(keys.Order(), PendingKeys(cs).Order());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_terminated_backend_is_retried_and_every_item_is_applied_once(bool plan)
    {
        var (s, cs, output) = Setup(seed: plan ? 65 : 66);
        using var _ = s;
        var keys = PendingKeys(cs);
        var slow = SlowJob(0.05);
        var job = plan ? PlanFor(s, slow, output) : slow;

        // Terminate the backend running an item's steps, twice, as pg_terminate_backend by an admin would (57P01).
        using var stop = new CancellationTokenSource();
        var terminated = 0;
        var killer = Background(() =>
        {
            while (terminated < 2 && !stop.IsCancellationRequested)
            {
                var killed = Convert.ToInt64(Sql.Scalar(cs,
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%pg_sleep(0.05)%'"));
                if (killed > 0)
                {
                    terminated++;
                    Thread.Sleep(300);
                }
            }
        });

        var run = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = output });
        stop.Cancel();
        killer();

        Assert.True(terminated > 0, "no backend was terminated: the test proved nothing");
        Assert.False(run.HadErrors, string.Join("\n", run.Errors));
        Assert.Equal(keys.Order(), run.Output.Where(o => o.Properties["Status"].Value.ToString() == "Applied").Select(o => (string)o.Properties["Key"].Value).Order());
        Assert.Empty(PendingKeys(cs));
        Assert.Equal(0L, DuplicateApplications(cs));
        var runId = (Guid)run.Output[0].Properties["RunId"].Value;
        Assert.Equal("completed", Sql.Scalar(cs, $"SELECT status FROM dataops.run WHERE run_id = '{runId}'"));
        Assert.Equal((long)keys.Count, Sql.Scalar(cs, $"SELECT count(*) FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'applied'"));
        if (plan)
        {
            // One item at a time: the terminated item itself ran again on a new connection.
            Assert.Contains(run.Output, o => (int)o.Properties["Attempts"].Value > 1);
        }

        var script = Directory.GetFiles(Path.Combine(output, JobName, runId.ToString(), "backfill_logs"), "rollback_*.sql").Single();
        Assert.Equal(keys.Order(), RollbackScript.ItemKeys(script).Distinct().Order());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_server_restart_is_ridden_out_and_a_server_that_stays_down_stops_the_run_which_then_shows_abandoned(bool plan)
    {
        var root = Directory.CreateTempSubdirectory("dataops-fault-root-").FullName;
        using var admin = new PsSession();
        var name = plan ? "fault-plan" : "fault";
        var vars = new Hashtable { ["root"] = root, ["name"] = name };
        var port = (int)admin.Run(
            "$sb = Start-DataOpsSandbox -Name $name -Root $root -NoDefault; Install-DataOpsSchema -Connection $sb.Connection -Confirm:$false | Out-Null; $sb.Port",
            vars).Output.Single().BaseObject;
        var cs = $"Host=127.0.0.1;Port={port};Username=postgres;Password={File.ReadAllText(Path.Combine(root, name, "password")).Trim()};Database=dataops;Pooling=false";
        try
        {
            var (s, _, output) = Setup(seed: plan ? 67 : 68, cs);
            using var session = s;
            var keys = PendingKeys(cs);
            var job = SlowJob(0.02);
            var runVars = new Hashtable { ["job"] = job, ["out"] = output };

            // 1. A restart (fast shutdown: 57P01 to every session, then connection refused, then 57P03) while items run.
            var restarted = Background(() =>
            {
                WaitForApplied(cs, 3);
                var r = admin.Run("Stop-DataOpsSandbox -Name $name -Root $root | Out-Null; Start-DataOpsSandbox -Name $name -Root $root -NoDefault | Out-Null", vars);
                Assert.False(r.HadErrors, string.Join("\n", r.Errors));
            });
            var first = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 300 -OutputDirectory $out", runVars);
            restarted();

            Assert.False(first.HadErrors, string.Join("\n", first.Errors));
            Assert.Equal(keys.Count, first.Output.Count(o => o.Properties["Status"].Value.ToString() == "Applied"));
            Assert.Empty(PendingKeys(cs));
            Assert.Equal(0L, DuplicateApplications(cs));
            var firstRun = (Guid)first.Output[0].Properties["RunId"].Value;
            Assert.Equal("completed", Sql.Scalar(cs, $"SELECT status FROM dataops.run WHERE run_id = '{firstRun}'"));

            var undo = s.Run("Undo-Backfill -RunId $id -Confirm:$false", new Hashtable { ["id"] = firstRun });
            Assert.False(undo.HadErrors, string.Join("\n", undo.Errors));
            Assert.Equal(keys.Order(), PendingKeys(cs).Order());

            // 2. The server goes down and stays down: the run stops at the first item that cannot reach it.
            var applied = Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'applied'"));
            var stopped = Background(() =>
            {
                WaitForApplied(cs, applied + 3);
                Assert.False(admin.Run("Stop-DataOpsSandbox -Name $name -Root $root | Out-Null", vars).HadErrors);
            });
            var second = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 300 -OutputDirectory $out", plan ? new Hashtable { ["job"] = PlanFor(s, job, output), ["out"] = output } : runVars);
            stopped();

            // Plans run grouped too: the item in flight may or may not have committed, and the ledger that
            // would say is out of reach: the run stops with a clear error rather than guess (the next run asks the ledger).
            var unknown = Assert.Single(second.Errors);
            Assert.StartsWith("BackfillOutcomeUnknown,", unknown.FullyQualifiedErrorId);
            Assert.Equal(ErrorCategory.ConnectionError, unknown.CategoryInfo.Category);
            Assert.All(second.Output, o => Assert.Equal("Applied", o.Properties["Status"].Value.ToString()));
            var done = second.Output.Count;
            var secondRun = (Guid)second.Output[0].Properties["RunId"].Value;

            Assert.InRange(done, 3, keys.Count - 1);
            var logs = Path.Combine(output, JobName, secondRun.ToString(), "backfill_logs");
            var results = JsonDocument.Parse(File.ReadAllText(Path.Combine(logs, "execution_results.json"))).RootElement;
            Assert.Equal("failed", results.GetProperty("outcome").GetString());
            Assert.Contains("the ledger could not be read", results.GetProperty("reason").GetString());
            Assert.Equal(done, RollbackScript.ItemKeys(Directory.GetFiles(logs, "rollback_*.sql").Single()).Distinct().Count());

            // 3. The server is back: the run that could not record its end shows abandoned, with why, and the next run takes over at once.
            Assert.False(admin.Run("Start-DataOpsSandbox -Name $name -Root $root -NoDefault | Out-Null", vars).HadErrors);
            var seen = s.Run("Get-BackfillRun -RunId $id", new Hashtable { ["id"] = secondRun }).Output.Single();
            Assert.Equal("abandoned", seen.Properties["Status"].Value);
            Assert.Contains("could not be reached", (string)seen.Properties["Reason"].Value);

            var third = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", plan ? new Hashtable { ["job"] = PlanFor(s, job, output), ["out"] = output } : runVars);

            Assert.False(third.HadErrors, string.Join("\n", third.Errors));
            Assert.Empty(PendingKeys(cs));
            Assert.Equal(0L, DuplicateApplications(cs));
            Assert.Equal("abandoned", Sql.Scalar(cs, $"SELECT status FROM dataops.run WHERE run_id = '{secondRun}'"));
            Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run WHERE status = 'running'"));
            if (plan)
            {
                return;
            }

            // 4. An undo whose server goes down mid-way (while an item waits for a row another session holds):
            // a clear error, what it restored stays restored, it shows abandoned, and the next undo does the rest.
            var thirdRun = (Guid)third.Output[0].Properties["RunId"].Value;
            var thirdItems = Convert.ToInt64(Sql.Scalar(cs, $"SELECT count(*) FROM dataops.ledger WHERE run_id = '{thirdRun}' AND status = 'applied'"));
            var held = (string)Sql.Scalar(cs, $"SELECT item_key FROM dataops.ledger WHERE run_id = '{thirdRun}' AND status = 'applied' ORDER BY ledger_id DESC OFFSET 1 LIMIT 1")!;
            var holder = HoldRow(cs, "prism.profiles", $"session_id = '{held}'");
            var down = Background(() =>
            {
                var deadline = DateTime.UtcNow.AddSeconds(30);
                while (Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")) == 0 && DateTime.UtcNow < deadline)
                {
                    Thread.Sleep(20);
                }

                Assert.False(admin.Run("Stop-DataOpsSandbox -Name $name -Root $root | Out-Null", vars).HadErrors);
            });
            var brokenUndo = s.Run("Undo-Backfill -RunId $id -Confirm:$false", new Hashtable { ["id"] = thirdRun });
            down();
            holder.Dispose();

            var undoLost = Assert.Single(brokenUndo.Errors);
            Assert.StartsWith("UndoConnectionLost,", undoLost.FullyQualifiedErrorId);
            Assert.Equal(ErrorCategory.ConnectionError, undoLost.CategoryInfo.Category);
            var restoredFirst = Assert.Single(brokenUndo.Output);
            Assert.Equal("Restored", restoredFirst.Properties["Status"].Value.ToString());
            var undoRun = (Guid)restoredFirst.Properties["RunId"].Value;

            Assert.False(admin.Run("Start-DataOpsSandbox -Name $name -Root $root -NoDefault | Out-Null", vars).HadErrors);
            var undoSeen = s.Run("Get-BackfillRun -RunId $id", new Hashtable { ["id"] = undoRun }).Output.Single();
            Assert.Equal("abandoned", undoSeen.Properties["Status"].Value);
            var rest = s.Run("Undo-Backfill -RunId $id -Confirm:$false", new Hashtable { ["id"] = thirdRun });
            Assert.False(rest.HadErrors, string.Join("\n", rest.Errors));
            Assert.Equal(thirdItems - 1, rest.Output.Count(o => o.Properties["Status"].Value.ToString() == "Restored"));
            Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run WHERE status = 'running'"));
        }
        finally
        {
            admin.Run("Stop-DataOpsSandbox -Name $name -Root $root -Remove -Confirm:$false | Out-Null", vars);
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>Runs work on a thread of its own; the returned action waits for it and rethrows its failure.</summary>
    private static Action Background(Action work)
    {
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                work();
            }
            catch (Exception ex)
            {
                failure = ex;
            }
        }) { IsBackground = true };
        thread.Start();
        return () =>
        {
            thread.Join();
            if (failure is not null)
            {
                throw new InvalidOperationException("The background part of the test failed", failure);
            }
        };
    }

    private static void WaitForApplied(string cs, long count)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'applied'")) < count && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(20);
        }
    }
}
