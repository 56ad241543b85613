using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.RateLimiting;
using Dapper;
using DataOps.Engine.Connections;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using DataOps.Engine.Schema;
using Npgsql;
using Polly;
using Polly.Retry;

namespace DataOps.Engine.Backfill;

/// <summary>
/// Applies a job item by item. Each item is one transaction: lock and capture the before-image,
/// run the steps, capture the after-image, verify, write the ledger row, commit. A run holds the
/// job's lease (<see cref="JobLease"/>, checked at the start of every item's transaction), so a
/// second run of the same job fails at once; items the ledger shows as applied are skipped, so a
/// re-run (after Ctrl+C or a killed process) resumes; the database refuses a second live application of a key.
/// </summary>
public static partial class BackfillRunner
{
    /// <summary>Checks what a run needs before anything runs: Core installed, the job valid against this database.</summary>
    public static async Task<ValidatedJob> PrepareAsync(BackfillJob job, DataOpsConnection connection, CancellationToken ct)
    {
        ReadOnlyGuard.EnsureJob(job);
        await RequireCoreAsync(connection, ct).ConfigureAwait(false);
        return await JobValidator.ValidateAsync(job, connection, ct).ConfigureAwait(false);
    }

    /// <summary>Core installed at this version (the job lease and the ledger's guard came with Core/0005), or SchemaMissing.</summary>
    internal static Task RequireCoreAsync(DataOpsConnection connection, CancellationToken ct) =>
        SchemaInstaller.RequireAsync(connection, ct, SchemaComponent.Core);

    /// <summary>
    /// A fingerprinted plan (from Test-ProdHealth) only runs where and when it was made: the same
    /// cluster and database (WrongDatabase), and no older than <paramref name="maxAge"/> (StalePlan).
    /// </summary>
    public static async Task VerifyPlanAsync(BackfillJob job, DataOpsConnection connection, TimeSpan maxAge, CancellationToken ct)
    {
        if (PlanFingerprint.From(job) is not { } plan)
        {
            return;
        }

        var (system, database, installation) = await DatabaseIdentity.ReadAsync(connection, ct).ConfigureAwait(false);
        if (system != plan.SystemIdentifier || database != plan.Database || installation != plan.Installation)
        {
            throw new DataOpsException("WrongDatabase", DataOpsErrorKind.InvalidOperation,
                $"The plan '{job.SourcePath}' was made for database '{plan.Database}' (system {plan.SystemIdentifier}, installation {plan.Installation ?? "none"}), not for {connection} (database '{database}', system {system}, installation {installation ?? "none"}). Run Test-ProdHealth against this database for its own plan.",
                job.SourcePath);
        }

        var age = DateTimeOffset.UtcNow - plan.GeneratedAt;
        if (age > maxAge)
        {
            throw new DataOpsException("StalePlan", DataOpsErrorKind.InvalidOperation,
                $"The plan '{job.SourcePath}' was made {age.TotalHours:0.#} hours ago ({plan.GeneratedAt:u}), more than -MaxPlanAge {maxAge}. Run Test-ProdHealth again for a fresh plan.",
                job.SourcePath);
        }
    }

    /// <summary>
    /// What a keyset job's next run would walk (read-only): the keys after the job's last committed
    /// chunk up to the largest key now, and the planner's estimate of the table's rows; null for other jobs.
    /// </summary>
    public static async Task<KeysetPreview?> PreviewKeysetAsync(ValidatedJob job, DataOpsConnection connection, CancellationToken ct)
    {
        if (job.Keyset is null)
        {
            return null;
        }

        var walk = await KeysetWalk.StartAsync(job, connection, fromStart: false, ct).ConfigureAwait(false);
        return new KeysetPreview(job.Keyset.QualifiedName, job.Keyset.KeyLabel, walk.ResumedAfter, walk.Bound, walk.EstimatedRows);
    }

