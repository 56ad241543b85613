using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.RateLimiting;
using Dapper;
using DataOps.Engine.Connections;
using DataOps.Engine.Logging;
using DataOps.Engine.Schema;
using Npgsql;
using Polly;
using Polly.Retry;

namespace DataOps.Engine.Backfill;

/// <summary>
/// Applies a job item by item. Each item is one transaction: lock and capture the before-image,
/// run the steps, capture the after-image, verify, write the ledger row, commit. A run holds an
/// advisory lock on the job, so a second run of the same job fails at once; items the ledger shows
/// as applied are skipped, so a re-run (after Ctrl+C or a killed process) resumes.
/// </summary>
public static class BackfillRunner
{
    private const int StatementTimeoutSeconds = 60;

    /// <summary>Checks what a run needs before anything runs: Core installed, the job valid against this database.</summary>
    public static async Task<ValidatedJob> PrepareAsync(BackfillJob job, DataOpsConnection connection, CancellationToken ct)
    {
        var installed = await SchemaInstaller.InstalledComponentsAsync(connection, ct).ConfigureAwait(false);
        if (!installed.Contains(SchemaComponent.Core))
        {
            throw new DataOpsException("SchemaMissing", DataOpsErrorKind.NotInstalled,
                $"The database {connection} lacks the Core schema component (the backfill ledger). Install it first: Install-DataOpsSchema -Component Core",
                "Core") { RecommendedAction = "Install-DataOpsSchema -Component Core" };
        }

        return await JobValidator.ValidateAsync(job, connection, ct).ConfigureAwait(false);
    }

    /// <summary>The keys a run would process: the job's list, or its discover query (read-only).</summary>
    public static async Task<IReadOnlyList<string>> ResolveKeysAsync(ValidatedJob job, DataOpsConnection connection, CancellationToken ct)
    {
        if (job.Job.Keys is { } keys)
        {
            return keys;
        }

        await using var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, ct).ConfigureAwait(false);
        await conn.ExecuteAsync(new CommandDefinition("SET TRANSACTION READ ONLY", transaction: tx, cancellationToken: ct)).ConfigureAwait(false);
        await using var cmd = BackfillSql.Command(conn, tx, job.Job.DiscoverSql!, job.Job.Parameters, null);
        await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        int ordinal;
        try
        {
            ordinal = reader.GetOrdinal("key");
        }
        catch (IndexOutOfRangeException)
        {
            throw JobFile.Invalid(job.Job.SourcePath, ["$.items.discover: the query must return a column named key."]);
        }

