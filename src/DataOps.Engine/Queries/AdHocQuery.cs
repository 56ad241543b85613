using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using DataOps.Engine.Connections;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using Npgsql;
using NpgsqlTypes;

namespace DataOps.Engine.Queries;

/// <summary>An ad-hoc query (Invoke-DataOpsQuery): its text, its parameters and how it runs.</summary>
public sealed record QueryRequest
{
    /// <summary>The SQL. Values never go into it: they are <see cref="Parameters"/>, bound by name (@name).</summary>
    public required string Sql { get; init; }

    /// <summary>Values bound to @name placeholders, by name (a leading @ or : in a name is dropped).</summary>
    public IReadOnlyDictionary<string, object?> Parameters { get; init; } = new Dictionary<string, object?>();

    /// <summary>Names of parameters whose values are secrets: masked in every message, never shown.</summary>
    public IReadOnlyCollection<string> SecretParameters { get; init; } = [];

    /// <summary>
    /// Runs the query as exactly one statement in a READ ONLY transaction of a read-only session, rolled
    /// back at the end: the server refuses any write (SQLSTATE 25006, ReadOnlyViolation). Calls and
    /// statements a read-only transaction would still run (pg_terminate_backend, advisory locks, COPY,
    /// LOCK, DO...) are refused before the connection opens (<see cref="ReadOnlyGuard"/>, QueryNotReadOnly).
    /// </summary>
    public bool ReadOnly { get; init; }

    /// <summary>How long the query may run; null or zero: no limit (Ctrl+C still stops it).</summary>
    public TimeSpan? Timeout { get; init; }
}

/// <summary>One row of a query's result: column names (unique, case-insensitively, as PowerShell properties must be) and values, DB nulls as null.</summary>
public sealed class QueryRow
{
    internal QueryRow(IReadOnlyList<string> columns, object?[] values)
    {
        Columns = columns;
        Values = values;
    }

    public IReadOnlyList<string> Columns { get; }

    public IReadOnlyList<object?> Values { get; }
}

/// <summary>What a query that returns no rows did (Invoke-DataOpsQuery -As NonQuery).</summary>
public sealed record QueryResult
{
    /// <summary>The database the query ran in.</summary>
    public DataOpsConnection? Connection { get; init; }

    /// <summary>Rows the statements inserted, updated, deleted, merged or copied (0 for a SELECT or DDL: use -As Rows or Scalar to count rows).</summary>
    public int RowsAffected { get; init; }

    public TimeSpan Elapsed { get; init; }

    /// <summary>Whether the query ran in a read-only transaction (-ReadOnly), rolled back at the end.</summary>
    public bool ReadOnly { get; init; }

    public override string ToString() => $"{RowsAffected} rows affected";
}

/// <summary>
/// Runs ad-hoc SQL. Values are always bound as parameters, never put into the text. A read-only query
/// travels as one NpgsqlBatchCommand, which is exactly one statement on the wire (Npgsql refuses a
/// second one when there are parameters, PostgreSQL's extended protocol otherwise), inside
/// BEGIN; SET TRANSACTION READ ONLY on a session with default_transaction_read_only on, and is rolled
/// back: "COMMIT; DELETE ..." cannot step out of it, and the server refuses every write. A query that
/// may write is a plain command: several statements run in one implicit transaction, as psql -c runs
/// them, and no explicit transaction is opened around it, so VACUUM or CREATE INDEX CONCURRENTLY work.
/// </summary>
public static partial class AdHocQuery
{
    /// <summary>Streams the rows of every result set, in order.</summary>
    public static async IAsyncEnumerable<QueryRow> RowsAsync(DataOpsConnection connection, QueryRequest request, [EnumeratorCancellation] CancellationToken ct = default)
    {
        await using var run = await QueryRun.StartAsync(connection, request, ct).ConfigureAwait(false);
        var reader = await run.Guard(() => run.ReaderAsync(ct), ct).ConfigureAwait(false);
        var rows = new RowReader(reader);
        var read = false;
        try
        {
            while (await run.Guard(() => rows.NextAsync(ct), ct).ConfigureAwait(false) is { } row)
            {
                yield return row;
            }

            read = true;
        }
        finally
        {
            await run.CloseAsync(reader, read).ConfigureAwait(false);
        }
    }

