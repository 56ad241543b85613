using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Dapper;
using DataOps.Engine.Connections;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using Npgsql;

namespace DataOps.Engine.Health;

/// <summary>What Test-ProdHealth found.</summary>
public sealed record ProdHealthReport
{
    /// <summary>The database this came from; a cmdlet it is piped to acts there (binds to -Connection).</summary>
    public DataOpsConnection? Connection { get; init; }

    /// <summary>The job's name. (Not "Job": piped to Invoke-Backfill, PlanPath must be what binds to -Job.)</summary>
    public required string JobName { get; init; }

    public required string Database { get; init; }

    /// <summary>No item still needs the backfill and no check failed or errored.</summary>
    public bool Healthy { get; init; }

    public int PendingCount { get; init; }

    public required string[] PendingSample { get; init; }

    public required CheckSample[] Checks { get; init; }

    /// <summary>The mini plan (prod_mini_backfill_plan.json) when items are pending; null when healthy, and for a keyset job (its own next run takes the pending rows).</summary>
    public string? PlanPath { get; init; }

    public required string ReportPath { get; init; }

    public DateTimeOffset GeneratedAt { get; init; }

    public override string ToString() => Healthy ? $"{JobName}: healthy" : $"{JobName}: {PendingCount} pending, plan {PlanPath}";
}

/// <summary>
/// The read-only production check: discover the keys that still need the backfill, run the health
/// checks once, write prod_health_check.md, and when keys are pending a fingerprinted mini plan.
/// </summary>
public static class HealthRunner
{
    private const int DefaultSample = 20;

    public static async Task<ProdHealthReport> RunAsync(ValidatedJob job, DataOpsConnection connection, string outputDirectory, string? planPath, RunLog log, IOperationObserver observer, CancellationToken ct)
    {
        var activity = $"Test-ProdHealth {job.Job.Name}";
        observer.Progress(new OperationProgress(activity, $"Finding the items that still need the backfill on {connection}"));
        var (discover, checks, sampleSize) = Parse(job.Job);
        var now = DateTimeOffset.UtcNow;
        var (system, database, installation) = await DatabaseIdentity.ReadAsync(connection, ct).ConfigureAwait(false);

        var hashes = new Dictionary<string, string>(StringComparer.Ordinal);
        var keys = new List<string>();
        await using (var conn = await Database.OpenAsync(connection, ct, readOnly: true).ConfigureAwait(false))
        {
            try
            {
                await using var tx = await conn.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, ct).ConfigureAwait(false);
                await conn.ExecuteAsync(new CommandDefinition($"SET TRANSACTION READ ONLY; SELECT {BackfillSql.StableJsonSettingsSelect()}; SET LOCAL statement_timeout = '120s'", transaction: tx, cancellationToken: ct)).ConfigureAwait(false);
                await using (var query = BackfillSql.Batch(conn, tx, BackfillSql.Query(discover), job.Job.Parameters, null))
                await using (var reader = await query.ExecuteReaderAsync(ct).ConfigureAwait(false))
                {
                    var ordinal = reader.GetOrdinal("key");
                    while (await reader.ReadAsync(ct).ConfigureAwait(false))
                    {
                        var key = Convert.ToString(reader.GetValue(ordinal), CultureInfo.InvariantCulture);
                        if (key is not null && !hashes.ContainsKey(key))
                        {
                            keys.Add(key);
                            hashes[key] = string.Empty;
                        }
                    }
                }

                // The same rows an item's transaction would lock, read without locks and hashed the same way.
                for (var i = 0; i < keys.Count; i++)
                {
                    var key = keys[i];
                    if (i % 50 == 0)
                    {
                        observer.Progress(new OperationProgress(activity, $"Reading the rows of {keys.Count} pending items", 100 * i / keys.Count, CurrentOperation: $"item {i + 1} of {keys.Count}"));
                    }

                    var image = new ItemImage();
                    foreach (var t in job.Capture)
                    {
                        await using var select = BackfillSql.Batch(conn, tx, $"SELECT {RowImages.ImageSelect(t, forUpdate: false)}", job.Job.Parameters, key);
                        image.Tables[t.QualifiedName] = RowImages.Rows((string)(await select.ExecuteScalarAsync(ct).ConfigureAwait(false))!);
                    }

                    hashes[key] = PlanFingerprint.Hash(image, job.Capture);
                }
            }
            catch (IndexOutOfRangeException)
            {
                throw JobFile.Invalid(job.Job.SourcePath, ["$.health.discover: the query must return a column named key."]);
            }
            catch (Exception ex) when (ex is not OperationCanceledException and not DataOpsException)
            {
                throw ex is PostgresException pg
                    ? new DataOpsException("HealthQueryFailed", DataOpsErrorKind.InvalidOperation, $"The health discover query failed on {connection}: {pg.SqlState}: {pg.MessageText}", discover)
                    : Database.Translate(ex, connection);
            }
        }

