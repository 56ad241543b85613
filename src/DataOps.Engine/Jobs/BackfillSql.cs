using Npgsql;

namespace DataOps.Engine.Jobs;

/// <summary>
/// Builds commands from job SQL. The key and every parameter are always bound as parameters; no
/// value is ever put into the SQL text. Job SQL always travels as one NpgsqlBatchCommand, which is
/// exactly one statement on the wire: Npgsql refuses a second statement in it when there are named
/// parameters, and PostgreSQL's extended protocol refuses one otherwise ("cannot insert multiple
/// commands into a prepared statement"). A plain NpgsqlCommand would split "COMMIT; DELETE ..." at
/// the semicolons and run every part (legacy batching).
/// </summary>
internal static class BackfillSql
{
    /// <summary>One job statement, bound, as a batch of one command.</summary>
    public static NpgsqlBatch Batch(NpgsqlConnection conn, NpgsqlTransaction? tx, string sql, IReadOnlyDictionary<string, object?> parameters, string? key)
    {
        var command = new NpgsqlBatchCommand(sql);
        Bind(command.Parameters, sql, parameters, key);
        return new NpgsqlBatch(conn, tx) { BatchCommands = { command } };
    }

    /// <summary>
    /// A query field (discover, soak and health checks, baselines) as the FROM item of our own
    /// SELECT: only a query that returns rows fits there, so SET, COMMIT, BEGIN, DML with RETURNING
    /// or a data-modifying WITH are refused by the parser before anything runs. The line break keeps
    /// a trailing -- comment from swallowing the closing parenthesis. A subquery scan keeps the
    /// inner ORDER BY's order (discover's item order).
    /// </summary>
    public static string Query(string sql) => QueryPrefix + SqlText.WithoutTrailingSemicolon(sql) + "\n) AS dataops_query";

    private const string QueryPrefix = "SELECT * FROM (\n";

    /// <summary>Characters <see cref="Query"/> puts before the field's text (to report an error position in the field's own terms).</summary>
    public static int QueryPrefixLength => QueryPrefix.Length;

    /// <summary>Binds @key and the job parameters a statement uses.</summary>
    public static void Bind(NpgsqlParameterCollection target, string sql, IReadOnlyDictionary<string, object?> parameters, string? key)
    {
        var cmd = (Parameters: target, Dummy: 0);
        var used = BackfillJob.ParameterNames(sql);
        foreach (var name in used)
        {
            if (name == "key")
            {
                cmd.Parameters.Add(new NpgsqlParameter("key", NpgsqlTypes.NpgsqlDbType.Text) { Value = (object?)key ?? DBNull.Value });
            }
            else if (name is "lo" or "hi" && !parameters.ContainsKey(name))
            {
                // A keyset job's chunk bounds (the job file refuses parameters of these names there), as text like @key.
                var bound = KeysetChunk.TryParse(key, out var chunk) ? (name == "lo" ? chunk.Lo : chunk.Hi) : key;
                cmd.Parameters.Add(new NpgsqlParameter(name, NpgsqlTypes.NpgsqlDbType.Text) { Value = (object?)bound ?? DBNull.Value });
            }
            else if (parameters.TryGetValue(name, out var value))
            {
                var p = new NpgsqlParameter(name, value ?? DBNull.Value);
                if (value is string)
                {
                    p.NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text;
                }

                cmd.Parameters.Add(p);
            }
        }
    }

    public static string Quote(string identifier) => Connections.Database.QuoteIdentifier(identifier);

    /// <summary>Session settings that make to_jsonb() of a row the same text in every session (time zone, float, interval and bytea output).</summary>
    public static string StableJsonSettingsSelect(bool local = true) =>
        string.Join(", ", new[] { ("TimeZone", "UTC"), ("IntervalStyle", "postgres"), ("extra_float_digits", "1"), ("DateStyle", "ISO, MDY"), ("bytea_output", "hex") }
            .Select(s => $"set_config('{s.Item1}', '{s.Item2}', {(local ? "true" : "false")})"));

    public const string StableJsonSettings = "SET LOCAL TimeZone = 'UTC'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 1; SET LOCAL DateStyle = 'ISO, MDY'; SET LOCAL bytea_output = 'hex'";
}