    /// <summary>The first column of the first row (null when there is no row or it is NULL).</summary>
    public static async Task<object?> ScalarAsync(DataOpsConnection connection, QueryRequest request, CancellationToken ct = default)
    {
        await using var run = await QueryRun.StartAsync(connection, request, ct).ConfigureAwait(false);
        return await run.Guard(async () =>
        {
            var reader = await run.ReaderAsync(ct).ConfigureAwait(false);
            object? value = null;
            var read = false;
            try
            {
                var rows = new RowReader(reader);
                value = (await rows.NextAsync(ct).ConfigureAwait(false))?.Values[0];
                read = !request.ReadOnly || await rows.NextAsync(ct).ConfigureAwait(false) is null;
            }
            finally
            {
                await run.CloseAsync(reader, read).ConfigureAwait(false);
            }

            return value;
        }, ct).ConfigureAwait(false);
    }

    /// <summary>Runs the query for its effect; the result says how many rows it affected and how long it took.</summary>
    public static async Task<QueryResult> NonQueryAsync(DataOpsConnection connection, QueryRequest request, CancellationToken ct = default)
    {
        await using var run = await QueryRun.StartAsync(connection, request, ct).ConfigureAwait(false);
        var watch = Stopwatch.StartNew();
        var rows = await run.Guard(() => run.NonQueryAsync(ct), ct).ConfigureAwait(false);
        return new QueryResult { Connection = connection, RowsAffected = Math.Max(rows, 0), Elapsed = watch.Elapsed, ReadOnly = request.ReadOnly };
    }

    /// <summary>
    /// The query text as messages show it: the literal of a PASSWORD clause (CREATE/ALTER ROLE ...
    /// PASSWORD '...') masked, since that is where a query carries a secret in its own text.
    /// </summary>
    public static string SafeText(string sql) => PasswordLiteral().Replace(sql, m => m.Groups[1].Value + "'" + SecretRedactor.Mask + "'");

    /// <summary>
    /// The parameter names as Npgsql binds them (a leading @ or : dropped), checked: an identifier, not
    /// given twice. QueryParameterInvalid otherwise.
    /// </summary>
    public static string ParameterName(string name)
    {
        var bare = name.Length > 1 && name[0] is '@' or ':' ? name[1..] : name;
        if (!Identifier().IsMatch(bare))
        {
            throw new DataOpsException("QueryParameterInvalid", DataOpsErrorKind.InvalidArgument,
                $"'{name}' is not a parameter name: use letters, digits and underscores, starting with a letter or underscore, and write it as @{(Identifier().IsMatch(bare.TrimStart('@', ':')) ? bare.TrimStart('@', ':') : "name")} in the query.",
                name);
        }

        return bare;
    }

    /// <summary>Reads the rows of every result set in turn; the rows of one result set share one list of column names.</summary>
    private sealed class RowReader(NpgsqlDataReader reader)
    {
        private IReadOnlyList<string>? _columns;

        public async Task<QueryRow?> NextAsync(CancellationToken ct)
        {
            // Result sets without columns (an UPDATE among SELECTs) hold no rows; the next one may.
            while (reader.FieldCount == 0 || !await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                if (!await reader.NextResultAsync(ct).ConfigureAwait(false))
                {
                    return null;
                }

                _columns = null;
            }

            _columns ??= Columns(reader);
            var values = new object?[reader.FieldCount];
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = ReadValue(reader, i);
            }

            return new QueryRow(_columns, values);
        }

