using System.Diagnostics;
using System.Security.Cryptography;
using Dapper;
using DataOps.Engine.Connections;
using DataOps.Engine.Logging;
using Npgsql;

namespace DataOps.Engine.Backfill;

/// <summary>
/// One process's place in a run worked by several workers (Invoke-Backfill -Workers, -RunId -Join;
/// migration Core/0010): the run's items wait in dataops.run_item, each worker claims the next ones
/// with FOR UPDATE SKIP LOCKED, and the process's membership row is its lease, renewed by a
/// heartbeat every <see cref="RenewEvery"/>. An item claimed by a member whose lease expired (its
/// process was killed, or lost the database for longer than <see cref="Ttl"/>) or whose process is
/// provably gone (same host) is claimed again by another member. An applied item is marked done in
/// its own transaction by dataops.claim_done(), which raises <see cref="LostState"/> when the claim
/// was taken over meanwhile, so the item rolls back there and runs once, where it was taken; the
/// ledger's unique index (Core/0005) refuses a second live application whatever happens. The rate
/// limit is the run's, not the worker's: every worker of every process asks dataops.rate_slot().
/// </summary>
internal sealed class RunQueue : IAsyncDisposable
{
    /// <summary>How long a member's claims live without a heartbeat: a killed process on another host holds its items this long.</summary>
    internal static readonly TimeSpan Ttl = TimeSpan.FromSeconds(15);

    /// <summary>Five heartbeats per TTL.</summary>
    internal static readonly TimeSpan RenewEvery = TimeSpan.FromSeconds(3);

    /// <summary>How often a worker with nothing to claim looks again while other members still hold items.</summary>
    internal static readonly TimeSpan PollEvery = TimeSpan.FromMilliseconds(500);

    /// <summary>The SQLSTATE dataops.claim_done() raises.</summary>
    internal const string LostState = "DOL02";

    /// <summary>The statement of an applied item's transaction that marks it done (binds @dataops_run, @key, @dataops_member).</summary>
    internal const string DoneInTransactionSql = "SELECT dataops.claim_done(@dataops_run, @key, @dataops_member)";

    private static readonly DateTime ProcessStartedAt = Process.GetCurrentProcess().StartTime.ToUniversalTime();

    private readonly string _connectionString;
    private readonly RunLog _log;
    private readonly CancellationTokenSource _stop = new();
    private Task? _heartbeat;
    private bool _left;

    private RunQueue(DataOpsConnection profile, Guid runId, int workers, bool coordinator, RunLog log)
    {
        (RunId, Workers, Coordinator, _log) = (runId, workers, coordinator, log);
        _connectionString = new NpgsqlConnectionStringBuilder(profile.ConnectionString) { ApplicationName = "DataOps run queue", Timeout = 10, CommandTimeout = 30 }.ConnectionString;
    }

    public Guid RunId { get; }

    /// <summary>This process's membership (its claims name it).</summary>
    public Guid MemberId { get; } = Guid.NewGuid();

    /// <summary>This process's workers.</summary>
    public int Workers { get; }

    /// <summary>Whether this process started the run (it writes the run's files and ends it).</summary>
    public bool Coordinator { get; }

    /// <summary>The items the run published.</summary>
    public int Items { get; private init; }

