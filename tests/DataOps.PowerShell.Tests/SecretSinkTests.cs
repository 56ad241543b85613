using System.Collections;
using System.Management.Automation;
using System.Net;
using System.Net.Sockets;
using System.Security;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using DataOps.Tests;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// A careless endpoint on 127.0.0.1 that repeats what it was sent. The first path segment says how
/// it fails: deny (403 quoting the request URL as received), fail (500 quoting the Authorization
/// header and the lower-cased URL), echo (422 with a JSON body holding the secret JSON-escaped both
/// ways and raw across the 200th character), slow (answers after the step's timeout).
/// </summary>
internal sealed class EchoingEndpoint : LoopbackEndpoint
{
    private static readonly JsonSerializerOptions Relaxed = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>What each call received: the raw URL, the headers and the body.</summary>
    public List<(string Url, string Auth, string ApiKey, string Body)> Calls { get; } = [];

    protected override async Task Handle(HttpListenerContext ctx)
    {
        var url = ctx.Request.RawUrl ?? string.Empty;
        var auth = ctx.Request.Headers["Authorization"] ?? string.Empty;
        var apiKey = ctx.Request.Headers["X-Api-Key"] ?? string.Empty;
        using var reader = new StreamReader(ctx.Request.InputStream);
        var body = await reader.ReadToEndAsync();
        lock (Calls)
        {
            Calls.Add((url, auth, apiKey, body));
        }

        var token = JsonDocument.Parse(body).RootElement.GetProperty("token").GetString() ?? string.Empty;
        var mode = url.Split('/', StringSplitOptions.RemoveEmptyEntries)[0];
        (int Status, string Text) answer = mode switch
        {
            "deny" => (403, $"forbidden: {url}"),
            "fail" => (500, $"internal error for {auth} at {url.ToLowerInvariant()}"),
            "echo" => (422, new string('.', 190) + token + " " + JsonSerializer.Serialize(new { error = "bad token", token, apiKey, url }) + JsonSerializer.Serialize(new { token }, Relaxed)),
            _ => (200, "late"),
        };
        if (mode == "slow")
        {
            await Task.Delay(TimeSpan.FromSeconds(3));
        }

        try
        {
            ctx.Response.StatusCode = answer.Status;
            await ctx.Response.OutputStream.WriteAsync(Encoding.UTF8.GetBytes(answer.Text));
            ctx.Response.Close();
        }
        catch (HttpListenerException)
        {
            // The caller gave up (timeout).
        }
    }
}

public sealed class SecretSinkTests
{
    private static SecureString Secure(string text)
    {
        var s = new SecureString();
        foreach (var c in text)
        {
            s.AppendChar(c);
        }

        return s;
    }