        /// <summary>The column names, made unique case-insensitively (SELECT 1, 2 has two "?column?": the second is "?column?_2").</summary>
        private static string[] Columns(NpgsqlDataReader reader)
        {
            var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            var names = new string[reader.FieldCount];
            for (var i = 0; i < names.Length; i++)
            {
                var name = reader.GetName(i);
                var unique = name;
                for (var n = 2; !seen.Add(unique); n++)
                {
                    unique = $"{name}_{n}";
                }

                names[i] = unique;
            }

            return names;
        }
    }

    private static object? ReadValue(NpgsqlDataReader reader, int ordinal)
    {
        try
        {
            return Output(reader.GetValue(ordinal));
        }
        catch (Exception ex) when (ex is InvalidCastException or NotSupportedException)
        {
            var name = reader.GetName(ordinal);
            throw new DataOpsException("QueryColumnUnreadable", DataOpsErrorKind.InvalidData,
                $"The column '{name}' has the type {reader.GetDataTypeName(ordinal)}, which the driver cannot read ({ex.Message}). Cast it to text in the query: {Database.QuoteIdentifier(name)}::text.",
                name);
        }
    }

    /// <summary>
    /// A value as PowerShell gets it: DBNull as null, timestamptz as a DateTimeOffset (UTC), and the
    /// driver's own types (ranges, geometric types, tsvector, cidr...) as their text, since they live in
    /// the module's private load context.
    /// </summary>
    internal static object? Output(object? value) => value switch
    {
        null or DBNull => null,
        DateTime { Kind: DateTimeKind.Utc } utc => new DateTimeOffset(utc),
        string or byte[] => value,
        Array array when NeedsConversion(array.GetType().GetElementType()!) => array.Cast<object?>().Select(Output).ToArray(),
        _ when value.GetType().Assembly == typeof(NpgsqlConnection).Assembly => value.ToString(),
        _ => value,
    };

    private static bool NeedsConversion(Type element) =>
        element == typeof(DateTime) || element == typeof(object) || element.Assembly == typeof(NpgsqlConnection).Assembly ||
        (Nullable.GetUnderlyingType(element) is { } inner && NeedsConversion(inner));

    /// <summary>
    /// A parameter as the driver takes it. A string is sent untyped, as a literal in the text would be,
    /// so the server reads it as the type the query needs there (@id = '6f1c...' for a uuid column, '2024-01-01'
    /// for a date). Times are sent as instants (timestamptz) unless they name no zone; an array of one
    /// element type (PowerShell builds object[]) becomes an array of that type.
    /// </summary>
    internal static NpgsqlParameter Input(string name, object? value)
    {
        switch (value)
        {
            case null or DBNull:
                return new NpgsqlParameter(name, DBNull.Value);
            case string s:
                return new NpgsqlParameter(name, NpgsqlDbType.Unknown) { Value = s };
            case char c:
                return new NpgsqlParameter(name, NpgsqlDbType.Unknown) { Value = c.ToString() };
            case Enum e:
                return new NpgsqlParameter(name, NpgsqlDbType.Unknown) { Value = e.ToString() };
            case DateTimeOffset t:
                return new NpgsqlParameter(name, t.ToUniversalTime());
            case DateTime { Kind: DateTimeKind.Local } local:
                return new NpgsqlParameter(name, local.ToUniversalTime());
            case object[] items when Homogeneous(items) is { } element:
                var typed = Array.CreateInstance(element, items.Length);
                for (var i = 0; i < items.Length; i++)
                {
                    typed.SetValue(items[i] is DateTimeOffset o ? o.ToUniversalTime() : items[i] is DateTime { Kind: DateTimeKind.Local } l ? l.ToUniversalTime() : items[i], i);
                }

                return new NpgsqlParameter(name, typed);
            default:
                return new NpgsqlParameter(name, value);
        }
    }

    /// <summary>The one element type of an object[] (nulls allowed for reference types), or null when mixed.</summary>
    private static Type? Homogeneous(object?[] items)
    {
        var type = items.FirstOrDefault(i => i is not null)?.GetType();
        if (type is null || items.Any(i => i is not null && i.GetType() != type) || (type.IsValueType && items.Any(i => i is null)))
        {
            return null;
        }

        return type;
    }

    [GeneratedRegex(@"^[A-Za-z_][A-Za-z0-9_]*$")]
    private static partial Regex Identifier();

    [GeneratedRegex(@"(\bPASSWORD\s+)'(?:[^']|'')*'", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex PasswordLiteral();

    /// <summary>One query's session, transaction (read-only only) and command; every failure leaves it as a DataOpsException without secrets.</summary>
    private sealed class QueryRun : IAsyncDisposable
    {
        private readonly DataOpsConnection _profile;
        private readonly QueryRequest _request;
        private readonly SecretRedactor _redactor = new();
        private NpgsqlConnection? _conn;
        private NpgsqlTransaction? _tx;
        private NpgsqlBatch? _batch;
        private NpgsqlCommand? _command;

        private QueryRun(DataOpsConnection profile, QueryRequest request)
        {
            _profile = profile;
            _request = request;
            profile.AddSecretsTo(_redactor);
        }

        public static async Task<QueryRun> StartAsync(DataOpsConnection profile, QueryRequest request, CancellationToken ct)
        {
            var run = new QueryRun(profile, request);
            try
            {
                await run.Guard(() => run.OpenAsync(ct), ct).ConfigureAwait(false);
                return run;
            }
            catch
            {
                await run.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }

        private async Task<bool> OpenAsync(CancellationToken ct)
        {
            var parameters = new List<NpgsqlParameter>();
            var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (var (given, value) in _request.Parameters)
            {
                var name = ParameterName(given);
                if (!names.Add(name))
                {
                    throw new DataOpsException("QueryParameterInvalid", DataOpsErrorKind.InvalidArgument,
                        $"The parameter @{name} is given twice (names are matched without regard to case, and a leading @ or : is dropped). Give each parameter once.", given);
                }

                if (_request.SecretParameters.Contains(given))
                {
                    _redactor.Add(value as string ?? Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture));
                }

                parameters.Add(Input(name, value));
            }

            if (UnboundPlaceholders(_request.Sql, names) is { Count: > 0 } unbound)
            {
                throw new DataOpsException("QueryParameterMissing", DataOpsErrorKind.InvalidArgument,
                    $"The query uses {string.Join(", ", unbound.Select(n => "@" + n))} and -Parameters gives no value for {(unbound.Count == 1 ? "it" : "them")}; nothing was run " +
                    $"(PostgreSQL would read @{unbound[0]} as abs({unbound[0]})). Pass -Parameters @{{ {string.Join("; ", unbound.Select(n => n + " = ..."))} }}" +
                    (names.Count == 0 ? "." : $" (given: {string.Join(", ", names.Select(n => "@" + n))})."),
                    unbound[0]);
            }

            // A read-only transaction still lets a query signal other sessions, take locks, write files
            // or run COPY, DO, LOCK: refused here, before the connection opens.
            if (_request.ReadOnly && ReadOnlyGuard.Check("The query", _request.Sql) is { } notReadOnly)
            {
                throw ReadOnlyGuard.Refused([notReadOnly], SafeText(_redactor.Redact(_request.Sql)));
            }

            _conn = await Database.OpenAsync(_profile, ct, readOnly: _request.ReadOnly).ConfigureAwait(false);
            var timeout = _request.Timeout is { TotalSeconds: > 0 } t ? (int)Math.Ceiling(t.TotalSeconds) : 0;
            if (_request.ReadOnly)
            {
                _tx = await _conn.BeginTransactionAsync(ct).ConfigureAwait(false);
                await using (var readOnly = new NpgsqlCommand("SET TRANSACTION READ ONLY", _conn, _tx))
                {
                    await readOnly.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                }

                var statement = new NpgsqlBatchCommand(_request.Sql);
                statement.Parameters.AddRange(parameters.ToArray());
                _batch = new NpgsqlBatch(_conn, _tx) { BatchCommands = { statement }, Timeout = timeout };
            }
            else
            {
                _command = new NpgsqlCommand(_request.Sql, _conn) { CommandTimeout = timeout };
                _command.Parameters.AddRange(parameters.ToArray());
            }

            return true;
        }

        public Task<NpgsqlDataReader> ReaderAsync(CancellationToken ct) =>
            _batch is not null ? _batch.ExecuteReaderAsync(ct) : _command!.ExecuteReaderAsync(ct);

        /// <summary>
        /// Closes a reader. Closing reads the rest of the result, so a read-only query left before its
        /// end (Select-Object -First, -As Scalar) is cancelled on the server first: its rows are not
        /// wanted and it changes nothing. A query that may write runs to its end, as in psql.
        /// </summary>
        public async Task CloseAsync(NpgsqlDataReader reader, bool read)
        {
            if (!read && _request.ReadOnly)
            {
                try
                {
                    _batch?.Cancel();
                    await reader.DisposeAsync().ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is PostgresException { SqlState: "57014" } or NpgsqlException or OperationCanceledException)
                {
                    // The cancellation asked for.
                }

                return;
            }

            await reader.DisposeAsync().ConfigureAwait(false);
        }

        public Task<int> NonQueryAsync(CancellationToken ct) =>
            _batch is not null ? _batch.ExecuteNonQueryAsync(ct) : _command!.ExecuteNonQueryAsync(ct);

        /// <summary>Runs one step, turning any failure into the DataOpsException that says what went wrong.</summary>
        public async Task<T> Guard<T>(Func<Task<T>> step, CancellationToken ct)
        {
            try
            {
                return await step().ConfigureAwait(false);
            }
            catch (Exception ex) when (!(ex is OperationCanceledException && ct.IsCancellationRequested) && ex is not DataOpsException)
            {
                throw Translate(ex);
            }
        }

        private DataOpsException Translate(Exception ex)
        {
            var where = _profile.ToString();
            var query = SafeText(_redactor.Redact(_request.Sql));
            switch (ex)
            {
                case PostgresException { SqlState: "25006" } pg when _request.ReadOnly:
                    return Failed("ReadOnlyViolation", DataOpsErrorKind.WriteError, pg,
                        $"The query tried to write, and -ReadOnly runs it in a read-only transaction: PostgreSQL at {where} refused it ({Describe(pg)}). Nothing was changed.",
                        "Run it without -ReadOnly to write (it then asks for confirmation as any write does).");
                case PostgresException { SqlState: "42601" } pg when _request.ReadOnly && pg.MessageText.Contains("multiple commands", StringComparison.Ordinal):
                    return MultipleStatements();
                case NotSupportedException when _request.ReadOnly && ex.Message.Contains("multiple", StringComparison.OrdinalIgnoreCase):
                    return MultipleStatements();
                case PostgresException { SqlState: "57014" } pg when pg.MessageText.Contains("timeout", StringComparison.OrdinalIgnoreCase):
                    return TimedOut(pg.MessageText);
                case NpgsqlException { InnerException: TimeoutException } when _request.Timeout is not null:
                    return TimedOut("the driver cancelled it");
                case PostgresException pg when !Database.IsConnectionLevel(pg.SqlState):
                    var kind = pg.SqlState switch
                    {
                        "42501" => DataOpsErrorKind.PermissionDenied,
                        _ when pg.SqlState.StartsWith("42", StringComparison.Ordinal) => DataOpsErrorKind.InvalidArgument,
                        _ when pg.SqlState.StartsWith("22", StringComparison.Ordinal) => DataOpsErrorKind.InvalidData,
                        _ => DataOpsErrorKind.InvalidOperation,
                    };
                    return Failed("QueryFailed", kind, pg, $"PostgreSQL at {where} refused the query: {Describe(pg)}.",
                        "Correct the query (the position counts characters of the query as given); -Debug shows the query and its parameters as sent.");
                case InvalidCastException or NotSupportedException or ArgumentException:
                    var types = string.Join(", ", _request.Parameters.Select(p => $"@{p.Key.TrimStart('@', ':')} ({p.Value?.GetType().Name ?? "null"})"));
                    return new DataOpsException("QueryParameterInvalid", DataOpsErrorKind.InvalidArgument,
                        $"A parameter value cannot be sent to PostgreSQL: {_redactor.Redact(ex.Message)}. Parameters: {types}. Pass a number, string, boolean, date, Guid, byte[] or an array of one of them; for a json column pass (ConvertTo-Json ...).",
                        query, null);
                default:
                    return Database.Translate(ex, _profile);
            }

            DataOpsException Failed(string errorId, DataOpsErrorKind kind, PostgresException pg, string message, string action)
            {
                var failure = new DataOpsException(errorId, kind, _redactor.Redact(message), query, null) { RecommendedAction = action };
                failure.Data["SqlState"] = pg.SqlState;
                return failure;
            }

            DataOpsException MultipleStatements() => new("QueryMultipleStatements", DataOpsErrorKind.InvalidArgument,
                "-ReadOnly runs exactly one statement, and the query holds more than one. Run each statement on its own (one Invoke-DataOpsQuery -ReadOnly each); nothing was run.",
                query, null);

            DataOpsException TimedOut(string detail) => new("QueryTimeout", DataOpsErrorKind.OperationTimeout,
                $"The query did not finish within {(_request.Timeout is { } t ? $"-Timeout {t}" : "the server's statement_timeout")} on {where} and was cancelled ({_redactor.Redact(detail)}).{(_request.ReadOnly ? string.Empty : " What it had done is rolled back.")}",
                query, null) { RecommendedAction = "Give it more time with -Timeout, or narrow the query." };

            string Describe(PostgresException pg) =>
                $"{pg.SqlState}: {pg.MessageText}{(pg.Detail is { Length: > 0 } d ? $" ({d})" : string.Empty)}{(pg.Position > 0 ? $", at character {pg.Position}" : string.Empty)}{(pg.Hint is { Length: > 0 } h ? $"; hint: {h}" : string.Empty)}";
        }

        public async ValueTask DisposeAsync()
        {
            if (_batch is not null)
            {
                await _batch.DisposeAsync().ConfigureAwait(false);
            }

            if (_command is not null)
            {
                await _command.DisposeAsync().ConfigureAwait(false);
            }

            if (_tx is not null)
            {
                // Read-only: nothing to keep. A query that ended the transaction itself (COMMIT) left nothing to roll back.
                try
                {
                    await _tx.DisposeAsync().ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException)
                {
                    // The connection is closed below either way.
                }
            }

            if (_conn is not null)
            {
                await _conn.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// The @name placeholders of the text that no parameter binds. Npgsql leaves such a placeholder in
    /// the text, where PostgreSQL reads '@' as the absolute-value operator: "WHERE id = @id" without an
    /// id parameter is "WHERE id = abs(id)", every row, and a DELETE would delete them all. Literals,
    /// quoted identifiers, dollar quotes and comments are skipped, as Npgsql skips them; '@' after an
    /// operator character (@>, &lt;@, @@) or a word is not a placeholder.
    /// </summary>
    internal static IReadOnlyList<string> UnboundPlaceholders(string sql, IEnumerable<string> bound)
    {
        var names = new HashSet<string>(bound, StringComparer.OrdinalIgnoreCase);
        return [.. PlaceholderOrSkipped().Matches(sql).Select(m => m.Groups["name"]).Where(g => g.Success && !names.Contains(g.Value))
            .Select(g => g.Value).Distinct(StringComparer.OrdinalIgnoreCase)];
    }

    [GeneratedRegex(@"'(?:[^']|'')*'|""(?:[^""]|"""")*""|--[^\r\n]*|/\*[\s\S]*?\*/|\$(?<tag>[A-Za-z_]\w*|)\$[\s\S]*?\$\k<tag>\$|(?<![@:<>\w])@(?<name>[A-Za-z_]\w*)")]
    private static partial Regex PlaceholderOrSkipped();
}