    /// <summary>The SHA-256 of a job file's bytes, as the queue records it: a process joins only with the same file.</summary>
    public static string JobHash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path))).ToLowerInvariant();

    /// <summary>
    /// Publishes the run's items not yet applied (in the order the run takes them) and makes this process
    /// the run's first member, all in one transaction.
    /// </summary>
    public static async Task<RunQueue> PublishAsync(DataOpsConnection profile, Guid runId, IReadOnlyList<string> keys, string jobHash, int workers, int perMinute, RunLog log, CancellationToken ct)
    {
        var queue = new RunQueue(profile, runId, workers, coordinator: true, log) { Items = keys.Count };
        await using var conn = await Database.OpenAsync(profile, ct).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
        await conn.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO dataops.run_queue (run_id, items, job_sha256, base_per_minute) VALUES (@runId, @items, @jobHash, @perMinute);
            INSERT INTO dataops.run_item (run_id, ordinal, item_key) SELECT @runId, k.n - 1, k.key FROM unnest(@keys::text[]) WITH ORDINALITY AS k(key, n);
            """, new { runId, items = keys.Count, jobHash, keys = keys.ToArray(), perMinute }, tx, cancellationToken: ct)).ConfigureAwait(false);
        await queue.InsertMemberAsync(conn, tx, ct).ConfigureAwait(false);
        await tx.CommitAsync(ct).ConfigureAwait(false);
        queue.StartHeartbeat();
        log.Information("Run {RunId}: {Items} items published for workers; this process works with {Workers} (member {Member}); others join with Invoke-Backfill -RunId {RunId} -Join",
            runId, keys.Count, workers, queue.MemberId, runId);
        return queue;
    }

    /// <summary>Joins a published run with <paramref name="workers"/> workers.</summary>
    public static async Task<RunQueue> JoinAsync(DataOpsConnection profile, Guid runId, int items, int workers, RunLog log, CancellationToken ct)
    {
        var queue = new RunQueue(profile, runId, workers, coordinator: false, log) { Items = items };
        await using var conn = await Database.OpenAsync(profile, ct).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
        await queue.InsertMemberAsync(conn, tx, ct).ConfigureAwait(false);
        await tx.CommitAsync(ct).ConfigureAwait(false);
        queue.StartHeartbeat();
        log.Information("Joined run {RunId} with {Workers} workers (member {Member})", runId, workers, queue.MemberId);
        return queue;
    }

    private Task InsertMemberAsync(NpgsqlConnection conn, NpgsqlTransaction tx, CancellationToken ct) =>
        conn.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO dataops.run_member (run_id, member_id, host_name, process_id, process_started_at, workers, coordinator, expires_at)
            VALUES (@RunId, @MemberId, @host, @pid, @started, @Workers, @Coordinator, clock_timestamp() + make_interval(secs => @ttl))
            """, new { RunId, MemberId, host = Environment.MachineName, pid = Environment.ProcessId, started = ProcessStartedAt, Workers, Coordinator, ttl = Ttl.TotalSeconds }, tx, cancellationToken: ct));

    /// <summary>Binds @dataops_member (with the lease's @dataops_run and the item's @key, for <see cref="DoneInTransactionSql"/>).</summary>
    public void Bind(NpgsqlParameterCollection parameters) =>
        parameters.AddWithValue("dataops_member", NpgsqlTypes.NpgsqlDbType.Uuid, MemberId);

    /// <summary>
    /// Claims up to <paramref name="count"/> items in the run's order: unclaimed ones, and those of a
    /// member whose lease expired or that left. Items another worker holds in a transaction are passed by.
    /// The member check is a correlated subquery, not a join: when a concurrent claim committed first, the
    /// row lock re-checks the WHERE on the row's new version, and a joined member row would still be the one
    /// found for the old version (no member), so two workers claimed the same item (measured: 1 to 4 items
    /// in 200 with 4 workers).
    /// </summary>
    public async Task<IReadOnlyList<Claim>> ClaimAsync(NpgsqlConnection conn, int count, CancellationToken ct) =>
        [.. (await conn.QueryAsync<Claim>(new CommandDefinition(
            """
            WITH c AS (
                SELECT i.ordinal FROM dataops.run_item i
                WHERE i.run_id = @RunId AND NOT i.done
                  AND (SELECT q.closed_at FROM dataops.run_queue q WHERE q.run_id = @RunId) IS NULL
                  AND (i.claimed_by IS NULL OR NOT EXISTS (
                        SELECT 1 FROM dataops.run_member m
                        WHERE m.run_id = i.run_id AND m.member_id = i.claimed_by AND m.left_at IS NULL AND m.expires_at >= clock_timestamp()))
                ORDER BY i.ordinal LIMIT @count
                FOR UPDATE SKIP LOCKED)
            UPDATE dataops.run_item i SET claimed_by = @MemberId, claimed_at = clock_timestamp(), claims = i.claims + 1
            FROM c WHERE i.run_id = @RunId AND i.ordinal = c.ordinal
            RETURNING i.item_key AS Key, i.ordinal AS Ordinal, i.claims AS Claims
            """, new { RunId, MemberId, count }, cancellationToken: ct)).ConfigureAwait(false)).OrderBy(c => c.Ordinal)];

    /// <summary>Whether the starting process closed the run's queue with items left (it stopped the run early): no more claims.</summary>
    public async Task<bool> StoppedEarlyAsync(NpgsqlConnection conn, CancellationToken ct) =>
        await conn.ExecuteScalarAsync<bool>(new CommandDefinition(
            """
            SELECT q.closed_at IS NOT NULL AND EXISTS (SELECT 1 FROM dataops.run_item i WHERE i.run_id = q.run_id AND NOT i.done)
            FROM dataops.run_queue q WHERE q.run_id = @RunId
            """, new { RunId }, cancellationToken: ct)).ConfigureAwait(false);

    /// <summary>
    /// The starting process's end: closes the queue (no worker of any process claims another item), then
    /// waits up to <paramref name="patience"/> while other live processes finish the items they hold, so
    /// the run's files can list them. True when none is left in flight.
    /// </summary>
    public async Task<bool> CloseAsync(TimeSpan patience)
    {
        var watch = Stopwatch.StartNew();
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await using var conn = new NpgsqlConnection(_connectionString);
                await conn.OpenAsync(CancellationToken.None).ConfigureAwait(false);
                await conn.ExecuteAsync("UPDATE dataops.run_queue SET closed_at = coalesce(closed_at, clock_timestamp()) WHERE run_id = @RunId", new { RunId }).ConfigureAwait(false);
                var logged = false;
                var finished = true;
                while (await OthersHoldItemsAsync(conn, CancellationToken.None).ConfigureAwait(false))
                {
                    if (watch.Elapsed > patience)
                    {
                        _log.Warning("Run {RunId}: other worker processes still hold items after {Patience}; the run's files list what the ledger has now", RunId, patience);
                        finished = false;
                        break;
                    }

                    if (!logged)
                    {
                        _log.Information("Run {RunId}: waiting for the other worker processes to finish the items they hold", RunId);
                        logged = true;
                    }

                    await Task.Delay(PollEvery).ConfigureAwait(false);
                }

                // The fence: every claim left is dropped. The UPDATE waits for an item that marked its claim done
                // and has not committed yet (it holds the row), and any later mark raises DOL02, so no item
                // commits after this: the ledger read next is the run's whole.
                await conn.ExecuteAsync(new CommandDefinition(
                    "UPDATE dataops.run_item SET claimed_by = NULL WHERE run_id = @RunId AND NOT done AND claimed_by IS NOT NULL",
                    new { RunId }, commandTimeout: WorkConnection.StatementTimeoutSeconds + 30)).ConfigureAwait(false);
                return finished;
            }
            catch (Exception ex) when (ex is NpgsqlException or IOException or TimeoutException or InvalidOperationException)
            {
                if (attempt >= 3)
                {
                    _log.Warning("Run {RunId}: could not close the run's queue: {Error}", RunId, ex.Message);
                    return false;
                }

                await Task.Delay(TimeSpan.FromMilliseconds(250 * attempt)).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Nothing to claim now: true while other live members hold items that are not done (a worker
    /// then waits, to take them over if their process dies), false when the run's items are all done
    /// or held by this process. A member on this host whose process is gone is expired here at once.
    /// </summary>
    public async Task<bool> OthersHoldItemsAsync(NpgsqlConnection conn, CancellationToken ct)
    {
        var holders = (await conn.QueryAsync<(Guid Member, string Host, int Pid, DateTime? Started)>(new CommandDefinition(
            """
            SELECT m.member_id, m.host_name, m.process_id, m.process_started_at FROM dataops.run_member m
            WHERE m.run_id = @RunId AND m.member_id <> @MemberId AND m.left_at IS NULL AND m.expires_at >= clock_timestamp()
              AND EXISTS (SELECT 1 FROM dataops.run_item i WHERE i.run_id = m.run_id AND i.claimed_by = m.member_id AND NOT i.done)
            """, new { RunId, MemberId }, cancellationToken: ct)).ConfigureAwait(false)).ToList();
        var gone = holders.Where(h => JobLease.ProcessGone(h.Host, h.Pid, h.Started)).Select(h => h.Member).ToArray();
        if (gone.Length > 0)
        {
            await conn.ExecuteAsync(new CommandDefinition(
                "UPDATE dataops.run_member SET expires_at = clock_timestamp() WHERE run_id = @RunId AND member_id = ANY(@gone)",
                new { RunId, gone }, cancellationToken: ct)).ConfigureAwait(false);
            _log.Warning("Run {RunId}: worker processes {Members} on this host are gone; their items are claimed again", RunId, string.Join(", ", gone));
        }

        return holders.Count > 0;
    }

    /// <summary>
    /// Items that ended without committing (failed, stale, a dry run's): done, so no worker claims them again in
    /// this run. On a connection of its own; if that fails the items stay claimed until this process leaves the
    /// run, and another process may then run them again (they did not commit).
    /// </summary>
    public async Task DoneAsync(IReadOnlyList<string> keys)
    {
        if (keys.Count == 0)
        {
            return;
        }

        try
        {
            await using var conn = new NpgsqlConnection(_connectionString);
            await conn.OpenAsync(CancellationToken.None).ConfigureAwait(false);
            await conn.ExecuteAsync(
                "UPDATE dataops.run_item SET done = true WHERE run_id = @RunId AND item_key = ANY(@keys) AND claimed_by = @MemberId",
                new { RunId, MemberId, keys = keys.ToArray() }).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or IOException or TimeoutException or InvalidOperationException)
        {
            _log.Warning("Run {RunId}: items {Keys} could not be marked done in the run's queue: {Error}", RunId, string.Join(", ", keys), ex.Message);
        }
    }

    /// <summary>This member's claims that are not done and not in <paramref name="inFlight"/>: freed (claimed_by NULL); how many.</summary>
    public Task<int> ReleaseIdleAsync(NpgsqlConnection conn, string[] inFlight, CancellationToken ct) =>
        conn.ExecuteAsync(new CommandDefinition(
            "UPDATE dataops.run_item SET claimed_by = NULL WHERE run_id = @RunId AND claimed_by = @MemberId AND NOT done AND NOT (item_key = ANY(@inFlight))",
            new { RunId, MemberId, inFlight }, cancellationToken: ct));

    /// <summary>The keys among <paramref name="keys"/> that this member marked done (its own items committed, not another process's).</summary>
    public async Task<HashSet<string>> DoneByThisMemberAsync(NpgsqlConnection conn, IReadOnlyList<string> keys, CancellationToken ct) =>
        (await conn.QueryAsync<string>(new CommandDefinition(
            "SELECT item_key FROM dataops.run_item WHERE run_id = @RunId AND claimed_by = @MemberId AND done AND item_key = ANY(@keys)",
            new { RunId, MemberId, keys = keys.ToArray() }, cancellationToken: ct)).ConfigureAwait(false)).ToHashSet(StringComparer.Ordinal);

    /// <summary>The run-global rate limit: how long to wait before the next item may start, at the run's rate in the database (<paramref name="perMinute"/> only if it has none).</summary>
    public async Task<TimeSpan> SlotAsync(NpgsqlConnection conn, int perMinute, CancellationToken ct)
    {
        var seconds = await conn.ExecuteScalarAsync<double?>(new CommandDefinition(
            "SELECT dataops.rate_slot(@RunId, @perMinute)", new { RunId, perMinute }, cancellationToken: ct)).ConfigureAwait(false);
        return TimeSpan.FromSeconds(seconds ?? 0);
    }

    private void StartHeartbeat() => _heartbeat = Task.Run(HeartbeatAsync, CancellationToken.None);

    private async Task HeartbeatAsync()
    {
        var stop = _stop.Token;
        var failing = false;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(RenewEvery, stop).ConfigureAwait(false);
                await using var conn = new NpgsqlConnection(_connectionString);
                await conn.OpenAsync(stop).ConfigureAwait(false);
                await conn.ExecuteAsync(new CommandDefinition(
                    "UPDATE dataops.run_member SET renewed_at = clock_timestamp(), expires_at = clock_timestamp() + make_interval(secs => @ttl) WHERE run_id = @RunId AND member_id = @MemberId AND left_at IS NULL",
                    new { RunId, MemberId, ttl = Ttl.TotalSeconds }, cancellationToken: stop)).ConfigureAwait(false);
                failing = false;
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is NpgsqlException or IOException or TimeoutException or InvalidOperationException or OperationCanceledException)
            {
                // Missed heartbeats only cost this process its claims (another member takes them; an item of
                // ours in flight then rolls back at claim_done): never a second application.
                if (!failing)
                {
                    _log.Warning("Run {RunId}: the worker heartbeat failed; retrying every {Interval}: {Error}", RunId, RenewEvery, ex.Message);
                    failing = true;
                }
            }
        }
    }

    /// <summary>Stops the heartbeat and leaves the run: the items this process still holds are free for the others at once.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_left)
        {
            return;
        }

        _left = true;
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_heartbeat is not null)
        {
            await _heartbeat.ConfigureAwait(false);
        }

        try
        {
            await using var conn = new NpgsqlConnection(_connectionString);
            await conn.OpenAsync(CancellationToken.None).ConfigureAwait(false);
            await conn.ExecuteAsync(
                """
                UPDATE dataops.run_item SET claimed_by = NULL WHERE run_id = @RunId AND claimed_by = @MemberId AND NOT done;
                UPDATE dataops.run_member SET left_at = clock_timestamp(), expires_at = clock_timestamp() WHERE run_id = @RunId AND member_id = @MemberId;
                """, new { RunId, MemberId }).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or IOException or TimeoutException or InvalidOperationException)
        {
            _log.Warning("Run {RunId}: could not leave the run's workers; this process's claims expire within {Ttl}: {Error}", RunId, Ttl, ex.Message);
        }
        finally
        {
            _stop.Dispose();
            await using var pooled = new NpgsqlConnection(_connectionString);
            NpgsqlConnection.ClearPool(pooled);
        }
    }

    /// <summary>An item a worker claimed: its key, its place in the run, and how many times it was claimed (more than once: taken over).</summary>
    internal sealed record Claim(string Key, int Ordinal, int Claims);

    /// <summary>The item's claim was taken over by another member while it ran here: it rolled back here and runs there.</summary>
    internal sealed class ClaimLostException(string key, string message) : Exception(message)
    {
        public string Key { get; } = key;
    }
}
