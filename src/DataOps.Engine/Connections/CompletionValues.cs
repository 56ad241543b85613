using Dapper;
using Npgsql;

namespace DataOps.Engine.Connections;

/// <summary>A value offered on Tab: the text to insert and a short description of what it names.</summary>
public sealed record CompletionValue(string Value, string Description);

/// <summary>
/// Values for argument completion (run ids, seed run ids, users, workflow ids, Temporal workflow ids)
/// read from a database. Tab must never hang the shell or print an error: every query runs on a
/// read-only session with a short budget for connect and query together, and any failure (server
/// down, schema missing, no rights, timeout) yields no values.
/// </summary>
public static class CompletionValues
{
    /// <summary>Connect plus query. Tab waits this long at most for a database that does not answer.</summary>
    public static readonly TimeSpan Budget = TimeSpan.FromSeconds(2);

    private const int Limit = 50;

    /// <summary>Backfill, dry-run and undo runs whose id starts with the prefix, newest first.</summary>
    public static IReadOnlyList<CompletionValue> RunIds(DataOpsConnection connection, string prefix) =>
        Query(connection, """
            SELECT run_id::text AS Value, kind || ' of ' || coalesce(job_name, '?') || ', ' || status || ', started ' || to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC' AS Description
            FROM dataops.run WHERE run_id::text LIKE @prefix ESCAPE '\' ORDER BY started_at DESC LIMIT @limit
            """, prefix);

    /// <summary>Names of jobs with recorded runs that start with the prefix, most recently run first.</summary>
    public static IReadOnlyList<CompletionValue> JobNames(DataOpsConnection connection, string prefix) =>
        Query(connection, """
            SELECT job_name AS Value, count(*) || ' runs, last ' || to_char(max(started_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC' AS Description
            FROM dataops.run WHERE job_name ILIKE @prefix ESCAPE '\' GROUP BY job_name ORDER BY max(started_at) DESC LIMIT @limit
            """, prefix);

    /// <summary>Seed runs whose id starts with the prefix, newest first.</summary>
    public static IReadOnlyList<CompletionValue> SeedRunIds(DataOpsConnection connection, string prefix) =>
        Query(connection, """
            SELECT seed_run_id::text AS Value, target_table || ': ' || coalesce(inserted_count, 0) || ' rows, ' || status || ', started ' || to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC' AS Description
            FROM dataops.seed_run WHERE seed_run_id::text LIKE @prefix ESCAPE '\' ORDER BY seed_run_id DESC LIMIT @limit
            """, prefix);

    /// <summary>Users (workflow execution creators) whose id starts with the prefix.</summary>
    public static IReadOnlyList<CompletionValue> Users(DataOpsConnection connection, string prefix) =>
        Query(connection, """
            SELECT id AS Value, coalesce(nullif(name, ''), id) || coalesce(' <' || email || '>', '') AS Description
            FROM users WHERE id ILIKE @prefix ESCAPE '\' ORDER BY id LIMIT @limit
            """, prefix);

    /// <summary>Workflows whose id or name starts with the prefix (the id is what is inserted).</summary>
    public static IReadOnlyList<CompletionValue> WorkflowIds(DataOpsConnection connection, string prefix) =>
        Query(connection, """
            SELECT id::text AS Value, name AS Description
            FROM workflows WHERE id::text LIKE @prefix ESCAPE '\' OR name ILIKE @prefix ESCAPE '\' ORDER BY name, id LIMIT @limit
            """, prefix);

    /// <summary>
    /// Temporal workflow ids that start with the prefix, most recently started first. Read through the
    /// started_at index and stopped after a few hundred matching executions, so a large table costs
    /// no more than a small one.
    /// </summary>
    public static IReadOnlyList<CompletionValue> TemporalWorkflowIds(DataOpsConnection connection, string prefix) =>
        Query(connection, """
            SELECT Value, 'last started ' || to_char(max(started_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC' AS Description
            FROM (SELECT temporal_workflow_id AS Value, started_at FROM workflow_executions
                  WHERE temporal_workflow_id LIKE @prefix ESCAPE '\' ORDER BY started_at DESC LIMIT 500) recent
            GROUP BY Value ORDER BY max(started_at) DESC LIMIT @limit
            """, prefix);

    /// <summary>The prefix as a LIKE pattern: its own %, _ and \ taken literally, anything after it.</summary>
    internal static string PrefixPattern(string prefix) =>
        prefix.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("%", "\\%", StringComparison.Ordinal).Replace("_", "\\_", StringComparison.Ordinal) + "%";

    private static IReadOnlyList<CompletionValue> Query(DataOpsConnection connection, string sql, string prefix)
    {
        var builder = new NpgsqlConnectionStringBuilder(connection.ReadOnlyConnectionString)
        {
            Timeout = (int)Budget.TotalSeconds,
            CommandTimeout = (int)Budget.TotalSeconds,
            ApplicationName = "DataOps completion",
        };
        // Not disposed here: a query abandoned at the deadline may still hold the token; its timer cancels it.
        var cts = new CancellationTokenSource(Budget);
        var work = Task.Run(async () =>
        {
            await using var conn = new NpgsqlConnection(builder.ConnectionString);
            await conn.OpenAsync(cts.Token).ConfigureAwait(false);
            var rows = await conn.QueryAsync<CompletionValue>(new CommandDefinition(sql, new { prefix = PrefixPattern(prefix), limit = Limit }, cancellationToken: cts.Token)).ConfigureAwait(false);
            return (IReadOnlyList<CompletionValue>)[.. rows];
        }, cts.Token);

        try
        {
            // The token stops the driver; the wait is the guarantee for the shell, even if the driver ignores it.
            return work.Wait(Budget + TimeSpan.FromMilliseconds(250)) ? work.Result : [];
        }
        catch (AggregateException)
        {
            return [];
        }
    }
}
