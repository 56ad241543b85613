using Dapper;
using DataOps.Engine.Connections;
using Npgsql;

namespace DataOps.Engine.Jobs;

/// <summary>A capture table as the database describes it.</summary>
public sealed record CaptureTable(CaptureSpec Spec, string QualifiedName, string RowReference, IReadOnlyList<string> PrimaryKey)
{
    /// <summary>Columns of type json or jsonb (or a domain over them), whose text the row image keeps besides to_jsonb (see RowImages).</summary>
    public IReadOnlyList<string> JsonColumns { get; init; } = [];

    /// <summary>Columns of arrays or composite types that contain json or jsonb, whose text the row image keeps besides to_jsonb.</summary>
    public IReadOnlyList<string> HoldsJsonColumns { get; init; } = [];

    /// <summary>
    /// The SQL type of the primary key when it is one column whose keys can travel as an array of that
    /// type (format_type, schema-qualified outside pg_catalog); null for a composite key, or a key of an
    /// array type or a domain over one (an array of those is not an array of keys).
    /// </summary>
    public string? KeyType { get; init; }
}

/// <summary>A job checked against a database: tables exist, have primary keys, and every statement parses.</summary>
public sealed record ValidatedJob(BackfillJob Job, IReadOnlyList<CaptureTable> Capture)
{
    /// <summary>A keyset job's table and key column as the database describes them; null for other jobs.</summary>
    public KeysetTarget? Keyset { get; init; }
}

