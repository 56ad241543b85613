using System.Diagnostics;
using System.Net.Sockets;
using DataOps.Engine.Connections;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using DataOps.Engine.Schema;

namespace DataOps.Engine.Backfill;

/// <summary>One preflight check's outcome.</summary>
public sealed record PreflightCheck(string Name, bool Passed, string Detail)
{
    public override string ToString() => $"{(Passed ? "PASS" : "FAIL")} {Name}: {Detail}";
}

/// <summary>
/// Test-DataOpsEnvironment: checks everything a backfill run needs without changing anything.
/// Every check runs even when an earlier one fails, so one call lists every problem. One failure is
/// not a check but the end: a job whose query fields a read-only command refuses
/// (<see cref="ReadOnlyGuard"/>) throws QueryNotReadOnly before the server is contacted.
/// </summary>
public static class Preflight
{
    public static async Task<IReadOnlyList<PreflightCheck>> RunAsync(string jobPath, DataOpsConnection connection, IReadOnlyDictionary<string, string> credentials, CancellationToken ct)
    {
        // The job is read first: a query field a read-only command refuses (QueryNotReadOnly) stops
        // the preflight before it touches the server at all.
        BackfillJob? job = null;
        DataOpsException? unreadable = null;
        try
        {
            job = JobFile.Load(jobPath);
        }
        catch (DataOpsException ex)
        {
            unreadable = ex;
        }

        if (job is not null)
        {
            ReadOnlyGuard.EnsureJob(job);
        }

        var checks = new List<PreflightCheck>();
        var connected = false;
        try
        {
            var probe = await ConnectionTester.ProbeAsync(connection, ct).ConfigureAwait(false);
            connected = true;
            checks.Add(new PreflightCheck("Connection", true,
                $"{connection}: PostgreSQL {probe.ServerVersion}, {probe.Latency.TotalMilliseconds:0} ms, {(probe.IsReadOnly ? "read-only" : "read-write")}, {(connection.IsProduction ? "PRODUCTION" : "not production")}"));
            if (probe.IsReadOnly)
            {
                checks.Add(new PreflightCheck("Writable", false, "the server or session is read-only (a standby?): a backfill cannot write here"));
            }
        }
        catch (DataOpsException ex)
        {
            checks.Add(new PreflightCheck("Connection", false, ex.Message));
        }

        if (connected)
        {
            var installed = await SchemaInstaller.InstalledComponentsAsync(connection, ct).ConfigureAwait(false);
            checks.Add(installed.Contains(SchemaComponent.Core)
                ? new PreflightCheck("Schema", true, $"components installed: {string.Join(", ", installed)}")
                : new PreflightCheck("Schema", false, "the Core component (the backfill ledger) is not installed: Install-DataOpsSchema -Component Core"));
        }

        ValidatedJob? validated = null;
        if (job is null)
        {
            checks.Add(new PreflightCheck("JobFile", false, unreadable!.Message));
        }
        else
        {
            try
            {
                if (connected)
                {
                    validated = await JobValidator.ValidateAsync(job, connection, ct).ConfigureAwait(false);
                    checks.Add(new PreflightCheck("JobFile", true, $"'{job.Name}': {job.Steps.Count} steps, {job.Capture.Count} capture tables; every statement parses"));
                }
                else
                {
                    checks.Add(new PreflightCheck("JobFile", true, $"'{job.Name}': the structure is valid (statements not checked without a connection)"));
                }
            }
            catch (DataOpsException ex)
            {
                checks.Add(new PreflightCheck("JobFile", false, ex.Message));
            }
        }

        IReadOnlyDictionary<string, string> secrets = new Dictionary<string, string>();
        if (job is not null)
        {
            foreach (var (kind, name) in job.Steps.Where(s => s.Http is not null).SelectMany(s => HttpSteps.Texts(s.Http!)).SelectMany(HttpSteps.SecretNames).Distinct())
            {
                var set = kind == "env" ? !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(name)) : credentials.ContainsKey(name);
                checks.Add(new PreflightCheck($"Secret {{{kind}:{name}}}", set, set ? "set (value not shown)" : kind == "env" ? $"not set: set the environment variable {name}" : $"not set: pass -Secret @{{ {name} = (Get-Credential) }}"));
            }

            try
            {
                secrets = HttpSteps.ResolveSecrets(job, credentials, new SecretRedactor());
            }
            catch (DataOpsException)
            {
                // Reported per secret above.
            }

            foreach (var step in job.Steps.Where(s => s.Http is not null))
            {
                checks.Add(await EndpointAsync(step, secrets, ct).ConfigureAwait(false));
            }
        }