        log.Information("{Pending} items still need the backfill on {Database}", keys.Count, connection.ToString());
        var samples = new List<CheckSample>();
        foreach (var check in checks)
        {
            observer.Progress(new OperationProgress(activity, "Running the health checks", CurrentOperation: check.Name));
            double? baseline = check.BaselineValue;
            CheckSample sample;
            try
            {
                if (check.BaselineQuery is not null)
                {
                    baseline = await CheckSampler.SampleAsync(connection, check.BaselineQuery, job.Job.Parameters, now, ct).ConfigureAwait(false);
                }

                var value = await CheckSampler.SampleAsync(connection, check, job.Job, now, ct).ConfigureAwait(false);
                sample = new CheckSample { Time = DateTimeOffset.UtcNow, Round = 1, Check = check.Name, Value = value, Expectation = check.Expect.ToString(), Outcome = CheckSampler.Judge(check.Expect, value, baseline), DryRun = check.DryRun };
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                sample = new CheckSample
                {
                    Time = DateTimeOffset.UtcNow, Round = 1, Check = check.Name, Expectation = check.Expect.ToString(), Outcome = SampleOutcome.Error, DryRun = check.DryRun,
                    Error = CheckSampler.Describe(ex, connection),
                };
            }

            samples.Add(sample);
        }

        var healthy = keys.Count == 0 && samples.All(s => s.DryRun || s.Outcome is SampleOutcome.Pass or SampleOutcome.NoData);
        var dir = JobPaths.RunFolder(outputDirectory, job.Job.Name, $"health_{now:yyyyMMdd-HHmmss}");
        string? plan = null;
        // A keyset job's items are key ranges found as it runs: its own next run is the plan (it resumes after its last committed chunk).
        if (keys.Count > 0 && job.Job.Keyset is null)
        {
            plan = Path.GetFullPath(planPath ?? Path.Combine(dir, "prod_mini_backfill_plan.json"));
            WritePlan(job.Job, keys, new PlanFingerprint(system, database, installation, now, hashes), plan);
        }

