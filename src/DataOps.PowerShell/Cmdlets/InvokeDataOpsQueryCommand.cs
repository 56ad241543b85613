using System.Collections;
using System.Globalization;
using System.Management.Automation;
using System.Security;
using DataOps.Engine;
using DataOps.Engine.Queries;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>What Invoke-DataOpsQuery returns (-As).</summary>
public enum QueryOutput
{
    /// <summary>One PSCustomObject per row, columns as properties.</summary>
    Rows,

    /// <summary>The first column of the first row.</summary>
    Scalar,

    /// <summary>A QueryResult: rows affected and elapsed time.</summary>
    NonQuery,
}

/// <summary>
/// <para type="synopsis">Runs an ad-hoc SQL query and returns its rows as objects.</para>
/// <para type="description">Invoke-DataOpsQuery runs SQL against the session's connection (or -Connection, an object or a name stored
/// with Connect-DataOps -Name). Each row becomes a PSCustomObject whose properties are the columns, in order; NULL becomes $null,
/// timestamptz a DateTimeOffset, json and jsonb their text (pipe to ConvertFrom-Json). A column name that repeats gets _2, _3...
/// -As Scalar returns the first column of the first row; -As NonQuery returns a QueryResult with the rows affected.</para>
/// <para type="description">Values go in -Parameters, a hashtable bound by name to @name placeholders: they are sent as parameters,
/// never written into the SQL, so quotes in a value cannot change the query. A string is sent untyped, as a literal would be, so
/// the server reads it as the type the query needs there (a uuid, a date); an array binds as a PostgreSQL array (= ANY(@ids)); a
/// SecureString or PSCredential (its password) is sent as text and masked in every message.</para>
/// <para type="description">-ReadOnly runs the query as exactly one statement in a READ ONLY transaction of a read-only session, and
/// rolls it back: the server refuses any write (ReadOnlyViolation) and nothing changes, so it runs without confirmation, even under
/// -WhatIf. What a read-only transaction would still let through is refused before the connection opens (QueryNotReadOnly,
/// PermissionDenied), whether the name is qualified, quoted or upper case: calls that act outside the data (pg_terminate_backend,
/// pg_cancel_backend, advisory locks, lo_import/lo_export and the other large-object functions, server file writes, dblink,
/// pg_reload_conf, WAL, backup and replication-slot functions, pg_notify, statistics resets, set_config(..., false)), functions that
/// run SQL given as text (query_to_xml, ts_stat, crosstab), and the statements COPY, DO, LOCK, LOAD, CHECKPOINT, VACUUM, ANALYZE,
/// CLUSTER, REINDEX, LISTEN and NOTIFY. A name in a string literal or a comment is text, not a call. A function of the database
/// that does such things itself is not visible to the check: connect as a role that can only read (for example pg_read_all_data
/// and pg_monitor, not a superuser nor pg_signal_backend) when the query is not your own. docs/security.md has the full list.
/// Without -ReadOnly the query may write: it asks ShouldProcess (-WhatIf, -Confirm; on a production connection it asks for
/// confirmation unless -Force or -Confirm:$false), may hold several statements (they run in one implicit transaction), and is not
/// wrapped in a transaction of its own, so VACUUM works. -Debug shows the SQL and the parameters as sent, secrets masked.</para>
/// <para type="description">A query the server refuses (QueryFailed: a syntax error, a missing table, a division by zero; the message
/// holds the SQLSTATE and the server's text, secrets masked, and the exception's Data['SqlState'] the SQLSTATE) or that runs past
/// -Timeout (QueryTimeout) is a non-terminating error of that query, with the query as its target: rows it already returned stay
/// in the output, -ErrorAction and -ErrorVariable apply, and the next piped input (another -Connection) still runs; -ErrorAction
/// Stop makes it end the command. A bad parameter (QueryParameterMissing, QueryParameterInvalid), what -ReadOnly refuses
/// (QueryNotReadOnly, QueryMultipleStatements, ReadOnlyViolation) and a connection that cannot be made end the command.</para>
/// <para type="link">Connect-DataOps</para>
/// <para type="link">Get-DataOpsConnection</para>
/// </summary>
/// <example>
///   <code>Invoke-DataOpsQuery -Query 'SELECT id, name, email FROM users ORDER BY id LIMIT 5' -ReadOnly</code>
///   <para>Five users as objects with id, name and email properties, read in a read-only transaction.</para>
/// </example>
/// <example>
///   <code>Invoke-DataOpsQuery -Query 'SELECT count(*) FROM workflow_executions WHERE status = @status AND started_at > @since' -Parameters @{ status = 'failed'; since = (Get-Date).AddDays(-7) } -As Scalar -ReadOnly</code>
///   <para>How many executions failed in the last seven days; the values are bound as parameters.</para>
/// </example>
/// <example>
///   <code>Invoke-DataOpsQuery -Query "UPDATE workflow_executions SET status = 'cancelled', completed_at = now() WHERE status = 'running' AND started_at &lt; now() - interval '6 hours'" -As NonQuery -WhatIf</code>
///   <para>Shows the write that would run, and runs nothing; without -WhatIf the result says how many rows it changed.</para>
/// </example>
/// <example>
///   <code>try { Invoke-DataOpsQuery -Query 'DELETE FROM users' -ReadOnly } catch { $_.FullyQualifiedErrorId }</code>
///   <para>A write under -ReadOnly is refused by the server (ReadOnlyViolation, a terminating error) and nothing is deleted.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Invoke, "DataOpsQuery", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(PSCustomObject), typeof(QueryResult))]
public sealed class InvokeDataOpsQueryCommand : DatabaseCmdlet
{
    /// <summary>The SQL to run. Put values in -Parameters as @name placeholders, never into the text.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNullOrEmpty]
    public string Query { get; set; } = string.Empty;