public static class JobValidator
{
    /// <summary>
    /// Checks the job against the database without changing anything: every statement is parsed
    /// and described by the server (never executed) inside a transaction that is rolled back. First,
    /// without a connection, the query fields go through <see cref="ReadOnlyGuard"/> (QueryNotReadOnly).
    /// </summary>
    public static async Task<ValidatedJob> ValidateAsync(BackfillJob job, DataOpsConnection connection, CancellationToken ct)
    {
        // The query fields run in read-only commands: a call a read-only transaction still allows is refused before any connection opens.
        ReadOnlyGuard.EnsureJob(job);
        var problems = new List<string>();
        var tables = new List<CaptureTable>();
        // Validation never writes: even preparing the steps happens in a read-only session.
        await using var conn = await Database.OpenAsync(connection, ct, readOnly: true).ConfigureAwait(false);

        await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
        foreach (var c in job.Capture)
        {
            var oid = await conn.ExecuteScalarAsync<long?>(new CommandDefinition("SELECT to_regclass(@t)::oid::bigint", new { t = c.Table }, tx, cancellationToken: ct)).ConfigureAwait(false);
            if (oid is null)
            {
                problems.Add($"{c.Path}.table: the table '{c.Table}' does not exist.{FoldedNameHint(c.Table)}");
                continue;
            }

            var pk = await Database.PrimaryKeyAsync(conn, c.Table, tx, ct).ConfigureAwait(false);
            if (pk.Count == 0)
            {
                problems.Add($"{c.Path}.table: '{c.Table}' has no primary key; rows without a stable identity cannot be restored, so the job is refused (as pt-online-schema-change does).");
                continue;
            }

            // The row reference is the table's own name (quoted where it is used), not the job file's spelling of it ("Accounts" with its quotes).
            // The name always carries its schema: it keys the images in the ledger and names the table in the rollback
            // script and in Undo-Backfill, which may run under another search_path (where a bare name could mean another table).
            var (qualified, relname) = await conn.QuerySingleAsync<(string, string)>(new CommandDefinition(
                "SELECT format('%I.%I', n.nspname, c.relname), c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = @oid::oid", new { oid }, tx, cancellationToken: ct)).ConfigureAwait(false);
            var reserved = await conn.QueryAsync<string>(new CommandDefinition(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = @oid::oid AND attnum > 0 AND NOT attisdropped AND attname::text = ANY(@names) ORDER BY attnum",
                new { oid, names = new[] { RowImages.JsonKey, RowImages.HoldsJsonKey } }, tx, cancellationToken: ct)).ConfigureAwait(false);
            foreach (var name in reserved)
            {
                problems.Add($"{c.Path}.table: '{c.Table}' has a column named '{name}', the name the row images use for the exact text of json columns; rename the column to capture this table.");
            }

            var json = (await conn.QueryAsync<(string Name, bool Plain)>(new CommandDefinition(RowImages.JsonColumnsSql, new { oid }, tx, cancellationToken: ct)).ConfigureAwait(false)).ToList();
            var keyType = pk.Count != 1 ? null : await KeyTypeAsync(conn, tx, oid.Value, pk[0], ct).ConfigureAwait(false);
            tables.Add(new CaptureTable(c, qualified, relname, pk)
            {
                KeyType = keyType,
                JsonColumns = [.. json.Where(j => j.Plain).Select(j => j.Name)],
                HoldsJsonColumns = [.. json.Where(j => !j.Plain).Select(j => j.Name)],
            });
        }

        var keyset = job.Keyset is { } spec ? await KeysetTargetAsync(conn, tx, spec, problems, ct).ConfigureAwait(false) : null;
        var i = 0;
        foreach (var (path, sql) in job.AllSql())
        {
            var savepoint = $"check_{i++}";
            await using (var sp = new NpgsqlCommand($"SAVEPOINT {savepoint}", conn, tx))
            {
                await sp.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            }

            try
            {
                // The discover query is checked as it runs: inside our SELECT, where only a row-returning query fits.
                await using var statement = BackfillSql.Batch(conn, tx, path == "$.items.discover" ? BackfillSql.Query(sql) : sql, job.Parameters, key: "0");
                // Parse and describe only (an unnamed statement, nothing executed, nothing left prepared on the pooled connection).
                await using var described = await statement.ExecuteReaderAsync(System.Data.CommandBehavior.SchemaOnly, ct).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is PostgresException or NotSupportedException)
            {
                // NotSupportedException: Npgsql found a second statement (JobFile reports it with its position first).
                problems.Add(ex is PostgresException pg
                    ? path == "$.items.discover"
                        ? $"{path}: must be one query that returns rows (SELECT, VALUES or WITH ... SELECT); PostgreSQL rejects it as one: {pg.SqlState}: {pg.MessageText}{(pg.Position > BackfillSql.QueryPrefixLength ? $" (at character {pg.Position - BackfillSql.QueryPrefixLength})" : string.Empty)}."
                        : $"{path}: PostgreSQL rejects the statement: {pg.SqlState}: {pg.MessageText}{At(job, path, sql, pg.Position)}."
                    : $"{path}: holds more than one statement; each SQL field must be exactly one statement.");
                await using var back = new NpgsqlCommand($"ROLLBACK TO SAVEPOINT {savepoint}", conn, tx);
                await back.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            }
        }

        if (!problems.Any(p => p.StartsWith("$.verify:", StringComparison.Ordinal)) && await VerifyTypeAsync(conn, tx, job, ct).ConfigureAwait(false) is { } verifyProblem)
        {
            problems.Add(verifyProblem);
        }

        foreach (var signal in job.Signals.Where(s => s.Query is not null))
        {
            problems.AddRange(await SignalQueryAsync(conn, tx, job, signal, i++, ct).ConfigureAwait(false) is { } problem ? [problem] : []);
        }

        await tx.RollbackAsync(ct).ConfigureAwait(false);
        if (problems.Count > 0)
        {
            throw JobFile.Invalid(job.SourcePath, problems);
        }

        return new ValidatedJob(job, tables) { Keyset = keyset };
    }

    /// <summary>
    /// A keyset walk's table and key: the column exists and leads a (non-partial) index, so each
    /// chunk's boundary is an index range scan, not a scan of the whole table per chunk, and it is
    /// unique (a unique index or primary key of that column alone), so every chunk can be halved. The table is
    /// SQL's spelling (to_regclass reads quotes and folds plain names); the key is the column's own name.
    /// </summary>
    /// <summary>
    /// " (at character N)" of an error: for a where-fragment, checked inside SELECT 1 FROM table WHERE ...,
    /// counted from the fragment's first character as the job file holds it.
    /// </summary>
    /// <remarks>
    /// The server counts in the text it received, where the driver has written each @name as $n: a
    /// position after a parameter would be off by the difference, so it is left out then.
    /// </remarks>
    private static string At(BackfillJob job, string path, string sql, int position)
    {
        var fragment = path == "$.items.keyset.where" ? job.Keyset?.Where : job.Capture.FirstOrDefault(c => c.Path + ".where" == path)?.Where;
        var (text, offset) = fragment is not null && sql.EndsWith(fragment, StringComparison.Ordinal) ? (fragment, sql.Length - fragment.Length) : (sql, 0);
        var local = position - offset;
        return local > 0 && !text.AsSpan(0, Math.Min(local, text.Length)).Contains('@') ? $" (at character {local})" : string.Empty;
    }