        var reportPath = Path.Combine(dir, "prod_health_check.md");
        ArtifactFile.WriteText(reportPath, Markdown(job.Job, connection, now, keys, sampleSize, samples, healthy, plan));
        log.Information("Health of {Job}: {Healthy}; report {Report}; plan {Plan}", job.Job.Name, healthy ? "healthy" : "action needed", reportPath, plan);
        observer.Progress(new OperationProgress(activity, "Done", Completed: true));
        return new ProdHealthReport
        {
            JobName = job.Job.Name, Database = connection.ToString(), Healthy = healthy, PendingCount = keys.Count, PendingSample = [.. keys.Take(sampleSize)],
            Checks = [.. samples], PlanPath = plan, ReportPath = reportPath, GeneratedAt = now,
        };
    }

    private static (string Discover, IReadOnlyList<CheckSpec> Checks, int SampleSize) Parse(BackfillJob job)
    {
        ReadOnlyGuard.EnsureJob(job);
        var problems = new List<string>();
        string? discover = job.DiscoverSql;
        IReadOnlyList<CheckSpec> checks = [];
        var sample = DefaultSample;
        if (job.Health is { } health)
        {
            if (health.ValueKind != JsonValueKind.Object)
            {
                problems.Add("$.health: must be an object.");
            }
            else
            {
                JobFile.Unknown(health, "$.health", ["discover", "checks", "sampleSize"], problems);

                if (health.TryGetProperty("discover", out var d))
                {
                    discover = d.ValueKind == JsonValueKind.String ? d.GetString() : null;
                    if (discover is null)
                    {
                        problems.Add("$.health.discover: must be a query returning a column named key.");
                    }
                    else if (SqlText.MoreThanOneStatement("$.health.discover", discover) is { } several)
                    {
                        problems.Add(several);
                    }
                    else if (BackfillJob.ParameterNames(discover).FirstOrDefault(n => !job.Parameters.ContainsKey(n)) is { } unknown)
                    {
                        problems.Add($"$.health.discover: uses @{unknown}, which $.parameters does not define.");
                    }
                }

                if (health.TryGetProperty("checks", out _))
                {
                    checks = CheckParser.ParseChecks(health, "$.health", job, problems, requireDuration: false);
                }

                if (health.TryGetProperty("sampleSize", out var ss) && (!ss.TryGetInt32(out sample) || sample < 1))
                {
                    problems.Add("$.health.sampleSize: must be a whole number of at least 1.");
                }
            }
        }

        if (discover is null && problems.Count == 0)
        {
            problems.Add("$.health.discover: required (or $.items.discover): the query that finds the keys still needing the backfill.");
        }

        if (problems.Count > 0)
        {
            throw JobFile.Invalid(job.SourcePath, problems);
        }

        return (discover!, checks, sample);
    }

    /// <summary>The job with items set to exactly the pending keys, plus the fingerprint.</summary>
    private static void WritePlan(BackfillJob job, IReadOnlyList<string> keys, PlanFingerprint fingerprint, string path)
    {
        var plan = JsonNode.Parse(JobPaths.ReadJobFile(job.SourcePath), documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true })!.AsObject();
        plan.Remove("$schema");
        plan["description"] = $"Mini plan from Test-ProdHealth for {fingerprint.Database} at {fingerprint.GeneratedAt:u}: the {keys.Count} items that still needed the backfill. {job.Description}".Trim();
        plan["items"] = new JsonObject { ["keys"] = new JsonArray([.. keys.Select(k => (JsonNode)k)]) };
        plan["fingerprint"] = JsonNode.Parse(fingerprint.ToJson().GetRawText());
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        ArtifactFile.WriteText(path, plan.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    private static string Markdown(BackfillJob job, DataOpsConnection connection, DateTimeOffset now, IReadOnlyList<string> keys, int sampleSize, IReadOnlyList<CheckSample> checks, bool healthy, string? plan)
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"# Production health: {job.Name}");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"**{(healthy ? "Healthy" : "Action needed")}**");
        sb.AppendLine();
        sb.AppendLine("| | |");
        sb.AppendLine("| --- | --- |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Database | {connection} (read-only session) |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Checked at | {now:u} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Items still needing the backfill | {keys.Count} |");
        sb.AppendLine();
        if (keys.Count > 0)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"## Pending items (first {Math.Min(sampleSize, keys.Count)} of {keys.Count})");
            sb.AppendLine();
            foreach (var k in keys.Take(sampleSize))
            {
                sb.AppendLine(CultureInfo.InvariantCulture, $"- `{k}`");
            }

            sb.AppendLine();
        }

        if (checks.Count > 0)
        {
            sb.AppendLine("## Checks");
            sb.AppendLine();
            sb.AppendLine("| check | value | expectation | outcome |");
            sb.AppendLine("| --- | --- | --- | --- |");
            foreach (var c in checks)
            {
                sb.AppendLine(CultureInfo.InvariantCulture, $"| {c.Check}{(c.DryRun ? " (dry run)" : string.Empty)} | {c.Value?.ToString("0.####", CultureInfo.InvariantCulture) ?? "-"} | {c.Expectation} | {c.Outcome}{(c.Error is null ? string.Empty : ": " + c.Error)} |");
            }

            sb.AppendLine();
        }

        sb.AppendLine("## Recommendation");
        sb.AppendLine();
        if (healthy)
        {
            sb.AppendLine("No action: nothing still needs the backfill and every check passed.");
        }
        else if (plan is not null)
        {
            sb.AppendLine("Apply exactly the pending items with the mini plan. It only runs against this database, refuses to run when older than -MaxPlanAge (24h by default), and skips any item whose rows changed since this check:");
            sb.AppendLine();
            sb.AppendLine("```powershell");
            sb.AppendLine(CultureInfo.InvariantCulture, $"Invoke-Backfill -Job '{plan}' -Connection $prod");
            sb.AppendLine("```");
        }
        else if (keys.Count > 0)
        {
            sb.AppendLine("A keyset job walks its table in key ranges found as it runs, so no mini plan is written: run the job itself; it takes the rows after its last committed chunk:");
            sb.AppendLine();
            sb.AppendLine("```powershell");
            sb.AppendLine(CultureInfo.InvariantCulture, $"Invoke-Backfill -Job '{job.SourcePath}' -Connection $prod");
            sb.AppendLine("```");
        }
        else
        {
            sb.AppendLine("Nothing is pending, but a check failed: investigate the failed checks above before going further.");
        }

        return sb.ToString();
    }
}
