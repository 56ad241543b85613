using DataOps.Engine.Connections;
using Npgsql;

namespace DataOps.Engine.Backfill;

/// <summary>
/// A worker's one connection for item work; dropped after any failure, reopened on the next use.
/// Its session waits at most <paramref name="lockTimeout"/> for a row lock (55P03 then, an item
/// outcome), and the client waits longer than the server's statement timeout, so a slow or
/// blocked item ends with the server's answer on a connection still in a known state, never
/// with a client-side timeout mid-transaction.
/// </summary>
internal sealed class WorkConnection(DataOpsConnection profile, TimeSpan lockTimeout) : IAsyncDisposable
{
    /// <summary>The server-side limit of one statement of item work (set by <see cref="ItemExecutor.ItemSettingsSelect"/>).</summary>
    internal const int StatementTimeoutSeconds = 60;

    private readonly string _connectionString = WorkConnectionString(profile, lockTimeout);
    private NpgsqlConnection? _connection;

    public DataOpsConnection Profile => profile;

    public async Task<NpgsqlConnection> GetAsync(CancellationToken ct)
    {
        if (_connection is { State: System.Data.ConnectionState.Open })
        {
            return _connection;
        }

        await ResetAsync().ConfigureAwait(false);
        _connection = new NpgsqlConnection(_connectionString);
        try
        {
            await _connection.OpenAsync(ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            await ResetAsync().ConfigureAwait(false);
            throw Database.Translate(ex, profile);
        }

        return _connection;
    }

    /// <summary>Ends any transaction left open by a failure and drops the connection.</summary>
    public async Task ResetAsync()
    {
        if (_connection is not null)
        {
            try
            {
                await RollbackAsync(_connection).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException)
            {
                // A broken connection has no transaction left to end.
            }

            await _connection.DisposeAsync().ConfigureAwait(false);
            _connection = null;
        }
    }

    /// <summary>
    /// Drops the connection and closes the idle ones of the run's work pool (keyed by its lock timeout):
    /// a finished run leaves no session on the server behind it.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        await ResetAsync().ConfigureAwait(false);
        await using var pooled = new NpgsqlConnection(_connectionString);
        NpgsqlConnection.ClearPool(pooled);
    }

    /// <summary>Ends the transaction open on <paramref name="conn"/>, if the connection is still open.</summary>
    internal static async Task RollbackAsync(NpgsqlConnection conn)
    {
        if (conn.State == System.Data.ConnectionState.Open)
        {
            await using var rollback = new NpgsqlCommand("ROLLBACK", conn);
            await rollback.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    private static string WorkConnectionString(DataOpsConnection profile, TimeSpan lockTimeout)
    {
        var builder = new NpgsqlConnectionStringBuilder(profile.BatchConnectionString) { CommandTimeout = StatementTimeoutSeconds + 15 };
        var ms = (long)Math.Ceiling(lockTimeout.TotalMilliseconds);
        builder.Options = $"{builder.Options} -c lock_timeout={ms.ToString(System.Globalization.CultureInfo.InvariantCulture)}".Trim();
        return builder.ConnectionString;
    }
}
