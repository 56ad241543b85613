using System.Collections;
using System.Collections.Concurrent;
using System.Management.Automation;
using System.Net;
using System.Net.Sockets;
using System.Security;
using System.Text;
using System.Text.Json;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// A real HTTP endpoint on 127.0.0.1 that behaves like an edge function: it checks the bearer key,
/// writes to the database through its own connection, and can be told to fail.
/// </summary>
internal sealed class FakeEdgeFunction : LoopbackEndpoint
{
    private readonly string _cs;
    private readonly string _expectedKey;

    public FakeEdgeFunction(string cs, string expectedKey)
    {
        _cs = cs;
        _expectedKey = expectedKey;
    }

    /// <summary>ok, fail-once, always-500, throttle-once (429 with Retry-After: 1), slow.</summary>
    public string Mode { get; set; } = "ok";

    public ConcurrentDictionary<string, int> Hits { get; } = new();

    public ConcurrentBag<string> Authorizations { get; } = [];

    /// <summary>The most calls that were in flight at the same time.</summary>
    public int MaxInFlight => _maxInFlight;

    private int _inFlight;
    private int _maxInFlight;

    protected override async Task Handle(HttpListenerContext ctx)
    {
        var now = Interlocked.Increment(ref _inFlight);
        InterlockedMax(ref _maxInFlight, now);
        try
        {
            await HandleOne(ctx);
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen)
        {
        }
    }

    private async Task HandleOne(HttpListenerContext ctx)
    {
        var key = ctx.Request.Url!.Segments[^1];
        var hit = Hits.AddOrUpdate(key, 1, (_, n) => n + 1);
        var auth = ctx.Request.Headers["Authorization"] ?? string.Empty;
        Authorizations.Add(auth);
        using var body = new StreamReader(ctx.Request.InputStream);
        var payload = JsonDocument.Parse(await body.ReadToEndAsync()).RootElement;
        int status;
        string text;
        if (auth != "Bearer " + _expectedKey)
        {
            (status, text) = (401, "unauthorized");
        }
        else if (Mode == "always-500" || (Mode == "fail-once" && hit == 1))
        {
            // A careless function that echoes the request's key in its error: the module must not repeat it.
            (status, text) = (500, $"internal error for {auth}");
        }
        else if (Mode == "throttle-once" && hit == 1)
        {
            ctx.Response.Headers["Retry-After"] = "1";
            (status, text) = (429, "slow down");
        }
        else if (Mode == "steady")
        {
            await Task.Delay(TimeSpan.FromMilliseconds(400));
            Sql.Execute(_cs, $"INSERT INTO prism.profiles (session_id, results_version, scores) VALUES ('{Guid.Parse(key)}', 'v1.2.1', '{{\"scored\": true}}') " +
                             "ON CONFLICT (session_id) DO UPDATE SET scores = prism.profiles.scores || '{\"scored\": true}'");
            (status, text) = (200, "scored");
        }
        else if (Mode == "slow")
        {
            await Task.Delay(TimeSpan.FromSeconds(4));
            (status, text) = (200, "late");
        }
        else
        {
            Sql.Execute(_cs, $"INSERT INTO prism.profiles (session_id, results_version, scores) VALUES ('{Guid.Parse(key)}', '{payload.GetProperty("version").GetString()}', '{{\"scored\": true}}') " +
                             "ON CONFLICT (session_id) DO UPDATE SET scores = prism.profiles.scores || '{\"scored\": true}', results_version = EXCLUDED.results_version");
            (status, text) = (200, "scored");
        }

        ctx.Response.StatusCode = status;
        var bytes = Encoding.UTF8.GetBytes(text);
        await ctx.Response.OutputStream.WriteAsync(bytes);
        ctx.Response.Close();
    }
}

