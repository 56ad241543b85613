using System.Diagnostics;
using Dapper;
using DataOps.Engine.Connections;
using DataOps.Engine.Logging;
using Npgsql;

namespace DataOps.Engine.Backfill;

/// <summary>A run recorded as abandoned when another run took its job over.</summary>
internal sealed record AbandonedRun(Guid RunId, string Kind, string? OutputDirectory, DateTime StartedAt, string Reason, string? JobFile = null);

/// <summary>Who holds a job's lease, as the lease row says.</summary>
internal sealed record LeaseHolder(Guid RunId, string HostName, int ProcessId, DateTime AcquiredAt, DateTime ExpiresAt)
{
    public override string ToString() =>
        $"run {RunId} (host {HostName}, process {ProcessId}, since {AcquiredAt:u}, lease renewed until {ExpiresAt:u})";
}

/// <summary>
/// One run per job (Invoke-Backfill, its dry runs and Undo-Backfill): the run holds the job's row
/// in dataops.job_lease (migration Core/0005). The row belongs to no connection, so an idle-session
/// timeout, pg_terminate_backend or a proxy that drops idle connections cannot lose it silently, and
/// a failed run cannot leave it behind on a pooled connection (both happened with the session
/// advisory lock this replaces). The holder renews it every <see cref="RenewEvery"/> from a
/// connection of its own that is reopened whenever it fails; a new run takes it over only when it
/// expired (<see cref="Ttl"/>), when its run is no longer 'running', or when its process is provably
/// gone (same host, that process id no longer running since the time it recorded): a crashed run is
/// taken over at once on its own machine and after the TTL from elsewhere.
/// Every item's ledger statement carries <see cref="HeldCondition"/>: it locks the row FOR SHARE if this
/// run holds it and raises <see cref="LostState"/> otherwise, so a takeover (an UPDATE of the row) waits
/// for the items that passed it, and no item of a run that lost the lease commits.
/// </summary>
internal sealed class JobLease : IAsyncDisposable
{
    /// <summary>How long a lease lives without renewal: a killed process on another host blocks its job this long.</summary>
    internal static readonly TimeSpan Ttl = TimeSpan.FromSeconds(30);

    /// <summary>Six renewals per TTL: a renewal that fails (a dropped connection) is retried well before expiry.</summary>
    internal static readonly TimeSpan RenewEvery = TimeSpan.FromSeconds(5);

    /// <summary>A process that joined another's run: told (with the run's status) when the starting process ended the run normally.</summary>
    public Action<string>? RunEnded { get; set; }

    /// <summary>How often a process that joined another's run checks that run's lease (a query, no write).</summary>
    internal static readonly TimeSpan FollowEvery = TimeSpan.FromSeconds(1);

    /// <summary>The SQLSTATE dataops.lease_lost() raises.</summary>
    internal const string LostState = "DOL01";

    private static readonly DateTime ProcessStartedAt = Process.GetCurrentProcess().StartTime.ToUniversalTime();

    /// <summary>
    /// The runs of this process that hold a lease and have not ended. A lease row naming this process
    /// and a run not in here belongs to a run that ended without recording it (the database was
    /// unreachable as it ended): its holder is gone, like a killed process's.
    /// </summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Guid, byte> Active = new();

    private readonly DataOpsConnection _profile;
    private readonly string _renewalConnectionString;
    private readonly RunLog _log;
    private readonly CancellationTokenSource _lost = new();
    private readonly CancellationTokenSource _stopRenewing = new();
    private Task? _renewer;
    private DataOpsException? _lostError;
    private bool _ended;

    /// <summary>A process that joined another process's run: it watches the lease but neither renews nor ends it.</summary>
    private bool _follower;

    private JobLease(DataOpsConnection profile, string job, Guid runId, RunLog log)
    {
        _profile = profile;
        Job = job;
        RunId = runId;
        _log = log;

        // A new physical connection for each renewal (one every 5 s), never a pooled or kept one: a
        // connection dropped while idle (idle_session_timeout, a proxy, pg_terminate_backend) would
        // fail the renewal it is handed to. The command timeout outlasts the longest item (60 s
        // statement timeout): a renewal waiting for this run's own item keeps its place in the row's
        // lock queue ahead of any takeover that arrives later.
        _renewalConnectionString = new NpgsqlConnectionStringBuilder(profile.ConnectionString)
        {
            Pooling = false, Timeout = 10, CommandTimeout = 75, ApplicationName = "DataOps job lease",
        }.ConnectionString;
    }

