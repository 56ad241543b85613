using System.Globalization;
using System.Text;
using System.Text.Json;

namespace DataOps.Engine.Backfill;

/// <summary>
/// Writes a run's files under OutputDirectory/&lt;job&gt;/&lt;runId&gt;/: backfill_logs/batch_NNN.json as each
/// batch completes, and at the end (also after Ctrl+C or a failure) execution_results.json,
/// rollback_YYYY-MM-DD.sql and backfill_summary.md.
/// </summary>
internal sealed class BackfillArtifacts
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } };
    private readonly List<BackfillItemResult> _results = [];
    private readonly List<BackfillItemResult> _batch = [];
    // Each item's part of the rollback script, made as the item is added (while the server runs the
    // next items) rather than all at the end; a part that cannot be quoted safely fails the script.
    private readonly List<(string Key, string? Script, int Rows, DataOpsException? Unsafe)> _restores = [];
    private readonly BackfillJob _job;
    private readonly Guid _runId;
    private readonly string _database;
    private readonly int _batchSize;
    private readonly DateTimeOffset _started = DateTimeOffset.UtcNow;
    private int _batchNumber;

    public BackfillArtifacts(string outputDirectory, BackfillJob job, Guid runId, string database, int batchSize)
    {
        _job = job;
        _runId = runId;
        _database = database;
        _batchSize = Math.Max(1, batchSize);
        Directory = JobPaths.RunFolder(outputDirectory, job.Name, runId.ToString());
        LogDirectory = Path.Combine(Directory, "backfill_logs");
        System.IO.Directory.CreateDirectory(LogDirectory);
    }

    public string Directory { get; }

    public string LogDirectory { get; }

    public string SummaryPath => Path.Combine(Directory, "backfill_summary.md");

    public string RollbackPath => Path.Combine(LogDirectory, $"rollback_{_started:yyyy-MM-dd}.sql");

    public void Add(BackfillItemResult result, IReadOnlyList<RestoreOp>? restore)
    {
        _results.Add(result);
        _batch.Add(result);
        if (restore is { Count: > 0 })
        {
            try
            {
                _restores.Add((result.Key, string.Concat(restore.Select(op => op.ToScript(_runId.ToString()))), restore.Count, null));
            }
            catch (DataOpsException ex)
            {
                _restores.Add((result.Key, null, restore.Count, ex));
            }
        }

        if (_batch.Count >= _batchSize)
        {
            FlushBatch();
        }
    }

    public void FlushBatch()
    {
        if (_batch.Count == 0)
        {
            return;
        }

        _batchNumber++;
        var file = Path.Combine(LogDirectory, $"batch_{_batchNumber:000}.json");
        File.WriteAllText(file, JsonSerializer.Serialize(new { runId = _runId, job = _job.Name, batch = _batchNumber, items = _batch }, Json));
        _batch.Clear();
    }

    /// <summary>Writes the closing files. <paramref name="outcome"/> is completed, stopped or failed.</summary>
    public void Finish(string outcome, string? reason, bool dryRun)
    {
        FlushBatch();
        var counts = Enum.GetValues<BackfillItemStatus>().ToDictionary(s => s, s => _results.Count(r => r.Status == s));
        File.WriteAllText(Path.Combine(LogDirectory, "execution_results.json"), JsonSerializer.Serialize(new
        {
            runId = _runId, job = _job.Name, jobFile = _job.SourcePath, database = _database, dryRun, outcome, reason,
            startedAt = _started, finishedAt = DateTimeOffset.UtcNow, counts, items = _results,
        }, Json));
        if (!dryRun)
        {
            File.WriteAllText(RollbackPath, RollbackScript());
        }

        File.WriteAllText(SummaryPath, Summary(outcome, reason, counts, dryRun));
    }

    private string RollbackScript()
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"-- DataOps rollback of backfill run {_runId} (job {ScriptText.Comment(_job.Name)}) on {ScriptText.Comment(_database)}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"-- Generated {DateTimeOffset.UtcNow:u} from the before- and after-images captured in each item's transaction.");
        sb.AppendLine("-- Run it with:  psql -v ON_ERROR_STOP=1 -f <this file> <connection>");
        sb.AppendLine("-- One transaction. Items are undone newest first. A row is restored only if it still equals its after-image;");
        sb.AppendLine("-- otherwise the script stops with an error naming the row and nothing is restored.");
        sb.AppendLine("\\set ON_ERROR_STOP on");
        sb.AppendLine(ScriptText.Preamble);
        sb.AppendLine("BEGIN;");
        sb.AppendLine(BackfillSql.StableJsonSettings + ";");
        var rows = 0;
        foreach (var (_, script, count, unsafeScript) in Enumerable.Reverse(_restores))
        {
            sb.AppendLine();
            sb.Append(script ?? throw unsafeScript!);
            rows += count;
        }

        sb.AppendLine();
        sb.AppendLine("-- Record the undo in the ledger, so a later Invoke-Backfill applies these items again.");
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"INSERT INTO dataops.ledger (run_id, job_name, item_key, status, undo_of, finished_at) SELECT run_id, job_name, item_key, 'undone', ledger_id, now() FROM dataops.ledger l WHERE run_id = '{_runId}' AND status = 'applied' AND NOT EXISTS (SELECT 1 FROM dataops.ledger u WHERE u.undo_of = l.ledger_id);");
        sb.AppendLine();
        sb.AppendLine("-- Verification: each block above already checked its row against the before-image.");
        sb.AppendLine(CultureInfo.InvariantCulture, $"SELECT 'rollback of run {_runId} verified' AS result, {rows} AS rows_restored, {_restores.Count} AS items_restored;");
        sb.AppendLine("COMMIT;");
        return sb.ToString();
    }

    private string Summary(string outcome, string? reason, Dictionary<BackfillItemStatus, int> counts, bool dryRun)
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"# Backfill {(dryRun ? "dry run" : "run")}: {_job.Name}");
        sb.AppendLine();
        sb.AppendLine("| | |");
        sb.AppendLine("| --- | --- |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Run | `{_runId}` |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Database | {_database} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Job file | `{_job.SourcePath}` |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Started | {_started:u} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Finished | {DateTimeOffset.UtcNow:u} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Outcome | **{outcome}**{(reason is null ? string.Empty : " - " + reason)} |");
        foreach (var (status, n) in counts.Where(c => c.Value > 0))
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {status} | {n} |");
        }

        sb.AppendLine(CultureInfo.InvariantCulture, $"| Rows changed | {_results.Sum(r => r.RowsChanged)} |");
        sb.AppendLine();
        var failed = _results.Where(r => r.Status == BackfillItemStatus.Failed).ToList();
        if (failed.Count > 0)
        {
            sb.AppendLine("## Failed items");
            sb.AppendLine();
            sb.AppendLine("| key | category | error |");
            sb.AppendLine("| --- | --- | --- |");
            foreach (var f in failed)
            {
                sb.AppendLine(CultureInfo.InvariantCulture, $"| `{f.Key}` | {f.ErrorCategory} | {f.Error?.Replace("|", "\\|", StringComparison.Ordinal).ReplaceLineEndings(" ")} |");
            }

            sb.AppendLine();
        }

        sb.AppendLine("## Files");
        sb.AppendLine();
        sb.AppendLine("- `backfill_logs/execution_results.json`: every item's result");
        sb.AppendLine("- `backfill_logs/batch_NNN.json`: the results batch by batch, written as the run went");
        if (!dryRun)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"- `backfill_logs/{Path.GetFileName(RollbackPath)}`: restores the before-images (`psql -v ON_ERROR_STOP=1 -f ...`), or use `Undo-Backfill -RunId {_runId}`");
        }

        sb.AppendLine();
        sb.AppendLine("## Next step");
        sb.AppendLine();
        sb.AppendLine(dryRun
            ? "This was a dry run: nothing was changed. Review the rows each item would change, then run Invoke-Backfill without -DryRun."
            : "The backfill has halted for review. Check the failed items and spot-check applied rows before starting the staging soak (Watch-StagingSoak). Nothing moves to the next phase by itself.");
        return sb.ToString();
    }
}
