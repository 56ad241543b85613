using Dapper;
using DataOps.Engine.Connections;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using Npgsql;

namespace DataOps.Engine.Backfill;

/// <summary>
/// A keyset job's items: key ranges of its table, walked in key order, each found just before it
/// runs, so the client holds one chunk at a time whatever the table's size. The walk takes only keys
/// up to the largest one when the run starts (<see cref="Bound"/>), and starts after the last key of
/// the job's committed chunks (a re-run resumes; -Reapply starts over is refused). Chunk sizes follow
/// the job's target time (<see cref="KeysetSpec.NextChunkSize"/>); a chunk that hits the statement
/// timeout is halved and run again. A chunk that fails stops the walk there, so the committed chunks
/// always cover one contiguous key range and the next run resumes exactly at the failed chunk.
/// </summary>
internal sealed class KeysetWalk
{
    private readonly ValidatedJob _job;
    private readonly KeysetSpec _spec;
    private readonly KeysetTarget _target;
    private readonly string _firstSql;
    private readonly string _nextSql;

    private KeysetWalk(ValidatedJob job, string? bound, string? resumeAfter, long estimatedRows)
    {
        (_job, _spec, _target) = (job, job.Job.Keyset!, job.Keyset!);
        (Bound, Position, ResumedAfter, EstimatedRows) = (bound, resumeAfter, resumeAfter, estimatedRows);
        Size = _spec.FirstChunkSize;
        (_firstSql, _nextSql) = (NextChunkSql(_target, _spec.Where, first: true), NextChunkSql(_target, _spec.Where, first: false));
    }

    /// <summary>The largest key when the run started (null: the table had no row to walk).</summary>
    public string? Bound { get; }

    /// <summary>The last key of the last chunk done (null before the first).</summary>
    public string? Position { get; private set; }

    /// <summary>Where this run started: after the last key of the job's committed chunks (null: from the first key).</summary>
    public string? ResumedAfter { get; }

    /// <summary>The planner's estimate of the table's rows when the run started (0 when unknown), for the progress bar.</summary>
    public long EstimatedRows { get; }

    /// <summary>The rows of the chunks done.</summary>
    public long Rows { get; private set; }

    /// <summary>The rows the next chunk takes at most.</summary>
    public int Size { get; private set; }

    public KeysetSpec Spec => _spec;

    /// <summary>The share of the estimated rows done, below 100 until the walk ends (the estimate is the planner's).</summary>
    public int PercentDone() => EstimatedRows <= 0 ? -1 : (int)Math.Min(99, Rows * 100 / EstimatedRows);

