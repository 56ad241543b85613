using Dapper;
using DataOps.Engine.Connections;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using Npgsql;

namespace DataOps.Engine.Backfill;

/// <summary>
/// A run's files written again from the ledger, which holds every committed item's images and
/// outcome: Export-BackfillRollback (any run, any time), and the files of an abandoned run, which
/// the next run of its job completes. Streamed: one item in memory at a time.
/// </summary>
public static class BackfillRunFiles
{
    /// <summary>Items per write of the script.</summary>
    private const int ChunkSize = 128;

    /// <summary>
    /// Writes the psql rollback script of backfill run <paramref name="runId"/> from the ledger: every
    /// item it applied and that is not undone yet, undone newest first. <paramref name="path"/> is a
    /// file or a folder; without it, the script goes into the run's own backfill_logs folder. Returns the file.
    /// </summary>
    public static async Task<BackfillRollbackScript> ExportRollbackAsync(DataOpsConnection connection, Guid runId, string? path, CancellationToken ct)
    {
        await BackfillRunner.RequireCoreAsync(connection, ct).ConfigureAwait(false);
        await using var meta = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        var run = await LedgerStore.RunAsync(meta, runId, ct).ConfigureAwait(false);
        if (run is null || run.Kind != "backfill")
        {
            throw new DataOpsException("RunNotFound", DataOpsErrorKind.ObjectNotFound,
                $"There is no backfill run {runId} in {connection}. Get-BackfillRun lists the runs.", runId);
        }

        var started = new DateTimeOffset(DateTime.SpecifyKind(run.StartedAt, DateTimeKind.Utc));
        var fileName = BackfillArtifacts.RollbackFileName(started);
        string file;
        if (path is null)
        {
            if (run.OutputDirectory is null)
            {
                throw new DataOpsException("OutputDirectoryUnknown", DataOpsErrorKind.InvalidArgument,
                    $"Run {runId} recorded no output folder; give -Path for the script.", runId);
            }

            file = Path.Combine(JobPaths.RunFolder(run.OutputDirectory, run.Job, runId.ToString()), "backfill_logs", fileName);
        }
        else
        {
            file = Directory.Exists(path) ? Path.Combine(path, fileName) : Path.GetFullPath(path);
        }

        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            var items = await WriteScriptAsync(connection, meta, runId, run.Job, file, ct).ConfigureAwait(false);
            return new BackfillRollbackScript { RunId = runId, Job = run.Job, Path = file, Items = items };
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new DataOpsException("OutputDirectoryUnusable", DataOpsErrorKind.WriteError,
                $"The rollback script of run {runId} cannot be written to '{file}': {ex.Message}. Give a -Path you can write to.", file, ex);
        }
    }

    private static async Task<int> WriteScriptAsync(DataOpsConnection connection, NpgsqlConnection meta, Guid runId, string job, string file, CancellationToken ct)
    {
        // The images are read on a connection of their own, streaming, while the tables are described on the other.
        await using var images = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        await using var command = new NpgsqlCommand(LedgerStore.LiveApplied(newestFirst: false), images);
        command.Parameters.AddWithValue("runId", runId);
        var tables = new Dictionary<string, CaptureTable>(StringComparer.Ordinal);
        using var script = new RollbackScriptFile(file, runId, job, connection.ToString(), $"Written by Export-BackfillRollback at {DateTimeOffset.UtcNow:u} from the ledger");
        var chunk = new List<(string Key, IReadOnlyList<RestoreOp> Restore)>(ChunkSize);
        var count = 0;
        await using (var reader = await command.ExecuteReaderAsync(System.Data.CommandBehavior.SequentialAccess, ct).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                var key = reader.GetString(1);
                var before = ItemImage.FromJson(reader.GetString(2));
                var after = ItemImage.FromJson(reader.GetString(3));
                foreach (var name in before.Tables.Keys.Concat(after.Tables.Keys).Where(n => !tables.ContainsKey(n)))
                {
                    tables[name] = await UndoRunner.DescribeAsync(meta, name, ct).ConfigureAwait(false);
                }

                count++;
                chunk.Add((key, RestoreOp.ForItem(key, before, after, [.. before.Tables.Keys.Select(n => tables[n])])));
                if (chunk.Count == ChunkSize)
                {
                    script.Append(chunk, runId.ToString());
                    chunk.Clear();
                }
            }
        }

        script.Append(chunk, runId.ToString());
        return count;
    }

    /// <summary>
    /// The closing files of runs recorded as abandoned (their process or database went away before
    /// they wrote them): the rollback script again from the ledger (the one on disk may lack the
    /// last items), execution_results.json from the ledger, and the summary saying what happened.
    /// Best effort: a run that cannot be completed is logged, and the new run goes on.
    /// </summary>
    internal static async Task CompleteAbandonedAsync(DataOpsConnection connection, string job, Guid byRun, IReadOnlyList<AbandonedRun> runs, RunLog log, CancellationToken ct)
    {
        foreach (var run in runs.Where(r => r.OutputDirectory is not null && r.Kind is "backfill" or "dryrun"))
        {
            try
            {
                var folder = JobPaths.RunFolder(run.OutputDirectory!, job, run.RunId.ToString());
                var logs = Path.Combine(folder, "backfill_logs");
                if (!Directory.Exists(logs) || File.Exists(Path.Combine(folder, "backfill_summary.md")))
                {
                    continue;
                }

                var started = new DateTimeOffset(DateTime.SpecifyKind(run.StartedAt, DateTimeKind.Utc));
                var dryRun = run.Kind == "dryrun";
                string? rollback = null;
                if (!dryRun)
                {
                    rollback = Path.GetFileName((await ExportRollbackAsync(connection, run.RunId, Path.Combine(logs, BackfillArtifacts.RollbackFileName(started)), ct).ConfigureAwait(false)).Path);
                }

                // Dry runs leave nothing in the ledger: their batch files are all there is.
                BackfillArtifacts.Tally tally;
                var results = Path.Combine(logs, "execution_results.json");
                if (dryRun)
                {
                    tally = BackfillArtifacts.WriteResults(results, run.RunId, job, run.JobFile, connection.ToString(), dryRun, "abandoned", run.Reason, started, BackfillArtifacts.ReadBatches(logs));
                }
                else
                {
                    var items = await LedgerResultsAsync(connection, run.RunId, job, ct).ConfigureAwait(false);
                    tally = BackfillArtifacts.WriteResults(results, run.RunId, job, run.JobFile, connection.ToString(), dryRun, "abandoned", run.Reason, started, items);
                }

                await ArtifactFile.WriteTextAsync(Path.Combine(folder, "backfill_summary.md"), BackfillArtifacts.Summary(
                    run.RunId, job, run.JobFile, connection.ToString(), started, "abandoned", run.Reason, tally, dryRun, rollback,
                    [$"These closing files were written by run {byRun}, the next run of the job, from the ledger: the run itself ended before it could write them."]), ct).ConfigureAwait(false);
                log.Information("Completed the files of abandoned run {RunId} in {Folder}", run.RunId, folder);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or DataOpsException or NpgsqlException)
            {
                log.Warning("Could not complete the files of abandoned run {RunId}: {Error}. Export-BackfillRollback -RunId {RunId} writes its rollback script.", run.RunId, ex.Message, run.RunId);
            }
        }
    }

    /// <summary>
    /// The run's items as the ledger has them (applied, failed, stale), in order. Read into a list of
    /// small results (no images): the run's keys are already in memory in the same number.
    /// </summary>
    private static async Task<List<BackfillItemResult>> LedgerResultsAsync(DataOpsConnection connection, Guid runId, string job, CancellationToken ct)
    {
        var rows = await LedgerStore.ItemsAsync(connection, runId, ct).ConfigureAwait(false);
        return [.. rows.Select(r => new BackfillItemResult
        {
            RunId = runId, Job = job, Key = r.Key,
            Status = r.Status switch { "applied" => BackfillItemStatus.Applied, "stale" => BackfillItemStatus.Stale, _ => BackfillItemStatus.Failed },
            RowsChanged = r.Rows ?? 0, Attempts = r.Attempts ?? 0, Duration = TimeSpan.FromMilliseconds(r.Ms ?? 0),
            ErrorCategory = BackfillErrorCategory.All.FirstOrDefault(n => n == r.Category) ?? BackfillErrorCategory.None, Error = r.Error,
        })];
    }

}

/// <summary>A rollback script written from the ledger by Export-BackfillRollback.</summary>
public sealed class BackfillRollbackScript
{
    public Guid RunId { get; init; }

    public required string Job { get; init; }

    /// <summary>The script file; run it with psql -v ON_ERROR_STOP=1 -f.</summary>
    public required string Path { get; init; }

    /// <summary>Applied items the script undoes.</summary>
    public int Items { get; init; }

    public override string ToString() => Path;
}