    /// <summary>
    /// A one-column primary key's type as <see cref="CaptureTable.KeyType"/> names it: format_type under a
    /// search_path of pg_catalog alone, so the name carries its schema and means the same type whatever
    /// search_path the item's steps set; null when the type, or the base of a domain, is an array or
    /// another variable-length type with elements (oidvector, int2vector).
    /// </summary>
    private static async Task<string?> KeyTypeAsync(NpgsqlConnection conn, NpgsqlTransaction tx, long oid, string column, CancellationToken ct)
    {
        var saved = await conn.ExecuteScalarAsync<string>(new CommandDefinition("SELECT current_setting('search_path')", transaction: tx, cancellationToken: ct)).ConfigureAwait(false);
        await conn.ExecuteAsync(new CommandDefinition("SELECT set_config('search_path', 'pg_catalog', true)", transaction: tx, cancellationToken: ct)).ConfigureAwait(false);
        try
        {
            return await conn.ExecuteScalarAsync<string?>(new CommandDefinition(
                """
                WITH RECURSIVE chain(oid) AS (
                    SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = @oid::oid AND a.attname = @column
                    UNION ALL
                    SELECT t.typbasetype FROM chain c JOIN pg_type t ON t.oid = c.oid WHERE t.typtype = 'd')
                SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                WHERE a.attrelid = @oid::oid AND a.attname = @column
                  AND NOT EXISTS (SELECT 1 FROM chain c JOIN pg_type t ON t.oid = c.oid WHERE t.typelem <> 0 AND t.typlen = -1)
                """, new { oid, column }, tx, cancellationToken: ct)).ConfigureAwait(false);
        }
        finally
        {
            await conn.ExecuteAsync(new CommandDefinition("SELECT set_config('search_path', @saved, true)", new { saved }, tx, cancellationToken: ct)).ConfigureAwait(false);
        }
    }

