using System.Globalization;
using System.Text;
using System.Text.Json;

namespace DataOps.Engine.Jobs;

/// <summary>
/// Refuses, before anything runs, the SQL a read-only command must not run although a READ ONLY
/// transaction would let it: functions that act on the server outside the transaction (signal or
/// terminate other sessions, take advisory locks, read or write server files, switch WAL, create
/// replication slots, reset statistics, reload the configuration, change a setting for the session),
/// functions that run SQL given to them as text (dblink, query_to_xml, crosstab, ts_stat), and
/// statements a read-only transaction still allows (LOCK, COPY ... TO a file or program, DO,
/// CHECKPOINT, ANALYZE, CLUSTER, REINDEX, LOAD, LISTEN, NOTIFY). The representatives of each group
/// were tried in a READ ONLY transaction of a default_transaction_read_only session on PostgreSQL 15
/// and ran (docs/security.md lists which); nextval() and setval() are refused by the server there,
/// so they are not listed.
///
/// The guard reads the text with <see cref="SqlText"/>'s lexer: names inside literals, comments and
/// dollar quotes are text, not calls. It sees calls by name only; a user-defined function with side
/// effects is invisible to it, which is why docs/security.md asks for a role that can only read.
/// </summary>
public static class ReadOnlyGuard
{
    public const string ErrorId = "QueryNotReadOnly";

    /// <summary>Functions refused by exact name (lower case, any schema).</summary>
    private static readonly HashSet<string> DeniedFunctions = new(StringComparer.Ordinal)
    {
        // Other sessions and the server process.
        "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "pg_rotate_logfile_old",
        "pg_log_backend_memory_contexts", "pg_promote", "pg_notify",
        // WAL and backups.
        "pg_switch_wal", "pg_switch_xlog", "pg_backup_start", "pg_backup_stop", "pg_start_backup", "pg_stop_backup",
        "pg_create_restore_point", "pg_log_standby_snapshot", "pg_wal_replay_pause", "pg_wal_replay_resume",
        "pg_xlog_replay_pause", "pg_xlog_replay_resume",
        // Replication slots and origins.
        "pg_create_physical_replication_slot", "pg_create_logical_replication_slot", "pg_drop_replication_slot",
        "pg_copy_physical_replication_slot", "pg_copy_logical_replication_slot", "pg_replication_slot_advance",
        "pg_logical_slot_get_changes", "pg_logical_slot_get_binary_changes", "pg_sync_replication_slots", "pg_logical_emit_message",
        "pg_replication_origin_create", "pg_replication_origin_drop", "pg_replication_origin_advance",
        "pg_replication_origin_session_setup", "pg_replication_origin_session_reset",
        "pg_replication_origin_xact_setup", "pg_replication_origin_xact_reset",
        // Statistics.
        "pg_stat_statements_reset", "pg_stat_monitor_reset",
        // Large objects: lo_import reads and lo_export writes files on the server.
        "lowrite",
        // Indexes and heap pages changed in place (not rolled back).
        "gin_clean_pending_list", "brin_summarize_new_values", "brin_summarize_range", "brin_desummarize_range",
        "heap_force_kill", "heap_force_freeze", "pg_truncate_visibility_map", "pg_buffercache_evict",
        // Server counters, files and workers: the OID counter, pg_prewarm's buffer loads and autoprewarm's dump file and worker, a forced statistics flush.
        "pg_nextoid", "pg_prewarm", "autoprewarm_dump_now", "autoprewarm_start_worker", "pg_stat_force_next_flush",
        // Run SQL given as text, out of the guard's sight.
        "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml", "cursor_to_xmlschema",
        "ts_stat", "ts_rewrite", "connectby",
    };

    /// <summary>Function families refused by prefix.</summary>
    private static readonly string[] DeniedPrefixes =
    [
        "pg_advisory_", "pg_try_advisory_", "pg_stat_reset", "lo_", "pg_file_", "dblink", "crosstab", "pg_background_",
    ];

