using System.Globalization;
using DataOps.Engine.Connections;
using DataOps.Engine.Logging;
using Npgsql;

namespace DataOps.Engine.Backfill;

/// <summary>
/// The session that held an item's rows when the item could not lock them: its backend pid, its
/// current or last query (the text only, at most <see cref="LockWatch.QueryLength"/> characters and
/// redacted; pg_stat_activity never has the bound values), its state, how long its transaction has
/// been open and how long it has been in that state. <see cref="Confirmed"/>: PostgreSQL named it as
/// the blocker while the item waited (pg_blocking_pids); false: found after the wait as the oldest
/// transaction holding a write or row lock on one of the item's tables, the likely blocker.
/// </summary>
public sealed record LockBlocker(int Pid, string? Query, string? State, TimeSpan? TransactionAge, TimeSpan? StateAge, bool Confirmed)
{
    /// <summary>How the blocker reads in an item's error, the log and -Verbose.</summary>
    public override string ToString()
    {
        var state = State ?? "state unknown";
        var since = StateAge is { } s ? $" for {Format(s)}" : string.Empty;
        var open = TransactionAge is { } t ? $", transaction open {Format(t)}" : string.Empty;
        var query = string.IsNullOrWhiteSpace(Query) ? string.Empty : $": {Query}";
        return $"{(Confirmed ? "row locked by" : "rows likely locked by")} pid {Pid.ToString(CultureInfo.InvariantCulture)} ({state}{since}{open}){query}";
    }

    private static string Format(TimeSpan t) => new TimeSpan(t.Ticks - (t.Ticks % TimeSpan.TicksPerSecond)).ToString("c", CultureInfo.InvariantCulture);
}

/// <summary>
/// Finds who holds the rows an item waits for. pg_blocking_pids() answers only while the waiter
/// waits, so a one-item attempt is watched from a second, read-only connection: every half lock
/// timeout (at least <see cref="MinPeriod"/>) after the attempt starts, until it ends. An attempt that
/// ends sooner costs nothing (most do: the watch is a timer); a slow one costs one short catalog
/// query per half lock timeout, on a pooled connection. When the watch saw nothing (a lock timeout
/// shorter than the period, or the grouped path, which is not watched so that it costs nothing per
/// item), <see cref="LikelyHolderAsync"/> looks after the wait for the oldest transaction holding a
/// row or write lock on the item's tables.
/// </summary>
internal sealed class LockWatch : IAsyncDisposable
{
    /// <summary>A blocker's query is cut to this many characters.</summary>
    internal const int QueryLength = 200;

    /// <summary>The watch never looks more often than this.</summary>
    internal static readonly TimeSpan MinPeriod = TimeSpan.FromMilliseconds(50);

    private const string Columns = "a.pid, left(a.query, 1000), a.state, now() - a.xact_start, now() - a.state_change";

    internal const string BlockingSql =
        $"SELECT {Columns} FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids(@waiter)) ORDER BY a.xact_start NULLS LAST, a.pid LIMIT 1";

    /// <summary>
    /// After the wait: the oldest other transaction, open at least as long as the item waited, that holds
    /// a lock on one of the item's tables that row locks and writes take (not a plain reader's).
    /// </summary>
    internal const string LikelyHolderSql = $"""
        SELECT {Columns} FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'relation' AND l.granted AND l.relation = ANY(@tables::regclass[])
          AND l.mode <> 'AccessShareLock' AND l.pid <> pg_backend_pid() AND l.pid <> @waiter
          AND a.xact_start <= now() - @waited
        ORDER BY a.xact_start, a.pid LIMIT 1
        """;

    private readonly CancellationTokenSource _stop;
    private readonly Task _loop;

    private LockWatch(DataOpsConnection profile, int waiter, TimeSpan lockTimeout, SecretRedactor redactor, Action<LockBlocker>? seen, CancellationToken ct)
    {
        _stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var period = lockTimeout / 2 < MinPeriod ? MinPeriod : lockTimeout / 2;
        _loop = Task.Run(() => LoopAsync(profile, waiter, period, redactor, seen, _stop.Token), CancellationToken.None);
    }