    private static string Job(string url, int timeoutSeconds = 1, int retries = 1)
    {
        var path = Path.Combine(Path.GetTempPath(), $"dataops-secret-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            version = 1,
            name = "secret-sinks",
            parameters = new { resultsVersion = "v1.2.1" },
            items = new { discover = "SELECT id::text AS key FROM prism.sessions WHERE status = 'completed' ORDER BY id LIMIT 2" },
            throttle = new { itemsPerMinute = 0, maxConcurrency = 1 },
            capture = new[] { new { table = "prism.profiles", where = "session_id = @key::uuid" } },
            steps = new[]
            {
                new
                {
                    name = "score_prism", kind = "http", method = "POST", url,
                    headers = new Dictionary<string, string> { ["Authorization"] = "Bearer {credential:HEADER}", ["X-Api-Key"] = "{credential:HEADER}" },
                    body = new { token = "{credential:TOKEN}", session = "@key", version = "@resultsVersion" },
                    timeoutSeconds, retries,
                },
            },
            verify = "SELECT EXISTS (SELECT 1 FROM prism.profiles WHERE session_id = @key::uuid AND scores ? 'scored')",
        }));
        return path;
    }

    [Theory]
    [InlineData("p@ss/w rd\"'<é")]
    [InlineData("Tok3n+&|\\Zq>😀;%41")]
    public void An_HTTP_secret_reaches_no_sink_in_any_encoding_on_4xx_5xx_echo_timeout_and_refused(string secret)
    {
        // HTTP sends header values as ASCII only: the headers get the secret's ASCII characters, the URL path and body all of it.
        var headerSecret = new string([.. secret.Where(char.IsAscii)]) + "-H";
        var cs = TestCluster.CreateDatabaseWith("Prism");
        using var s = new PsSession();
        var setup = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null; New-PrismSampleData -Sessions 10 -Seed 3 | Out-Null", new Hashtable { ["cs"] = cs });
        Assert.False(setup.HadErrors, string.Join("\n", setup.Errors));
        using var endpoint = new EchoingEndpoint();
        var output = Directory.CreateTempSubdirectory("dataops-secret-out-").FullName;
        var logs = Directory.CreateTempSubdirectory("dataops-secret-logs-").FullName;
        var runs = new Dictionary<string, string>
        {
            ["4xx"] = $"http://127.0.0.1:{endpoint.Port}/deny/{{credential:TOKEN}}/@key",
            ["5xx"] = $"http://127.0.0.1:{endpoint.Port}/fail/{{credential:TOKEN}}/@key",
            ["echo"] = $"http://127.0.0.1:{endpoint.Port}/echo/{{credential:TOKEN}}/@key",
            ["timeout"] = $"http://127.0.0.1:{endpoint.Port}/slow/{{credential:TOKEN}}/@key",
            ["refused"] = $"http://127.0.0.1:{LoopbackEndpoint.FreePort()}/refused/{{credential:TOKEN}}/@key",
        };

        var sinks = new List<(string Sink, string Text)>();
        var previousLogDir = Environment.GetEnvironmentVariable("DATAOPS_LOG_DIR");
        Environment.SetEnvironmentVariable("DATAOPS_LOG_DIR", logs);
        try
        {
            foreach (var (name, url) in runs)
            {
                var r = s.Run("Invoke-Backfill -Job $job -OutputDirectory $out -MaxFailures 10 -Secret @{ TOKEN = $cred; HEADER = $header } -Reapply -Verbose -Debug",
                    new Hashtable { ["job"] = Job(url), ["out"] = output, ["cred"] = new PSCredential("svc", Secure(secret)), ["header"] = new PSCredential("svc", Secure(headerSecret)) });

                Assert.Equal(2, r.Output.Count);
                Assert.All(r.Output, o => Assert.Equal("Failed", o.Properties["Status"].Value.ToString()));
                Assert.All(r.Output, o => Assert.Contains("********", (string)o.Properties["Error"].Value));
                sinks.Add(($"{name}: output objects", string.Join("\n", r.Output.Select(o => o.BaseObject.ToString() + "\n" + JsonSerializer.Serialize(o.BaseObject)
                    + "\n" + string.Join("|", o.Properties.Select(p => p.Value?.ToString()))))));
                sinks.Add(($"{name}: errors", string.Join("\n", r.Errors.Select(e => e + "\n" + e.Exception + "\n" + e.TargetObject + "\n" + e.ErrorDetails?.Message))));
                sinks.Add(($"{name}: verbose", string.Join("\n", r.Verbose)));
                sinks.Add(($"{name}: warnings", string.Join("\n", r.Warnings)));
                sinks.Add(($"{name}: information", string.Join("\n", r.Information.Select(i => i.MessageData))));
                sinks.Add(($"{name}: debug (the SQL sent)", string.Join("\n", r.Debug)));
                Assert.Contains(r.Debug, d => d.StartsWith("SQL (", StringComparison.Ordinal));
            }

            var history = s.Run("Get-BackfillRun -JobName secret-sinks");
            sinks.Add(("Get-BackfillRun", string.Join("\n", history.Output.Select(o => JsonSerializer.Serialize(o.BaseObject) + "\n" + string.Join("|", o.Properties.Select(p => p.Value?.ToString()))))));
        }
        finally
        {
            Environment.SetEnvironmentVariable("DATAOPS_LOG_DIR", previousLogDir);
        }

        // The endpoint got the secret, encoded as each place needs it; the runs really went through every path.
        Assert.Contains(endpoint.Calls, c => c.Url.Contains(Uri.EscapeDataString(secret), StringComparison.Ordinal));
        Assert.All(endpoint.Calls, c => Assert.Equal("Bearer " + headerSecret, c.Auth));
        Assert.All(endpoint.Calls, c => Assert.Equal(headerSecret, c.ApiKey));
        Assert.All(endpoint.Calls, c => Assert.Equal(secret, JsonDocument.Parse(c.Body).RootElement.GetProperty("token").GetString()));
        Assert.Equal(["deny", "echo", "fail", "slow"], endpoint.Calls.Select(c => c.Url.Split('/')[1]).Distinct().Order());

        var files = Directory.GetFiles(output, "*", SearchOption.AllDirectories);
        Assert.True(files.Length >= 5 * 3, $"only {files.Length} artifact files");
        sinks.AddRange(files.Select(f => (f, File.ReadAllText(f))));
        var logFiles = Directory.GetFiles(logs, "Invoke-Backfill-*.json");
        Assert.True(logFiles.Length >= 5, $"only {logFiles.Length} run logs in DATAOPS_LOG_DIR");
        sinks.AddRange(logFiles.Select(f => (f, File.ReadAllText(f))));
        var failures = (long)Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'failed' AND error_message LIKE '%********%'")!;
        Assert.Equal(10L, failures);
        sinks.Add(("dataops.ledger", (string)Sql.Scalar(cs, "SELECT string_agg(l::text || E'\\n' || to_jsonb(l)::text, E'\\n') FROM dataops.ledger l")!));
        sinks.Add(("dataops.run", (string)Sql.Scalar(cs, "SELECT string_agg(r::text || E'\\n' || to_jsonb(r)::text, E'\\n') FROM dataops.run r")!));

        var leaks = sinks.SelectMany(sink => Encodings.FoundIn(sink.Text, secret).Concat(Encodings.FoundIn(sink.Text, headerSecret)).Select(found => $"{sink.Sink} -> {found}")).ToList();
        Assert.True(leaks.Count == 0, "The secret leaked:\n" + string.Join("\n", leaks));
    }
}