    public string Job { get; }

    /// <summary>The run that holds the lease (its dataops.run row was inserted with it).</summary>
    public Guid RunId { get; }

    /// <summary>Runs of the job this acquisition found 'running' without a lease and recorded as abandoned.</summary>
    public IReadOnlyList<AbandonedRun> Abandoned { get; private init; } = [];

    /// <summary>Cancelled when the renewal finds another run holding the lease.</summary>
    public CancellationToken LostToken => _lost.Token;

    /// <summary>Set once the run has lost the lease: the error it stops with.</summary>
    public DataOpsException? LostError => Volatile.Read(ref _lostError);

    /// <summary>
    /// True if this run holds the job's lease; otherwise dataops.lease_lost() raises. With
    /// <paramref name="lockRow"/> (write transactions) it locks the lease row FOR SHARE until COMMIT,
    /// which a takeover's UPDATE waits for; the read-only capture before an HTTP call checks without
    /// the lock. One primary-key lookup; the PL/pgSQL function is only called when the lease is lost.
    /// It sits in the WHERE of an item's ledger INSERT rather than in a statement of its own: on the
    /// server-side group path (about 100 us of server time per item) a separate statement per item
    /// cost more than the lookup itself. Binds @dataops_job and @dataops_run.
    /// </summary>
    internal static string HeldCondition(bool lockRow = true) =>
        $"CASE WHEN EXISTS (SELECT 1 FROM dataops.job_lease WHERE job_name = @dataops_job AND run_id = @dataops_run{(lockRow ? " FOR SHARE" : string.Empty)}) THEN true ELSE dataops.lease_lost(@dataops_job, @dataops_run) END";

    /// <summary><see cref="HeldCondition"/> as a statement of its own.</summary>
    internal static string CheckSql(bool lockRow = true) => "SELECT " + HeldCondition(lockRow);

    /// <summary>Binds the parameters of <see cref="CheckSql"/>.</summary>
    internal void Bind(NpgsqlParameterCollection parameters)
    {
        parameters.AddWithValue("dataops_job", NpgsqlTypes.NpgsqlDbType.Text, Job);
        parameters.AddWithValue("dataops_run", NpgsqlTypes.NpgsqlDbType.Uuid, RunId);
    }

