using System.Collections;
using System.Management.Automation;
using System.Text.Json.Nodes;

namespace DataOps.PowerShell.Tests;

public sealed class HealthTests
{
    private static readonly string SampleJob = Path.Combine(Repo.Root, "examples", "jobs", "results-v1.2.1.job.json");

    private static (PsSession Session, string Cs, string Output) Setup(int seed)
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        var s = new PsSession();
        var output = Directory.CreateTempSubdirectory("dataops-health-").FullName;
        var r = s.Run($"Connect-DataOps -ConnectionString $cs | Out-Null; New-PrismSampleData -Sessions 50 -Seed {seed} -PendingShare 0.4 | Out-Null", new Hashtable { ["cs"] = cs });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return (s, cs, output);
    }

    /// <summary>The keys needing the backfill, by a query written independently of the job file.</summary>
    private static List<string> Pending(string cs) => ((Sql.Scalar(cs,
        "SELECT string_agg(s.id::text, ',' ORDER BY s.id) FROM prism.sessions s WHERE s.status = 'completed' AND (s.fc_kind <> 'functions' OR NOT EXISTS (SELECT 1 FROM prism.profiles p WHERE p.session_id = s.id AND p.results_version = 'v1.2.1'))") as string) ?? string.Empty)
        .Split(',', StringSplitOptions.RemoveEmptyEntries).ToList();

    private static Hashtable Vars(string output, object? extra = null) => new() { ["job"] = SampleJob, ["out"] = output, ["x"] = extra };

    [Fact]
    public void Pending_rows_are_found_exactly_the_plan_fixes_them_and_health_then_passes()
    {
        var (s, cs, output) = Setup(21);
        using var _ = s;
        var expected = Pending(cs);
        Assert.NotEmpty(expected);

        var report = s.Run("Test-ProdHealth -Job $job -OutputDirectory $out", Vars(output)).Output.Single();

        Assert.False((bool)report.Properties["Healthy"].Value);
        Assert.Equal(expected.Count, report.Properties["PendingCount"].Value);
        var planPath = (string)report.Properties["PlanPath"].Value;
        var plan = JsonNode.Parse(File.ReadAllText(planPath))!.AsObject();
        Assert.Equal(expected, plan["items"]!["keys"]!.AsArray().Select(k => k!.GetValue<string>()).Order().ToList());
        Assert.Equal(expected.Count, plan["fingerprint"]!["items"]!.AsObject().Count);
        Assert.NotNull(plan["fingerprint"]!["database"]!["systemIdentifier"]);
        var md = File.ReadAllText((string)report.Properties["ReportPath"].Value);
        Assert.Contains($"| Items still needing the backfill | {expected.Count} |", md);
        Assert.Contains($"Invoke-Backfill -Job '{planPath}'", md);

        var applied = s.Run("Invoke-Backfill -Job $x -ItemsPerMinute 0 -OutputDirectory $out", Vars(output, planPath));
        Assert.False(applied.HadErrors, string.Join("\n", applied.Errors));
        Assert.All(applied.Output, o => Assert.Equal("Applied", o.Properties["Status"].Value.ToString()));
        Assert.Empty(Pending(cs));

        var twice = s.Run("Invoke-Backfill -Job $x -ItemsPerMinute 0 -OutputDirectory $out", Vars(output, planPath));
        Assert.All(twice.Output, o => Assert.Equal("Skipped", o.Properties["Status"].Value.ToString()));

        var healthy = s.Run("Test-ProdHealth -Job $job -OutputDirectory $out", Vars(output)).Output.Single();
        Assert.True((bool)healthy.Properties["Healthy"].Value);
        Assert.Null(healthy.Properties["PlanPath"].Value);
        Assert.Contains("No action", File.ReadAllText((string)healthy.Properties["ReportPath"].Value));
        Assert.True((bool)s.Run("Test-ProdHealth -Job $job -OutputDirectory $out -Quiet", Vars(output)).Output.Single().BaseObject);
    }

    [Fact]
    public void The_pipeline_form_applies_the_plan_and_a_healthy_report_does_nothing()
    {
        var (s, cs, output) = Setup(22);
        using var _ = s;
        Assert.False((bool)s.Run("Test-ProdHealth -Job $job -OutputDirectory $out -Quiet", Vars(output)).Output.Single().BaseObject);

        var piped = s.Run("Test-ProdHealth -Job $job -OutputDirectory $out | Invoke-Backfill -ItemsPerMinute 0 -OutputDirectory $out", Vars(output));

        Assert.False(piped.HadErrors, string.Join("\n", piped.Errors));
        Assert.NotEmpty(piped.Output);
        Assert.Empty(Pending(cs));
        var again = s.Run("Test-ProdHealth -Job $job -OutputDirectory $out | Invoke-Backfill -OutputDirectory $out", Vars(output));
        Assert.False(again.HadErrors, string.Join("\n", again.Errors));
        Assert.Empty(again.Output);
        Assert.Empty(again.Warnings);
        Assert.Contains(again.Information, i => i.Tags.Contains("PSHOST") && i.MessageData.ToString()!.Contains("nothing to do"));
    }

    [Fact]
    public void A_row_deleted_since_the_plan_is_stale_before_any_step_runs_not_a_failure()
    {
        var (s, cs, output) = Setup(27);
        using var _ = s;
        var plan = (string)s.Run("Test-ProdHealth -Job $job -OutputDirectory $out", Vars(output)).Output.Single().Properties["PlanPath"].Value;
        var keys = JsonNode.Parse(File.ReadAllText(plan))!["items"]!["keys"]!.AsArray().Select(k => k!.GetValue<string>()).ToList();
        var deleted = keys[0];
        // The step would insert a profile for this session: a foreign-key error (23503) if the steps ran first.
        Sql.Execute(cs, $"DELETE FROM prism.sessions WHERE id = '{deleted}'");

        var r = s.Run("Invoke-Backfill -Job $x -ItemsPerMinute 0 -MaxFailures 1 -OutputDirectory $out", Vars(output, plan));

        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        var stale = Assert.Single(r.Output, o => o.Properties["Status"].Value.ToString() == "Stale");
        Assert.Equal(deleted, stale.Properties["Key"].Value);
        Assert.DoesNotContain(r.Output, o => o.Properties["Status"].Value.ToString() == "Failed");
        Assert.Equal(keys.Count - 1, r.Output.Count(o => o.Properties["Status"].Value.ToString() == "Applied"));
        Assert.Equal(0L, Sql.Scalar(cs, $"SELECT count(*) FROM dataops.ledger WHERE status = 'failed'"));
    }

    [Fact]
    public void Rows_changed_since_the_plan_are_skipped_as_stale()
    {
        var (s, cs, output) = Setup(23);
        using var _ = s;
        var plan = (string)s.Run("Test-ProdHealth -Job $job -OutputDirectory $out", Vars(output)).Output.Single().Properties["PlanPath"].Value;
        var keys = JsonNode.Parse(File.ReadAllText(plan))!["items"]!["keys"]!.AsArray().Select(k => k!.GetValue<string>()).ToList();
        var changed = keys[0];
        Sql.Execute(cs, $"UPDATE prism.sessions SET user_id = 'someone-else' WHERE id = '{changed}'");

        var r = s.Run("Invoke-Backfill -Job $x -ItemsPerMinute 0 -OutputDirectory $out", Vars(output, plan));

        var stale = Assert.Single(r.Output, o => o.Properties["Status"].Value.ToString() == "Stale");
        Assert.Equal(changed, stale.Properties["Key"].Value);
        Assert.Equal(keys.Count - 1, r.Output.Count(o => o.Properties["Status"].Value.ToString() == "Applied"));
        Assert.Equal("legacy", Sql.Scalar(cs, $"SELECT CASE WHEN fc_kind = 'functions' AND EXISTS (SELECT 1 FROM prism.profiles WHERE session_id = '{changed}' AND results_version = 'v1.2.1') THEN 'fixed' ELSE 'legacy' END FROM prism.sessions WHERE id = '{changed}'"));
        Assert.Equal(1L, Sql.Scalar(cs, $"SELECT count(*) FROM dataops.ledger WHERE item_key = '{changed}' AND status = 'stale'"));
    }

    [Fact]
    public void A_plan_is_refused_on_another_database_and_when_too_old()
    {
        var (s, cs, output) = Setup(24);
        using var _ = s;
        var plan = (string)s.Run("Test-ProdHealth -Job $job -OutputDirectory $out", Vars(output)).Output.Single().Properties["PlanPath"].Value;
        var other = TestCluster.CreateDatabaseWith("Prism");

        using var s2 = new PsSession();
        s2.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = other });
        var wrong = s2.Terminating("Invoke-Backfill", new Hashtable { ["Job"] = plan, ["OutputDirectory"] = output });
        Thread.Sleep(50);
        var old = s.Terminating("Invoke-Backfill", new Hashtable { ["Job"] = plan, ["OutputDirectory"] = output, ["MaxPlanAge"] = "10ms" });

        Assert.StartsWith("WrongDatabase,", wrong.FullyQualifiedErrorId);
        Assert.StartsWith("StalePlan,", old.FullyQualifiedErrorId);
        Assert.Contains("Test-ProdHealth", old.Exception.Message);
        Assert.NotEmpty(Pending(cs));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run"));
    }

    [Fact]
    public void The_health_check_is_read_only()
    {
        var (s, cs, output) = Setup(25);
        using var _ = s;
        var job = JsonNode.Parse(File.ReadAllText(SampleJob))!.AsObject();
        job.Remove("$schema");
        job["health"] = new JsonObject
        {
            ["discover"] = "WITH gone AS (DELETE FROM prism.telemetry_events RETURNING 1) SELECT count(*)::text AS key FROM gone",
        };
        var path = Path.Combine(Path.GetTempPath(), $"dataops-health-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, job.ToJsonString());
        var events = Sql.Scalar(cs, "SELECT count(*) FROM prism.telemetry_events");

        var error = s.Terminating("Test-ProdHealth", new Hashtable { ["Job"] = path, ["OutputDirectory"] = output });

        Assert.StartsWith("HealthQueryFailed,", error.FullyQualifiedErrorId);
        // Refused as a query before it could run (a data-modifying WITH cannot be a subquery); the read-only transaction is the next guard.
        Assert.Contains("data-modifying", error.Exception.Message);
        Assert.Equal(events, Sql.Scalar(cs, "SELECT count(*) FROM prism.telemetry_events"));
    }
}
