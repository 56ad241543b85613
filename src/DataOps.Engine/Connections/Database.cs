using System.Net.Sockets;
using DataOps.Engine.Logging;
using Npgsql;

namespace DataOps.Engine.Connections;

/// <summary>Opens driver connections and turns driver failures into DataOpsExceptions without secrets.</summary>
internal static class Database
{
    public static async Task<NpgsqlConnection> OpenAsync(DataOpsConnection profile, CancellationToken ct, bool prepared = false, bool readOnly = false)
    {
        var connection = new NpgsqlConnection(readOnly ? profile.ReadOnlyConnectionString : prepared ? profile.PreparedConnectionString : profile.ConnectionString);
        try
        {
            await connection.OpenAsync(ct).ConfigureAwait(false);
            return connection;
        }
        catch (Exception ex)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            if (ex is OperationCanceledException && ct.IsCancellationRequested)
            {
                throw;
            }

            throw Translate(ex, profile);
        }
    }

    /// <summary>The primary-key columns of a table in key order (empty when it has none or does not exist).</summary>
    public static async Task<List<string>> PrimaryKeyAsync(NpgsqlConnection conn, string table, NpgsqlTransaction? tx, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand(
            """
            SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
            WHERE i.indrelid = to_regclass(@table) AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)
            """, conn, tx);
        cmd.Parameters.AddWithValue("table", table);
        var columns = new List<string>();
        await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            columns.Add(reader.GetString(0));
        }

        return columns;
    }

    /// <summary>Maps a driver or socket failure onto a stable ErrorId and kind; the message is redacted.</summary>
    /// <summary>
    /// SQLSTATEs about the session rather than the statement: the connection is gone or was not
    /// taken (class 08; 57P01 pg_terminate_backend or a fast shutdown, 57P02 a crash, 57P03 starting
    /// up or shutting down, 57P05 idle_session_timeout; 53300 no free connection slot). A new
    /// connection, later, may succeed.
    /// </summary>
    public static bool IsConnectionLevel(string sqlState) =>
        sqlState.StartsWith("08", StringComparison.Ordinal) || sqlState is "57P01" or "57P02" or "57P03" or "57P05" or "53300";

    /// <summary>An identifier as PostgreSQL quotes it: in double quotes, inner double quotes doubled.</summary>
    public static string QuoteIdentifier(string identifier) => "\"" + identifier.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";

    public static DataOpsException Translate(Exception ex, DataOpsConnection profile)
    {
        if (ex is DataOpsException d)
        {
            return d;
        }

        var redactor = new SecretRedactor();
        profile.AddSecretsTo(redactor);
        var where = profile.ToString();
        var detail = redactor.Redact(ex.Message);

        switch (ex)
        {
            case PostgresException { SqlState: "28P01" or "28000" }:
                return new DataOpsException("AuthenticationFailed", DataOpsErrorKind.AuthenticationError,
                    $"PostgreSQL at {where} refused the login for user '{profile.Username}': {detail}. Check the user name and password (pass them with -Credential).",
                    where, null);
            case PostgresException { SqlState: "3D000" }:
                return new DataOpsException("DatabaseNotFound", DataOpsErrorKind.ObjectNotFound,
                    $"The database '{profile.Database}' does not exist on {profile.Host}:{profile.Port}: {detail}.", profile.Database, null);
            case PostgresException pg when IsConnectionLevel(pg.SqlState):
                // The server is shutting down, starting up, out of connection slots, or dropped the session: try again later.
                return new DataOpsException("ConnectionFailed", DataOpsErrorKind.ConnectionError,
                    $"PostgreSQL at {where} is not taking this connection now ({pg.SqlState}: {redactor.Redact(pg.MessageText)}). It may be restarting; try again shortly.",
                    where, null);
            case PostgresException pg:
                return new DataOpsException("DatabaseError", DataOpsErrorKind.InvalidOperation,
                    $"PostgreSQL at {where} reported {pg.SqlState}: {redactor.Redact(pg.MessageText)}{(pg.Detail is { Length: > 0 } pgDetail ? " (" + redactor.Redact(pgDetail) + ")" : string.Empty)}", where, null);
            case NpgsqlException or SocketException or TimeoutException:
                {
                    var inner = ex.InnerException is null ? string.Empty : $" ({redactor.Redact(ex.InnerException.Message)})";
                    return new DataOpsException("ConnectionFailed", DataOpsErrorKind.ConnectionError,
                        $"Could not reach PostgreSQL at {profile.Host}:{profile.Port}: {detail}{inner}. Check that the server is running and that host and port are right.",
                        where, null);
                }

            default:
                return new DataOpsException("DatabaseError", DataOpsErrorKind.InvalidOperation,
                    $"Unexpected failure talking to {where}: {ex.GetType().Name}: {detail}", where, null);
        }
    }
}