    /// <summary>
    /// Inserts the run's dataops.run row and takes the job's lease in one transaction, or throws the
    /// error <paramref name="refused"/> makes from the live holder (and nothing is inserted). Runs of
    /// the job still marked 'running' hold no lease (this one does now): they are marked stopped.
    /// </summary>
    public static async Task<JobLease> AcquireAsync(
        DataOpsConnection profile, string job, string kind, string parameters, string? outputDirectory, RunLog log,
        Func<LeaseHolder, DataOpsException> refused, CancellationToken ct)
    {
        var runId = Guid.NewGuid();
        for (var attempt = 1; ; attempt++)
        {
            await using var conn = await Database.OpenAsync(profile, ct).ConfigureAwait(false);
            await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
            var current = await conn.QuerySingleOrDefaultAsync<LeaseRow>(new CommandDefinition(
                $"""
                SELECT l.run_id AS RunId, l.host_name AS HostName, l.process_id AS ProcessId, l.process_started_at AS ProcessStartedAt,
                       l.acquired_at AS AcquiredAt, l.expires_at AS ExpiresAt, l.expires_at < clock_timestamp() AS Expired, {LedgerStore.RunStatusOf("l.run_id")} AS RunStatus
                FROM dataops.job_lease l WHERE l.job_name = @job
                """, new { job }, tx, cancellationToken: ct)).ConfigureAwait(false);
            Guid? takeFrom = null;
            var gone = false;
            string? why = null;
            if (current is not null)
            {
                var goneWhy = HolderGone(current.RunId, current.HostName, current.ProcessId, current.ProcessStartedAt);
                gone = goneWhy is not null;
                if (!current.Expired && current.RunStatus == "running" && !gone)
                {
                    throw refused(current.Holder);
                }

                takeFrom = current.RunId;
                why = current.Expired ? $"its lease expired at {current.ExpiresAt:u} without renewal" : goneWhy ?? $"that run is {current.RunStatus ?? "deleted"}";
                log.Information("Taking over the lease of job {Job} from run {Holder}: {Why}", job, current.RunId, why);
            }

            await LedgerStore.InsertRunAsync(conn, tx, runId, kind, job, parameters, outputDirectory, ct).ConfigureAwait(false);

            // Compare-and-swap: the holder seen above, and still expired, finished or gone now that the
            // row is locked (ON CONFLICT re-checks the WHERE on the row's latest version, after any
            // item of that run in flight committed and any renewal of it). No row: someone else won.
            var took = await conn.ExecuteScalarAsync<Guid?>(new CommandDefinition(
                $"""
                INSERT INTO dataops.job_lease AS l (job_name, run_id, host_name, process_id, process_started_at, expires_at)
                VALUES (@job, @runId, @host, @pid, @started, clock_timestamp() + make_interval(secs => @ttl))
                ON CONFLICT (job_name) DO UPDATE SET run_id = EXCLUDED.run_id, host_name = EXCLUDED.host_name, process_id = EXCLUDED.process_id,
                    process_started_at = EXCLUDED.process_started_at, acquired_at = now(), renewed_at = now(), expires_at = EXCLUDED.expires_at
                WHERE l.run_id = @takeFrom
                  AND (l.expires_at < clock_timestamp() OR @gone
                       OR {LedgerStore.RunStatusOf("l.run_id")} IS DISTINCT FROM 'running')
                RETURNING run_id
                """,
                new { job, runId, host = Environment.MachineName, pid = Environment.ProcessId, started = ProcessStartedAt, ttl = Ttl.TotalSeconds, takeFrom, gone },
                tx, cancellationToken: ct)).ConfigureAwait(false);
            if (took is null)
            {
                await tx.RollbackAsync(CancellationToken.None).ConfigureAwait(false);
                if (attempt < 3)
                {
                    continue;
                }

                throw new DataOpsException("BackfillAlreadyRunning", DataOpsErrorKind.ResourceUnavailable,
                    $"Other runs of job '{job}' kept taking its lease on {profile}; try again.", job);
            }

            // Runs still 'running' hold no lease now: their process or their database went away before
            // they recorded an outcome. Abandoned, with why; the new run completes their files.
            var abandoned = await LedgerStore.MarkAbandonedAsync(conn, tx, job, runId, takeFrom, why ?? "its process ended", ct).ConfigureAwait(false);
            await tx.CommitAsync(ct).ConfigureAwait(false);
            foreach (var a in abandoned)
            {
                log.Warning("Run {RunId} of job {Job} was {Reason}", a.RunId, job, a.Reason);
            }

            Active[runId] = 0;
            var lease = new JobLease(profile, job, runId, log) { Abandoned = abandoned };
            lease._renewer = Task.Run(lease.RenewLoopAsync, CancellationToken.None);
            return lease;
        }
    }

    /// <summary>
    /// The lease of a run another process started and this one joined (Invoke-Backfill -RunId -Join): it is checked
    /// every <see cref="RenewEvery"/> and in every item's transaction, like the holder's, but only the holder renews
    /// and ends it. When the holder's process dies the lease expires (or is taken over) and this process stops too.
    /// </summary>
    public static JobLease Follow(DataOpsConnection profile, string job, Guid runId, RunLog log)
    {
        var lease = new JobLease(profile, job, runId, log) { _follower = true };
        lease._renewer = Task.Run(lease.RenewLoopAsync, CancellationToken.None);
        return lease;
    }

    /// <summary>
    /// The run found the lease lost (an item's check raised <see cref="LostState"/>, or a renewal found
    /// another holder): remembers why and returns the error the run stops with.
    /// </summary>
    public DataOpsException MarkLost(string detail)
    {
        var error = new DataOpsException("BackfillLeaseLost", DataOpsErrorKind.ResourceUnavailable,
            $"Run {RunId} of job '{Job}' on {_profile} lost the job's lease and stopped: {detail}. Items it committed before stay applied and in its artifacts; " +
            $"none was applied twice. See Get-BackfillRun -JobName {Job}; run the job again once the other run has finished (applied items are skipped).",
            Job) { RecommendedAction = $"Get-BackfillRun -JobName {Job}" };
        if (Interlocked.CompareExchange(ref _lostError, error, null) is { } first)
        {
            return first;
        }

        _log.Warning("Run {RunId} lost the lease of job {Job}: {Detail}", RunId, Job, detail);
        _lost.Cancel();
        return error;
    }

