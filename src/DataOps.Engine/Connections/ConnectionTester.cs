using System.Diagnostics;
using Dapper;

namespace DataOps.Engine.Connections;

/// <summary>Facts about a live connection, as read by <see cref="ConnectionTester"/>.</summary>
public sealed record ConnectionProbe(string ServerVersion, string Database, string User, bool IsReadOnly, TimeSpan Latency);

public static class ConnectionTester
{
    /// <summary>Opens the connection, reads the server's facts and records the version on the profile.</summary>
    public static async Task<ConnectionProbe> ProbeAsync(DataOpsConnection profile, CancellationToken ct = default)
    {
        var watch = Stopwatch.StartNew();
        await using var conn = await Database.OpenAsync(profile, ct).ConfigureAwait(false);
        try
        {
            var row = await conn.QuerySingleAsync<(string Version, string Db, string User, string ReadOnly)>(new CommandDefinition(
                "SELECT current_setting('server_version'), current_database(), current_user::text, current_setting('transaction_read_only')",
                cancellationToken: ct)).ConfigureAwait(false);
            watch.Stop();
            profile.ServerVersion = row.Version;
            return new ConnectionProbe(row.Version, row.Db, row.User, row.ReadOnly == "on", watch.Elapsed);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            throw Database.Translate(ex, profile);
        }
    }
}