    /// <summary>Values for the query's @name placeholders, as a hashtable: @{ id = 42; since = (Get-Date).AddDays(-1) }. Bound as parameters, never put into the SQL; SecureString and PSCredential values are secrets, masked in every message.</summary>
    [Parameter(Position = 1)]
    public IDictionary? Parameters { get; set; }

    /// <summary>Runs the query as one statement in a read-only transaction that is rolled back: any write to the database's data fails (ReadOnlyViolation). What a read-only transaction still allows is refused before anything runs (QueryNotReadOnly): calls such as pg_terminate_backend, pg_cancel_backend, advisory locks, lo_import/lo_export, dblink, pg_reload_conf, set_config(..., false), and the statements COPY, DO, LOCK, LOAD, CHECKPOINT, ANALYZE, CLUSTER, REINDEX, LISTEN, NOTIFY. A user-defined function with such effects is not seen: use a role that can only read. No confirmation is asked.</summary>
    [Parameter]
    public SwitchParameter ReadOnly { get; set; }

    /// <summary>What to return: Rows (one object per row, the default), Scalar (the first column of the first row) or NonQuery (a QueryResult with the rows affected).</summary>
    [Parameter]
    public QueryOutput As { get; set; } = QueryOutput.Rows;

    /// <summary>How long the query may run before it is cancelled (QueryTimeout): 30s, 5m, 1h or a TimeSpan. Default: 0, no limit (Ctrl+C stops it).</summary>
    /// <default>0 (no limit)</default>
    [Parameter]
    [DurationTransformation]
    public TimeSpan Timeout { get; set; }

    /// <summary>Skips the confirmation of a write to a production connection (never -WhatIf).</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>This cmdlet writes its own -Debug description of the query (with its parameters, secrets masked).</summary>
    protected override bool TracesSql => false;

    protected override void ProcessRecord()
    {
        var request = RunEngine((_, _) => Request());
        var connection = ResolveConnection();
        WriteDebug(Describe(request, connection));
        if (!ReadOnly && !ShouldWrite(connection, connection.ToString(), $"Run query: {Abbreviated(AdHocQuery.SafeText(Query))}", Force))
        {
            return;
        }

        RunQuery(As switch
        {
            QueryOutput.Scalar => async (observer, ct) =>
            {
                var value = await AdHocQuery.ScalarAsync(connection, request, ct).ConfigureAwait(false);
                observer.Emit(c => c.WriteObject(value), ct);
            },
            QueryOutput.NonQuery => async (observer, ct) =>
            {
                var result = await AdHocQuery.NonQueryAsync(connection, request, ct).ConfigureAwait(false);
                observer.Emit(c => c.WriteObject(result), ct);
            },
            _ => async (observer, ct) =>
            {
                await foreach (var row in AdHocQuery.RowsAsync(connection, request, ct).WithCancellation(ct).ConfigureAwait(false))
                {
                    observer.Emit(c => c.WriteObject(ToPSObject(row)), ct);
                }
            },
        });
    }

