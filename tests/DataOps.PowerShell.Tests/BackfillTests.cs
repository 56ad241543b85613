using System.Collections;
using System.Diagnostics;
using System.Management.Automation;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace DataOps.PowerShell.Tests;

public sealed class BackfillTests
{
    private static readonly string SampleJob = Path.Combine(Repo.Root, "examples", "jobs", "results-v1.2.1.job.json");

    /// <summary>A Prism database with sample data, a connected session and a private output folder.</summary>
    private static (PsSession Session, string Cs, string Output) Setup(int sessions = 40, int seed = 3)
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        var s = new PsSession();
        var output = Directory.CreateTempSubdirectory("dataops-bf-").FullName;
        var r = s.Run($"Connect-DataOps -ConnectionString $cs | Out-Null; New-PrismSampleData -Sessions {sessions} -Seed {seed} -PendingShare 0.5", new Hashtable { ["cs"] = cs });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return (s, cs, output);
    }

    /// <summary>The sample job with changes, written to a temp file.</summary>
    private static string Job(Action<JsonObject>? change = null)
    {
        var job = JsonNode.Parse(File.ReadAllText(SampleJob))!.AsObject();
        job.Remove("$schema");
        change?.Invoke(job);
        var path = Path.Combine(Path.GetTempPath(), $"dataops-job-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, job.ToJsonString());
        return path;
    }

    private static string RawJob(string json)
    {
        var path = Path.Combine(Path.GetTempPath(), $"dataops-job-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return path;
    }

    /// <summary>A checksum of everything the sample job can touch.</summary>
    private static string Checksum(string cs) => (string)Sql.Scalar(cs,
        "SELECT md5((SELECT string_agg(to_jsonb(s)::text, ',' ORDER BY id) FROM prism.sessions s) || '|' || coalesce((SELECT string_agg(to_jsonb(p)::text, ',' ORDER BY id) FROM prism.profiles p), ''))")!;

    private static long Pending(string cs) => Convert.ToInt64(Sql.Scalar(cs,
        "SELECT count(*) FROM prism.sessions s LEFT JOIN prism.profiles p ON p.session_id = s.id WHERE s.status = 'completed' AND (p.id IS NULL OR p.results_version IS DISTINCT FROM 'v1.2.1' OR s.fc_kind <> 'functions')"));

    private static List<string> PendingKeys(string cs) => ((string?)Sql.Scalar(cs,
        "SELECT string_agg(s.id::text, ',' ORDER BY s.completed_at, s.id) FROM prism.sessions s LEFT JOIN prism.profiles p ON p.session_id = s.id WHERE s.status = 'completed' AND (p.id IS NULL OR p.results_version IS DISTINCT FROM 'v1.2.1' OR s.fc_kind <> 'functions')") ?? string.Empty)
        .Split(',', StringSplitOptions.RemoveEmptyEntries).ToList();

    private static Hashtable Vars(string job, string output) => new() { ["job"] = job, ["out"] = output };

    [Fact]
    public void Applies_every_pending_item_writes_artifacts_and_a_rerun_skips_them()
    {
        var (s, cs, output) = Setup();
        using var _ = s;
        var keys = PendingKeys(cs);
        Assert.True(keys.Count > 5);
        var job = Job(j => j["items"] = new JsonObject { ["keys"] = new JsonArray([.. keys.Select(k => (JsonNode)k)]) });

        var first = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", Vars(job, output));

        Assert.False(first.HadErrors, string.Join("\n", first.Errors));
        Assert.Equal(keys, first.Output.Select(o => (string)o.Properties["Key"].Value));
        Assert.All(first.Output, o => Assert.Equal("Applied", o.Properties["Status"].Value.ToString()));
        Assert.Equal(0, Pending(cs));
        // A run that completed and halts for review ends as host output (Information, PSHOST), not a warning that CI flags.
        Assert.DoesNotContain(first.Warnings, w => w.Contains("halted for review"));
        var halted = Assert.Single(first.Information, i => i.MessageData.ToString()!.Contains("halted for review"));
        Assert.Contains("PSHOST", halted.Tags);
        Assert.Contains(first.Progress, p => p.RecordType == ProgressRecordType.Completed);

        var runId = (Guid)first.Output[0].Properties["RunId"].Value;
        var dir = Path.Combine(output, "results-v1.2.1", runId.ToString());
        Assert.True(File.Exists(Path.Combine(dir, "backfill_summary.md")));
        Assert.Contains("halted for review", File.ReadAllText(Path.Combine(dir, "backfill_summary.md")));
        var results = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "backfill_logs", "execution_results.json"))).RootElement;
        Assert.Equal(keys.Count, results.GetProperty("items").GetArrayLength());
        Assert.Equal("completed", results.GetProperty("outcome").GetString());
        Assert.Equal((keys.Count + 9) / 10, Directory.GetFiles(Path.Combine(dir, "backfill_logs"), "batch_*.json").Length);
        Assert.Single(Directory.GetFiles(Path.Combine(dir, "backfill_logs"), "rollback_*.sql"));
        Assert.Equal((long)keys.Count, Sql.Scalar(cs, $"SELECT count(*) FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'applied' AND before_image IS NOT NULL AND after_image IS NOT NULL"));

        var second = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", Vars(job, output));
        Assert.All(second.Output, o => Assert.Equal("Skipped", o.Properties["Status"].Value.ToString()));
        Assert.Equal(keys.Count, second.Output.Count);

        var forced = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -Reapply", Vars(job, output));
        Assert.All(forced.Output, o => Assert.Equal("Applied", o.Properties["Status"].Value.ToString()));
        Assert.All(forced.Output, o => Assert.Equal(0, o.Properties["RowsChanged"].Value));

        var runs = s.Run("Get-BackfillRun -JobName results-v1.2.1").Output;
        Assert.Equal(3, runs.Count);
        Assert.Equal((long)keys.Count, runs.Single(r => (Guid)r.Properties["RunId"].Value == runId).Properties["Applied"].Value);
    }

    [Fact]
    public void Discover_query_finds_the_items_and_rollback_script_restores_the_exact_prior_contents()
    {
        var (s, cs, output) = Setup(seed: 11);
        using var _ = s;
        var before = Checksum(cs);
        var pending = Pending(cs);

        var run = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", Vars(SampleJob, output));

        Assert.False(run.HadErrors, string.Join("\n", run.Errors));
        Assert.Equal(pending, run.Output.Count);
        Assert.Equal(0, Pending(cs));
        Assert.NotEqual(before, Checksum(cs));
        var runId = (Guid)run.Output[0].Properties["RunId"].Value;
        var script = Directory.GetFiles(Path.Combine(output, "results-v1.2.1", runId.ToString(), "backfill_logs"), "rollback_*.sql").Single();

        var (code, stdout, stderr) = Psql(cs, script);

        Assert.True(code == 0, stderr + stdout);
        Assert.Contains("verified", stdout);
        Assert.Equal(before, Checksum(cs));
        Assert.Equal(pending, Pending(cs));
        // The undo is in the ledger: a new run applies the items again.
        var again = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", Vars(SampleJob, output));
        Assert.Equal(pending, again.Output.Count(o => o.Properties["Status"].Value.ToString() == "Applied"));
    }

    [Fact]
    public void Undo_restores_the_prior_contents_and_refuses_drifted_rows()
    {
        var (s, cs, output) = Setup(seed: 12);
        using var _ = s;
        var before = Checksum(cs);
        var run = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", Vars(SampleJob, output));
        var runId = (Guid)run.Output[0].Properties["RunId"].Value;
        var script = Directory.GetFiles(Path.Combine(output, "results-v1.2.1", runId.ToString(), "backfill_logs"), "rollback_*.sql").Single();
        var drifted = (string)run.Output[1].Properties["Key"].Value;
        Sql.Execute(cs, $"UPDATE prism.profiles SET scores = '{{\"edited\": true}}' WHERE session_id = '{drifted}'");
        var afterDrift = Checksum(cs);

        // The psql script stops at the drifted row and restores nothing.
        var (code, _, stderr) = Psql(cs, script);
        Assert.NotEqual(0, code);
        Assert.Contains("changed since the backfill", stderr);
        Assert.Contains(drifted, stderr);
        Assert.Equal(afterDrift, Checksum(cs));

        var undo = s.Run("Undo-Backfill -RunId $id -Confirm:$false", new Hashtable { ["id"] = runId });

        Assert.Equal(run.Output.Count, undo.Output.Count);
        var driftedResult = Assert.Single(undo.Output, o => o.Properties["Status"].Value.ToString() == "Drifted");
        Assert.Equal(drifted, driftedResult.Properties["Key"].Value);
        Assert.Contains("changed since the backfill", (string)driftedResult.Properties["Error"].Value);
        Assert.All(undo.Output.Where(o => o != driftedResult), o => Assert.Equal("Restored", o.Properties["Status"].Value.ToString()));
        Assert.Equal("v1.2.1", Sql.Scalar(cs, $"SELECT results_version FROM prism.profiles WHERE session_id = '{drifted}'"));
        Assert.Equal(1L, Sql.Scalar(cs, $"SELECT count(*) FROM prism.profiles WHERE session_id = '{drifted}' AND scores ? 'edited'"));

        // Put the edited row back as it was after the run: now the last item can be undone too, and everything is as before.
        Sql.Execute(cs, $"UPDATE prism.profiles p SET scores = (SELECT (l.after_image->'prism.profiles'->0->'scores') FROM dataops.ledger l WHERE l.run_id = '{runId}' AND l.item_key = '{drifted}') WHERE session_id = '{drifted}'");
        var rest = s.Run("Undo-Backfill -Path $dir -Force", new Hashtable { ["dir"] = Path.Combine(output, "results-v1.2.1", runId.ToString()) });
        Assert.Equal("Restored", rest.Output.Single().Properties["Status"].Value.ToString());
        Assert.Equal(before, Checksum(cs));
    }

    [Fact]
    public void Stopping_mid_run_rolls_back_the_item_in_flight_and_a_rerun_resumes()
    {
        var (s, cs, output) = Setup(seed: 13);
        using var _ = s;
        var total = Pending(cs);
        using var ps = System.Management.Automation.PowerShell.Create(s.Runspace);
        ps.AddCommand("Invoke-Backfill").AddParameter("Job", SampleJob).AddParameter("ItemsPerMinute", 600).AddParameter("OutputDirectory", output);
        var results = new PSDataCollection<PSObject>();
        var three = new ManualResetEventSlim();
        results.DataAdded += (_, _) =>
        {
            if (results.Count >= 3)
            {
                three.Set();
            }
        };

        var handle = ps.BeginInvoke<PSObject, PSObject>(null, results);
        Assert.True(three.Wait(TimeSpan.FromSeconds(60)));
        ps.Stop();
        Assert.ThrowsAny<PipelineStoppedException>(() => ps.EndInvoke(handle));

        var applied = Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'applied'"));
        Assert.InRange(applied, 3, total - 1);
        Assert.Equal(total - applied, Pending(cs));
        var runId = (Guid)results[0].Properties["RunId"].Value;
        Assert.Equal("stopped", Sql.Scalar(cs, $"SELECT status FROM dataops.run WHERE run_id = '{runId}'"));
        var results1 = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "results-v1.2.1", runId.ToString(), "backfill_logs", "execution_results.json"))).RootElement;
        Assert.Equal("stopped", results1.GetProperty("outcome").GetString());

        var rerun = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", Vars(SampleJob, output));
        Assert.Equal(total - applied, rerun.Output.Count);
        Assert.Equal(0, Pending(cs));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM (SELECT item_key FROM dataops.ledger WHERE status = 'applied' GROUP BY item_key HAVING count(*) > 1) x"));
    }

    [Fact]
    public void A_killed_process_leaves_the_database_consistent_and_a_rerun_applies_each_item_once()
    {
        var (s, cs, output) = Setup(sessions: 60, seed: 14);
        using var _ = s;
        var total = Pending(cs);
        var pristine = Checksum(cs);
        // A real pwsh process (the repository's pinned tool), killed hard with its process tree.
        var psi = Repo.Pwsh($"Import-Module '{Repo.Manifest}'; Connect-DataOps -ConnectionString '{cs}' | Out-Null; Invoke-Backfill -Job '{SampleJob}' -ItemsPerMinute 300 -OutputDirectory '{output}' | Out-Null");
        using var process = Process.Start(psi)!;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'applied'")) < 3 && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(50);
        }

        process.Kill(entireProcessTree: true);
        process.WaitForExit();
        var applied = Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'applied'"));
        Assert.InRange(applied, 3, total - 1);
        Assert.Equal(total - applied, Pending(cs)); // every committed item is in the ledger, and only those

        // The files were written as the items committed: whole JSON batches and a whole rollback script
        // holding every item recorded before the kill (an item may commit just before its entry is written).
        var killed = (Guid)Sql.Scalar(cs, "SELECT run_id FROM dataops.run WHERE kind = 'backfill'")!;
        var logs = Path.Combine(output, "results-v1.2.1", killed.ToString(), "backfill_logs");
        var batchKeys = Directory.GetFiles(logs, "batch_*.json").Order()
            .SelectMany(f => JsonDocument.Parse(File.ReadAllText(f)).RootElement.GetProperty("items").EnumerateArray().Select(i => i.GetProperty("Key").GetString()!)).ToList();
        Assert.InRange(batchKeys.Count, applied - 1, applied);
        var crashScript = Directory.GetFiles(logs, "rollback_*.sql").Single();
        Assert.InRange(RollbackScript.ItemKeys(crashScript).Distinct().Count(), applied - 1, applied);
        Assert.EndsWith("COMMIT;", File.ReadAllText(crashScript).TrimEnd());
        Assert.False(File.Exists(Path.Combine(logs, "execution_results.json")));

        // Get-BackfillRun sees that the run's process is gone: abandoned, with why.
        var seen = s.Run("Get-BackfillRun -RunId $id", new Hashtable { ["id"] = killed }).Output.Single();
        Assert.Equal("abandoned", seen.Properties["Status"].Value);
        Assert.Matches("is gone|expired", (string)seen.Properties["Reason"].Value);

        // Regenerated from the ledger, complete whatever the kill left.
        var exportPath = Path.Combine(output, "exported.sql");
        var exported = s.Run("Export-BackfillRollback -RunId $id -Path $p", new Hashtable { ["id"] = killed, ["p"] = exportPath });
        Assert.False(exported.HadErrors, string.Join("\n", exported.Errors));
        Assert.Equal((int)applied, exported.Output.Single().Properties["Items"].Value);
        Assert.Equal((int)applied, RollbackScript.ItemKeys(exportPath).Distinct().Count());

        var rerun = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", Vars(SampleJob, output));

        Assert.False(rerun.HadErrors, string.Join("\n", rerun.Errors));
        Assert.Equal(0, Pending(cs));
        Assert.Equal(total, Convert.ToInt64(Sql.Scalar(cs, "SELECT count(DISTINCT item_key) FROM dataops.ledger WHERE status = 'applied'")));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM (SELECT item_key FROM dataops.ledger WHERE status = 'applied' GROUP BY item_key HAVING count(*) > 1) x"));
        Assert.Equal("abandoned", Sql.Scalar(cs, $"SELECT status FROM dataops.run WHERE run_id = '{killed}'"));
        Assert.Matches("is gone|expired", (string)Sql.Scalar(cs, $"SELECT summary->>'reason' FROM dataops.run WHERE run_id = '{killed}'")!);

        // The next run completed the abandoned run's files from the ledger.
        var completed = JsonDocument.Parse(File.ReadAllText(Path.Combine(logs, "execution_results.json"))).RootElement;
        Assert.Equal("abandoned", completed.GetProperty("outcome").GetString());
        Assert.Equal(applied, completed.GetProperty("items").GetArrayLength());
        var jobFile = completed.GetProperty("jobFile").GetString();
        Assert.EndsWith(".job.json", jobFile);
        Assert.Contains("abandoned", File.ReadAllText(Path.Combine(output, "results-v1.2.1", killed.ToString(), "backfill_summary.md")));
        Assert.Contains($"| Job file | `{jobFile}` |", File.ReadAllText(Path.Combine(output, "results-v1.2.1", killed.ToString(), "backfill_summary.md")));
        Assert.Equal((int)applied, RollbackScript.ItemKeys(Directory.GetFiles(logs, "rollback_*.sql").Single()).Distinct().Count());

        // Real psql: the rerun's own script, then the killed run's exported one, put the tables back exactly.
        var rerunId = (Guid)rerun.Output[0].Properties["RunId"].Value;
        foreach (var script in new[] { Directory.GetFiles(Path.Combine(output, "results-v1.2.1", rerunId.ToString(), "backfill_logs"), "rollback_*.sql").Single(), exportPath })
        {
            var (code, stdout, stderr) = Psql(cs, script);
            Assert.True(code == 0, stderr + stdout);
            Assert.Contains("verified", stdout);
        }

        Assert.Equal(pristine, Checksum(cs));
        Assert.Equal(total, Pending(cs));
    }

    [Theory]
    [InlineData("SELECT (1 / (SELECT count(*) - count(*) FROM prism.sessions))::text AS key", "division by zero")]
    [InlineData("SELECT id::text AS id FROM prism.sessions", "column named key")]
    public void A_run_whose_discover_fails_is_recorded_failed_with_why_and_none_is_left_running(string discover, string why)
    {
        var (s, cs, output) = Setup(seed: 25);
        using var _ = s;
        var job = Job(j => j["items"] = new JsonObject { ["discover"] = discover });

        var r = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", Vars(job, output));

        Assert.Contains(r.Errors, e => e.Exception.Message.Contains(why, StringComparison.Ordinal));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run WHERE status = 'running'"));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.job_lease"));
        var runs = s.Run("Get-BackfillRun -JobName results-v1.2.1").Output;
        Assert.All(runs, run =>
        {
            Assert.Equal("failed", run.Properties["Status"].Value);
            Assert.Contains(why, (string)run.Properties["Reason"].Value);
        });
    }

    [Fact]
    public void A_rollback_script_that_lacks_an_applied_item_refuses_to_run_and_names_Export_BackfillRollback()
    {
        var (s, cs, output) = Setup(seed: 24);
        using var _ = s;
        var run = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", Vars(SampleJob, output));
        Assert.False(run.HadErrors, string.Join("\n", run.Errors));
        var runId = (Guid)run.Output[0].Properties["RunId"].Value;
        var script = Directory.GetFiles(Path.Combine(output, "results-v1.2.1", runId.ToString(), "backfill_logs"), "rollback_*.sql").Single();
        var applied = Checksum(cs);

        // As if the process died between an item's commit and its entry in the script.
        Sql.Execute(cs, $"INSERT INTO dataops.ledger (run_id, job_name, item_key, status, before_image, after_image) VALUES ('{runId}', 'results-v1.2.1', 'committed-after-the-last-write', 'applied', '{{}}', '{{}}')");
        var (code, _, stderr) = Psql(cs, script);

        Assert.NotEqual(0, code);
        Assert.Contains("1 items this file does not hold", stderr);
        Assert.Contains($"Export-BackfillRollback -RunId {runId}", stderr);
        Assert.Equal(applied, Checksum(cs));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'undone'"));
    }

    [Fact]
    public void A_second_concurrent_run_of_the_same_job_fails_at_once()
    {
        var (s, cs, output) = Setup(seed: 15);
        using var _ = s;
        using var other = new PsSession();
        other.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        using var ps = System.Management.Automation.PowerShell.Create(s.Runspace);
        ps.AddCommand("Invoke-Backfill").AddParameter("Job", SampleJob).AddParameter("ItemsPerMinute", 60).AddParameter("OutputDirectory", output);
        var results = new PSDataCollection<PSObject>();
        var started = new ManualResetEventSlim();
        results.DataAdded += (_, _) => started.Set();
        var handle = ps.BeginInvoke<PSObject, PSObject>(null, results);
        Assert.True(started.Wait(TimeSpan.FromSeconds(60)));

        var watch = Stopwatch.StartNew();
        var error = other.Terminating("Invoke-Backfill", new Hashtable { ["Job"] = SampleJob, ["OutputDirectory"] = output, ["ItemsPerMinute"] = 0 });
        watch.Stop();

        ps.Stop();
        Assert.ThrowsAny<PipelineStoppedException>(() => ps.EndInvoke(handle));
        Assert.StartsWith("BackfillAlreadyRunning,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ResourceUnavailable, error.CategoryInfo.Category);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void Force_only_skips_the_production_prompt_and_Reapply_alone_runs_applied_items_again()
    {
        var (s, cs, output) = Setup(seed: 23);
        using var _ = s;
        // Named keys, so a later run meets the applied items instead of discovering nothing left to do.
        var keys = PendingKeys(cs);
        var pending = keys.Count;
        Assert.True(pending > 2);
        var vars = Vars(Job(j => j["items"] = new JsonObject { ["keys"] = new JsonArray([.. keys.Select(k => (JsonNode)k)]) }), output);
        vars["cs"] = cs;
        s.Run("$prod = Connect-DataOps -ConnectionString $cs -Production -NoDefault", vars);
        const string run = "Invoke-Backfill -Job $job -Connection $prod -ItemsPerMinute 0 -OutputDirectory $out -WarningAction SilentlyContinue";
        long Superseded() => Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'applied' AND superseded_by IS NOT NULL"));
        static IEnumerable<string> Statuses(PsResult r) => r.Output.Select(o => o.Properties["Status"].Value.ToString()!).Distinct();

        // Production asks first; this host cannot answer, so nothing runs.
        var refused = s.Run(run, vars);
        Assert.StartsWith("ConfirmationRequired,", Assert.Single(refused.Errors).FullyQualifiedErrorId);
        Assert.Equal(pending, Pending(cs));

        var first = s.Run(run + " -Force", vars);
        Assert.False(first.HadErrors, string.Join("\n", first.Errors));
        Assert.Equal(["Applied"], Statuses(first));
        Assert.Equal(pending, first.Output.Count);
        Assert.Equal(0, Pending(cs));

        // -Force again: no question, and the applied items are still skipped, not applied a second time.
        var forced = s.Run(run + " -Force", vars);
        Assert.False(forced.HadErrors, string.Join("\n", forced.Errors));
        Assert.Equal(["Skipped"], Statuses(forced));
        Assert.Equal(pending, forced.Output.Count);
        Assert.Equal(0L, Superseded());

        // -Reapply is not a yes: on production it still asks.
        var unconfirmed = s.Run(run + " -Reapply", vars);
        Assert.StartsWith("ConfirmationRequired,", Assert.Single(unconfirmed.Errors).FullyQualifiedErrorId);
        Assert.Empty(unconfirmed.Output);
        Assert.Equal(0L, Superseded());

        var reapplied = s.Run(run + " -Reapply -Confirm:$false", vars);
        Assert.False(reapplied.HadErrors, string.Join("\n", reapplied.Errors));
        Assert.Equal(["Applied"], Statuses(reapplied));
        Assert.Equal(pending, reapplied.Output.Count);
        Assert.Equal(pending, Superseded());
    }

    [Fact]
    public void DryRun_and_WhatIf_change_nothing()
    {
        var (s, cs, output) = Setup(seed: 16);
        using var _ = s;
        var before = Checksum(cs);
        var pending = Pending(cs);

        var dry = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -DryRun", Vars(SampleJob, output));
        var whatIf = s.Run("Invoke-Backfill -Job $job -OutputDirectory $out -WhatIf", Vars(SampleJob, output));

        Assert.False(dry.HadErrors, string.Join("\n", dry.Errors));
        Assert.Equal(pending, dry.Output.Count);
        Assert.All(dry.Output, o => Assert.Equal("WouldApply", o.Properties["Status"].Value.ToString()));
        Assert.All(dry.Output, o => Assert.True((int)o.Properties["RowsChanged"].Value > 0));
        Assert.Empty(whatIf.Output);
        Assert.Equal(before, Checksum(cs));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger"));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run WHERE kind = 'backfill'"));
    }

    [Fact]
    public void Undo_Backfill_of_a_dry_run_or_an_undo_run_is_an_error_of_its_own_that_says_what_the_run_was()
    {
        var (s, cs, output) = Setup(sessions: 10, seed: 26);
        using var _ = s;
        var dry = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -DryRun", Vars(SampleJob, output));
        var run = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", Vars(SampleJob, output));
        var (dryId, runId) = ((Guid)dry.Output[0].Properties["RunId"].Value, (Guid)run.Output[0].Properties["RunId"].Value);
        s.Run("Undo-Backfill -RunId $id -Confirm:$false | Out-Null", new Hashtable { ["id"] = runId });
        var undoId = (Guid)s.Run("Get-BackfillRun -JobName results-v1.2.1 | Where-Object Kind -eq undo").Output.Single().Properties["RunId"].Value;
        var before = Checksum(cs);

        var again = s.Run("$dry, $undo | ForEach-Object { [pscustomobject]@{ RunId = $_ } } | Undo-Backfill -Confirm:$false -ErrorAction Continue; 'after'",
            new Hashtable { ["dry"] = dryId, ["undo"] = undoId });

        Assert.Equal(["UndoOfDryRun", "UndoOfUndoRun"], again.Errors.Select(e => e.FullyQualifiedErrorId.Split(',')[0]));
        Assert.All(again.Errors, e => Assert.Equal(ErrorCategory.InvalidOperation, e.CategoryInfo.Category));
        Assert.Equal([dryId, undoId], again.Errors.Select(e => (Guid)e.TargetObject));
        Assert.Contains("was a dry run", again.Errors[0].Exception.Message);
        Assert.Contains("changed nothing", again.Errors[0].Exception.Message);
        Assert.Contains($"is an undo run (it restored rows of run {runId})", again.Errors[1].Exception.Message);
        Assert.Equal("after", Assert.Single(again.Output).BaseObject);
        Assert.Equal(before, Checksum(cs));
    }

    [Fact]
    public void Failed_items_are_rolled_back_categorised_and_stop_the_run_at_MaxFailures()
    {
        var (s, cs, output) = Setup(seed: 17);
        using var _ = s;
        var before = Checksum(cs);
        var verifyFails = Job(j => j["verify"] = "SELECT @key = 'never'");
        var constraint = Job(j => ((JsonArray)j["steps"]!).Add(new JsonObject { ["name"] = "break", ["sql"] = "UPDATE prism.sessions SET status = 'bogus' WHERE id = @key::uuid" }));

        var verify = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -MaxFailures 3", Vars(verifyFails, output));
        var check = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -MaxFailures 2", Vars(constraint, output));

        Assert.Equal(3, verify.Output.Count);
        Assert.All(verify.Output, o => Assert.Equal("VerifyFailed", o.Properties["ErrorCategory"].Value.ToString()));
        Assert.Equal(2, check.Output.Count);
        Assert.All(check.Output, o => Assert.Equal("Constraint", o.Properties["ErrorCategory"].Value.ToString()));
        Assert.Contains("23514", (string)check.Output[0].Properties["Error"].Value);
        Assert.Equal(before, Checksum(cs));
        Assert.Equal(2L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run WHERE kind = 'backfill' AND status = 'failed'"));
        Assert.Equal(5L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'failed'"));
    }

    /// <summary>The keys the rollback script restores, one entry per restore operation.</summary>
    private static List<string> ScriptItems(string output, string job, Guid runId) =>
        RollbackScript.ItemKeys(Directory.GetFiles(Path.Combine(output, job, runId.ToString(), "backfill_logs"), "rollback_*.sql").Single());

    [Fact]
    public void Unthrottled_items_run_in_groups_a_failure_fails_only_its_item_and_the_ledger_counts_match_the_restore_script()
    {
        var (s, cs, output) = Setup(sessions: 200, seed: 19);
        using var _ = s;
        var keys = PendingKeys(cs);
        Assert.True(keys.Count > 64, $"{keys.Count} pending");
        var bad = keys[40];
        // A sequence counts how often the steps ran (nextval survives a rollback): each item exactly once.
        Sql.Execute(cs, "CREATE SEQUENCE step_runs");
        var job = Job(j =>
        {
            j["items"] = new JsonObject { ["keys"] = new JsonArray([.. keys.Select(k => (JsonNode)k)]) };
            j["parameters"]!["badKey"] = bad;
            j["verify"] = j["verify"]!.GetValue<string>() + " AND @key <> @badKey";
            ((JsonArray)j["steps"]!).Add(new JsonObject { ["name"] = "count", ["sql"] = "SELECT nextval('step_runs') WHERE @key IS NOT NULL" });
        });

        var r = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -Verbose", Vars(job, output));

        Assert.Contains(r.Verbose, v => v.Contains("runs whole on the server") && v.Contains("128 items per round trip"));
        Assert.Equal(keys, r.Output.Select(o => (string)o.Properties["Key"].Value));
        var failed = Assert.Single(r.Output, o => o.Properties["Status"].Value.ToString() != "Applied");
        Assert.Equal(bad, failed.Properties["Key"].Value);
        Assert.Equal("VerifyFailed", failed.Properties["ErrorCategory"].Value.ToString());
        Assert.Equal("Verify failed: verify returned false instead of true", failed.Properties["Error"].Value);
        Assert.Equal(1, failed.Properties["Attempts"].Value);
        Assert.Equal((long)keys.Count, Sql.Scalar(cs, "SELECT last_value FROM step_runs"));
        Assert.Equal(1L, Sql.Scalar(cs, $"SELECT count(*) FROM dataops.ledger WHERE status = 'failed' AND error_category = 'VerifyFailed' AND item_key = '{bad}'"));
        Assert.Equal(1, Pending(cs));
        Assert.Equal(bad, PendingKeys(cs).Single());

        // The server's count of changed rows (dataops.changed_rows) is the client's count of restore operations.
        var runId = (Guid)r.Output[0].Properties["RunId"].Value;
        var restoreOps = ScriptItems(output, "results-v1.2.1", runId).GroupBy(k => k).ToDictionary(g => g.Key, g => g.Count());
        foreach (var o in r.Output.Where(o => o != failed))
        {
            var key = (string)o.Properties["Key"].Value;
            var rows = (int)o.Properties["RowsChanged"].Value;
            Assert.True(rows > 0);
            Assert.Equal(rows, restoreOps[key]);
            Assert.Equal(rows, Sql.Scalar(cs, $"SELECT rows_changed FROM dataops.ledger WHERE run_id = '{runId}' AND item_key = '{key}' AND status = 'applied'"));
        }
    }

    [Fact]
    public void Stopping_an_unthrottled_run_keeps_every_committed_item_in_the_rollback_script_and_a_rerun_resumes()
    {
        var (s, cs, output) = Setup(sessions: 3000, seed: 20);
        using var _ = s;
        var total = Pending(cs);
        using var ps = System.Management.Automation.PowerShell.Create(s.Runspace);
        ps.AddCommand("Invoke-Backfill").AddParameter("Job", SampleJob).AddParameter("ItemsPerMinute", 0).AddParameter("OutputDirectory", output);
        var results = new PSDataCollection<PSObject>();
        var some = new ManualResetEventSlim();
        results.DataAdded += (_, _) =>
        {
            if (results.Count >= 40)
            {
                some.Set();
            }
        };

        var handle = ps.BeginInvoke<PSObject, PSObject>(null, results);
        Assert.True(some.Wait(TimeSpan.FromSeconds(60)));
        ps.Stop();
        Assert.ThrowsAny<PipelineStoppedException>(() => ps.EndInvoke(handle));

        var runId = (Guid)results[0].Properties["RunId"].Value;
        var applied = Convert.ToInt64(Sql.Scalar(cs, $"SELECT count(*) FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'applied'"));
        Assert.InRange(applied, 40, total - 1);
        Assert.Equal(total - applied, Pending(cs));
        var items = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "results-v1.2.1", runId.ToString(), "backfill_logs", "execution_results.json"))).RootElement.GetProperty("items");
        Assert.Equal(applied, items.EnumerateArray().Count(i => i.GetProperty("Status").GetString() == "Applied"));
        Assert.Equal(applied, ScriptItems(output, "results-v1.2.1", runId).Distinct().Count());

        var rerun = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", Vars(SampleJob, output));
        Assert.False(rerun.HadErrors, string.Join("\n", rerun.Errors));
        Assert.Equal(total - applied, rerun.Output.Count);
        Assert.Equal(0, Pending(cs));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM (SELECT item_key FROM dataops.ledger WHERE status = 'applied' GROUP BY item_key HAVING count(*) > 1) x"));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(6000)]
    public void Composite_keys_rows_moved_out_of_the_predicate_inserted_and_deleted_are_all_restored(int itemsPerMinute)
    {
        var cs = TestCluster.CreateDatabaseWith("Core");
        using var s = new PsSession();
        var output = Directory.CreateTempSubdirectory("dataops-bf-").FullName;
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        Sql.Execute(cs, "CREATE TABLE cp (a int, b int, state text NOT NULL, PRIMARY KEY (a, b)); INSERT INTO cp SELECT a, b, 'todo' FROM generate_series(1, 40) a, generate_series(1, 3) b");
        const string sum = "SELECT md5(string_agg(to_jsonb(c)::text, ',' ORDER BY a, b)) FROM cp c";
        var before = (string)Sql.Scalar(cs, sum)!;
        var job = RawJob("""
            {
              "version": 1, "name": "composite",
              "items": { "discover": "SELECT DISTINCT a::text AS key FROM cp WHERE state = 'todo' ORDER BY 1" },
              "capture": [ { "table": "cp", "where": "a = @key::int AND state <> 'done'" } ],
              "steps": [
                { "name": "finish two", "sql": "UPDATE cp SET state = 'done' WHERE a = @key::int AND b < 3" },
                { "name": "drop one", "sql": "DELETE FROM cp WHERE a = @key::int AND b = 3" },
                { "name": "add one", "sql": "INSERT INTO cp VALUES (@key::int, 4, 'new')" }
              ],
              "verify": "SELECT NOT EXISTS (SELECT 1 FROM cp WHERE a = @key::int AND state = 'todo')"
            }
            """);

        var run = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute $rate -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = output, ["rate"] = itemsPerMinute });

        Assert.False(run.HadErrors, string.Join("\n", run.Errors));
        Assert.Equal(40, run.Output.Count);
        Assert.All(run.Output, o => Assert.Equal(4, (int)o.Properties["RowsChanged"].Value)); // two updated, one deleted, one inserted
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM cp WHERE state = 'todo'"));
        Assert.Equal(160L, Sql.Scalar(cs, "SELECT sum(rows_changed) FROM dataops.ledger WHERE status = 'applied'"));

        var undo = s.Run("Undo-Backfill -RunId $id -Confirm:$false", new Hashtable { ["id"] = run.Output[0].Properties["RunId"].Value });

        Assert.All(undo.Output, o => Assert.Equal("Restored", o.Properties["Status"].Value.ToString()));
        Assert.Equal(before, Sql.Scalar(cs, sum));
    }

    [Fact]
    public void A_round_trip_of_items_with_large_images_completes_and_restores_exactly()
    {
        // 40 items of 300 rows each: megabytes of images come back in one round trip (the client must
        // read while it writes), and 300 x 300 rows take the set-based path of dataops.changed_rows.
        var cs = TestCluster.CreateDatabaseWith("Core");
        using var s = new PsSession();
        var output = Directory.CreateTempSubdirectory("dataops-bf-").FullName;
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        Sql.Execute(cs, "CREATE TABLE wide (a int, b int, pad text NOT NULL, v int NOT NULL, PRIMARY KEY (a, b)); INSERT INTO wide SELECT a, b, repeat(md5((a * 1000 + b)::text), 10), 0 FROM generate_series(1, 40) a, generate_series(1, 300) b");
        const string sum = "SELECT md5(string_agg(to_jsonb(w)::text, ',' ORDER BY a, b)) FROM wide w";
        var before = (string)Sql.Scalar(cs, sum)!;
        var job = RawJob("""
            {
              "version": 1, "name": "wide",
              "items": { "discover": "SELECT DISTINCT a::text AS key FROM wide ORDER BY 1" },
              "capture": [ { "table": "wide", "where": "a = @key::int" } ],
              "steps": [ { "name": "bump", "sql": "UPDATE wide SET v = v + 1 WHERE a = @key::int" } ],
              "verify": "SELECT bool_and(v = 1) FROM wide WHERE a = @key::int"
            }
            """);

        var run = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = output });

        Assert.False(run.HadErrors, string.Join("\n", run.Errors));
        Assert.Equal(40, run.Output.Count);
        Assert.All(run.Output, o => Assert.Equal(300, (int)o.Properties["RowsChanged"].Value));
        Assert.Equal(12000L, Sql.Scalar(cs, "SELECT sum(rows_changed) FROM dataops.ledger WHERE status = 'applied'"));
        var undo = s.Run("Undo-Backfill -RunId $id -Confirm:$false", new Hashtable { ["id"] = run.Output[0].Properties["RunId"].Value });
        Assert.All(undo.Output, o => Assert.Equal("Restored", o.Properties["Status"].Value.ToString()));
        Assert.Equal(before, Sql.Scalar(cs, sum));
    }

    [Fact]
    public void A_ledger_from_the_previous_version_is_refused_until_Install_DataOpsSchema_upgrades_it()
    {
        var (s, cs, output) = Setup(seed: 21);
        using var _ = s;
        // Put Core back to what the previous version installed: no server-side item functions.
        Sql.Execute(cs, "DROP FUNCTION dataops.verified(boolean, text); DROP FUNCTION dataops.changed_rows(jsonb, jsonb, jsonb); CREATE INDEX idx_ledger_job_item ON dataops.ledger (job_name, item_key); DELETE FROM dataops.schema_versions WHERE scriptname LIKE '%0004_backfill_server_side_item%'");
        var pending = Pending(cs);

        var error = s.Terminating("Invoke-Backfill", new Hashtable { ["Job"] = SampleJob, ["OutputDirectory"] = output, ["ItemsPerMinute"] = 0 });

        Assert.StartsWith("SchemaMissing,", error.FullyQualifiedErrorId);
        Assert.Contains("older version", error.Exception.Message);
        Assert.Equal(pending, Pending(cs));

        var upgrade = s.Run("Install-DataOpsSchema -Component Core");
        Assert.False(upgrade.HadErrors, string.Join("\n", upgrade.Errors));
        var run = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", Vars(SampleJob, output));
        Assert.False(run.HadErrors, string.Join("\n", run.Errors));
        Assert.Equal(pending, run.Output.Count);
        Assert.Equal(0, Pending(cs));
    }

    [Fact]
    public void Keys_are_always_bound_as_parameters_never_spliced_into_SQL()
    {
        var (s, cs, output) = Setup(seed: 18);
        using var _ = s;
        var hostile = new[] { "x'); DROP TABLE prism.sessions; --", "user-1' OR '1'='1", "$$; DELETE FROM prism.profiles; $$" };
        Sql.Execute(cs, "INSERT INTO prism.sessions (user_id, status) SELECT k, 'started' FROM unnest(@k) k".Replace("@k", "ARRAY[" + string.Join(",", hostile.Select(h => "'" + h.Replace("'", "''") + "'")) + "]"));
        var job = RawJob($$"""
            {
              "version": 1, "name": "rename-users",
              "parameters": { "suffix": "-renamed'; DROP TABLE prism.profiles; --" },
              "items": { "keys": {{JsonSerializer.Serialize(hostile)}} },
              "capture": [ { "table": "prism.sessions", "where": "user_id = @key OR user_id = @key || @suffix" } ],
              "steps": [ { "name": "rename", "sql": "UPDATE prism.sessions SET user_id = @key || @suffix WHERE user_id = @key" } ],
              "verify": "SELECT count(*) = 1 FROM prism.sessions WHERE user_id = @key || @suffix"
            }
            """);
        var profiles = Sql.Scalar(cs, "SELECT count(*) FROM prism.profiles");

        var r = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", Vars(job, output));

        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        Assert.All(r.Output, o => Assert.Equal("Applied", o.Properties["Status"].Value.ToString()));
        foreach (var h in hostile)
        {
            Assert.Equal(1L, Sql.Scalar(cs, $"SELECT count(*) FROM prism.sessions WHERE user_id = '{(h + "-renamed'; DROP TABLE prism.profiles; --").Replace("'", "''")}'"));
        }

        Assert.Equal(profiles, Sql.Scalar(cs, "SELECT count(*) FROM prism.profiles"));
        Assert.Equal((long)hostile.Length, Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'applied'"));
    }

    [Theory]
    [MemberData(nameof(BadJobs.Files), MemberType = typeof(BadJobs))]
    public void Bad_job_files_are_refused_with_the_JSON_path_before_anything_runs(string json, string expected, string? validatorOnly)
    {
        Assert.NotNull(expected + validatorOnly); // validatorOnly is the schema agreement test's column
        var (s, cs, output) = Setup(sessions: 5);
        using var _ = s;
        Sql.Execute(cs, "CREATE TABLE IF NOT EXISTS nopk (id int)");
        var before = Checksum(cs);

        var error = s.Terminating("Invoke-Backfill", new Hashtable { ["Job"] = RawJob(json), ["OutputDirectory"] = output });

        Assert.StartsWith("JobFileInvalid,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidData, error.CategoryInfo.Category);
        Assert.Contains(expected, error.Exception.Message);
        Assert.Equal(before, Checksum(cs));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run"));
        Assert.Empty(Directory.GetFileSystemEntries(output));
    }

    [Fact]
    public void Missing_job_file_is_object_not_found()
    {
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = TestCluster.CreateDatabaseWith("Prism") });

        var error = s.Terminating("Invoke-Backfill", new Hashtable { ["Job"] = "/nonexistent/job.json" });

        Assert.StartsWith("JobFileNotFound,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ObjectNotFound, error.CategoryInfo.Category);
    }

    private static (int Code, string Out, string Err) Psql(string cs, string script) => PsqlClient.RunFile(cs, script);
}