    /// <summary>
    /// Records how the run ended and releases the lease, in one transaction; retried on fresh
    /// connections. If the database cannot be reached the lease expires after <see cref="Ttl"/>.
    /// </summary>
    public async Task EndAsync(string status, string summary)
    {
        if (_ended)
        {
            return;
        }

        _ended = true;
        await StopRenewingAsync().ConfigureAwait(false);
        if (_follower)
        {
            // The run is its coordinator's to end.
            return;
        }

        try
        {
            await RecordEndAsync(status, summary).ConfigureAwait(false);
        }
        finally
        {
            Active.TryRemove(RunId, out _);
        }
    }

    private async Task RecordEndAsync(string status, string summary)
    {
        for (var attempt = 1; attempt <= 3; attempt++)
        {
            try
            {
                await using var conn = new NpgsqlConnection(_renewalConnectionString);
                await conn.OpenAsync(CancellationToken.None).ConfigureAwait(false);
                await using var tx = await conn.BeginTransactionAsync(CancellationToken.None).ConfigureAwait(false);
                await LedgerStore.EndRunAsync(conn, tx, RunId, status, summary).ConfigureAwait(false);
                await conn.ExecuteAsync("DELETE FROM dataops.job_lease WHERE job_name = @job AND run_id = @runId", new { job = Job, runId = RunId }, tx).ConfigureAwait(false);
                await tx.CommitAsync(CancellationToken.None).ConfigureAwait(false);
                return;
            }
            catch (Exception ex) when (ex is NpgsqlException or IOException or TimeoutException)
            {
                _log.Warning("Could not record the end of run {RunId} and release the lease of job {Job} (attempt {Attempt}): {Error}", RunId, Job, attempt, ex.Message);
                await Task.Delay(TimeSpan.FromMilliseconds(250 * attempt)).ConfigureAwait(false);
            }
        }

        _log.Error(null, "Run {RunId} could not release the lease of job {Job}; it expires by itself within {Ttl}", RunId, Job, Ttl);
    }

    public async ValueTask DisposeAsync()
    {
        if (!_ended)
        {
            await EndAsync("stopped", "{\"reason\": \"ended without a recorded outcome\"}").ConfigureAwait(false);
        }

        _lost.Dispose();
        _stopRenewing.Dispose();
    }

    private async Task StopRenewingAsync()
    {
        await _stopRenewing.CancelAsync().ConfigureAwait(false);
        if (_renewer is not null)
        {
            await _renewer.ConfigureAwait(false);
        }
    }