    /// <summary>
    /// Runs the query. The query's own failure on the server (QueryFailed: a syntax error, a division by
    /// zero; QueryTimeout) is an error of this input only, written after the rows already returned, so
    /// -ErrorAction and -ErrorVariable apply and the next piped input still runs. Everything else ends
    /// the command: a bad parameter (QueryParameterMissing, QueryParameterInvalid), what -ReadOnly refuses
    /// (QueryNotReadOnly, QueryMultipleStatements, ReadOnlyViolation), a connection that fails.
    /// </summary>
    private void RunQuery(Func<PumpObserver, CancellationToken, Task> query)
    {
        try
        {
            Pump(query);
        }
        catch (DataOpsException ex) when (ex.ErrorId is "QueryFailed" or "QueryTimeout")
        {
            WriteError(ToErrorRecord(ex));
        }
        catch (DataOpsException ex)
        {
            ThrowTerminatingError(ToErrorRecord(ex));
        }
    }

    private QueryRequest Request()
    {
        if (Timeout < TimeSpan.Zero)
        {
            throw new DataOpsException("QueryTimeoutInvalid", DataOpsErrorKind.InvalidArgument, $"-Timeout {Timeout} is negative. Give a duration such as 30s or 5m (0: no limit).", Timeout);
        }

        var values = new Dictionary<string, object?>(StringComparer.Ordinal);
        var secrets = new List<string>();
        foreach (DictionaryEntry e in Parameters ?? new Hashtable())
        {
            var name = AdHocQuery.ParameterName(e.Key?.ToString() ?? string.Empty);
            var key = e.Key!.ToString()!;
            var value = Unwrapped(e.Value);
            switch (value)
            {
                case SecureString s:
                    value = new System.Net.NetworkCredential(string.Empty, s).Password;
                    secrets.Add(key);
                    break;
                case PSCredential c:
                    value = c.GetNetworkCredential().Password;
                    secrets.Add(key);
                    break;
                case IDictionary or PSCustomObject:
                    throw new DataOpsException("QueryParameterInvalid", DataOpsErrorKind.InvalidArgument,
                        $"-Parameters {key}: a {value.GetType().Name} cannot be bound as one value. Pass one parameter per value, or its JSON for a json column: {name} = ($value | ConvertTo-Json -Compress).",
                        key);
                case object[] items:
                    value = items.Select(Unwrapped).ToArray();
                    break;
            }

            values[key] = value;
        }

        return new QueryRequest { Sql = Query, Parameters = values, SecretParameters = secrets, ReadOnly = ReadOnly, Timeout = Timeout == TimeSpan.Zero ? null : Timeout };
    }

    private static object? Unwrapped(object? value) => value is PSObject { BaseObject: not PSCustomObject } ps ? ps.BaseObject : value;

    /// <summary>What -Debug shows: the SQL as sent (a PASSWORD literal masked) and each parameter with its type; secret values masked.</summary>
    private static string Describe(QueryRequest request, Engine.Connections.DataOpsConnection connection)
    {
        var how = request.ReadOnly ? "read-only transaction (BEGIN; SET TRANSACTION READ ONLY; the query; ROLLBACK)" : "query";
        var parameters = request.Parameters.Select(p => request.SecretParameters.Contains(p.Key)
            ? $"  @{p.Key.TrimStart('@', ':')} = {Engine.Logging.SecretRedactor.Mask} (secret)"
            : $"  @{p.Key.TrimStart('@', ':')} = {Shown(p.Value)} ({p.Value?.GetType().Name ?? "null"})");
        return $"SQL ({how}) on {connection}:\n{AdHocQuery.SafeText(request.Sql)}" + (request.Parameters.Count == 0 ? string.Empty : "\nParameters:\n" + string.Join("\n", parameters));
    }

    private static string Shown(object? value) => value switch
    {
        null => "NULL",
        string s => $"'{s}'",
        object[] items => "{" + string.Join(", ", items.Select(Shown)) + "}",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? string.Empty,
    };

    private static string Abbreviated(string sql)
    {
        var flat = string.Join(' ', sql.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
        return flat.Length <= 100 ? flat : flat[..99] + "…";
    }

    private static PSObject ToPSObject(QueryRow row)
    {
        var result = new PSObject();
        for (var i = 0; i < row.Columns.Count; i++)
        {
            result.Properties.Add(new PSNoteProperty(row.Columns[i], row.Values[i]));
        }

        return result;
    }
}
