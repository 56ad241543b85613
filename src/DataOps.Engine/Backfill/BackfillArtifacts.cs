using System.Globalization;
using System.Text;
using System.Text.Json;
using DataOps.Engine.Jobs;

namespace DataOps.Engine.Backfill;

/// <summary>
/// Writes a run's files under OutputDirectory/&lt;job&gt;/&lt;runId&gt;/ as its items commit:
/// backfill_logs/batch_NNN.json and backfill_logs/rollback_YYYY-MM-DD.sql get each group of items
/// as soon as it is recorded, and both are whole at every moment (<see cref="TailFile"/>), so a
/// killed process leaves usable files. At the end (also after Ctrl+C or a failure)
/// execution_results.json is streamed from the batch files and backfill_summary.md written.
/// Nothing per item stays in memory: a million-item run needs what a thousand-item run needs.
/// </summary>
internal sealed class BackfillArtifacts : IDisposable
{
    /// <summary>Failed items listed in the summary; all of them are in execution_results.json.</summary>
    internal const int SummaryFailedLimit = 100;

    internal static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } };
    /// <summary>camelCase names, for the run row's summary and the run's JSON.</summary>
    internal static readonly JsonSerializerOptions Camel = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };
    private static readonly JsonSerializerOptions OneLine = new() { Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } };
    private readonly BackfillJob _job;
    private readonly Guid _runId;
    private readonly string _database;
    private readonly int _batchSize;
    private readonly DateTimeOffset _started = DateTimeOffset.UtcNow;
    private readonly StringBuilder _pendingBatch = new();
    private readonly List<(string Key, IReadOnlyList<RestoreOp> Restore)> _pendingRollback = [];
    private readonly RollbackScriptFile? _rollback;
    private readonly List<string> _notes = [];
    private TailFile? _batchFile;
    private int _batchNumber;
    private int _inBatch;

    /// <summary>The run's files; a process that joined another's run (<paramref name="worker"/>) keeps its own in workers/WORKER inside the run's folder, without a rollback script.</summary>
    public BackfillArtifacts(string outputDirectory, BackfillJob job, Guid runId, string database, int batchSize, bool dryRun, string? worker = null)
    {
        _job = job;
        _runId = runId;
        _database = database;
        _batchSize = Math.Max(1, batchSize);
        Directory = JobPaths.RunFolder(outputDirectory, job.Name, runId.ToString());
        if (worker is not null)
        {
            Directory = Path.Combine(Directory, "workers", worker);
        }

        LogDirectory = Path.Combine(Directory, "backfill_logs");
        System.IO.Directory.CreateDirectory(LogDirectory);
        if (!dryRun && worker is null)
        {
            _rollback = new RollbackScriptFile(RollbackPath, runId, job.Name, database, $"Written as the run's items committed, from {_started:u}");
        }
    }

    public string Directory { get; }

    public string LogDirectory { get; }

    public string SummaryPath => Path.Combine(Directory, "backfill_summary.md");

    public string RollbackPath => Path.Combine(LogDirectory, RollbackFileName(_started));

    internal static string RollbackFileName(DateTimeOffset started) => $"rollback_{started:yyyy-MM-dd}.sql";

    /// <summary>Queues one item's result and restore operations for the next <see cref="Flush"/>.</summary>
    public void Add(BackfillItemResult result, IReadOnlyList<RestoreOp>? restore)
    {
        if (_inBatch >= _batchSize)
        {
            FlushBatch();
            _batchFile?.Dispose();
            _batchFile = null;
            _inBatch = 0;
        }

        _pendingBatch.Append(_inBatch == 0 ? "\n  " : ",\n  ").Append(JsonSerializer.Serialize(result, OneLine));
        _inBatch++;
        if (_rollback is not null && result.Status == BackfillItemStatus.Applied)
        {
            _pendingRollback.Add((result.Key, restore ?? []));
        }
    }

    /// <summary>Writes what <see cref="Add"/> queued: one write per file, to the OS, not fsynced (see <see cref="TailFile"/>).</summary>
    public void Flush()
    {
        FlushBatch();
        if (_rollback is not null && _pendingRollback.Count > 0)
        {
            try
            {
                _rollback.Append(_pendingRollback, _runId.ToString());
            }
            catch (DataOpsException ex)
            {
                // Only a NUL can refuse a value (ScriptText.Literal), and PostgreSQL text holds none.
                // Left out, the items make the script refuse to run (its tail counts the run's items
                // against the ledger), so the summary says what to do instead.
                _notes.Add($"The rollback script could not hold the items {string.Join(", ", _pendingRollback.Select(p => p.Key))} ({ex.Message}); it refuses to run. Use Undo-Backfill -RunId {_runId}.");
            }

            _pendingRollback.Clear();
        }
    }

    private void FlushBatch()
    {
        if (_pendingBatch.Length == 0)
        {
            return;
        }

        if (_batchFile is null)
        {
            _batchNumber++;
            _batchFile = new TailFile(
                Path.Combine(LogDirectory, $"batch_{_batchNumber:000}.json"),
                $"{{\"runId\": \"{_runId}\", \"job\": {JsonSerializer.Serialize(_job.Name)}, \"batch\": {_batchNumber}, \"items\": [",
                BatchTail);
        }

        _batchFile.Append(_pendingBatch.ToString(), BatchTail);
        _pendingBatch.Clear();
    }

    private const string BatchTail = "\n]}\n";

    /// <summary>A line for the summary (a hook that failed, for example); already redacted.</summary>
    public void Note(string note) => _notes.Add(note);

    /// <summary>Writes the closing files. <paramref name="outcome"/> is completed, stopped or failed.</summary>
    public void Finish(string outcome, string? reason, bool dryRun, ThrottleReport? throttled = null)
    {
        try
        {
            Flush();
        }
        finally
        {
            Dispose();
        }

        throttled ??= ThrottleReport.None;
        var tally = WriteResults(Path.Combine(LogDirectory, "execution_results.json"), _runId, _job.Name, _job.SourcePath, _database, dryRun, outcome, reason, _started,
            ReadBatches(LogDirectory), throttled);
        ArtifactFile.WriteText(SummaryPath, Summary(_runId, _job.Name, _job.SourcePath, _database, _started, outcome, reason, tally, dryRun, dryRun ? null : Path.GetFileName(RollbackPath), _notes, throttled));
    }

    public void Dispose()
    {
        _batchFile?.Dispose();
        _batchFile = null;
        _rollback?.Dispose();
    }

    /// <summary>The items of a run's batch files, in order, one file in memory at a time.</summary>
    internal static IEnumerable<BackfillItemResult> ReadBatches(string logDirectory)
    {
        foreach (var file in System.IO.Directory.GetFiles(logDirectory, "batch_*.json").Order(StringComparer.Ordinal))
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
            foreach (var item in doc.RootElement.GetProperty("items").EnumerateArray())
            {
                yield return item.Deserialize<BackfillItemResult>(OneLine)!;
            }
        }
    }

    /// <summary>What the summary needs of the results, gathered while they are streamed to execution_results.json.</summary>
    internal sealed class Tally
    {
        public Dictionary<string, int> Counts { get; } = BackfillItemStatus.All.ToDictionary(s => s, _ => 0, StringComparer.Ordinal);

        public long RowsChanged { get; set; }

        public List<BackfillItemResult> FirstFailed { get; } = [];
    }

    /// <summary>Streams execution_results.json: the run's header, every item, then the counts.</summary>
    internal static Tally WriteResults(string path, Guid runId, string job, string? jobFile, string database, bool dryRun, string outcome, string? reason, DateTimeOffset started, IEnumerable<BackfillItemResult> items,
        ThrottleReport? throttled = null)
    {
        var tally = new Tally();
        using var stream = ArtifactFile.JsonLf(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read));
        using var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        writer.WriteStartObject();
        writer.WriteString("runId", runId);
        writer.WriteString("job", job);
        writer.WriteString("jobFile", jobFile);
        writer.WriteString("database", database);
        writer.WriteBoolean("dryRun", dryRun);
        writer.WriteString("outcome", outcome);
        writer.WriteString("reason", reason);
        writer.WriteString("startedAt", started);
        writer.WriteString("finishedAt", DateTimeOffset.UtcNow);
        if (throttled is not null)
        {
            // Seconds waited per reason (the rate's own spacing is not counted), and each signal's limit and peak.
            writer.WritePropertyName("throttled");
            JsonSerializer.Serialize(writer, throttled.Held.ToDictionary(h => h.Key, h => Math.Round(h.Value.TotalSeconds, 3)));
            writer.WritePropertyName("signals");
            JsonSerializer.Serialize(writer, throttled.Signals, Camel);
        }

        writer.WriteStartArray("items");
        foreach (var item in items)
        {
            JsonSerializer.Serialize(writer, item, Json);
            tally.Counts[item.Status]++;
            tally.RowsChanged += item.RowsChanged;
            if (item.Status == BackfillItemStatus.Failed && tally.FirstFailed.Count < SummaryFailedLimit)
            {
                tally.FirstFailed.Add(item);
            }

            if (writer.BytesPending > 1 << 16)
            {
                writer.Flush();
            }
        }

        writer.WriteEndArray();
        writer.WritePropertyName("counts");
        JsonSerializer.Serialize(writer, tally.Counts.ToDictionary(c => c.Key.ToString(), c => c.Value), Json);
        writer.WriteEndObject();
        return tally;
    }

    private static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture) + " s";

    internal static string Summary(Guid runId, string job, string? jobFile, string database, DateTimeOffset started, string outcome, string? reason, Tally tally, bool dryRun, string? rollbackFile, IReadOnlyList<string> notes,
        ThrottleReport? throttled = null)
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"# Backfill {(dryRun ? "dry run" : "run")}: {job}");
        sb.AppendLine();
        sb.AppendLine("| | |");
        sb.AppendLine("| --- | --- |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Run | `{runId}` |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Database | {database} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Job file | `{jobFile}` |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Started | {started:u} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Finished | {DateTimeOffset.UtcNow:u} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Outcome | **{outcome}**{(reason is null ? string.Empty : " - " + reason)} |");
        foreach (var (status, n) in tally.Counts.Where(c => c.Value > 0))
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {status} | {n} |");
        }

        sb.AppendLine(CultureInfo.InvariantCulture, $"| Rows changed | {tally.RowsChanged} |");
        if (throttled is { Held.Count: > 0 } || throttled is { Signals.Count: > 0 })
        {
            var total = throttled.Held.Values.Aggregate(TimeSpan.Zero, (a, b) => a + b);
            sb.AppendLine(CultureInfo.InvariantCulture, $"| Throttled | {Seconds(total)}{(throttled.Held.Count == 0 ? string.Empty : " (" + string.Join(", ", throttled.Held.Select(h => $"{h.Key}: {Seconds(h.Value)}")) + ")")} |");
        }

        sb.AppendLine();
        if (throttled is { Signals.Count: > 0 })
        {
            sb.AppendLine("## Throttle signals");
            sb.AppendLine();
            sb.AppendLine("| signal | kind | limit | max seen | samples | waited |");
            sb.AppendLine("| --- | --- | --- | --- | --- | --- |");
            foreach (var s in throttled.Signals)
            {
                sb.AppendLine(CultureInfo.InvariantCulture, $"| {s.Reason} | {s.Kind} | {s.Limit} | {s.Max ?? "(no sample)"} | {s.Samples} | {Seconds(throttled.Held.GetValueOrDefault(s.Reason))} |");
            }

            sb.AppendLine();
        }

        foreach (var note in notes)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"> {note}");
            sb.AppendLine();
        }

        if (tally.FirstFailed.Count > 0)
        {
            sb.AppendLine("## Failed items");
            sb.AppendLine();
            sb.AppendLine("| key | category | error |");
            sb.AppendLine("| --- | --- | --- |");
            foreach (var f in tally.FirstFailed)
            {
                sb.AppendLine(CultureInfo.InvariantCulture, $"| `{f.Key}` | {f.ErrorCategory} | {f.Error?.Replace("|", "\\|", StringComparison.Ordinal).ReplaceLineEndings(" ")} |");
            }

            var more = tally.Counts[BackfillItemStatus.Failed] - tally.FirstFailed.Count;
            if (more > 0)
            {
                sb.AppendLine();
                sb.AppendLine(CultureInfo.InvariantCulture, $"... and {more} more: every failed item is in `backfill_logs/execution_results.json`.");
            }

            sb.AppendLine();
        }

        sb.AppendLine("## Files");
        sb.AppendLine();
        sb.AppendLine("- `backfill_logs/execution_results.json`: every item's result");
        sb.AppendLine("- `backfill_logs/batch_NNN.json`: the results batch by batch, written as the items committed");
        if (rollbackFile is not null)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"- `backfill_logs/{rollbackFile}`: restores the before-images, newest item first, in one transaction (`psql -v ON_ERROR_STOP=1 -f ...`), or use `Undo-Backfill -RunId {runId}`.");
            sb.AppendLine(CultureInfo.InvariantCulture, $"  It was written as the items committed and is runnable even if the run was killed: it refuses to run, restoring nothing, if the run applied an item it lacks. `Export-BackfillRollback -RunId {runId}` writes it again, complete, from the ledger.");
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