        var list = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            var value = reader.GetValue(ordinal);
            var key = value is DBNull ? null : Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture);
            if (key is not null && seen.Add(key))
            {
                list.Add(key);
            }
        }

        return list;
    }

    /// <summary>Runs the job and streams one result per item. Artifacts are written even when the run stops early.</summary>
    public static async IAsyncEnumerable<BackfillItemResult> RunAsync(
        ValidatedJob job, DataOpsConnection connection, BackfillOptions options, RunLog log, IOperationObserver observer,
        [EnumeratorCancellation] CancellationToken ct = default)
    {
        var name = job.Job.Name;
        await using var lockConnection = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        var locked = await lockConnection.ExecuteScalarAsync<bool>(new CommandDefinition(
            "SELECT pg_try_advisory_lock(hashtextextended('dataops.backfill:' || @name, 0))", new { name }, cancellationToken: ct)).ConfigureAwait(false);
        if (!locked)
        {
            throw new DataOpsException("BackfillAlreadyRunning", DataOpsErrorKind.ResourceUnavailable,
                $"Another run of job '{name}' is in progress on {connection} (it holds the job's advisory lock). Wait for it to finish; Get-BackfillRun -Job {name} shows it.",
                name);
        }

        // Runs left 'running' by a killed process: we hold the lock, so they are not running.
        await lockConnection.ExecuteAsync(new CommandDefinition(
            "UPDATE dataops.run SET status = 'stopped', finished_at = coalesce(finished_at, now()), summary = coalesce(summary, '{}'::jsonb) || '{\"reason\": \"process ended without finishing\"}' WHERE job_name = @name AND kind IN ('backfill', 'dryrun') AND status = 'running'",
            new { name }, cancellationToken: ct)).ConfigureAwait(false);

        var runId = await lockConnection.ExecuteScalarAsync<Guid>(new CommandDefinition(
            "INSERT INTO dataops.run (kind, job_name, host_name, user_name, parameters, output_directory) VALUES (@kind, @name, @host, @user, @parameters::jsonb, @dir) RETURNING run_id",
            new
            {
                kind = options.DryRun ? "dryrun" : "backfill", name, host = Environment.MachineName, user = Environment.UserName,
                parameters = JsonSerializer.Serialize(new { jobFile = job.Job.SourcePath, job.Job.Parameters, options.ItemsPerMinute, options.MaxFailures, options.Force, options.DryRun }),
                dir = Path.GetFullPath(options.OutputDirectory),
            }, cancellationToken: ct)).ConfigureAwait(false);

        var keys = options.Keys ?? await ResolveKeysAsync(job, connection, ct).ConfigureAwait(false);
        var applied = options.Force || options.DryRun ? [] : await AppliedKeysAsync(lockConnection, name, ct).ConfigureAwait(false);
        var artifacts = new BackfillArtifacts(options.OutputDirectory, job.Job, runId, connection.ToString(), job.Job.BatchSize);
        var perMinute = options.ItemsPerMinute ?? job.Job.ItemsPerMinute;
        using var limiter = perMinute > 0
            ? new TokenBucketRateLimiter(new TokenBucketRateLimiterOptions
            {
                TokenLimit = 1, TokensPerPeriod = 1, ReplenishmentPeriod = TimeSpan.FromMinutes(1.0 / perMinute),
                QueueLimit = 1, QueueProcessingOrder = QueueProcessingOrder.OldestFirst, AutoReplenishment = true,
            })
            : null;
        var retry = RetryPipeline(log);
        log.Information("Run {RunId} of job {Job}: {Items} items, {AlreadyApplied} already applied, {PerMinute} items/minute, output {Directory}",
            runId, name, keys.Count, applied.Count(keys.Contains), perMinute, artifacts.Directory);

        var outcome = "stopped";
        string? reason = "stopped before the end (Ctrl+C)";
        var failures = 0;
        var skipped = 0;
        var watch = Stopwatch.StartNew();
        try
        {
            for (var i = 0; i < keys.Count; i++)
            {
                var key = keys[i];
                BackfillItemResult result;
                IReadOnlyList<RestoreOp>? restore = null;
                if (applied.Contains(key))
                {
                    result = new BackfillItemResult { RunId = runId, Job = name, Key = key, Status = BackfillItemStatus.Skipped };
                    skipped++;
                }
                else
                {
                    if (limiter is not null)
                    {
                        using var lease = await limiter.AcquireAsync(1, ct).ConfigureAwait(false);
                    }

                    (result, restore) = await ApplyItemAsync(job, connection, runId, key, options.DryRun, retry, log, ct).ConfigureAwait(false);
                    if (result.Status == BackfillItemStatus.Failed)
                    {
                        failures++;
                    }
                }

                artifacts.Add(result, restore);
                var done = i + 1;
                var rate = done / Math.Max(watch.Elapsed.TotalSeconds, 1e-3);
                observer.Progress(new OperationProgress($"Backfill {name}", $"{done} of {keys.Count} items ({failures} failed)",
                    (int)(done * 100L / Math.Max(keys.Count, 1)), TimeSpan.FromSeconds((keys.Count - done) / rate), CurrentOperation: key));
                yield return result;

                if (failures >= options.MaxFailures)
                {
                    outcome = "failed";
                    reason = $"stopped after {failures} failed items (-MaxFailures {options.MaxFailures})";
                    log.Warning("Run {RunId} {Reason}", runId, reason);
                    yield break;
                }
            }

            outcome = "completed";
            reason = failures > 0 ? $"{failures} items failed" : null;
        }
        finally
        {
            observer.Progress(new OperationProgress($"Backfill {name}", "Done", Completed: true));
            artifacts.Finish(outcome, reason, options.DryRun);
            await using var end = await Database.OpenAsync(connection, CancellationToken.None).ConfigureAwait(false);
            await end.ExecuteAsync(
                "UPDATE dataops.run SET status = @outcome, finished_at = now(), summary = @summary::jsonb WHERE run_id = @runId",
                new { outcome, runId, summary = JsonSerializer.Serialize(new { reason, failures, skipped, directory = artifacts.Directory }) }).ConfigureAwait(false);
            log.Information("Run {RunId} {Outcome}; summary {Summary}", runId, outcome, artifacts.SummaryPath);
            observer.Warning(options.DryRun
                ? $"Dry run {runId} of '{name}' {outcome}: nothing was changed. Review {artifacts.SummaryPath}."
                : $"Backfill run {runId} of '{name}' {outcome} and has halted for review: read {artifacts.SummaryPath} before starting the soak. Nothing moves to the next phase by itself.");
        }
    }

    private static async Task<(BackfillItemResult, IReadOnlyList<RestoreOp>?)> ApplyItemAsync(
        ValidatedJob job, DataOpsConnection connection, Guid runId, string key, bool dryRun, ResiliencePipeline retry, RunLog log, CancellationToken ct)
    {
        var watch = Stopwatch.StartNew();
        var attempts = 0;
        try
        {
            return await retry.ExecuteAsync(async token =>
            {
                attempts++;
                await using var conn = await Database.OpenAsync(connection, token).ConfigureAwait(false);
                await using var tx = await conn.BeginTransactionAsync(token).ConfigureAwait(false);
                await conn.ExecuteAsync(new CommandDefinition($"{BackfillSql.StableJsonSettings}; SET LOCAL statement_timeout = '{StatementTimeoutSeconds}s'; SET LOCAL lock_timeout = '{StatementTimeoutSeconds}s'",
                    transaction: tx, cancellationToken: token)).ConfigureAwait(false);
                var before = await RowImages.BeforeAsync(conn, tx, job, key, token).ConfigureAwait(false);
                var rows = 0;
                foreach (var step in job.Job.Steps)
                {
                    await using var cmd = BackfillSql.Command(conn, tx, step.Sql, job.Job.Parameters, key);
                    rows += Math.Max(0, await cmd.ExecuteNonQueryAsync(token).ConfigureAwait(false));
                }

                var after = await RowImages.AfterAsync(conn, tx, job, key, before, token).ConfigureAwait(false);
                await using (var verify = BackfillSql.Command(conn, tx, job.Job.VerifySql, job.Job.Parameters, key))
                {
                    var ok = await verify.ExecuteScalarAsync(token).ConfigureAwait(false);
                    if (ok is not true)
                    {
                        throw new VerifyFailedException($"verify returned {(ok is null or DBNull ? "no row or NULL" : ok)} instead of true");
                    }
                }

                var restore = RestoreOp.ForItem(key, before, after, job.Capture);
                if (dryRun)
                {
                    await tx.RollbackAsync(CancellationToken.None).ConfigureAwait(false);
                    return (new BackfillItemResult
                    {
                        RunId = runId, Job = job.Job.Name, Key = key, Status = BackfillItemStatus.WouldApply, RowsChanged = restore.Count,
                        Duration = watch.Elapsed, Attempts = attempts,
                    }, (IReadOnlyList<RestoreOp>?)null);
                }

                await conn.ExecuteAsync(new CommandDefinition(
                    """
                    INSERT INTO dataops.ledger (run_id, job_name, item_key, status, before_image, after_image, rows_changed, attempts, started_at, finished_at, duration_ms)
                    VALUES (@runId, @job, @key, 'applied', @before::jsonb, @after::jsonb, @rows, @attempts, clock_timestamp() - make_interval(secs => @seconds), clock_timestamp(), @ms)
                    """,
                    new { runId, job = job.Job.Name, key, before = before.ToJson(), after = after.ToJson(), rows, attempts, seconds = watch.Elapsed.TotalSeconds, ms = (int)watch.ElapsedMilliseconds },
                    tx, cancellationToken: token)).ConfigureAwait(false);

                // Once the commit is sent its outcome must be known: it is never cancelled half-way.
                await tx.CommitAsync(CancellationToken.None).ConfigureAwait(false);
                return (new BackfillItemResult
                {
                    RunId = runId, Job = job.Job.Name, Key = key, Status = BackfillItemStatus.Applied, RowsChanged = rows, Duration = watch.Elapsed, Attempts = attempts,
                }, (IReadOnlyList<RestoreOp>?)restore);
            }, ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex) when (ex is not DataOpsException { Kind: DataOpsErrorKind.InvalidData })
        {
            var (category, message) = Categorise(ex, connection);
            log.Warning("Item {Key} failed ({Category}) after {Attempts} attempts: {Error}", key, category, attempts, message);
            if (!dryRun)
            {
                await RecordFailureAsync(connection, runId, job.Job.Name, key, category, message, attempts, watch.Elapsed).ConfigureAwait(false);
            }

            return (new BackfillItemResult
            {
                RunId = runId, Job = job.Job.Name, Key = key, Status = BackfillItemStatus.Failed, Duration = watch.Elapsed, Attempts = attempts,
                ErrorCategory = category, Error = message,
            }, null);
        }
    }

    private static async Task RecordFailureAsync(DataOpsConnection connection, Guid runId, string job, string key, BackfillErrorCategory category, string message, int attempts, TimeSpan elapsed)
    {
        try
        {
            await using var conn = await Database.OpenAsync(connection, CancellationToken.None).ConfigureAwait(false);
            await conn.ExecuteAsync(
                """
                INSERT INTO dataops.ledger (run_id, job_name, item_key, status, error_category, error_message, attempts, finished_at, duration_ms)
                VALUES (@runId, @job, @key, 'failed', @category, @message, @attempts, clock_timestamp(), @ms)
                """,
                new { runId, job, key, category = category.ToString(), message, attempts, ms = (int)elapsed.TotalMilliseconds }).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or DataOpsException)
        {
            // The item is rolled back either way; the artifacts still record the failure.
        }
    }

    /// <summary>Keys whose latest ledger row for this job says applied.</summary>
    private static async Task<HashSet<string>> AppliedKeysAsync(NpgsqlConnection conn, string job, CancellationToken ct)
    {
        var keys = await conn.QueryAsync<string>(new CommandDefinition(
            """
            SELECT item_key FROM (
              SELECT DISTINCT ON (item_key) item_key, status FROM dataops.ledger
              WHERE job_name = @job AND status IN ('applied', 'undone') ORDER BY item_key, ledger_id DESC) latest
            WHERE status = 'applied'
            """, new { job }, cancellationToken: ct)).ConfigureAwait(false);
        return keys.ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>Transient connection failures retry the whole item, with backoff and jitter.</summary>
    private static ResiliencePipeline RetryPipeline(RunLog log) => new ResiliencePipelineBuilder()
        .AddRetry(new RetryStrategyOptions
        {
            ShouldHandle = new PredicateBuilder().Handle<NpgsqlException>(e => e is not PostgresException && e.IsTransient)
                .Handle<DataOpsException>(e => e.Kind == DataOpsErrorKind.ConnectionError)
                .Handle<SocketException>().Handle<IOException>(),
            MaxRetryAttempts = 3,
            BackoffType = DelayBackoffType.Exponential,
            UseJitter = true,
            Delay = TimeSpan.FromMilliseconds(250),
            OnRetry = args =>
            {
                log.Warning("Transient failure ({Error}); retrying the item whole, attempt {Attempt}", args.Outcome.Exception?.Message, args.AttemptNumber + 2);
                return default;
            },
        })
        .Build();

    private static (BackfillErrorCategory, string) Categorise(Exception ex, DataOpsConnection connection) => ex switch
    {
        VerifyFailedException v => (BackfillErrorCategory.VerifyFailed, "Verify failed: " + v.Message),
        PostgresException { SqlState: var s } pg when s.StartsWith("23", StringComparison.Ordinal) => (BackfillErrorCategory.Constraint, $"{pg.SqlState}: {pg.MessageText}{(pg.ConstraintName is null ? string.Empty : $" ({pg.ConstraintName})")}"),
        PostgresException { SqlState: "57014" or "55P03" or "40P01" } pg => (BackfillErrorCategory.Timeout, $"{pg.SqlState}: {pg.MessageText}"),
        PostgresException pg => (BackfillErrorCategory.Other, $"{pg.SqlState}: {pg.MessageText}"),
        DataOpsException { Kind: DataOpsErrorKind.ConnectionError } d => (BackfillErrorCategory.ConnectionLost, d.Message),
        NpgsqlException or SocketException or IOException or TimeoutException => (BackfillErrorCategory.ConnectionLost, Database.Translate(ex, connection).Message),
        DataOpsException d => (BackfillErrorCategory.Other, d.Message),
        _ => (BackfillErrorCategory.Other, $"{ex.GetType().Name}: {ex.Message}"),
    };

    private sealed class VerifyFailedException(string message) : Exception(message);
}
