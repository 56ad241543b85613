using System.Collections;
using System.Management.Automation;
using System.Text.Json.Nodes;

namespace DataOps.PowerShell.Tests;

public sealed class SoakTests
{
    private static readonly string SampleJob = Path.Combine(Repo.Root, "examples", "jobs", "results-v1.2.1.job.json");

    private static (PsSession Session, string Cs, string Output) Setup()
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        var s = new PsSession();
        var output = Directory.CreateTempSubdirectory("dataops-soak-").FullName;
        var r = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null; New-PrismSampleData -Sessions 40 -Seed 5 -PendingShare 0.5 | Out-Null", new Hashtable { ["cs"] = cs });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return (s, cs, output);
    }

    private static string JobWithSoak(JsonObject soak) => SampleJobs.With(job => job["soak"] = soak);

    private static JsonObject Check(string name, string query, JsonObject expect) => new() { ["name"] = name, ["query"] = query, ["expect"] = expect };

    private static Hashtable Vars(string job, string output) => new() { ["job"] = job, ["out"] = output };

    [Fact]
    public void NoGo_before_the_backfill_and_Go_after_it_with_samples_streamed_and_a_report()
    {
        var (s, cs, output) = Setup();
        using var _ = s;

        // Long enough for two rounds even on a loaded machine (a round opens five read-only sessions).
        var before = s.Run("Watch-StagingSoak -Job $job -Duration 3s -Interval 500ms -OutputDirectory $out", Vars(SampleJob, output));
        s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out | Out-Null", Vars(SampleJob, output));
        var after = s.Run("Watch-StagingSoak -Job $job -Duration 1s -Interval 400ms -OutputDirectory $out", Vars(SampleJob, output));

        Assert.False(before.HadErrors, string.Join("\n", before.Errors));
        var report = before.Output[^1];
        Assert.Equal("NoGo", report.Properties["Verdict"].Value.ToString());
        var samples = before.Output.Take(before.Output.Count - 1).ToList();
        var rounds = (int)report.Properties["Rounds"].Value;
        Assert.Equal(rounds * 5, samples.Count);
        Assert.True(rounds >= 2);
        Assert.Contains(samples, o => o.Properties["Check"].Value.ToString() == "profiles stamped %" && o.Properties["Outcome"].Value.ToString() == "Fail");
        Assert.Contains(((IEnumerable<string>)report.Properties["Reasons"].Value), r => r.StartsWith("legacy FC usage %", StringComparison.Ordinal));

        var good = after.Output[^1];
        Assert.Equal("Go", good.Properties["Verdict"].Value.ToString());
        var path = (string)good.Properties["ReportPath"].Value;
        var markdown = File.ReadAllText(path);
        Assert.Contains("**Verdict: Go**", markdown);
        Assert.Contains("```mermaid", markdown);
        Assert.Contains("xychart-beta", markdown);
        Assert.Contains("| conversion rate | >= 1 x baseline | 0.85 |", markdown);
        // Go is the normal end (host output); NoGo needs attention (a warning).
        Assert.DoesNotContain(after.Warnings, w => w.Contains("go/no-go decision"));
        Assert.Contains(after.Information, i => i.Tags.Contains("PSHOST") && i.MessageData.ToString()!.Contains("verdict Go"));
        Assert.Contains(before.Warnings, w => w.Contains("verdict NoGo"));
        Assert.DoesNotContain(before.Information, i => i.MessageData.ToString()!.Contains("verdict"));
    }

    [Fact]
    public void A_check_that_writes_fails_and_writes_nothing()
    {
        var (s, cs, output) = Setup();
        using var _ = s;
        var sessions = Sql.Scalar(cs, "SELECT count(*) FROM prism.sessions");
        var job = JobWithSoak(new JsonObject
        {
            ["consecutiveErrorLimit"] = 2,
            ["checks"] = new JsonArray(Check("sneaky", "WITH d AS (DELETE FROM prism.sessions RETURNING 1) SELECT count(*) FROM d", new JsonObject { ["equals"] = 0 })),
        });

        var r = s.Run("Watch-StagingSoak -Job $job -Duration 1s -Interval 300ms -OutputDirectory $out", Vars(job, output));

        var samples = r.Output.Take(r.Output.Count - 1).ToList();
        Assert.All(samples, o => Assert.Equal("Error", o.Properties["Outcome"].Value.ToString()));
        // Refused as a query before it could run (a data-modifying WITH cannot be a subquery); the read-only transaction is the next guard.
        Assert.Contains("data-modifying", (string)samples[0].Properties["Error"].Value);
        Assert.Equal("Inconclusive", r.Output[^1].Properties["Verdict"].Value.ToString());
        Assert.Equal(sessions, Sql.Scalar(cs, "SELECT count(*) FROM prism.sessions"));
    }

    [Fact]
    public void FailFast_stops_at_the_first_exceeded_limit_and_dry_run_checks_never_decide()
    {
        var (s, cs, output) = Setup();
        using var _ = s;
        var job = JobWithSoak(new JsonObject
        {
            ["checks"] = new JsonArray(
                Check("sessions exist", "SELECT count(*) FROM prism.sessions", new JsonObject { ["atLeast"] = 1 }),
                Check("experimental", "SELECT 42", new JsonObject { ["equals"] = 0 }).Also(c => c["dryRun"] = true),
                Check("baseline from a query", "SELECT count(*) FROM prism.sessions", new JsonObject { ["atLeastBaseline"] = 1.0 }).Also(c => c["baseline"] = new JsonObject { ["query"] = "SELECT count(*) FROM prism.sessions" })),
        });
        var failing = JobWithSoak(new JsonObject
        {
            ["checks"] = new JsonArray(Check("too many sessions", "SELECT count(*) FROM prism.sessions", new JsonObject { ["between"] = new JsonArray(0, 1) })),
        });

        var go = s.Run("Watch-StagingSoak -Job $job -Duration 1s -Interval 300ms -OutputDirectory $out", Vars(job, output));
        var fast = s.Run("Watch-StagingSoak -Job $job -Duration 1h -Interval 100ms -OutputDirectory $out -FailFast", Vars(failing, output));

        Assert.Equal("Go", go.Output[^1].Properties["Verdict"].Value.ToString());
        Assert.Contains(go.Output, o => o.Properties["Check"]?.Value?.ToString() == "experimental" && o.Properties["Outcome"].Value.ToString() == "Fail");
        var report = fast.Output[^1];
        Assert.Equal("NoGo", report.Properties["Verdict"].Value.ToString());
        Assert.Equal(1, report.Properties["Rounds"].Value);
        Assert.True((bool)report.Properties["EndedEarly"].Value);
    }

    [Fact]
    public void No_data_is_inconclusive_and_failures_in_a_row_are_NoGo()
    {
        var (s, cs, output) = Setup();
        using var _ = s;
        var blind = JobWithSoak(new JsonObject
        {
            ["checks"] = new JsonArray(
                Check("sessions exist", "SELECT count(*) FROM prism.sessions", new JsonObject { ["atLeast"] = 1 }),
                Check("nothing to see", "SELECT NULL::numeric", new JsonObject { ["equals"] = 0 })),
        });
        // Fails every round once a 'flap' session exists: within a failureLimit of 10, but two in a row break consecutiveFailureLimit 1.
        var flapping = JobWithSoak(new JsonObject
        {
            ["checks"] = new JsonArray(
                Check("flapping", "SELECT count(*) FROM prism.sessions WHERE user_id = 'flap'", new JsonObject { ["equals"] = 0 })
                    .Also(c => { c["failureLimit"] = 10; c["consecutiveFailureLimit"] = 1; })),
        });

        var inconclusive = s.Run("Watch-StagingSoak -Job $job -Duration 1s -Interval 300ms -OutputDirectory $out", Vars(blind, output));
        Sql.Execute(cs, "INSERT INTO prism.sessions (user_id) VALUES ('flap')");
        var noGo = s.Run("Watch-StagingSoak -Job $job -Duration 1s -Interval 300ms -OutputDirectory $out", Vars(flapping, output));

        Assert.Contains(inconclusive.Output, o => o.Properties["Outcome"]?.Value?.ToString() == "NoData");
        var report = inconclusive.Output[^1];
        Assert.Equal("Inconclusive", report.Properties["Verdict"].Value.ToString());
        Assert.Contains(((IEnumerable<string>)report.Properties["Reasons"].Value), r => r.Contains("no usable data for: nothing to see"));
        var flap = noGo.Output[^1];
        Assert.Equal("NoGo", flap.Properties["Verdict"].Value.ToString());
        Assert.Contains(((IEnumerable<string>)flap.Properties["Reasons"].Value), r => r.Contains("in a row"));
    }

    [Fact]
    public void Stopping_ends_early_with_a_report_of_what_was_seen()
    {
        var (s, cs, output) = Setup();
        using var _ = s;
        using var ps = System.Management.Automation.PowerShell.Create(s.Runspace);
        ps.AddCommand("Watch-StagingSoak").AddParameter("Job", SampleJob).AddParameter("Duration", "1h").AddParameter("Interval", "200ms").AddParameter("OutputDirectory", output);
        var results = new PSDataCollection<PSObject>();
        var enough = new ManualResetEventSlim();
        results.DataAdded += (_, _) =>
        {
            if (results.Count >= 10)
            {
                enough.Set();
            }
        };

        var handle = ps.BeginInvoke<PSObject, PSObject>(null, results);
        Assert.True(enough.Wait(TimeSpan.FromSeconds(60)));
        ps.Stop();
        Assert.ThrowsAny<PipelineStoppedException>(() => ps.EndInvoke(handle));

        var report = Directory.GetFiles(output, "staging_observability.md", SearchOption.AllDirectories).Single();
        var text = File.ReadAllText(report);
        Assert.Contains("stopped early", text);
        Assert.Contains("ended early", text);

        // A stopped pipeline keeps no output, so the report object comes back through $DataOpsLastSoak.
        var kept = s.Run("$DataOpsLastSoak").Output.Single();
        Assert.True((bool)kept.Properties["EndedEarly"].Value);
        Assert.Equal(report, (string)kept.Properties["ReportPath"].Value);
        Assert.True((int)kept.Properties["Rounds"].Value >= 2);
        Assert.Contains((IEnumerable<string>)kept.Properties["Reasons"].Value, r => r.Contains("stopped early"));
    }

    [Fact]
    public void A_lost_connection_is_an_error_sample_and_the_watch_reconnects()
    {
        var name = "soaklost-" + Guid.NewGuid().ToString("N")[..6];
        using var s = new PsSession();
        var vars = new Hashtable { ["name"] = name, ["root"] = TestCluster.Root };
        var setup = s.Run("$sb = Start-DataOpsSandbox -Name $name -Root $root -NoDefault; Install-DataOpsSchema -Component Prism -Connection $sb.Connection | Out-Null; New-PrismSampleData -Sessions 5 -Seed 1 -Connection $sb.Connection | Out-Null; $sb.Connection", vars);
        Assert.False(setup.HadErrors, string.Join("\n", setup.Errors));
        var job = JobWithSoak(new JsonObject
        {
            ["consecutiveErrorLimit"] = 1000,
            ["checks"] = new JsonArray(Check("sessions", "SELECT count(*) FROM prism.sessions", new JsonObject { ["atLeast"] = 1 })),
        });
        try
        {
            using var ps = System.Management.Automation.PowerShell.Create(s.Runspace);
            ps.AddCommand("Watch-StagingSoak").AddParameter("Job", job).AddParameter("Connection", setup.Output.Single()).AddParameter("Duration", "1h").AddParameter("Interval", "200ms")
                .AddParameter("OutputDirectory", Directory.CreateTempSubdirectory("dataops-soak-").FullName);
            var results = new PSDataCollection<PSObject>();
            var handle = ps.BeginInvoke<PSObject, PSObject>(null, results);
            bool Seen(string outcome, int after) => results.Skip(after).Any(o => o.Properties["Outcome"]?.Value?.ToString() == outcome);
            Assert.True(SpinWait.SpinUntil(() => Seen("Pass", 0), TimeSpan.FromSeconds(30)));

            using (var other = new PsSession())
            {
                other.Run("Stop-DataOpsSandbox -Name $name -Root $root", vars);
                Assert.True(SpinWait.SpinUntil(() => Seen("Error", 0), TimeSpan.FromSeconds(30)));
                var errorsAt = results.Count;
                other.Run("Start-DataOpsSandbox -Name $name -Root $root -NoDefault | Out-Null", vars);
                Assert.True(SpinWait.SpinUntil(() => Seen("Pass", errorsAt), TimeSpan.FromSeconds(30)), "the watch did not reconnect");
            }

            ps.Stop();
            Assert.ThrowsAny<PipelineStoppedException>(() => ps.EndInvoke(handle));
            var error = results.First(o => o.Properties["Outcome"].Value.ToString() == "Error");
            Assert.False(string.IsNullOrEmpty((string)error.Properties["Error"].Value));
        }
        finally
        {
            s.Run("Stop-DataOpsSandbox -Name $name -Root $root -Remove -Confirm:$false", vars);
        }
    }

    [Theory]
    [InlineData("""{"checks":[{"name":"a","query":"SELECT 1","expect":{"equals":1,"atMost":2}}]}""", "$.soak.checks[0].expect: give exactly one")]
    [InlineData("""{"checks":[{"name":"a","query":"SELECT @nope","expect":{"equals":1}}]}""", "$.soak.checks[0].query: uses @nope")]
    [InlineData("""{"checks":[{"name":"a","query":"SELECT 1","expect":{"atLeastBaseline":1}}]}""", "$.soak.checks[0].baseline: required")]
    [InlineData("""{"duration":"six hours","checks":[{"name":"a","query":"SELECT 1","expect":{"equals":1}}]}""", "$.soak.duration")]
    [InlineData("""{"checks":[]}""", "$.soak.checks: required")]
    [InlineData("""{"checks":[{"name":"a","query":"SELECT 1","expect":{"equals":1}}],"colour":"red"}""", "$.soak.colour: unknown field")]
    public void Bad_soak_sections_are_refused_with_the_JSON_path(string soak, string expected)
    {
        var (s, _, output) = Setup();
        using var __ = s;

        var error = s.Terminating("Watch-StagingSoak", new Hashtable { ["Job"] = JobWithSoak(JsonNode.Parse(soak)!.AsObject()), ["OutputDirectory"] = output });

        Assert.StartsWith("JobFileInvalid,", error.FullyQualifiedErrorId);
        Assert.Contains(expected, error.Exception.Message);
    }

    [Fact]
    public void Duration_and_interval_take_units_or_TimeSpans_and_reject_nonsense()
    {
        using var s = new PsSession();
        var cmd = s.Run("Get-Command Watch-StagingSoak").Output.Single();
        Assert.NotNull(cmd);

        var bad = Assert.ThrowsAny<ParameterBindingException>(() => s.Invoke("Watch-StagingSoak", new Hashtable { ["Job"] = SampleJob, ["Duration"] = "6 hours" }));
        Assert.Contains("is not a duration", bad.Message);
    }
}

internal static class JsonExtensions
{
    public static JsonObject Also(this JsonObject o, Action<JsonObject> change)
    {
        change(o);
        return o;
    }
}
