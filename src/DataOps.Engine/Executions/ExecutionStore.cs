using System.Runtime.CompilerServices;
using System.Text;
using Dapper;
using DataOps.Engine.Connections;
using DataOps.Engine.Schema;
using Npgsql;

namespace DataOps.Engine.Executions;

/// <summary>
/// Records and reads workflow executions. Every call is one short statement or one transaction;
/// updates lock the row (SELECT ... FOR UPDATE) so two sessions never lose each other's change.
/// </summary>
public static class ExecutionStore
{
    private const string SelectColumns = """
        SELECT e.id AS Id, e.workflow_id AS WorkflowId, w.name AS WorkflowName, w.description AS WorkflowDescription,
               e.temporal_workflow_id AS TemporalWorkflowId, e.temporal_run_id AS TemporalRunId, e.status AS Status,
               e.started_at AS StartedAt, e.completed_at AS CompletedAt, e.duration_ms AS DurationMs,
               e.input::text AS InputJson, e.output::text AS OutputJson, e.error_message AS ErrorMessage,
               e.activities_executed AS ActivitiesExecuted, e.created_by AS CreatedBy
        FROM workflow_executions e JOIN workflows w ON w.id = e.workflow_id
        """;

    public static async Task<WorkflowExecution> CreateAsync(DataOpsConnection connection, NewExecution execution, CancellationToken ct)
    {
        RequireText(execution.TemporalWorkflowId, "TemporalWorkflowId");
        RequireText(execution.TemporalRunId, "TemporalRunId");
        RequireText(execution.CreatedBy, "CreatedBy");
        return await WithConnection(connection, async conn =>
        {
            var id = await conn.ExecuteScalarAsync<Guid>(new CommandDefinition(
                """
                INSERT INTO workflow_executions (workflow_id, temporal_workflow_id, temporal_run_id, status, started_at, input, created_by)
                VALUES (@WorkflowId, @TemporalWorkflowId, @TemporalRunId, 'running', now(), @InputJson::jsonb, @CreatedBy)
                RETURNING id
                """, execution, cancellationToken: ct)).ConfigureAwait(false);
            return await SingleAsync(conn, "e.id = @id", new { id }, ct).ConfigureAwait(false);
        }, execution, ct).ConfigureAwait(false);
    }

    public static Task<WorkflowExecution> GetAsync(DataOpsConnection connection, Guid id, CancellationToken ct) =>
        WithConnection(connection, conn => SingleOrNotFound(conn, "e.id = @id", new { id }, id.ToString(), ct), id, ct);

    /// <summary>The newest execution of a Temporal workflow id (optionally one run of it).</summary>
    public static Task<WorkflowExecution> GetByTemporalIdAsync(DataOpsConnection connection, string temporalWorkflowId, string? temporalRunId, CancellationToken ct) =>
        WithConnection(connection, conn => SingleOrNotFound(conn,
            "e.temporal_workflow_id = @temporalWorkflowId AND (@temporalRunId::text IS NULL OR e.temporal_run_id = @temporalRunId)",
            new { temporalWorkflowId, temporalRunId }, temporalWorkflowId, ct), temporalWorkflowId, ct);

