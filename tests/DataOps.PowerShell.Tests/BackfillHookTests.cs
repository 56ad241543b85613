using System.Collections;
using System.Text.Json.Nodes;
using DataOps.Tests;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// Invoke-Backfill's notify hooks and metrics file as a user meets them: a real HTTP endpoint on
/// 127.0.0.1 receives the payloads, the ledger is the truth their counts are checked against, and
/// the metrics file is read back as Prometheus text.
/// </summary>
public sealed class BackfillHookTests
{
    private static (PsSession Session, string Cs, string Output) Setup()
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        var s = new PsSession();
        var output = Directory.CreateTempSubdirectory("dataops-hook-").FullName;
        var r = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null; New-PrismSampleData -Sessions 30 -Seed 5 -PendingShare 0.5", new Hashtable { ["cs"] = cs });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return (s, cs, output);
    }

    private static string Job(params JsonObject[] hooks) => SampleJobs.With(job => job["notify"] = new JsonArray([.. hooks]));

    private static JsonObject Hook(string url, string[] on, bool required = false, string timeout = "5s", string? authorization = null)
    {
        var hook = new JsonObject { ["url"] = url, ["on"] = new JsonArray([.. on.Select(e => JsonValue.Create(e))]), ["required"] = required, ["timeout"] = timeout };
        if (authorization is not null)
        {
            hook["headers"] = new JsonObject { ["Authorization"] = authorization };
        }

        return hook;
    }

    private static readonly string[] Every = ["start", "throttled", "halt", "success", "failure"];

    private static string RefusedUrl() => $"http://127.0.0.1:{LoopbackEndpoint.FreePort()}/hook";

    private static long Ledger(string cs, Guid runId) => (long)Sql.Scalar(cs, $"SELECT count(*) FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'applied'")!;

    [Fact]
    public void A_run_posts_start_halt_and_success_with_the_ledgers_counts_and_leaves_final_metrics()
    {
        var (s, cs, output) = Setup();
        using var _ = s;
        using var hooks = new HookReceiver();
        var metrics = Path.Combine(output, "textfile", "dataops_backfill.prom");

        var r = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -MetricsPath $metrics",
            new Hashtable { ["job"] = Job(Hook(hooks.Url, Every)), ["out"] = output, ["metrics"] = metrics });

        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        Assert.Empty(r.Warnings);
        var runId = (Guid)r.Output[0].Properties["RunId"].Value;
        Assert.Equal(["start", "halt", "success"], hooks.Payloads.Select(p => p.GetProperty("event").GetString()));
        var success = hooks.Payloads[^1];
        var applied = Ledger(cs, runId);
        Assert.True(applied > 0);
        Assert.Equal(applied, success.GetProperty("counts").GetProperty("applied").GetInt64());
        Assert.Equal(r.Output.Count, success.GetProperty("counts").GetProperty("total").GetInt32());
        Assert.Equal(("results-v1.2.1", runId.ToString(), Environment.MachineName), (success.GetProperty("job").GetString(), success.GetProperty("runId").GetString(), success.GetProperty("host").GetString()));
        Assert.True(File.Exists(success.GetProperty("summary").GetString()));
        Assert.Equal(0, hooks.Payloads[0].GetProperty("counts").GetProperty("applied").GetInt32());

        var samples = PrometheusText.Parse(File.ReadAllText(metrics));
        Assert.Equal(0, samples.Single(x => x.Name == "dataops_backfill_running").Value);
        Assert.Equal(applied, samples.Single(x => x.Name == "dataops_backfill_items_total" && x.Labels["status"] == "applied").Value);
        Assert.Equal(0, samples.Single(x => x.Name == "dataops_backfill_items_total" && x.Labels["status"] == "failed").Value);
        Assert.Equal(r.Output.Count, samples.Single(x => x.Name == "dataops_backfill_items_planned").Value);
        Assert.Equal(["dataops_backfill.prom"], Directory.GetFiles(Path.GetDirectoryName(metrics)!).Select(Path.GetFileName));
    }

    [Fact]
    public void A_failing_hook_that_is_not_required_is_a_warning_in_the_log_and_summary_and_the_run_completes()
    {
        var (s, cs, output) = Setup();
        using var _ = s;
        using var failing = new HookReceiver(status: 503);

        var r = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -Verbose",
            new Hashtable { ["job"] = Job(Hook(failing.Url, ["start", "success"]), Hook(RefusedUrl(), ["success"], timeout: "1s")), ["out"] = output });

        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        var runId = (Guid)r.Output[0].Properties["RunId"].Value;
        Assert.Equal("completed", Sql.Scalar(cs, $"SELECT status FROM dataops.run WHERE run_id = '{runId}'"));
        Assert.Equal(r.Output.Count(o => (string)o.Properties["Status"].Value == "Applied"), Ledger(cs, runId));
        Assert.Equal(2, failing.Payloads.Count);
        Assert.Contains(r.Warnings, w => w.Contains("hook $.notify[0] (start)", StringComparison.Ordinal) && w.Contains("answered 503", StringComparison.Ordinal) && w.Contains("The run goes on", StringComparison.Ordinal));
        Assert.Contains(r.Warnings, w => w.Contains("hook $.notify[1] (success)", StringComparison.Ordinal));
        var summary = File.ReadAllText(Directory.GetFiles(output, "backfill_summary.md", SearchOption.AllDirectories).Single());
        Assert.Contains("$.notify[0] (start)", summary, StringComparison.Ordinal);
        Assert.Contains("$.notify[1] (success)", summary, StringComparison.Ordinal);
        var log = r.Verbose.First(v => v.StartsWith("Run log: ", StringComparison.Ordinal))["Run log: ".Length..];
        Assert.Contains("$.notify[0] (start)", File.ReadAllText(log), StringComparison.Ordinal);
    }

    [Fact]
    public void A_required_start_hook_that_fails_stops_the_run_before_any_item_with_BackfillHookFailed()
    {
        var (s, cs, output) = Setup();
        using var _ = s;
        using var failure = new HookReceiver();
        var job = Job(Hook(RefusedUrl(), ["start"], required: true, timeout: "1s"), Hook(failure.Url, ["failure", "success"]));

        var error = s.Terminating("Invoke-Backfill", new Hashtable { ["Job"] = job, ["OutputDirectory"] = output, ["ItemsPerMinute"] = 0 });

        Assert.StartsWith("BackfillHookFailed,", error.FullyQualifiedErrorId);
        Assert.Contains("$.notify[0] (start)", error.Exception.Message, StringComparison.Ordinal);
        Assert.Equal("$.notify[0]", error.TargetObject);
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger"));
        Assert.Equal("failed", Sql.Scalar(cs, "SELECT status FROM dataops.run ORDER BY started_at DESC LIMIT 1"));
        Assert.Contains("BackfillHookFailed", (string)Sql.Scalar(cs, "SELECT summary->>'reason' FROM dataops.run ORDER BY started_at DESC LIMIT 1")!, StringComparison.Ordinal);
        var payload = Assert.Single(failure.Payloads);
        Assert.Equal(("failure", "failed", 0), (payload.GetProperty("event").GetString(), payload.GetProperty("outcome").GetString(), payload.GetProperty("counts").GetProperty("applied").GetInt32()));
    }

    [Fact]
    public void A_secret_in_a_hooks_header_and_url_reaches_the_endpoint_only()
    {
        var (s, _, output) = Setup();
        using var __ = s;
        var secret = "hook-" + Guid.NewGuid().ToString("N");
        var variable = "DATAOPS_TEST_HOOK_" + Guid.NewGuid().ToString("N")[..8].ToUpperInvariant();
        Environment.SetEnvironmentVariable(variable, secret);
        using var hooks = new HookReceiver();
        using var failing = new HookReceiver(status: 500);
        try
        {
            var job = Job(
                Hook(hooks.Url, Every, authorization: $"Bearer {{env:{variable}}}"),
                Hook($"http://127.0.0.1:{failing.Port}/{{env:{variable}}}/hook", ["success", "failure"], required: true, authorization: $"Bearer {{env:{variable}}}"));

            var r = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -Verbose", new Hashtable { ["job"] = job, ["out"] = output });

            Assert.Contains(r.Errors, e => e.FullyQualifiedErrorId.StartsWith("BackfillHookFailed,", StringComparison.Ordinal));
            Assert.NotEmpty(hooks.Payloads);
            Assert.All(hooks.Authorizations, a => Assert.Equal("Bearer " + secret, a));
            Assert.NotEmpty(failing.Payloads);
            Assert.All(hooks.Bodies.Concat(failing.Bodies), b => Assert.DoesNotContain(secret, b, StringComparison.Ordinal));

            var texts = Directory.GetFiles(output, "*", SearchOption.AllDirectories).Select(File.ReadAllText).ToList();
            texts.Add(File.ReadAllText(r.Verbose.First(v => v.StartsWith("Run log: ", StringComparison.Ordinal))["Run log: ".Length..]));
            texts.AddRange(r.Verbose);
            texts.AddRange(r.Warnings);
            texts.AddRange(r.Errors.Select(e => $"{e} {e.TargetObject} {e.ErrorDetails?.RecommendedAction}"));
            var all = string.Join("\n", texts);
            Assert.Contains("hook $.notify[1] (success)", all, StringComparison.Ordinal);
            Assert.DoesNotContain(secret, all, StringComparison.Ordinal);
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, null);
        }
    }
}
