using System.Globalization;
using Npgsql;

namespace DataOps.Engine.Jobs;

/// <summary>
/// One reading of a signal: its value (the worst standby's lag, the largest slot's retained WAL, a
/// count), what it is about (standby, slot, tables) and the watched standbys that are missing.
/// </summary>
public sealed record SignalReading(double Value, string? Subject, IReadOnlyList<string> Missing)
{
    /// <summary>The standbys that stream now (replicaLag), for a run that watches those present at its start.</summary>
    public IReadOnlyList<string> Present { get; init; } = [];
}

/// <summary>A signal that cannot work on this database at all (no permission, a function missing): the run must not start with it.</summary>
public sealed class SignalUnusableException(string message) : Exception(message);

/// <summary>
/// Samples a <see cref="ThrottleSignal"/>: one short read-only transaction (SET TRANSACTION READ ONLY,
/// a statement timeout of a few seconds) on a connection the caller keeps, so a run's throttle, a soak
/// round and a preflight check read a signal the same way. Lag is the LSN distance from the primary's
/// current WAL position to each standby's replay position (pg_stat_replication): it stays 0 on an idle
/// primary, unlike now() - pg_last_xact_replay_timestamp(), which grows while nothing is written.
/// </summary>
public static class SignalSampler
{
    /// <summary>A sample's statement timeout: a signal the server cannot answer quickly holds the run (signal unavailable) instead of stalling it.</summary>
    public static readonly TimeSpan StatementTimeout = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Reads the signal once. <paramref name="tables"/> are the captured tables (autovacuum);
    /// <paramref name="watched"/> the standbys a replicaLag signal watches when it names none itself.
    /// Throws <see cref="SignalUnusableException"/> when the answer cannot mean anything (pg_stat_replication
    /// rows hidden for want of privilege), PostgresException and connection errors as they come.
    /// </summary>
    public static async Task<SignalReading> SampleAsync(
        NpgsqlConnection conn, ThrottleSignal signal, IReadOnlyList<string> tables, IReadOnlyDictionary<string, object?> parameters,
        IReadOnlyList<string>? watched, CancellationToken ct)
    {
        await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
        await using (var setup = new NpgsqlCommand($"SET TRANSACTION READ ONLY; SET LOCAL statement_timeout = {(int)StatementTimeout.TotalMilliseconds}", conn, tx))
        {
            await setup.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }

        try
        {
            return signal.Kind switch
            {
                SignalKind.ReplicaLag => await ReplicaLagAsync(conn, tx, signal, watched, ct).ConfigureAwait(false),
                SignalKind.Query => await QueryAsync(conn, tx, signal, parameters, ct).ConfigureAwait(false),
                _ => await ScalarAsync(conn, tx, signal, tables, ct).ConfigureAwait(false),
            };
        }
        finally
        {
            if (tx.Connection is not null)
            {
                await tx.RollbackAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
    }

    private static async Task<SignalReading> ReplicaLagAsync(NpgsqlConnection conn, NpgsqlTransaction tx, ThrottleSignal signal, IReadOnlyList<string>? watched, CancellationToken ct)
    {
        // replay_lag is NULL on an idle primary once the standby has caught up: no lag, not unknown.
        await using var cmd = new NpgsqlCommand(
            """
            SELECT application_name, state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8,
                   coalesce(extract(epoch FROM replay_lag), 0)::float8
            FROM pg_stat_replication ORDER BY application_name
            """, conn, tx);
        var rows = new List<(string Name, bool Visible, double? Bytes, double Seconds)>();
        await using (var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                rows.Add((reader.IsDBNull(0) ? string.Empty : reader.GetString(0), !reader.IsDBNull(1),
                    reader.IsDBNull(2) ? null : reader.GetDouble(2), reader.IsDBNull(3) ? 0 : reader.GetDouble(3)));
            }
        }

        if (rows.Any(r => !r.Visible))
        {
            throw new SignalUnusableException(
                "pg_stat_replication hides the standbys' state and replay position from this role; grant it pg_monitor (or pg_read_all_stats) for a replicaLag signal");
        }

        var expected = signal.Standbys.Count > 0 ? signal.Standbys : watched ?? [.. rows.Select(r => r.Name)];
        double worst = 0;
        string? subject = null;
        var missing = new List<string>();
        foreach (var name in expected.Distinct(StringComparer.Ordinal))
        {
            var row = rows.FirstOrDefault(r => r.Name == name);
            // A standby still connecting has no replay position yet: as far behind as one that is gone.
            if (row.Name is null || row.Bytes is null)
            {
                missing.Add(name);
                continue;
            }

            var value = signal.Unit == SignalUnit.Seconds ? row.Seconds : Math.Max(0, row.Bytes.Value);
            if (subject is null || value > worst)
            {
                (worst, subject) = (value, name);
            }
        }

        return new SignalReading(worst, subject, missing) { Present = [.. rows.Where(r => r.Bytes is not null).Select(r => r.Name)] };
    }

    private static async Task<SignalReading> ScalarAsync(NpgsqlConnection conn, NpgsqlTransaction tx, ThrottleSignal signal, IReadOnlyList<string> tables, CancellationToken ct)
    {
        var sql = signal.Kind switch
        {
            // Every slot counts, active or not: an abandoned slot is the one that fills the disk.
            SignalKind.RetainedWal => """
                SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)), 0)::float8,
                       (array_agg(slot_name::text ORDER BY restart_lsn))[1]
                FROM pg_replication_slots WHERE restart_lsn IS NOT NULL
                """,
            // Superuser or pg_monitor; with archive_mode off the folder is empty.
            SignalKind.ArchiveBacklog => "SELECT count(*)::float8, NULL::text FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'",
            SignalKind.Autovacuum => """
                SELECT count(*)::float8, string_agg(DISTINCT p.relid::regclass::text, ', ')
                FROM pg_stat_progress_vacuum p JOIN pg_stat_activity a ON a.pid = p.pid
                WHERE a.backend_type = 'autovacuum worker' AND p.relid = ANY (ARRAY(SELECT to_regclass(t)::oid FROM unnest(@tables::text[]) AS t))
                """,
            SignalKind.ActiveSessions => "SELECT count(*)::float8, NULL::text FROM pg_stat_activity WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid()",
            SignalKind.LockWaiters => "SELECT count(*)::float8, NULL::text FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
            _ => throw new ArgumentOutOfRangeException(nameof(signal), signal.Kind, "not a signal kind"),
        };
        await using var cmd = new NpgsqlCommand(sql, conn, tx);
        if (signal.Kind == SignalKind.Autovacuum)
        {
            cmd.Parameters.AddWithValue("tables", tables.ToArray());
        }

        await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        await reader.ReadAsync(ct).ConfigureAwait(false);
        return new SignalReading(reader.GetDouble(0), reader.IsDBNull(1) ? null : reader.GetString(1), []);
    }

    private static async Task<SignalReading> QueryAsync(NpgsqlConnection conn, NpgsqlTransaction tx, ThrottleSignal signal, IReadOnlyDictionary<string, object?> parameters, CancellationToken ct)
    {
        await using var query = BackfillSql.Batch(conn, tx, BackfillSql.Query(signal.Query!), parameters, null);
        var value = await query.ExecuteScalarAsync(ct).ConfigureAwait(false);
        // No row or NULL: nothing to wait for.
        return new SignalReading(value switch
        {
            null or DBNull => 0,
            bool b => b ? 1 : 0,
            _ => Convert.ToDouble(value, CultureInfo.InvariantCulture),
        }, null, []);
    }

    /// <summary>Whether a server error means the signal cannot work here at all (a privilege, a function or column missing, a feature off, a standby as primary).</summary>
    public static bool IsUnusable(Exception ex) =>
        ex is SignalUnusableException ||
        ex is PostgresException pg && (pg.SqlState.StartsWith("42", StringComparison.Ordinal) || pg.SqlState.StartsWith("0A", StringComparison.Ordinal) || pg.SqlState == "55000");

    /// <summary>The words for a failed sample: the server's own, or the exception's.</summary>
    public static string Describe(Exception ex) => ex is PostgresException pg ? $"{pg.SqlState}: {pg.MessageText}" : ex.Message;
}