    /// <summary>The keys a run would process: the job's list, or its discover query (read-only). A keyset job has none (see <see cref="PreviewKeysetAsync"/>).</summary>
    public static async Task<IReadOnlyList<string>> ResolveKeysAsync(ValidatedJob job, DataOpsConnection connection, CancellationToken ct)
    {
        if (job.Keyset is not null)
        {
            throw new InvalidOperationException("A keyset job finds its chunks as it runs; PreviewKeysetAsync describes them.");
        }

        if (job.Job.Keys is { } keys)
        {
            return keys;
        }

        // A read-only session and transaction, and the query as one statement that must return rows: discover changes nothing.
        await using var conn = await Database.OpenAsync(connection, ct, readOnly: true).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, ct).ConfigureAwait(false);
        await conn.ExecuteAsync(new CommandDefinition("SET TRANSACTION READ ONLY", transaction: tx, cancellationToken: ct)).ConfigureAwait(false);
        await using var query = BackfillSql.Batch(conn, tx, BackfillSql.Query(job.Job.DiscoverSql!), job.Job.Parameters, null);
        await using var reader = await query.ExecuteReaderAsync(ct).ConfigureAwait(false);
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

    /// <summary>
    /// Runs the job and streams one result per item. Artifacts are written even when the run stops
    /// early. The run holds the job's lease (<see cref="JobLease"/>) from its first statement to its
    /// last; losing it stops the run with BackfillLeaseLost.
    /// </summary>
    public static async IAsyncEnumerable<BackfillItemResult> RunAsync(
        ValidatedJob job, DataOpsConnection connection, BackfillOptions options, RunLog log, IOperationObserver observer,
        [EnumeratorCancellation] CancellationToken ct = default)
    {
        var name = job.Job.Name;
        if (job.Keyset is not null && (options.Keys is not null || options.Reapply))
        {
            throw new DataOpsException("KeysetOptionUnsupported", DataOpsErrorKind.InvalidArgument,
                $"The job '{name}' walks {job.Keyset.QualifiedName} by key ranges ($.items.keyset): {(options.Keys is not null ? "it finds its own items, so a list of keys cannot be given" : "-Reapply is not supported (chunks differ between runs); Undo-Backfill the earlier runs, then run the job again")}. Nothing ran.",
                name);
        }

        if (job.Keyset is not null && (options.Workers is not null || options.JoinRunId is not null))
        {
            throw new DataOpsException("KeysetOptionUnsupported", DataOpsErrorKind.InvalidArgument,
                $"The job '{name}' walks {job.Keyset.QualifiedName} by key ranges ($.items.keyset), one chunk after the other: -Workers and -Join are not supported for it. Nothing ran.",
                name);
        }

        // Each signal is sampled once before the lease: one that cannot work here stops the run before it is recorded.
        var signals = options.SignalsFor(job.Job);
        var gate = await SignalGate.StartAsync(connection, signals, job, log, ct).ConfigureAwait(false);
        try
        {
            var lease = options.JoinRunId is { } joined ? JobLease.Follow(connection, name, joined, log) : await JobLease.AcquireAsync(
                connection, name, options.DryRun ? "dryrun" : "backfill",
                JsonSerializer.Serialize(new
                {
                    jobFile = job.Job.SourcePath, job.Job.Parameters, options.ItemsPerMinute, options.MaxFailures, options.Reapply, options.DryRun, options.Workers,
                    lockTimeout = options.LockTimeoutFor(job.Job).ToString(), lockRetries = options.LockRetriesFor(job.Job),
                    signals = signals.Select(s => s.ToString()),
                }),
                Path.GetFullPath(options.OutputDirectory), log,
                holder => new DataOpsException("BackfillAlreadyRunning", DataOpsErrorKind.ResourceUnavailable,
                    $"Another run of job '{name}' is in progress on {connection}: {holder} holds the job's lease. Wait for it to finish; Get-BackfillRun -JobName {name} shows it. " +
                    $"If its process is gone, the lease expires by itself at {holder.ExpiresAt:u} (at once on its own host).",
                    name),
                ct).ConfigureAwait(false);
            await using (lease.ConfigureAwait(false))
            {
                // Losing the lease cancels the run's work (a throttled run may be waiting for its next
                // token); the cancellation then surfaces as the lease's error, not as a Ctrl+C.
                using var work = CancellationTokenSource.CreateLinkedTokenSource(ct, lease.LostToken);
                await using var items = RunLeasedAsync(job, connection, options, log, observer, lease, gate, work.Token).GetAsyncEnumerator(work.Token);
                while (true)
                {
                    try
                    {
                        if (!await items.MoveNextAsync().ConfigureAwait(false))
                        {
                            break;
                        }
                    }
                    catch (OperationCanceledException) when (lease.LostError is { } lost && !ct.IsCancellationRequested)
                    {
                        throw lost;
                    }

                    yield return items.Current;
                }
            }
        }
        finally
        {
            if (gate is not null)
            {
                await gate.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// The run under its lease: the run's state, its throttle, the executors and a scheduler; each
    /// batch of outcomes is recorded before it is reported and reviewed after, and the run ends (files,
    /// outcome, lease) on any exit.
    /// </summary>
    private static async IAsyncEnumerable<BackfillItemResult> RunLeasedAsync(
        ValidatedJob job, DataOpsConnection connection, BackfillOptions options, RunLog log, IOperationObserver observer, JobLease lease,
        SignalGate? gate, [EnumeratorCancellation] CancellationToken ct)
    {
        var run = await BackfillRunState.StartAsync(job, connection, options, lease, log, observer, ct).ConfigureAwait(false);

        // Stop-Backfill -Abort cancels the items in flight through this token (their statements are
        // cancelled on the server and roll back); the run then ends as stopped, not as a Ctrl+C.
        using var abort = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var control = new RunControl(connection, run, abort, log) { Publishes = options.JoinRunId is null };
        if (options.JoinRunId is not null)
        {
            // The starting process ended the run: this one starts nothing more (the queue is closed or empty anyway).
            lease.RunEnded = status => run.RequestStop($"stopped: the process that started the run ended it ({status})", abort: false);
        }


        // Disposed after the control's poller has stopped (the finally below), which may still set its rate.
        // The gates: the operator's control (suspend), then the signals (none without signals: nothing is sampled).
        using var throttle = Throttle.Create(options.ItemsPerMinute ?? job.Job.ItemsPerMinute, [control, .. gate is null ? [] : new IThrottleGate[] { gate }, .. options.Gates ?? []]);
        try
        {
            throttle.HoldChanged += run.Held;
            run.Throttled(throttle, gate);
            control.Start(throttle);
            var groups = GroupExecutor.For(job, options, lease, log, run.Queue);
            run.LogStart(throttle, groups);
            if (!await run.StartHooksAsync().ConfigureAwait(false))
            {
                // A required start hook failed: nothing is applied; FinishAsync ends the run failed and throws BackfillHookFailed.
                yield break;
            }

            // A required hook that fails mid-run cancels the scheduler (a throttled wait too); FinishAsync throws its error.
            using var halt = CancellationTokenSource.CreateLinkedTokenSource(abort.Token, run.Halt);
            var scheduler = new Scheduler(run, throttle, new ItemExecutor(job, connection, lease, options, log) { Waiting = run.Held, Queue = run.Queue }, groups,
                run.Queue?.Workers ?? job.Job.MaxConcurrency, connection, options.LockTimeoutFor(job.Job));
            await foreach (var batch in Observed(scheduler.RunAsync(halt.Token), run.Failed, () => abort.IsCancellationRequested && !ct.IsCancellationRequested).ConfigureAwait(false))
            {
                run.Record(batch);
                foreach (var item in batch)
                {
                    yield return item.Result;
                }

                run.Review(batch);
            }

            run.Complete();
        }
        finally
        {
            await control.DisposeAsync().ConfigureAwait(false);
            await run.FinishAsync(ct.IsCancellationRequested).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// What a process needs to join a run started with -Workers (Invoke-Backfill -RunId -Join): the run must be
    /// live (running, holding its job's lease) and have a queue; the job file (<paramref name="jobPath"/>, else the
    /// path the run recorded) must be byte for byte the one the run started with; it is validated here like any
    /// run's. The options are the run's own (rate, failures, lock waits, -Reapply, -DryRun), with this
    /// process's <paramref name="workers"/> and <paramref name="outputDirectory"/>.
    /// </summary>
    public static async Task<(ValidatedJob Job, BackfillOptions Options)> PrepareJoinAsync(
        DataOpsConnection connection, Guid runId, string? jobPath, int workers, string outputDirectory, CancellationToken ct)
    {
        await RequireCoreAsync(connection, ct).ConfigureAwait(false);
        JoinRow? row;
        await using (var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false))
        {
            row = await conn.QuerySingleOrDefaultAsync<JoinRow>(new CommandDefinition(
                """
                SELECT r.job_name AS Job, r.kind AS Kind, r.status AS Status, r.parameters::text AS Parameters, q.job_sha256 AS JobHash, q.items AS Items,
                       (jl.run_id IS NOT NULL AND jl.expires_at >= clock_timestamp()) AS Live
                FROM dataops.run r LEFT JOIN dataops.run_queue q ON q.run_id = r.run_id
                     LEFT JOIN dataops.job_lease jl ON jl.job_name = r.job_name AND jl.run_id = r.run_id
                WHERE r.run_id = @runId
                """, new { runId }, cancellationToken: ct)).ConfigureAwait(false);
        }

        if (row is null || row.Kind is not ("backfill" or "dryrun"))
        {
            throw new DataOpsException("BackfillRunNotFound", DataOpsErrorKind.ObjectNotFound,
                $"There is no backfill run {runId} on {connection}{(row is null ? string.Empty : $" (run {runId} is an {row.Kind} run)")}. Get-BackfillRun lists the runs.", runId);
        }

        if (row.JobHash is null || !row.Live || row.Status != "running")
        {
            var why = row.JobHash is null ? "it was not started with -Workers, so its items are not published for other processes"
                : row.Status != "running" ? $"it is {row.Status}" : "its job's lease has expired (its process is gone)";
            throw new DataOpsException("BackfillRunNotJoinable", DataOpsErrorKind.InvalidOperation,
                $"Run {runId} of job '{row.Job}' on {connection} cannot be joined: {why}. Start a run with Invoke-Backfill -Job FILE -Workers N, then join that one.", runId);
        }

        using var parameters = JsonDocument.Parse(row.Parameters ?? "{}");
        var root = parameters.RootElement;
        var path = jobPath ?? (root.TryGetProperty("jobFile", out var file) ? file.GetString() : null) ?? string.Empty;
        if (!File.Exists(path) || RunQueue.JobHash(path) != row.JobHash)
        {
            throw new DataOpsException("BackfillJobMismatch", DataOpsErrorKind.InvalidArgument,
                File.Exists(path)
                    ? $"The job file '{path}' is not the one run {runId} started with (its SHA-256 differs from {row.JobHash}): a process joins a run only with the same job. Give the run's job file with -Job."
                    : $"Run {runId} started with the job file '{path}', which is not on this machine. Give a copy of that file with -Job (it must be byte for byte the same).",
                path);
        }

        var job = await PrepareAsync(JobFile.Load(path), connection, ct).ConfigureAwait(false);
        int? Int(string name) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : null;
        bool Bool(string name) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.True;
        return (job, new BackfillOptions
        {
            JoinRunId = runId, JoinItems = row.Items ?? 0, Workers = workers, OutputDirectory = outputDirectory,
            ItemsPerMinute = Int("ItemsPerMinute"), MaxFailures = Int("MaxFailures") ?? 5, Reapply = Bool("Reapply"), DryRun = Bool("DryRun"),
            LockTimeout = root.TryGetProperty("lockTimeout", out var lt) && TimeSpan.TryParse(lt.GetString(), System.Globalization.CultureInfo.InvariantCulture, out var lockTimeout) ? lockTimeout : null,
            LockRetries = Int("lockRetries"),
        });
    }

    private sealed record JoinRow(string Job, string Kind, string Status, string? Parameters, string? JobHash, int? Items, bool Live);

    /// <summary>
    /// The items of <paramref name="source"/>, telling <paramref name="failed"/> the exception that ends
    /// it, if one does; a cancellation while <paramref name="aborted"/> says so ends it quietly (the run
    /// was aborted on purpose and records why).
    /// </summary>
    private static async IAsyncEnumerable<T> Observed<T>(IAsyncEnumerable<T> source, Action<Exception> failed, Func<bool> aborted)
    {
        await using var items = source.GetAsyncEnumerator();
        while (true)
        {
            try
            {
                if (!await items.MoveNextAsync().ConfigureAwait(false))
                {
                    yield break;
                }
            }
            catch (OperationCanceledException) when (aborted())
            {
                yield break;
            }
            catch (Exception ex)
            {
                failed(ex);
                throw;
            }

            yield return items.Current;
        }
    }

}