public sealed class HttpStepTests
{
    private static (PsSession Session, string Cs, string Output) Setup()
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        var s = new PsSession();
        var output = Directory.CreateTempSubdirectory("dataops-http-").FullName;
        var r = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null; New-PrismSampleData -Sessions 30 -Seed 9 | Out-Null", new Hashtable { ["cs"] = cs });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return (s, cs, output);
    }

    private static string Job(int port, string auth, int timeoutSeconds = 2, int retries = 2, int maxConcurrency = 1, int perMinute = 0)
    {
        var path = Path.Combine(Path.GetTempPath(), $"dataops-http-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, $$"""
            {
              "version": 1, "name": "score-prism",
              "parameters": { "resultsVersion": "v1.2.1" },
              "items": { "discover": "SELECT id::text AS key FROM prism.sessions WHERE status = 'completed' ORDER BY id LIMIT 4" },
              "throttle": { "itemsPerMinute": {{perMinute}}, "maxConcurrency": {{maxConcurrency}} },
              "capture": [ { "table": "prism.profiles", "where": "session_id = @key::uuid" } ],
              "steps": [ {
                "name": "score_prism", "kind": "http", "method": "POST",
                "url": "http://127.0.0.1:{{port}}/score/@key",
                "headers": { "Authorization": "Bearer {{auth}}" },
                "body": { "session": "@key", "version": "@resultsVersion" },
                "timeoutSeconds": {{timeoutSeconds}}, "retries": {{retries}}
              } ],
              "verify": "SELECT EXISTS (SELECT 1 FROM prism.profiles WHERE session_id = @key::uuid AND scores ? 'scored')"
            }
            """);
        return path;
    }

    private static string Checksum(string cs) => (string)Sql.Scalar(cs, "SELECT md5(coalesce(string_agg(to_jsonb(p)::text, ',' ORDER BY id), '')) FROM prism.profiles p")!;

    /// <summary>Every file a run left behind, plus its run log, as one text to search.</summary>
    private static string AllArtifacts(string output, PsResult r)
    {
        var texts = Directory.GetFiles(output, "*", SearchOption.AllDirectories).Select(File.ReadAllText).ToList();
        var log = r.Verbose.FirstOrDefault(v => v.StartsWith("Run log: ", StringComparison.Ordinal));
        if (log is not null)
        {
            texts.Add(File.ReadAllText(log["Run log: ".Length..]));
        }

        texts.AddRange(r.Verbose);
        texts.AddRange(r.Warnings);
        texts.AddRange(r.Information.Select(i => i.MessageData.ToString()!));
        texts.AddRange(r.Debug);
        texts.AddRange(r.Errors.Select(e => e.ToString()));
        texts.AddRange(r.Output.Select(o => string.Join("|", o.Properties.Select(p => p.Value?.ToString()))));
        return string.Join("\n", texts);
    }

    [Fact]
    public void Calls_the_endpoint_with_the_secret_never_shows_it_and_the_rollback_undoes_the_endpoint_writes()
    {
        var (s, cs, output) = Setup();
        using var _ = s;
        var secret = "svc-" + Guid.NewGuid().ToString("N");
        var variable = "DATAOPS_TEST_KEY_" + Guid.NewGuid().ToString("N")[..8].ToUpperInvariant();
        Environment.SetEnvironmentVariable(variable, secret);
        using var edge = new FakeEdgeFunction(cs, secret);
        var before = Checksum(cs);
        try
        {
            var r = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -Verbose", new Hashtable { ["job"] = Job(edge.Port, $"{{env:{variable}}}"), ["out"] = output });

            Assert.False(r.HadErrors, string.Join("\n", r.Errors));
            Assert.Equal(4, r.Output.Count);
            Assert.All(r.Output, o => Assert.Equal("Applied", o.Properties["Status"].Value.ToString()));
            Assert.All(edge.Authorizations, a => Assert.Equal("Bearer " + secret, a));
            Assert.Equal(4L, Sql.Scalar(cs, "SELECT count(*) FROM prism.profiles WHERE scores ? 'scored'"));
            Assert.DoesNotContain(secret, AllArtifacts(output, r));

            var runId = (Guid)r.Output[0].Properties["RunId"].Value;
            var undo = s.Run("Undo-Backfill -RunId $id -Confirm:$false", new Hashtable { ["id"] = runId });
            Assert.All(undo.Output, o => Assert.Equal("Restored", o.Properties["Status"].Value.ToString()));
            Assert.Equal(before, Checksum(cs));
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, null);
        }
    }

    [Fact]
    public void A_url_that_starts_with_an_env_secret_takes_it_as_its_base_unescaped()
    {
        // The job file allows "{env:NAME}/path": one job, an endpoint per environment (examples/jobs/rescore-sessions.job.json).
        var (s, cs, output) = Setup();
        using var _ = s;
        var secret = "svc-" + Guid.NewGuid().ToString("N");
        var suffix = Guid.NewGuid().ToString("N")[..8].ToUpperInvariant();
        var (keyVariable, baseVariable) = ("DATAOPS_TEST_KEY_" + suffix, "DATAOPS_TEST_BASE_" + suffix);
        using var edge = new FakeEdgeFunction(cs, secret);
        Environment.SetEnvironmentVariable(keyVariable, secret);
        Environment.SetEnvironmentVariable(baseVariable, $"http://127.0.0.1:{edge.Port}");
        try
        {
            var job = Job(edge.Port, $"{{env:{keyVariable}}}");
            File.WriteAllText(job, File.ReadAllText(job).Replace($"http://127.0.0.1:{edge.Port}/score/@key", $"{{env:{baseVariable}}}/score/@key", StringComparison.Ordinal));
            Assert.Contains($"{{env:{baseVariable}}}/score/@key", File.ReadAllText(job), StringComparison.Ordinal);

            var r = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = output });

            Assert.False(r.HadErrors, string.Join("\n", r.Errors));
            Assert.Equal(4, r.Output.Count);
            Assert.All(r.Output, o => Assert.Equal("Applied", o.Properties["Status"].Value.ToString()));
            Assert.Equal(4, edge.Hits.Count);
            Assert.All(edge.Hits.Keys, k => Assert.True(Guid.TryParse(k, out var _), $"the endpoint was called for '{k}', not for a session"));
            Assert.DoesNotContain(secret, AllArtifacts(output, r));
        }
        finally
        {
            Environment.SetEnvironmentVariable(keyVariable, null);
            Environment.SetEnvironmentVariable(baseVariable, null);
        }
    }

    [Fact]
    public void Retries_on_500_and_429_honouring_Retry_After_and_credentials_come_from_Secret()
    {
        var (s, cs, output) = Setup();
        using var _ = s;
        var secret = "cred-" + Guid.NewGuid().ToString("N");
        using var edge = new FakeEdgeFunction(cs, secret) { Mode = "fail-once" };
        var password = new SecureString();
        foreach (var c in secret)
        {
            password.AppendChar(c);
        }

        var vars = new Hashtable { ["job"] = Job(edge.Port, "{credential:SCORE_KEY}"), ["out"] = output, ["cred"] = new PSCredential("svc", password) };

        var r = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -Secret @{ SCORE_KEY = $cred }", vars);

        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        Assert.All(r.Output, o => Assert.Equal("Applied", o.Properties["Status"].Value.ToString()));
        Assert.All(edge.Hits.Values, n => Assert.Equal(2, n));
        Assert.DoesNotContain(secret, AllArtifacts(output, r));

        Sql.Execute(cs, "UPDATE prism.profiles SET scores = '{}'");
        edge.Hits.Clear();
        edge.Mode = "throttle-once";
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var throttled = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -Secret @{ SCORE_KEY = $cred } -Reapply", vars);
        Assert.All(throttled.Output, o => Assert.Equal("Applied", o.Properties["Status"].Value.ToString()));
        Assert.True(watch.Elapsed >= TimeSpan.FromSeconds(4), $"Retry-After: 1 was not honoured ({watch.Elapsed})");
    }

    [Fact]
    public void Exhausted_retries_and_timeouts_fail_the_item_with_a_redacted_excerpt()
    {
        var (s, cs, output) = Setup();
        using var _ = s;
        var secret = "k-" + Guid.NewGuid().ToString("N");
        var variable = "DATAOPS_TEST_KEY_" + Guid.NewGuid().ToString("N")[..8].ToUpperInvariant();
        Environment.SetEnvironmentVariable(variable, secret);
        using var edge = new FakeEdgeFunction(cs, secret) { Mode = "always-500" };
        var before = Checksum(cs);
        try
        {
            var failing = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -MaxFailures 2", new Hashtable { ["job"] = Job(edge.Port, $"{{env:{variable}}}", retries: 1), ["out"] = output });
            edge.Mode = "slow";
            var slow = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -MaxFailures 1", new Hashtable { ["job"] = Job(edge.Port, $"{{env:{variable}}}", timeoutSeconds: 1, retries: 0), ["out"] = output });

            Assert.Equal(2, failing.Output.Count);
            var error = (string)failing.Output[0].Properties["Error"].Value;
            Assert.Contains("answered 500", error);
            Assert.Contains("********", error);
            Assert.Equal("Other", failing.Output[0].Properties["ErrorCategory"].Value.ToString());
            Assert.True(slow.Output.Single().Properties["ErrorCategory"].Value.ToString() == "Timeout", (string)slow.Output.Single().Properties["Error"].Value);
            Assert.DoesNotContain(secret, AllArtifacts(output, failing));
            Assert.Equal(before, Checksum(cs));
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, null);
        }
    }

    [Fact]
    public void A_secret_that_is_not_set_stops_the_run_before_anything_runs()
    {
        var (s, cs, output) = Setup();
        using var _ = s;

        var error = s.Terminating("Invoke-Backfill", new Hashtable { ["Job"] = Job(1, "{env:DATAOPS_SURELY_UNSET_KEY}"), ["OutputDirectory"] = output });
        var credential = s.Terminating("Invoke-Backfill", new Hashtable { ["Job"] = Job(1, "{credential:MISSING}"), ["OutputDirectory"] = output });

        Assert.StartsWith("SecretMissing,", error.FullyQualifiedErrorId);
        Assert.Contains("DATAOPS_SURELY_UNSET_KEY", error.Exception.Message);
        Assert.Contains("$.steps[0]", error.Exception.Message);
        Assert.Contains("-Secret", credential.Exception.Message);
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run"));
    }

    [Fact]
    public void Preflight_passes_on_a_good_environment_and_lists_every_problem_of_a_broken_one()
    {
        var (s, cs, output) = Setup();
        using var _ = s;
        var secret = "pf-" + Guid.NewGuid().ToString("N");
        var variable = "DATAOPS_TEST_KEY_" + Guid.NewGuid().ToString("N")[..8].ToUpperInvariant();
        Environment.SetEnvironmentVariable(variable, secret);
        using var edge = new FakeEdgeFunction(cs, secret);
        try
        {
            var good = s.Run("Test-DataOpsEnvironment -Job $job", new Hashtable { ["job"] = Job(edge.Port, $"{{env:{variable}}}") });

            Assert.False(good.HadErrors, string.Join("\n", good.Errors));
            var names = good.Output.Select(o => (string)o.Properties["Name"].Value).ToList();
            Assert.Equal(["Connection", "Schema", "JobFile", $"Secret {{env:{variable}}}", "Endpoint score_prism", "Duration"], names);
            Assert.All(good.Output, o => Assert.True((bool)o.Properties["Passed"].Value, (string)o.Properties["Detail"].Value));
            Assert.Contains("4 items", (string)good.Output[^1].Properties["Detail"].Value);
            Assert.DoesNotContain(secret, string.Join("|", good.Output.Select(o => o.Properties["Detail"].Value)));
            Assert.Empty(edge.Hits);

            // Broken: an empty database, an unset secret, a closed port.
            var empty = TestCluster.CreateDatabase();
            int closed;
            using (var l = new TcpListener(IPAddress.Loopback, 0))
            {
                l.Start();
                closed = ((IPEndPoint)l.LocalEndpoint).Port;
            }

            var bad = s.Run("Test-DataOpsEnvironment -Job $job -Connection (Connect-DataOps -ConnectionString $cs -NoDefault)",
                new Hashtable { ["job"] = Job(closed, "{env:DATAOPS_SURELY_UNSET_KEY}"), ["cs"] = empty });

            Assert.False(bad.HadErrors, string.Join("\n", bad.Errors));
            bool Failed(string name) => bad.Output.Any(o => ((string)o.Properties["Name"].Value).StartsWith(name, StringComparison.Ordinal) && !(bool)o.Properties["Passed"].Value);
            Assert.True(Failed("Schema"));
            Assert.True(Failed("JobFile"));
            Assert.True(Failed("Secret {env:DATAOPS_SURELY_UNSET_KEY}"));
            Assert.True(Failed("Endpoint"));
            Assert.Contains(bad.Output, o => (string)o.Properties["Name"].Value == "Connection" && (bool)o.Properties["Passed"].Value);
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, null);
        }
    }

    [Fact]
    public void MaxConcurrency_runs_independent_items_in_parallel_while_the_rate_limit_holds()
    {
        var (s, cs, output) = Setup();
        using var _ = s;
        var secret = "mc-" + Guid.NewGuid().ToString("N");
        var variable = "DATAOPS_TEST_KEY_" + Guid.NewGuid().ToString("N")[..8].ToUpperInvariant();
        Environment.SetEnvironmentVariable(variable, secret);
        using var edge = new FakeEdgeFunction(cs, secret) { Mode = "steady" };
        try
        {
            var parallel = s.Run("Invoke-Backfill -Job $job -OutputDirectory $out", new Hashtable { ["job"] = Job(edge.Port, $"{{env:{variable}}}", maxConcurrency: 3), ["out"] = output });

            Assert.False(parallel.HadErrors, string.Join("\n", parallel.Errors));
            Assert.Equal(4, parallel.Output.Count(o => o.Properties["Status"].Value.ToString() == "Applied"));
            Assert.InRange(edge.MaxInFlight, 2, 3);

            // At 60 items/minute one item may start per second, however many may run at once.
            Sql.Execute(cs, "UPDATE prism.profiles SET scores = '{}'");
            var watch = System.Diagnostics.Stopwatch.StartNew();
            var limited = s.Run("Invoke-Backfill -Job $job -OutputDirectory $out -Reapply", new Hashtable { ["job"] = Job(edge.Port, $"{{env:{variable}}}", maxConcurrency: 3, perMinute: 60), ["out"] = output });
            Assert.Equal(4, limited.Output.Count(o => o.Properties["Status"].Value.ToString() == "Applied"));
            Assert.True(watch.Elapsed >= TimeSpan.FromSeconds(3), $"4 items at 60/minute took only {watch.Elapsed}");
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, null);
        }
    }

    [Fact]
    public void An_item_of_an_HTTP_job_whose_rows_another_session_holds_retries_then_fails_as_LockTimeout_naming_the_holder()
    {
        var (s, cs, output) = Setup();
        using var _ = s;
        using var edge = new FakeEdgeFunction(cs, "k");
        var job = Job(edge.Port, "k", maxConcurrency: 2);
        File.WriteAllText(job, File.ReadAllText(job).Replace(
            "\"steps\": [ {",
            "\"lockTimeout\": \"200ms\", \"lockRetries\": 2, \"steps\": [ { \"name\": \"hold the session\", \"sql\": \"SELECT 1 FROM prism.sessions WHERE id = @key::uuid FOR UPDATE\" }, {",
            StringComparison.Ordinal));
        var locked = (string)Sql.Scalar(cs, "SELECT id::text FROM prism.sessions WHERE status = 'completed' ORDER BY id OFFSET 1 LIMIT 1")!;
        using var holder = new Npgsql.NpgsqlConnection(cs);
        holder.Open();
        using (var hold = new Npgsql.NpgsqlCommand($"BEGIN; SELECT 1 FROM prism.sessions WHERE id = '{locked}' FOR UPDATE", holder))
        {
            hold.ExecuteNonQuery();
        }

        var r = s.Run("Invoke-Backfill -Job $job -OutputDirectory $out -Verbose", new Hashtable { ["job"] = job, ["out"] = output });

        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        var item = r.Output.Single(o => (string)o.Properties["Key"].Value == locked);
        Assert.Equal("LockTimeout", item.Properties["ErrorCategory"].Value.ToString());
        Assert.Equal(3, item.Properties["Attempts"].Value);
        var blocker = PSObject.AsPSObject(item.Properties["Blocker"].Value);
        Assert.Equal(holder.ProcessID, blocker.Properties["Pid"].Value);
        Assert.Equal(true, blocker.Properties["Confirmed"].Value);
        Assert.Contains($"row locked by pid {holder.ProcessID} (idle in transaction", (string)item.Properties["Error"].Value);
        Assert.Contains(r.Verbose, v => v.Contains($"Item {locked} is waiting for rows another session holds: row locked by pid {holder.ProcessID}", StringComparison.Ordinal));
        Assert.Equal(3, r.Output.Count(o => o.Properties["Status"].Value.ToString() == "Applied"));
        var runId = (Guid)item.Properties["RunId"].Value;
        Assert.Equal(3L, Sql.Scalar(cs, $"SELECT count(*) FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'applied'"));
    }
}
