using Dapper;
using DataOps.Engine.Connections;
using Npgsql;

namespace DataOps.Engine.Jobs;

/// <summary>
/// Which cluster and database a connection reaches: the cluster's system identifier, the database
/// name, and the installation id Install-DataOpsSchema wrote (Core migration 0006; null before
/// Core is installed).
/// </summary>
public static class DatabaseIdentity
{
    public static async Task<(string SystemIdentifier, string Database, string? Installation)> ReadAsync(DataOpsConnection connection, CancellationToken ct)
    {
        await using var conn = await Database.OpenAsync(connection, ct, readOnly: true).ConfigureAwait(false);
        try
        {
            var database = await conn.ExecuteScalarAsync<string>(new CommandDefinition("SELECT current_database()", cancellationToken: ct)).ConfigureAwait(false);
            string system;
            try
            {
                system = await conn.ExecuteScalarAsync<string>(new CommandDefinition("SELECT system_identifier::text FROM pg_control_system()", cancellationToken: ct)).ConfigureAwait(false) ?? "unknown";
            }
            catch (PostgresException)
            {
                // pg_control_system() needs privileges some production roles lack; the database's oid and server address still tell databases apart.
                system = await conn.ExecuteScalarAsync<string>(new CommandDefinition(
                    "SELECT 'db' || (SELECT oid FROM pg_database WHERE datname = current_database()) || '@' || coalesce(host(inet_server_addr()), 'local') || ':' || current_setting('port')",
                    cancellationToken: ct)).ConfigureAwait(false) ?? "unknown";
            }

            var installation = await conn.ExecuteScalarAsync<bool>(new CommandDefinition("SELECT to_regclass('dataops.installation') IS NOT NULL", cancellationToken: ct)).ConfigureAwait(false)
                ? await conn.ExecuteScalarAsync<string?>(new CommandDefinition("SELECT installation_id::text FROM dataops.installation", cancellationToken: ct)).ConfigureAwait(false)
                : null;
            return (system, database!, installation);
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not DataOpsException)
        {
            throw Database.Translate(ex, connection);
        }
    }
}