        if (validated is not null)
        {
            checks.AddRange(await SignalsAsync(validated, connection, ct).ConfigureAwait(false));
        }

        if (validated is not null)
        {
            try
            {
                if (await BackfillRunner.PreviewKeysetAsync(validated, connection, ct).ConfigureAwait(false) is { } walk)
                {
                    checks.Add(new PreflightCheck("Duration", true, $"a keyset walk of {walk}; chunks sized to take about {validated.Job.Keyset!.ChunkTime.TotalMilliseconds:0} ms each"));
                    return checks;
                }

                var keys = await BackfillRunner.ResolveKeysAsync(validated, connection, ct).ConfigureAwait(false);
                var perMinute = validated.Job.ItemsPerMinute;
                checks.Add(new PreflightCheck("Duration", true, perMinute == 0
                    ? $"{keys.Count} items, unthrottled"
                    : $"{keys.Count} items at {perMinute} items/minute: about {TimeSpan.FromMinutes(keys.Count / (double)perMinute):hh\\:mm\\:ss}"));
            }
            catch (DataOpsException ex)
            {
                checks.Add(new PreflightCheck("Duration", false, ex.Message));
            }
        }

        return checks;
    }

    /// <summary>
    /// Each throttle signal sampled once, read-only: a signal that cannot work here (no permission, no standby
    /// to watch) fails; one above its limit passes, saying the run would wait now.
    /// </summary>
    private static async Task<List<PreflightCheck>> SignalsAsync(ValidatedJob job, DataOpsConnection connection, CancellationToken ct)
    {
        var checks = new List<PreflightCheck>();
        if (job.Job.Signals.Count == 0)
        {
            return checks;
        }

        var tables = job.Capture.Select(c => c.QualifiedName).ToList();
        await using var conn = await Database.OpenAsync(connection, ct, readOnly: true).ConfigureAwait(false);
        foreach (var signal in job.Job.Signals)
        {
            var name = $"Signal {signal.Reason}";
            try
            {
                var r = await SignalSampler.SampleAsync(conn, signal, tables, job.Job.Parameters, null, ct).ConfigureAwait(false);
                if (signal.Kind == SignalKind.ReplicaLag && signal.Standbys.Count == 0 && r.Present.Count == 0)
                {
                    checks.Add(new PreflightCheck(name, false, $"{signal.Source}: no standby streams from this server (pg_stat_replication is empty); name the standbys to wait for in standbys, or drop the signal"));
                    continue;
                }

                var missing = r.Missing.Count > 0 ? $"; standby {string.Join(", ", r.Missing)} is not streaming{(signal.MissingHolds ? " (the run would wait)" : string.Empty)}" : string.Empty;
                checks.Add(new PreflightCheck(name, true,
                    $"{signal.Source}: now {signal.Format(r.Value)}{(r.Subject is null ? string.Empty : $" ({r.Subject})")}, limit {signal.Format(signal.Limit)}{(r.Value > signal.Limit ? ": the run would wait now" : string.Empty)}{missing}"));
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested)
            {
                checks.Add(new PreflightCheck(name, false, $"{signal.Source}: cannot be sampled: {SignalSampler.Describe(ex)}"));
                if (ex is not SignalUnusableException && conn.FullState != System.Data.ConnectionState.Open)
                {
                    break;
                }
            }
        }

        return checks;
    }

    /// <summary>Can a TCP connection reach the endpoint's host and port? Nothing is sent.</summary>
    private static async Task<PreflightCheck> EndpointAsync(StepSpec step, IReadOnlyDictionary<string, string> secrets, CancellationToken ct)
    {
        var url = step.Http!.Url;
        foreach (var (token, value) in secrets)
        {
            url = url.Replace(token, value, StringComparison.Ordinal);
        }

        if (!Uri.TryCreate(url.Replace("@", "x", StringComparison.Ordinal), UriKind.Absolute, out var uri))
        {
            return new PreflightCheck($"Endpoint {step.Name}", false, "the URL cannot be built (a secret in it is not set?)");
        }

        var watch = Stopwatch.StartNew();
        try
        {
            using var client = new TcpClient();
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(5));
            await client.ConnectAsync(uri.Host, uri.Port, timeout.Token).ConfigureAwait(false);
            return new PreflightCheck($"Endpoint {step.Name}", true, $"{uri.Scheme}://{uri.Host}:{uri.Port} reachable in {watch.ElapsedMilliseconds} ms");
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            return new PreflightCheck($"Endpoint {step.Name}", false, $"{uri.Scheme}://{uri.Host}:{uri.Port} not reachable: {(ex is OperationCanceledException ? "no answer within 5 s" : ex.Message)}");
        }
    }
}