    /// <summary>The blocker the watch last saw, if any.</summary>
    public LockBlocker? Blocker { get; private set; }

    /// <summary>
    /// Starts watching backend <paramref name="waiter"/> (NpgsqlConnection.ProcessID: known from the
    /// connection's start-up, no statement needed); <paramref name="seen"/> hears of each new blocker.
    /// </summary>
    public static LockWatch Start(DataOpsConnection profile, int waiter, TimeSpan lockTimeout, SecretRedactor redactor, Action<LockBlocker>? seen, CancellationToken ct) =>
        new(profile, waiter, lockTimeout, redactor, seen, ct);

    /// <summary>Stops the watch and returns what it saw.</summary>
    public async Task<LockBlocker?> StopAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _loop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Stopped mid-lookup.
        }

        return Blocker;
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _stop.Dispose();
    }

    private async Task LoopAsync(DataOpsConnection profile, int waiter, TimeSpan period, SecretRedactor redactor, Action<LockBlocker>? seen, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            await Task.Delay(period, ct).ConfigureAwait(false);
            try
            {
                await using var conn = await Database.OpenAsync(profile, ct, readOnly: true).ConfigureAwait(false);
                await using var command = new NpgsqlCommand(BlockingSql, conn);
                command.Parameters.AddWithValue("waiter", waiter);
                if (await ReadAsync(command, confirmed: true, redactor, ct).ConfigureAwait(false) is { } found)
                {
                    if (found.Pid != Blocker?.Pid)
                    {
                        seen?.Invoke(found);
                    }

                    Blocker = found;
                }
            }
            catch (Exception ex) when (ex is NpgsqlException or DataOpsException or InvalidOperationException or TimeoutException)
            {
                // Finding the blocker is a courtesy: the item's own outcome does not depend on it.
            }
        }
    }

    /// <summary>After a lock timeout the watch did not see: the likely holder of the item's rows, or null.</summary>
    public static async Task<LockBlocker?> LikelyHolderAsync(DataOpsConnection profile, IReadOnlyList<string> tables, int waiter, TimeSpan waited, SecretRedactor redactor)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await using var conn = await Database.OpenAsync(profile, timeout.Token, readOnly: true).ConfigureAwait(false);
            await using var command = new NpgsqlCommand(LikelyHolderSql, conn);
            command.Parameters.AddWithValue("tables", tables.ToArray());
            command.Parameters.AddWithValue("waiter", waiter);
            command.Parameters.AddWithValue("waited", waited);
            return await ReadAsync(command, confirmed: false, redactor, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or DataOpsException or InvalidOperationException or TimeoutException or OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>
    /// The text of the blocker's statement as errors, the ledger and the logs show it: never its parameters
    /// (pg_stat_activity has none), the literal of a PASSWORD clause masked (CREATE/ALTER ROLE ... PASSWORD '...',
    /// the way a statement carries a secret in its own text), then redacted like every sink, on one line, cut to
    /// <see cref="QueryLength"/> characters. Masked before it is cut, so a cut never leaves part of a secret that
    /// the redactor no longer recognises.
    /// </summary>
    internal static string QueryText(string query, SecretRedactor redactor)
    {
        var text = redactor.Redact(Queries.AdHocQuery.SafeText(query)).ReplaceLineEndings(" ").Trim();
        return text.Length > QueryLength ? string.Concat(text.AsSpan(0, QueryLength), "...") : text;
    }

    private static async Task<LockBlocker?> ReadAsync(NpgsqlCommand command, bool confirmed, SecretRedactor redactor, CancellationToken ct)
    {
        await using var reader = await command.ExecuteReaderAsync(ct).ConfigureAwait(false);
        if (!await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            return null;
        }

        var query = reader.IsDBNull(1) ? null : QueryText(reader.GetString(1), redactor);
        return new LockBlocker(
            reader.GetInt32(0), query, reader.IsDBNull(2) ? null : reader.GetString(2),
            reader.IsDBNull(3) ? null : reader.GetFieldValue<TimeSpan>(3), reader.IsDBNull(4) ? null : reader.GetFieldValue<TimeSpan>(4), confirmed);
    }
}