    private static async Task<KeysetTarget?> KeysetTargetAsync(NpgsqlConnection conn, NpgsqlTransaction tx, KeysetSpec spec, List<string> problems, CancellationToken ct)
    {
        var oid = await conn.ExecuteScalarAsync<long?>(new CommandDefinition("SELECT to_regclass(@t)::oid::bigint", new { t = spec.Table }, tx, cancellationToken: ct)).ConfigureAwait(false);
        if (oid is null)
        {
            problems.Add($"$.items.keyset.table: the table '{spec.Table}' does not exist.{FoldedNameHint(spec.Table)}");
            return null;
        }

        var column = await conn.QuerySingleOrDefaultAsync<(string Qualified, string Name, string Type, bool Indexed, bool Unique, string Collate)?>(new CommandDefinition(
            """
            SELECT a.attrelid::regclass::text, a.attname::text, format_type(a.atttypid, a.atttypmod),
                   EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indkey[0] = a.attnum AND i.indpred IS NULL AND i.indisvalid),
                   EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indkey[0] = a.attnum AND i.indnkeyatts = 1 AND i.indisunique AND i.indpred IS NULL AND i.indisvalid),
                   coalesce((SELECT ' COLLATE ' || quote_ident(n.nspname) || '.' || quote_ident(c.collname) FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace
                             WHERE c.oid = a.attcollation AND a.attcollation <> 100), '')
            FROM pg_attribute a
            WHERE a.attrelid = @oid::oid AND a.attname = @key AND a.attnum > 0 AND NOT a.attisdropped
            """, new { oid, key = spec.KeyColumn }, tx, cancellationToken: ct)).ConfigureAwait(false);
        if (column is not { } c)
        {
            // The key names the column exactly; a column of the same name in other case is the likely meaning.
            var near = await conn.QueryFirstOrDefaultAsync<string?>(new CommandDefinition(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = @oid::oid AND lower(attname) = lower(@key) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                new { oid, key = spec.KeyColumn }, tx, cancellationToken: ct)).ConfigureAwait(false);
            problems.Add($"$.items.keyset.key: the table '{spec.Table}' has no column '{spec.KeyColumn}'{(near is null ? "." : $"; it has '{near}': give the name as the table has it (\"key\": \"{near.Replace("\"", "\\\"\\\"", StringComparison.Ordinal)}\").")}");
            return null;
        }

        if (!c.Indexed)
        {
            problems.Add($"$.items.keyset.key: no index of '{spec.Table}' starts with '{spec.KeyColumn}'; each chunk would scan the whole table. Create one (CREATE INDEX CONCURRENTLY ...) or walk another key.");
            return null;
        }

        if (!c.Unique)
        {
            // Rows that share a key value cannot be split between chunks: a chunk takes every row of its last key, so it can
            // grow past maxChunkSize, and a chunk of one repeated value cannot be halved when it hits the statement timeout.
            problems.Add($"$.items.keyset.key: the column '{c.Name}' of '{spec.Table}' is not unique (no primary key or unique index has it as its only key column), so rows sharing a key value " +
                $"could not be split between chunks: a chunk could grow past maxChunkSize and one of a single repeated value could not be halved when it hits the statement timeout. " +
                $"Walk a unique key (usually the primary key), or, if the column's values are unique, create a unique index on it (CREATE UNIQUE INDEX CONCURRENTLY ON {c.Qualified} ({BackfillSql.Quote(c.Name)})).");
            return null;
        }

        return new KeysetTarget(c.Qualified, c.Name, c.Type, c.Indexed, c.Collate);
    }

    /// <summary>A hint for a table that does not exist: PostgreSQL reads a plain name in lower case, so a name with capitals must be double-quoted.</summary>
    private static string FoldedNameHint(string table)
    {
        var parts = table.Split('"');
        return parts.Where((_, i) => i % 2 == 0).Any(p => p.Any(char.IsUpper))
            ? $" PostgreSQL reads a name without double quotes in lower case ('{string.Join('"', parts.Select((p, i) => i % 2 == 0 ? p.ToLowerInvariant() : p))}'); for a name with capitals, double-quote it in the job file (\"public.\\\"Accounts\\\"\")."
            : string.Empty;
    }

    /// <summary>
    /// A query signal's query must be one query returning one boolean or number (described by the server,
    /// never executed): true, or a number above the limit, holds the run.
    /// </summary>
    private static async Task<string?> SignalQueryAsync(NpgsqlConnection conn, NpgsqlTransaction tx, BackfillJob job, ThrottleSignal signal, int n, CancellationToken ct)
    {
        var at = signal.Source + ".query";
        var savepoint = $"check_{n}";
        await using (var sp = new NpgsqlCommand($"SAVEPOINT {savepoint}", conn, tx))
        {
            await sp.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }

        try
        {
            await using var query = BackfillSql.Batch(conn, tx, BackfillSql.Query(signal.Query!), job.Parameters, null);
            await using var reader = await query.ExecuteReaderAsync(System.Data.CommandBehavior.SchemaOnly, ct).ConfigureAwait(false);
            var types = Enumerable.Range(0, reader.FieldCount).Select(reader.GetDataTypeName).ToList();
            return types is [var t] && t is "boolean" or "smallint" or "integer" or "bigint" or "numeric" or "real" or "double precision"
                ? null
                : $"{at}: the query returns {(types.Count == 0 ? "no column" : string.Join(", ", types))}; it must return one boolean (true holds the run) or one number (above the limit holds it).";
        }
        catch (Exception ex) when (ex is PostgresException or NotSupportedException)
        {
            await using var back = new NpgsqlCommand($"ROLLBACK TO SAVEPOINT {savepoint}", conn, tx);
            await back.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            return ex is PostgresException pg
                ? $"{at}: must be one query that returns rows; PostgreSQL rejects it as one: {pg.SqlState}: {pg.MessageText}{(pg.Position > BackfillSql.QueryPrefixLength ? $" (at character {pg.Position - BackfillSql.QueryPrefixLength})" : string.Empty)}."
                : $"{at}: holds more than one statement; each SQL field must be exactly one statement.";
        }
    }

    /// <summary>verify must return one boolean column (described by the server, never executed): the item is done when it is true.</summary>
    private static async Task<string?> VerifyTypeAsync(NpgsqlConnection conn, NpgsqlTransaction tx, BackfillJob job, CancellationToken ct)
    {
        await using var verify = BackfillSql.Batch(conn, tx, job.VerifySql, job.Parameters, key: "0");
        await using var reader = await verify.ExecuteReaderAsync(System.Data.CommandBehavior.SchemaOnly, ct).ConfigureAwait(false);
        var types = Enumerable.Range(0, reader.FieldCount).Select(reader.GetDataTypeName).ToList();
        return types is ["boolean"]
            ? null
            : $"$.verify: the query returns {(types.Count == 0 ? "no column" : string.Join(", ", types))}; it must return one boolean (true when the item is done).";
    }
}