    private async Task RenewLoopAsync()
    {
        var stop = _stopRenewing.Token;
        while (!stop.IsCancellationRequested && LostError is null)
        {
            try
            {
                await Task.Delay(_follower ? FollowEvery : RenewEvery, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            // A failed renewal (the database unreachable for a moment) is retried at the next tick;
            // the lease has five more ticks before it expires.
            try
            {
                await using var conn = new NpgsqlConnection(_renewalConnectionString);
                await conn.OpenAsync(stop).ConfigureAwait(false);

                if (_follower)
                {
                    // The holder's lease, as a new run would judge it: expired, or its process gone from this host.
                    var holder = await conn.QuerySingleOrDefaultAsync<(string Host, int Pid, DateTime? Started, bool Expired)?>(new CommandDefinition(
                        "SELECT host_name, process_id, process_started_at, expires_at < clock_timestamp() FROM dataops.job_lease WHERE job_name = @job AND run_id = @runId",
                        new { job = Job, runId = RunId }, cancellationToken: stop)).ConfigureAwait(false);
                    if (holder is null && await conn.ExecuteScalarAsync<string?>(new CommandDefinition(
                            $"SELECT {LedgerStore.RunStatusOf("@runId")}", new { runId = RunId }, cancellationToken: stop)).ConfigureAwait(false) is { } status and not ("running" or "abandoned"))
                    {
                        // The process that started the run ended it and recorded how (a new run may hold the job's lease
                        // already): nothing was taken from this one.
                        RunEnded?.Invoke(status);
                        return;
                    }

                    var why = holder is not { } h ? await HolderAsync(conn, stop).ConfigureAwait(false)
                        : h.Expired ? "the lease of the process that started the run expired"
                        : ProcessGone(h.Host, h.Pid, h.Started) ? $"the process that started the run ({h.Pid} on {h.Host}) is gone"
                        : null;
                    if (why is not null)
                    {
                        MarkLost(why);
                        return;
                    }

                    continue;
                }

                // Waits for an item of this run in flight (it holds the row FOR SHARE): harmless, no
                // takeover can happen meanwhile either.
                var renewed = await conn.ExecuteAsync(new CommandDefinition(
                        "UPDATE dataops.job_lease SET expires_at = clock_timestamp() + make_interval(secs => @ttl), renewed_at = clock_timestamp() WHERE job_name = @job AND run_id = @runId",
                        new { job = Job, runId = RunId, ttl = Ttl.TotalSeconds }, cancellationToken: stop)).ConfigureAwait(false);
                if (renewed == 0)
                {
                    MarkLost(await HolderAsync(conn, stop).ConfigureAwait(false));
                    return;
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is NpgsqlException or IOException or TimeoutException or InvalidOperationException or OperationCanceledException)
            {
                _log.Warning("Renewing the lease of job {Job} failed; retrying in {Interval}: {Error}", Job, RenewEvery, ex.Message);
            }
        }
    }

    private async Task<string> HolderAsync(NpgsqlConnection conn, CancellationToken ct)
    {
        var holder = await conn.QuerySingleOrDefaultAsync<LeaseRow>(new CommandDefinition(
            """
            SELECT run_id AS RunId, host_name AS HostName, process_id AS ProcessId, process_started_at AS ProcessStartedAt,
                   acquired_at AS AcquiredAt, expires_at AS ExpiresAt, false AS Expired, NULL::text AS RunStatus
            FROM dataops.job_lease WHERE job_name = @job
            """, new { job = Job }, cancellationToken: ct)).ConfigureAwait(false);
        return holder is null ? "no run holds the lease any more" : $"{holder.Holder} holds it now";
    }

    /// <summary>
    /// Why the run holding a lease is provably gone, or null: its process on this host is no longer
    /// running, or it is this process and the run has ended here (without recording it).
    /// </summary>
    internal static string? HolderGone(Guid runId, string host, int pid, DateTime? startedAt)
    {
        if (string.Equals(host, Environment.MachineName, StringComparison.OrdinalIgnoreCase) && pid == Environment.ProcessId
            && (startedAt is not { } s || Math.Abs((ProcessStartedAt - DateTime.SpecifyKind(s, DateTimeKind.Utc)).TotalSeconds) <= 2))
        {
            return Active.ContainsKey(runId) ? null : $"it ended in this process ({pid} on {host}) while the database could not be reached";
        }

        return ProcessGone(host, pid, startedAt) ? $"its process {pid} on {host} is gone" : null;
    }

    /// <summary>
    /// True only when the holder ran on this host and its process is no longer running (its id is
    /// free, or taken by a process started at another time). Another host's process is never judged.
    /// </summary>
    internal static bool ProcessGone(string host, int pid, DateTime? startedAt)
    {
        if (!string.Equals(host, Environment.MachineName, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        if (IsZombie(pid))
        {
            // Killed but not yet reaped (its parent was killed too and nothing reaps orphans, as in many
            // containers): the process id still exists, the process does not.
            return true;
        }

        try
        {
            using var process = Process.GetProcessById(pid);
            return process.HasExited || (startedAt is { } s && Math.Abs((process.StartTime.ToUniversalTime() - DateTime.SpecifyKind(s, DateTimeKind.Utc)).TotalSeconds) > 2);
        }
        catch (ArgumentException)
        {
            return true;
        }
        catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception or NotSupportedException)
        {
            return false;
        }
    }

    /// <summary>On Linux, whether /proc says the process is a zombie (Z) or dead (X): the state follows the last ')' of /proc/PID/stat.</summary>
    private static bool IsZombie(int pid)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var end = stat.LastIndexOf(')');
            return end > 0 && end + 2 < stat.Length && stat[end + 2] is 'Z' or 'X';
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private sealed record LeaseRow(Guid RunId, string HostName, int ProcessId, DateTime? ProcessStartedAt, DateTime AcquiredAt, DateTime ExpiresAt, bool Expired, string? RunStatus)
    {
        public LeaseHolder Holder => new(RunId, HostName, ProcessId, AcquiredAt, ExpiresAt);
    }
}