    public static async Task<KeysetWalk> StartAsync(ValidatedJob job, DataOpsConnection connection, bool fromStart, CancellationToken ct)
    {
        var target = job.Keyset!;
        await using var conn = await Database.OpenAsync(connection, ct, readOnly: true).ConfigureAwait(false);
        await using var bound = BackfillSql.Batch(conn, null, BoundSql(target, job.Job.Keyset!.Where), job.Job.Parameters, null);
        var max = await bound.ExecuteScalarAsync(ct).ConfigureAwait(false) as string;
        var estimate = await conn.ExecuteScalarAsync<long>(new CommandDefinition(
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = @t::regclass", new { t = target.QualifiedName }, cancellationToken: ct)).ConfigureAwait(false);
        var (after, undoneLo) = fromStart ? (null, null) : await LedgerStore.KeysetResumeAfterAsync(conn, job.Job.Name, target.KeyType, target.Collate, ct).ConfigureAwait(false);
        if (undoneLo is not null)
        {
            // Resuming after the last live chunk would skip the undone chunks before it; walking them again would re-apply the live ones.
            throw new DataOpsException("KeysetWalkHasGap", DataOpsErrorKind.InvalidOperation,
                $"The keyset walk of job '{job.Job.Name}' has a gap: chunks from key {undoneLo} on were undone while chunks up to {after} are still applied, so a run could neither resume after them nor walk them again without applying rows twice. " +
                "Undo the job's remaining runs (Get-BackfillRun -JobName shows them; Undo-Backfill -RunId ...) and run it again, or give the job a new name. Nothing ran.",
                job.Job.Name);
        }

        return new KeysetWalk(job, max, after, estimate);
    }

    /// <summary>The next chunk after <see cref="Position"/> of at most <see cref="Size"/> rows, or null when the walk is done.</summary>
    public async Task<(KeysetChunk Chunk, long Rows)?> NextAsync(NpgsqlConnection conn, CancellationToken ct)
    {
        if (Bound is null)
        {
            return null;
        }

        await using var next = BackfillSql.Batch(conn, null, Position is null ? _firstSql : _nextSql, _job.Job.Parameters, null);
        var command = next.BatchCommands[0];
        if (Position is not null)
        {
            command.Parameters.Add(new NpgsqlParameter("dataops_after", NpgsqlTypes.NpgsqlDbType.Text) { Value = Position });
        }

        command.Parameters.Add(new NpgsqlParameter("dataops_bound", NpgsqlTypes.NpgsqlDbType.Text) { Value = Bound });
        command.Parameters.Add(new NpgsqlParameter("dataops_size", NpgsqlTypes.NpgsqlDbType.Integer) { Value = Size });
        await using var reader = await next.ExecuteReaderAsync(ct).ConfigureAwait(false);
        if (!await reader.ReadAsync(ct).ConfigureAwait(false) || reader.IsDBNull(0))
        {
            return null;
        }

        return (new KeysetChunk(reader.GetString(0), reader.GetString(1)), reader.GetInt64(2));
    }

    /// <summary>A chunk committed (or, in a dry run, ran and rolled back): the walk goes on after it, its next size from this one's time.</summary>
    public void Done(KeysetChunk chunk, long rows, TimeSpan elapsed)
    {
        Position = chunk.Hi;
        Rows += rows;
        Size = _spec.NextChunkSize(Size, (int)Math.Min(rows, int.MaxValue), elapsed);
    }

    /// <summary>A chunk hit the statement timeout: false when it was already the smallest (it fails then).</summary>
    public bool Halve()
    {
        if (Size <= _spec.MinChunkSize)
        {
            return false;
        }

        Size = Math.Max(_spec.MinChunkSize, Size / 2);
        return true;
    }

    public void LogStart(RunLog log) =>
        log.Information("Keyset walk of {Table} by {Key}: keys up to {Bound} (the largest when the run started){Resume}; chunks of {Min} to {Max} rows sized to take about {ChunkTime} each, statement timeout {Timeout}",
            _target.QualifiedName, _target.KeyLabel, Bound ?? "(none: no row to walk)", ResumedAfter is null ? string.Empty : $", resuming after {ResumedAfter} (the job's last committed chunk)",
            _spec.MinChunkSize, _spec.MaxChunkSize, Ms(_spec.ChunkTime), Ms(_spec.StatementTimeout));

    private static string Ms(TimeSpan t) => t.TotalMilliseconds < 1000 ? $"{t.TotalMilliseconds:0} ms" : $"{t.TotalSeconds:0.###} s";

    /// <summary>
    /// The largest key of the rows the walk takes, as text (by the key's index; not max(), which some
    /// types such as uuid lack). The output column has a name of its own: named like the key, ORDER BY
    /// would sort the text.
    /// </summary>
    internal static string BoundSql(KeysetTarget target, string? where) =>
        $"SELECT {target.QuotedKey}::text AS dataops_bound FROM {target.QualifiedName} WHERE {target.QuotedKey} IS NOT NULL{(where is null ? string.Empty : $" AND ({where}\n)")} ORDER BY {target.QuotedKey} DESC LIMIT 1";

    /// <summary>
    /// The next chunk's first and last key and its row count (not min() and max(), which some key types such as uuid lack): the next @dataops_size keys after
    /// @dataops_after (from the first key when it is NULL), up to @dataops_bound, in key order, read by
    /// the key's index (<paramref name="first"/>: from the first key). The bounds travel as text and
    /// are cast to the key's type.
    /// </summary>
    internal static string NextChunkSql(KeysetTarget target, string? where, bool first)
    {
        var (k, type) = (target.QuotedKey, target.KeyType);
        return $"""
            WITH c AS MATERIALIZED (
                SELECT {k} AS k FROM {target.QualifiedName}
                WHERE {(first ? string.Empty : $"{k} > CAST(@dataops_after AS {type}) AND ")}{k} <= CAST(@dataops_bound AS {type}){(where is null ? string.Empty : $"\n    AND ({where}\n)")}
                ORDER BY {k} LIMIT @dataops_size)
            SELECT (SELECT k FROM c ORDER BY k LIMIT 1)::text, (SELECT k FROM c ORDER BY k DESC LIMIT 1)::text, (SELECT count(*) FROM c)
            """;
    }
}