    /// <summary>Statements a read-only transaction still runs, by their first word(s).</summary>
    private static readonly Dictionary<string, string?> DeniedStatements = new(StringComparer.Ordinal)
    {
        ["do"] = null, ["copy"] = null, ["load"] = null, ["checkpoint"] = null, ["lock"] = null, ["vacuum"] = null,
        ["analyze"] = null, ["analyse"] = null, ["cluster"] = null, ["reindex"] = null, ["listen"] = null, ["notify"] = null,
        ["prepare"] = "transaction", ["commit"] = "prepared", ["rollback"] = "prepared",
    };

    /// <summary>Every refused name as docs/security.md lists it: functions, families as prefix*, statements in capitals.</summary>
    internal static IEnumerable<string> Listed() =>
        DeniedFunctions.Concat(DeniedPrefixes.Select(p => p + "*")).Append("set_config")
            .Concat(DeniedStatements.Select(s => (s.Key + " " + s.Value).Trim().ToUpperInvariant()));

    /// <summary>
    /// Why <paramref name="sql"/> is not read-only, naming <paramref name="field"/> (a JSON path, or
    /// "The query"), the function or statement and its 1-based character position; null when nothing is refused.
    /// </summary>
    public static string? Check(string field, string? sql)
    {
        if (string.IsNullOrEmpty(sql))
        {
            return null;
        }

        var tokens = SqlText.Tokens(sql).Where(t => t.Kind != SqlTokenKind.Comment).ToList();
        if (LeadingStatement(sql, tokens) is { } statement)
        {
            return $"{field} is the statement {statement.Name} (at character {statement.At}), which changes the server even in a read-only transaction; a read-only command refuses it.";
        }

        for (var k = 0; k < tokens.Count; k++)
        {
            if (Name(sql, tokens, k) is not { } name || !IsCall(sql, tokens, k, name))
            {
                continue;
            }

            var refused = name == "set_config"
                ? !ThirdArgumentIsTrue(sql, tokens, k)
                : DeniedFunctions.Contains(name) || DeniedPrefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal));
            if (refused)
            {
                var what = name == "set_config" ? "set_config without is_local true (a setting for the whole session)" : name;
                return $"{field} calls {what} (at character {tokens[k].Start + 1}), which changes the server even in a read-only transaction; a read-only command refuses it.";
            }
        }

        return null;
    }

    /// <summary>Throws QueryNotReadOnly when any of the fields is refused; every refused field is named.</summary>
    public static void Ensure(IEnumerable<(string Field, string? Sql)> fields, object? target)
    {
        var problems = fields.Select(f => Check(f.Field, f.Sql)).OfType<string>().ToList();
        if (problems.Count > 0)
        {
            throw Refused(problems, target);
        }
    }

    /// <summary>Throws QueryNotReadOnly when a query field of the job (items.discover, throttle signals' queries, health.discover, soak and health checks and baselines) is refused.</summary>
    public static void EnsureJob(BackfillJob job) => Ensure(QueryFields(job), job.SourcePath);

    internal static DataOpsException Refused(IReadOnlyList<string> problems, object? target) =>
        new(ErrorId, DataOpsErrorKind.PermissionDenied,
            problems.Count == 1 ? problems[0] : $"{problems.Count} queries are not read-only:{Environment.NewLine}  {string.Join(Environment.NewLine + "  ", problems)}",
            target)
        {
            RecommendedAction = "Remove the call: a read-only command only reads. Signals, locks, files, WAL, slots and settings are an operator's action (Invoke-DataOpsQuery without -ReadOnly asks for confirmation); docs/security.md lists what is refused and why.",
        };

    /// <summary>
    /// Every query field a read-only command runs, with its JSON path: $.items.discover, $.items.keyset.where, $.throttle.signals[].query, $.health.discover,
    /// and each check's query and baseline.query in $.soak and $.health. Read leniently: a section in
    /// the wrong shape is reported by its own parser; here only its strings matter.
    /// </summary>
    public static IEnumerable<(string Field, string? Sql)> QueryFields(BackfillJob job)
    {
        yield return ("$.items.discover", job.DiscoverSql);
        if (job.Keyset?.Where is { } keysetWhere)
        {
            // A fragment: checked as the query it becomes.
            yield return ("$.items.keyset.where", $"SELECT 1 FROM {job.Keyset.Table} WHERE {keysetWhere}");
        }

        foreach (var signal in job.Signals.Where(s => s.Query is not null))
        {
            yield return (signal.Source + ".query", signal.Query);
        }

        if (job.Health is { ValueKind: JsonValueKind.Object } health)
        {
            if (health.TryGetProperty("discover", out var d) && d.ValueKind == JsonValueKind.String)
            {
                yield return ("$.health.discover", d.GetString());
            }

            foreach (var field in CheckFields(health, "$.health"))
            {
                yield return field;
            }
        }

        if (job.Soak is { ValueKind: JsonValueKind.Object } soak)
        {
            foreach (var field in CheckFields(soak, "$.soak"))
            {
                yield return field;
            }
        }
    }

    private static IEnumerable<(string Field, string? Sql)> CheckFields(JsonElement section, string at)
    {
        if (!section.TryGetProperty("checks", out var checks) || checks.ValueKind != JsonValueKind.Array)
        {
            yield break;
        }

        var i = 0;
        foreach (var c in checks.EnumerateArray())
        {
            var path = $"{at}.checks[{i++}]";
            if (c.ValueKind != JsonValueKind.Object)
            {
                continue;
            }

            if (c.TryGetProperty("query", out var q) && q.ValueKind == JsonValueKind.String)
            {
                yield return (path + ".query", q.GetString());
            }

            if (c.TryGetProperty("baseline", out var b) && b.ValueKind == JsonValueKind.Object && b.TryGetProperty("query", out var bq) && bq.ValueKind == JsonValueKind.String)
            {
                yield return (path + ".baseline.query", bq.GetString());
            }
        }
    }

    /// <summary>The statement the text begins with, when it is one a read-only command refuses.</summary>
    private static (string Name, int At)? LeadingStatement(string sql, List<SqlToken> tokens)
    {
        // A query may stand in parentheses; a statement may not, but the server's parser is the judge of that.
        var k = 0;
        while (k < tokens.Count && tokens[k].Kind == SqlTokenKind.Punctuation && sql[tokens[k].Start] == '(')
        {
            k++;
        }

        if (k >= tokens.Count || tokens[k].Kind != SqlTokenKind.Word)
        {
            return null;
        }

        var first = tokens[k].Text(sql).ToLowerInvariant();
        if (!DeniedStatements.TryGetValue(first, out var second))
        {
            return null;
        }

        if (second is null)
        {
            return (first.ToUpperInvariant(), tokens[k].Start + 1);
        }

        return k + 1 < tokens.Count && tokens[k + 1].Kind == SqlTokenKind.Word && tokens[k + 1].Text(sql).Equals(second, StringComparison.OrdinalIgnoreCase)
            ? ($"{first.ToUpperInvariant()} {second.ToUpperInvariant()}", tokens[k].Start + 1)
            : null;
    }

    /// <summary>The name a word or quoted identifier stands for, lower-cased (the guard refuses any spelling); null for other tokens.</summary>
    private static string? Name(string sql, List<SqlToken> tokens, int k)
    {
        var t = tokens[k];
        if (t.Kind == SqlTokenKind.Word)
        {
            return char.IsDigit(sql[t.Start]) ? null : t.Text(sql).ToLowerInvariant();
        }

        if (t.Kind != SqlTokenKind.QuotedIdentifier || t.Length < 2)
        {
            return null;
        }

        var inner = sql.Substring(t.Start + 1, t.Length - 2).Replace("\"\"", "\"", StringComparison.Ordinal);
        // U&"d\0061t\+000061": the identifier with Unicode escapes (UESCAPE 'c' may name another escape character).
        if (k >= 2 && tokens[k - 1].Kind == SqlTokenKind.Punctuation && sql[tokens[k - 1].Start] == '&' && tokens[k - 1].Start == tokens[k - 2].Start + tokens[k - 2].Length &&
            tokens[k - 2].Kind == SqlTokenKind.Word && tokens[k - 2].Text(sql).Equals("u", StringComparison.OrdinalIgnoreCase) && tokens[k - 1].Start + 1 == t.Start)
        {
            var escape = '\\';
            if (k + 2 < tokens.Count && tokens[k + 1].Kind == SqlTokenKind.Word && tokens[k + 1].Text(sql).Equals("uescape", StringComparison.OrdinalIgnoreCase) &&
                tokens[k + 2].Kind == SqlTokenKind.Literal && tokens[k + 2].Length == 3)
            {
                escape = sql[tokens[k + 2].Start + 1];
            }

            inner = UnicodeUnescape(inner, escape);
        }

        return inner.ToLowerInvariant();
    }

    private static string UnicodeUnescape(string text, char escape)
    {
        var b = new StringBuilder(text.Length);
        for (var i = 0; i < text.Length; i++)
        {
            if (text[i] != escape || i + 1 >= text.Length)
            {
                b.Append(text[i]);
            }
            else if (text[i + 1] == escape)
            {
                b.Append(escape);
                i++;
            }
            else
            {
                var plus = text[i + 1] == '+';
                var digits = plus ? 6 : 4;
                var from = i + (plus ? 2 : 1);
                if (from + digits <= text.Length && int.TryParse(text.AsSpan(from, digits), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var code) && code <= 0x10FFFF)
                {
                    b.Append(char.ConvertFromUtf32(code is >= 0xD800 and <= 0xDFFF ? 0xFFFD : code));
                    i = from + digits - 1;
                }
                else
                {
                    b.Append(text[i]);
                }
            }
        }

        return b.ToString();
    }

    /// <summary>
    /// Whether the name at <paramref name="k"/> is called: followed by '(' (not a column alias list
    /// after AS), or written as a field, PostgreSQL's field notation for a one-argument call:
    /// (1234).pg_cancel_backend signals process 1234, and so does x.pg_cancel_backend when x is the
    /// alias of a function in FROM that returns a scalar (FROM unnest(ARRAY[1234]) AS x): its whole-row
    /// reference is that scalar. A field of a table (p.lo_size, p.dblink_url) is taken for a column
    /// when the name is refused only as one of a family that columns are named like (lo_*, dblink*, crosstab*).
    /// </summary>
    private static bool IsCall(string sql, List<SqlToken> tokens, int k, string name)
    {
        var next = AfterName(sql, tokens, k);
        if (next < tokens.Count && IsPunctuation(sql, tokens[next], '('))
        {
            return !(k > 0 && IsWord(sql, tokens[k - 1], "as")) && !NamesCommonTableExpression(sql, tokens, k, next);
        }

        if (k < 2 || !IsPunctuation(sql, tokens[k - 1], '.'))
        {
            return false;
        }

        if (IsPunctuation(sql, tokens[k - 2], ')') || IsPunctuation(sql, tokens[k - 2], ']'))
        {
            return true;
        }

        return tokens[k - 2].Kind is SqlTokenKind.Word or SqlTokenKind.QuotedIdentifier &&
            (DeniedFunctions.Contains(name) || name is "dblink" or "crosstab" || !ColumnLikePrefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal)));
    }

    /// <summary>Refused families whose names columns also have (lo_size, dblink_url): after "table." such a name is a column.</summary>
    private static readonly string[] ColumnLikePrefixes = ["lo_", "dblink", "crosstab"];

    /// <summary>
    /// Whether the '(' at <paramref name="open"/> is the column list of a WITH query's name:
    /// <c>WITH lo_stats(a, b) AS (SELECT ...)</c> or <c>AS [NOT] MATERIALIZED (...)</c>. A call's alias is
    /// <c>lo_import(...) AS name</c>, never followed by MATERIALIZED; a call may be followed by
    /// <c>AS (a int)</c>, a column definition list (<c>dblink(...) AS (a int)</c>, <c>crosstab(...) AS (...)</c>),
    /// so the name must stand where a WITH query's name does (after WITH, RECURSIVE or ',') and the
    /// parenthesis after AS must open a query (SELECT, VALUES, WITH, TABLE or '('), not a column name.
    /// </summary>
    private static bool NamesCommonTableExpression(string sql, List<SqlToken> tokens, int name, int open)
    {
        var before = name > 0 && tokens[name - 1].Kind == SqlTokenKind.Punctuation && sql[tokens[name - 1].Start] == '.' ? -1 : name - 1;
        if (before < 0 || !(IsPunctuation(sql, tokens[before], ',') || IsWord(sql, tokens[before], "with") || IsWord(sql, tokens[before], "recursive")))
        {
            return false;
        }

        var depth = 0;
        for (var j = open; j < tokens.Count; j++)
        {
            if (IsPunctuation(sql, tokens[j], '('))
            {
                depth++;
            }
            else if (IsPunctuation(sql, tokens[j], ')') && --depth == 0)
            {
                var after = j + 1;
                if (after >= tokens.Count || !IsWord(sql, tokens[after], "as"))
                {
                    return false;
                }

                after++;
                if (after < tokens.Count && IsWord(sql, tokens[after], "not"))
                {
                    after++;
                }

                if (after < tokens.Count && IsWord(sql, tokens[after], "materialized"))
                {
                    return true;
                }

                return after + 1 < tokens.Count && IsPunctuation(sql, tokens[after], '(') &&
                    (IsPunctuation(sql, tokens[after + 1], '(') || new[] { "select", "values", "with", "table" }.Any(w => IsWord(sql, tokens[after + 1], w)));
            }
        }

        return false;
    }

    private static bool IsWord(string sql, SqlToken t, string word) => t.Kind == SqlTokenKind.Word && t.Text(sql).Equals(word, StringComparison.OrdinalIgnoreCase);

    /// <summary>The token after the name at <paramref name="k"/>: past a UESCAPE 'c' clause of a U&amp;"..." identifier.</summary>
    private static int AfterName(string sql, List<SqlToken> tokens, int k) =>
        tokens[k].Kind == SqlTokenKind.QuotedIdentifier && k + 2 < tokens.Count && tokens[k + 1].Kind == SqlTokenKind.Word &&
        tokens[k + 1].Text(sql).Equals("uescape", StringComparison.OrdinalIgnoreCase) && tokens[k + 2].Kind == SqlTokenKind.Literal
            ? k + 3
            : k + 1;

    /// <summary>set_config(name, value, is_local) changes only the transaction when is_local is the literal true.</summary>
    private static bool ThirdArgumentIsTrue(string sql, List<SqlToken> tokens, int k)
    {
        var open = AfterName(sql, tokens, k);
        if (open >= tokens.Count || !IsPunctuation(sql, tokens[open], '('))
        {
            return false;
        }

        var depth = 0;
        var argument = 0;
        var third = new List<SqlToken>();
        for (var j = open; j < tokens.Count; j++)
        {
            var t = tokens[j];
            if (IsPunctuation(sql, t, '(') || IsPunctuation(sql, t, '['))
            {
                depth++;
                if (depth == 1)
                {
                    continue;
                }
            }
            else if (IsPunctuation(sql, t, ')') || IsPunctuation(sql, t, ']'))
            {
                if (--depth == 0)
                {
                    break;
                }
            }
            else if (depth == 1 && IsPunctuation(sql, t, ','))
            {
                argument++;
                continue;
            }

            if (argument == 2)
            {
                third.Add(t);
            }
        }

        return argument == 2 && third is [{ Kind: SqlTokenKind.Word } only] && only.Text(sql).Equals("true", StringComparison.OrdinalIgnoreCase);
    }

    private static bool IsPunctuation(string sql, SqlToken t, char c) => t.Kind == SqlTokenKind.Punctuation && sql[t.Start] == c;
}