    /// <summary>
    /// Streams matching executions, newest first, paged in SQL. Rows are read one at a time from
    /// the server, so listing a million of them holds only the ones not yet consumed.
    /// </summary>
    public static async IAsyncEnumerable<WorkflowExecution> ListAsync(DataOpsConnection connection, ExecutionFilter filter, long skip, long? first, [EnumeratorCancellation] CancellationToken ct)
    {
        filter = filter.Validated();
        var (where, parameters) = Where(filter);
        parameters.Add("skip", skip);
        parameters.Add("first", first);
        var sql = $"{SelectColumns} {where} ORDER BY e.started_at DESC, e.id DESC OFFSET @skip LIMIT @first";
        await using var conn = await Database.OpenAsync(connection, ct, prepared: true).ConfigureAwait(false);
        await using var reader = await Guarded(connection, () => conn.ExecuteReaderAsync(new CommandDefinition(sql, parameters, cancellationToken: ct)), null).ConfigureAwait(false);
        var parser = reader.GetRowParser<ExecutionRow>();
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            yield return parser(reader).ToExecution();
        }
    }

    public static async Task<long> CountAsync(DataOpsConnection connection, ExecutionFilter filter, CancellationToken ct)
    {
        filter = filter.Validated();
        var (where, parameters) = Where(filter);
        return await WithConnection(connection, conn => conn.ExecuteScalarAsync<long>(new CommandDefinition(
            $"SELECT count(*) FROM workflow_executions e {where}", parameters, cancellationToken: ct)), null, ct).ConfigureAwait(false);
    }

    /// <summary>Applies an update under a row lock, validating the status transition against the locked row.</summary>
    public static async Task<WorkflowExecution> UpdateAsync(DataOpsConnection connection, Guid id, ExecutionUpdate update, CancellationToken ct)
    {
        var newStatus = update.Status is null ? null : ExecutionStatus.Parse(update.Status);
        if (update.ActivitiesExecuted is < 0)
        {
            throw new DataOpsException("ActivitiesInvalid", DataOpsErrorKind.InvalidArgument, $"-ActivitiesExecuted cannot be negative; got {update.ActivitiesExecuted}.", update.ActivitiesExecuted);
        }

        if (update.DurationMs is < 0)
        {
            throw new DataOpsException("DurationInvalid", DataOpsErrorKind.InvalidArgument, $"The duration cannot be negative; got {update.DurationMs} ms.", update.DurationMs);
        }

        return await WithConnection(connection, async conn =>
        {
            await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
            var current = await conn.QuerySingleOrDefaultAsync<string>(new CommandDefinition(
                "SELECT status FROM workflow_executions WHERE id = @id FOR UPDATE", new { id }, tx, cancellationToken: ct)).ConfigureAwait(false)
                ?? throw NotFound(id.ToString());

            var sets = new List<string>();
            if (newStatus is not null && newStatus != current)
            {
                if (ExecutionStatus.IsTerminal(current) && !update.AllowFinalStatusChange)
                {
                    throw new DataOpsException("InvalidStatusTransition", DataOpsErrorKind.InvalidOperation,
                        $"Execution {id} is '{current}', a final status; it cannot change to '{newStatus}'. Pass -AllowFinalStatusChange to change a finished execution.",
                        $"{current} -> {newStatus}");
                }

                sets.Add("status = @newStatus");
                if (ExecutionStatus.IsTerminal(newStatus))
                {
                    sets.Add("completed_at = clock_timestamp()");
                    sets.Add("duration_ms = coalesce(@DurationMs, greatest(0, round(extract(epoch FROM clock_timestamp() - started_at) * 1000))::bigint)");
                }
                else
                {
                    sets.Add("completed_at = NULL");
                    sets.Add("duration_ms = NULL");
                }
            }
            else if (update.DurationMs is not null)
            {
                sets.Add("duration_ms = @DurationMs");
            }

            if (update.OutputJson is not null)
            {
                sets.Add("output = @OutputJson::jsonb");
            }

            if (update.ErrorMessage is not null)
            {
                sets.Add("error_message = @ErrorMessage");
            }

            if (update.ActivitiesExecuted is not null)
            {
                sets.Add("activities_executed = @ActivitiesExecuted");
            }

            if (sets.Count > 0)
            {
                await conn.ExecuteAsync(new CommandDefinition(
                    $"UPDATE workflow_executions SET {string.Join(", ", sets)} WHERE id = @id",
                    new { id, newStatus, update.DurationMs, update.OutputJson, update.ErrorMessage, update.ActivitiesExecuted }, tx, cancellationToken: ct)).ConfigureAwait(false);
            }

            var result = await SingleAsync(conn, "e.id = @id", new { id }, ct, tx).ConfigureAwait(false);
            await tx.CommitAsync(ct).ConfigureAwait(false);
            return result;
        }, id, ct).ConfigureAwait(false);
    }

    public static async Task RemoveAsync(DataOpsConnection connection, Guid id, CancellationToken ct)
    {
        var removed = await WithConnection(connection, conn => conn.ExecuteAsync(new CommandDefinition(
            "DELETE FROM workflow_executions WHERE id = @id", new { id }, cancellationToken: ct)), id, ct).ConfigureAwait(false);
        if (removed == 0)
        {
            throw NotFound(id.ToString());
        }
    }

    /// <summary>Statistics in one SQL statement: one row per group.</summary>
    public static async Task<IReadOnlyList<ExecutionStats>> StatsAsync(DataOpsConnection connection, ExecutionFilter filter, StatsGrouping grouping, CancellationToken ct, Logging.IOperationObserver? observer = null)
    {
        filter = filter.Validated();
        var (where, parameters) = Where(filter);
        var sql = StatsSql(where, grouping);
        observer?.Verbose("SQL: " + string.Join(' ', sql.Split((char[])['\n', '\r'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)));
        var rows = await WithConnection(connection, conn => conn.QueryAsync<StatsRow>(new CommandDefinition(sql, parameters, cancellationToken: ct)), null, ct).ConfigureAwait(false);
        return [.. rows.Select(r => r.ToStats(grouping))];
    }

    /// <summary>The statement Get-ExecutionStats runs (public so benchmarks can run the very same SQL through psql).</summary>
    public static string StatsSql(string where, StatsGrouping grouping)
    {
        var key = grouping switch
        {
            StatsGrouping.Workflow => "e.workflow_id",
            StatsGrouping.User => "e.created_by",
            StatsGrouping.Status => "e.status",
            StatsGrouping.Day => "date_trunc('day', e.started_at AT TIME ZONE 'UTC')",
            _ => "NULL::text",
        };
        var aggregates = $"""
            SELECT {key} AS Key,
                   count(*) AS Total,
                   count(*) FILTER (WHERE e.status = 'running') AS Running,
                   count(*) FILTER (WHERE e.status = 'completed') AS Completed,
                   count(*) FILTER (WHERE e.status = 'failed') AS Failed,
                   count(*) FILTER (WHERE e.status = 'cancelled') AS Cancelled,
                   count(*) FILTER (WHERE e.status = 'timed_out') AS TimedOut,
                   avg(e.duration_ms)::float8 AS AverageDurationMs,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY e.duration_ms) AS P50DurationMs,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY e.duration_ms) AS P95DurationMs
            FROM workflow_executions e {where}
            {(grouping == StatsGrouping.None ? string.Empty : "GROUP BY 1")}
            """;
        return grouping == StatsGrouping.Workflow
            ? $"WITH g AS ({aggregates}) SELECT g.*, w.name AS WorkflowName FROM g JOIN workflows w ON w.id = g.Key ORDER BY g.Total DESC, w.name"
            : $"{aggregates} {(grouping == StatsGrouping.None ? string.Empty : "ORDER BY 1")}";
    }

    /// <summary>A WHERE clause with only the filters that are set, so the planner sees plain predicates it can index.</summary>
    public static (string Where, DynamicParameters Parameters) Where(ExecutionFilter filter)
    {
        var clauses = new List<string>();
        var p = new DynamicParameters();
        if (filter.Ids.Count > 0)
        {
            clauses.Add("e.id = ANY(@ids)");
            p.Add("ids", filter.Ids.Distinct().ToArray());
        }

        if (filter.WorkflowIds.Count > 0)
        {
            clauses.Add(filter.WorkflowIds.Count == 1 ? "e.workflow_id = @workflowId" : "e.workflow_id = ANY(@workflowIds)");
            p.Add("workflowId", filter.WorkflowIds[0]);
            p.Add("workflowIds", filter.WorkflowIds.ToArray());
        }

        if (filter.CreatedBy.Count > 0)
        {
            clauses.Add(filter.CreatedBy.Count == 1 ? "e.created_by = @createdBy" : "e.created_by = ANY(@createdBys)");
            p.Add("createdBy", filter.CreatedBy[0]);
            p.Add("createdBys", filter.CreatedBy.ToArray());
        }

        if (filter.Statuses.Count > 0)
        {
            clauses.Add("e.status = ANY(@statuses)");
            p.Add("statuses", filter.Statuses.ToArray());
        }

        if (filter.Since is { } since)
        {
            clauses.Add("e.started_at >= @since");
            p.Add("since", since.UtcDateTime);
        }

        if (filter.Until is { } until)
        {
            clauses.Add("e.started_at < @until");
            p.Add("until", until.UtcDateTime);
        }

        var sb = new StringBuilder();
        if (clauses.Count > 0)
        {
            sb.Append("WHERE ").AppendJoin(" AND ", clauses);
        }

        return (sb.ToString(), p);
    }

    private static async Task<T> WithConnection<T>(DataOpsConnection connection, Func<NpgsqlConnection, Task<T>> work, object? subject, CancellationToken ct = default)
    {
        await using var conn = await Database.OpenAsync(connection, ct, prepared: true).ConfigureAwait(false);
        return await Guarded(connection, () => work(conn), subject).ConfigureAwait(false);
    }

    /// <summary>Turns the driver's failures into specific DataOps errors.</summary>
    private static async Task<T> Guarded<T>(DataOpsConnection connection, Func<Task<T>> work, object? subject)
    {
        try
        {
            return await work().ConfigureAwait(false);
        }
        catch (PostgresException pg) when (pg.SqlState == PostgresErrorCodes.ForeignKeyViolation)
        {
            throw ForeignKey(pg, subject);
        }
        catch (PostgresException pg) when (pg.SqlState == PostgresErrorCodes.UndefinedTable)
        {
            throw SchemaInstaller.Missing(connection, [SchemaComponent.WorkflowExecution], pg.MessageText);
        }
        catch (PostgresException pg) when (pg.SqlState == PostgresErrorCodes.InvalidTextRepresentation && pg.MessageText.Contains("json", StringComparison.OrdinalIgnoreCase))
        {
            throw new DataOpsException("JsonInvalid", DataOpsErrorKind.InvalidArgument, $"The input or output is not valid JSON: {pg.MessageText}.", subject);
        }
        catch (Exception ex) when (ex is not DataOpsException and not OperationCanceledException)
        {
            throw Database.Translate(ex, connection);
        }
    }

    private static DataOpsException ForeignKey(PostgresException pg, object? subject)
    {
        var execution = subject as NewExecution;
        return pg.ConstraintName switch
        {
            "workflow_executions_workflow_id_fkey" => new DataOpsException("WorkflowNotFound", DataOpsErrorKind.ObjectNotFound,
                $"There is no workflow with id {execution?.WorkflowId}.", execution?.WorkflowId),
            "workflow_executions_created_by_fkey" => new DataOpsException("UserNotFound", DataOpsErrorKind.ObjectNotFound,
                $"There is no user '{execution?.CreatedBy}'.", execution?.CreatedBy),
            _ => new DataOpsException("ForeignKeyViolation", DataOpsErrorKind.InvalidData, $"{pg.MessageText} ({pg.ConstraintName}).", subject),
        };
    }

    private static DataOpsException NotFound(string what) =>
        new("ExecutionNotFound", DataOpsErrorKind.ObjectNotFound, $"There is no workflow execution '{what}'.", what);

    private static void RequireText(string value, string name)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            throw new DataOpsException("ValueMissing", DataOpsErrorKind.InvalidArgument, $"-{name} must not be empty.", name);
        }
    }

    private static async Task<WorkflowExecution> SingleAsync(NpgsqlConnection conn, string where, object parameters, CancellationToken ct, NpgsqlTransaction? tx = null)
    {
        var row = await conn.QuerySingleAsync<ExecutionRow>(new CommandDefinition($"{SelectColumns} WHERE {where}", parameters, tx, cancellationToken: ct)).ConfigureAwait(false);
        return row.ToExecution();
    }

    private static async Task<WorkflowExecution> SingleOrNotFound(NpgsqlConnection conn, string where, object parameters, string what, CancellationToken ct)
    {
        var row = await conn.QueryFirstOrDefaultAsync<ExecutionRow>(new CommandDefinition(
            $"{SelectColumns} WHERE {where} ORDER BY e.started_at DESC LIMIT 1", parameters, cancellationToken: ct)).ConfigureAwait(false);
        return row?.ToExecution() ?? throw NotFound(what);
    }

    private static DateTimeOffset Utc(DateTime value) => new(DateTime.SpecifyKind(value, DateTimeKind.Utc));

    private sealed record ExecutionRow(
        Guid Id, Guid WorkflowId, string? WorkflowName, string? WorkflowDescription, string TemporalWorkflowId, string TemporalRunId, string Status,
        DateTime StartedAt, DateTime? CompletedAt, long? DurationMs, string? InputJson, string? OutputJson, string? ErrorMessage, int ActivitiesExecuted, string? CreatedBy)
    {
        public WorkflowExecution ToExecution() => new()
        {
            Id = Id, WorkflowId = WorkflowId, WorkflowName = WorkflowName, WorkflowDescription = WorkflowDescription,
            TemporalWorkflowId = TemporalWorkflowId, TemporalRunId = TemporalRunId, Status = Status,
            StartedAt = Utc(StartedAt), CompletedAt = CompletedAt is { } c ? Utc(c) : null, DurationMs = DurationMs,
            InputJson = InputJson, OutputJson = OutputJson, ErrorMessage = ErrorMessage, ActivitiesExecuted = ActivitiesExecuted, CreatedBy = CreatedBy,
        };
    }

    private sealed class StatsRow
    {
        public object? Key { get; set; }

        public long Total { get; set; }

        public long Running { get; set; }

        public long Completed { get; set; }

        public long Failed { get; set; }

        public long Cancelled { get; set; }

        public long TimedOut { get; set; }

        public double? AverageDurationMs { get; set; }

        public double? P50DurationMs { get; set; }

        public double? P95DurationMs { get; set; }

        public string? WorkflowName { get; set; }

        public ExecutionStats ToStats(StatsGrouping grouping)
        {
            var finished = Completed + Failed + Cancelled + TimedOut;
            return new ExecutionStats
            {
                Group = grouping switch
                {
                    StatsGrouping.None => "All",
                    StatsGrouping.Workflow => WorkflowName ?? Key?.ToString() ?? "?",
                    StatsGrouping.Day => Key is DateTime d ? d.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture) : "?",
                    _ => Key?.ToString() ?? "(none)",
                },
                WorkflowId = grouping == StatsGrouping.Workflow && Key is Guid g ? g : null,
                WorkflowName = grouping == StatsGrouping.Workflow ? WorkflowName : null,
                CreatedBy = grouping == StatsGrouping.User ? Key as string : null,
                Status = grouping == StatsGrouping.Status ? Key as string : null,
                Day = grouping == StatsGrouping.Day && Key is DateTime day ? DateTime.SpecifyKind(day, DateTimeKind.Utc) : null,
                Total = Total, Running = Running, Completed = Completed, Failed = Failed, Cancelled = Cancelled, TimedOut = TimedOut,
                SuccessRate = finished == 0 ? null : (double)Completed / finished,
                AverageDurationMs = AverageDurationMs, P50DurationMs = P50DurationMs, P95DurationMs = P95DurationMs,
            };
        }
    }
}
