using System.Globalization;
using DataOps.Engine.Connections;
using Npgsql;

namespace DataOps.Engine.Jobs;

/// <summary>A sample's outcome (SoakSample.Outcome, CheckSample.Outcome): names, not an enum, so that ConvertTo-Json and Export-Csv write the name (an enum property is written as a number).</summary>
public static class SampleOutcome
{
    public const string Pass = nameof(Pass);
    public const string Fail = nameof(Fail);
    public const string NoData = nameof(NoData);
    public const string Error = nameof(Error);

    /// <summary>Every name, in order.</summary>
    public static readonly string[] All = [Pass, Fail, NoData, Error];
}

/// <summary>
/// One check's value at one moment, as Test-ProdHealth reports it (ProdHealthReport.Checks).
/// Not sealed for one reason: Watch-StagingSoak emits the same shape as SoakSample, which derives
/// from this and keeps the type name users match on and the views select.
/// </summary>
public class CheckSample
{
    public DateTimeOffset Time { get; init; }

    public int Round { get; init; }

    public required string Check { get; init; }

    public double? Value { get; init; }

    public required string Expectation { get; init; }

    public required string Outcome { get; init; }

    public bool DryRun { get; init; }

    public string? Error { get; init; }

    public override string ToString() => $"{Check} = {Value?.ToString(CultureInfo.InvariantCulture) ?? "(none)"}: {Outcome}";
}

/// <summary>
/// Reads a check's value and judges it, for the soak (every round) and the health check (once),
/// strictly read-only: the session runs with default_transaction_read_only on and every sample is
/// a READ ONLY transaction with a statement timeout.
/// </summary>
public static class CheckSampler
{
    private const int StatementTimeoutSeconds = 30;

    /// <summary>Evaluates one check once in a read-only transaction; null for no row or NULL.</summary>
    internal static async Task<double?> SampleAsync(DataOpsConnection connection, string sql, IReadOnlyDictionary<string, object?> parameters, DateTimeOffset windowStart, CancellationToken ct)
    {
        await using var conn = await Database.OpenAsync(connection, ct, readOnly: true).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, ct).ConfigureAwait(false);
        await using (var setup = new NpgsqlCommand($"SET TRANSACTION READ ONLY; SET LOCAL statement_timeout = '{StatementTimeoutSeconds}s'", conn, tx))
        {
            await setup.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }

        await using var query = BackfillSql.Batch(conn, tx, BackfillSql.Query(sql), parameters, null);
        if (BackfillJob.ParameterNames(sql).Contains("windowStart"))
        {
            query.BatchCommands[0].Parameters.Add(new NpgsqlParameter("windowStart", NpgsqlTypes.NpgsqlDbType.TimestampTz) { Value = windowStart.UtcDateTime });
        }

        var value = await query.ExecuteScalarAsync(ct).ConfigureAwait(false);
        await tx.RollbackAsync(CancellationToken.None).ConfigureAwait(false);
        return value is null or DBNull ? null : Convert.ToDouble(value, CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Evaluates a check once: its query, or its throttle signal on a read-only connection (a watched standby
    /// that is not streaming, with missing: hold, is an error: a disconnected standby is the worst lag).
    /// </summary>
    internal static async Task<double?> SampleAsync(DataOpsConnection connection, CheckSpec check, BackfillJob job, DateTimeOffset windowStart, CancellationToken ct)
    {
        if (check.Signal is not { } signal)
        {
            return await SampleAsync(connection, check.Query, job.Parameters, windowStart, ct).ConfigureAwait(false);
        }

        await using var conn = await Database.OpenAsync(connection, ct, readOnly: true).ConfigureAwait(false);
        var reading = await SignalSampler.SampleAsync(conn, signal, [.. job.Capture.Select(c => c.Table)], job.Parameters, null, ct).ConfigureAwait(false);
        if (reading.Missing.Count > 0 && signal.MissingHolds)
        {
            throw new SignalUnusableException($"standby {string.Join(", ", reading.Missing)} is not streaming (missing from pg_stat_replication)");
        }

        if (signal.Kind == SignalKind.ReplicaLag && signal.Standbys.Count == 0 && reading.Present.Count == 0)
        {
            throw new SignalUnusableException("no standby streams from this server (pg_stat_replication is empty)");
        }

        return reading.Value;
    }

    internal static string Judge(Expectation e, double? value, double? baseline) => value switch
    {
        null => SampleOutcome.NoData,
        { } v => e.Kind switch
        {
            "equals" => Math.Abs(v - e.Value!.Value) < 1e-9 ? SampleOutcome.Pass : SampleOutcome.Fail,
            "atMost" => v <= e.Value!.Value + 1e-9 ? SampleOutcome.Pass : SampleOutcome.Fail,
            "atLeast" => v >= e.Value!.Value - 1e-9 ? SampleOutcome.Pass : SampleOutcome.Fail,
            "between" => v >= e.Low!.Value - 1e-9 && v <= e.High!.Value + 1e-9 ? SampleOutcome.Pass : SampleOutcome.Fail,
            _ => baseline is { } b ? (v >= (b * e.Ratio!.Value) - 1e-9 ? SampleOutcome.Pass : SampleOutcome.Fail) : SampleOutcome.Error,
        },
    };

    /// <summary>The Error text of a sample that could not be taken: the server's own words, or the connection problem.</summary>
    internal static string Describe(Exception ex, DataOpsConnection connection) =>
        ex is PostgresException pg ? $"{pg.SqlState}: {pg.MessageText}" : ex is SignalUnusableException or DataOpsException ? ex.Message : Database.Translate(ex, connection).Message;
}
