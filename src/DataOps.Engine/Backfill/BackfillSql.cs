using Npgsql;

namespace DataOps.Engine.Backfill;

/// <summary>
/// Builds commands from job SQL. The key and every parameter are always bound as parameters; no
/// value is ever put into the SQL text.
/// </summary>
internal static class BackfillSql
{
    public static NpgsqlCommand Command(NpgsqlConnection conn, NpgsqlTransaction? tx, string sql, IReadOnlyDictionary<string, object?> parameters, string? key)
    {
        var cmd = new NpgsqlCommand(sql, conn, tx);
        Bind(cmd.Parameters, sql, parameters, key);
        return cmd;
    }

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

    public static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";

    /// <summary>Session settings that make to_jsonb() of a row the same text in every session (time zone, float and interval output).</summary>
    public static string StableJsonSettingsSelect(bool local = true) =>
        string.Join(", ", new[] { ("TimeZone", "UTC"), ("IntervalStyle", "postgres"), ("extra_float_digits", "1"), ("DateStyle", "ISO, MDY") }
            .Select(s => $"set_config('{s.Item1}', '{s.Item2}', {(local ? "true" : "false")})"));

    public const string StableJsonSettings = "SET LOCAL TimeZone = 'UTC'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 1; SET LOCAL DateStyle = 'ISO, MDY'";
}
