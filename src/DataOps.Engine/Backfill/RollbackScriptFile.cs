using System.Globalization;
using System.Text;
using DataOps.Engine.Jobs;

namespace DataOps.Engine.Backfill;

/// <summary>
/// The psql rollback script of a backfill run, written while the run goes (one entry per item as it
/// commits) and complete and runnable at every moment, also after the process was killed.
/// <para>
/// Items must be undone newest first (two items may change the same row), but a file that grows as
/// items commit has the newest last. So each item's restore block is stored, as a dollar-quoted
/// literal, into a temporary table with its sequence number, and the tail, which runs after every
/// entry was read, checks that the file holds every item the ledger says the run applied (a run
/// killed between an item's commit and its entry has items the file lacks: the script then stops,
/// restoring nothing, and says to run Export-BackfillRollback), executes the blocks newest first,
/// records the undo in the ledger for exactly the items it holds, and prints the verified line.
/// The whole script is one transaction: a drifted row stops it and nothing is restored.
/// </para>
/// <para>
/// psql-inert as before: the only meta-command is the constant \set in the head; data appears only
/// inside standard quoted literals (the key; the images inside each block), the block inside a
/// dollar quote whose tag the block does not contain, and comments escaped to printable ASCII.
/// </para>
/// </summary>
internal sealed class RollbackScriptFile : IDisposable
{
    private readonly TailFile _file;
    private readonly string _tail;
    private int _seq;

    public RollbackScriptFile(string path, Guid runId, string job, string database, string origin)
    {
        _tail = Tail(runId);
        _file = new TailFile(path, Head(runId, job, database, origin), _tail);
    }

    public string Path => _file.Path;

    /// <summary>
    /// The entry of one applied item (also one with nothing to restore: the undo is recorded for it too).
    /// Lines end in "\n" on every OS, written out rather than AppendLine: the entry holds data in
    /// literals, whose own line ends must stay as they are (see <see cref="ArtifactFile"/>).
    /// </summary>
    public static string Entry(int seq, string runId, string key, IReadOnlyList<RestoreOp> restore)
    {
        var sb = new StringBuilder();
        AppendEntry(sb, seq, runId, key, restore);
        return sb.ToString();
    }

    /// <summary>Writes <see cref="Entry"/> into <paramref name="sb"/>, each block once (a keyset chunk's are megabytes).</summary>
    private static void AppendEntry(StringBuilder sb, int seq, string runId, string key, IReadOnlyList<RestoreOp> restore)
    {
        sb.Append('\n');
        if (restore.Count == 0)
        {
            sb.Append(CultureInfo.InvariantCulture, $"-- applied item {ScriptText.QuotedComment(key)}: no row changed, nothing to restore").Append('\n');
            sb.Append(CultureInfo.InvariantCulture, $"INSERT INTO pg_temp.dataops_rollback VALUES ({seq}, {ScriptText.Literal(key)}, 0, NULL);").Append('\n');
            return;
        }

        var blocks = RestoreOp.Steps(restore).Select(step => RestoreOp.Script(step, runId)).ToList();
        var tag = ScriptText.DollarTag(blocks.SelectMany(b => b.Pieces), "$dataops_item$");
        sb.Append(CultureInfo.InvariantCulture, $"INSERT INTO pg_temp.dataops_rollback VALUES ({seq}, {ScriptText.Literal(key)}, {restore.Count}, {tag}").Append('\n');
        blocks.ForEach(b => b.WriteTo(sb));
        sb.Append(CultureInfo.InvariantCulture, $"{tag});").Append('\n');
    }

    /// <summary>Appends the entries of committed items; one write, flushed to the OS (see <see cref="TailFile"/>).</summary>
    public void Append(IEnumerable<(string Key, IReadOnlyList<RestoreOp> Restore)> items, string runId)
    {
        var sb = new StringBuilder();
        foreach (var (key, restore) in items)
        {
            AppendEntry(sb, ++_seq, runId, key, restore);
        }

        if (sb.Length > 0)
        {
            _file.Append(sb, _tail);
        }
    }

    public void Dispose() => _file.Dispose();

    private static string Head(Guid runId, string job, string database, string origin)
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"-- DataOps rollback of backfill run {runId} (job {ScriptText.Comment(job)}) on {ScriptText.Comment(database)}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"-- {ScriptText.Comment(origin)}, from the before- and after-images captured in each item's transaction.");
        sb.AppendLine("-- Run it with:  psql -v ON_ERROR_STOP=1 -f <this file> <connection>");
        sb.AppendLine("-- Complete at every moment, also if the run was killed: it refuses to run (restoring nothing) if the run");
        sb.AppendLine(CultureInfo.InvariantCulture, $"-- applied items it does not hold; then write a complete one with Export-BackfillRollback -RunId {runId}.");
        sb.AppendLine("-- (A run killed in the middle of writing a large entry, megabytes of a keyset chunk, can leave the file cut");
        sb.AppendLine("-- short: psql then stops at its end, unterminated quoted string, before anything is restored. Export again.)");
        sb.AppendLine("-- One transaction. Items are undone newest first. A row is restored only if it still equals its after-image;");
        sb.AppendLine("-- otherwise the script stops with an error naming the row and nothing is restored.");
        sb.AppendLine("\\set ON_ERROR_STOP on");
        sb.AppendLine("\\set SHOW_CONTEXT never");
        sb.AppendLine(ScriptText.Preamble);
        sb.AppendLine("BEGIN;");
        sb.AppendLine(BackfillSql.StableJsonSettings + ";");
        sb.AppendLine("-- Each item's restore blocks, in the order the items committed; run below, newest first.");
        sb.AppendLine("CREATE TEMPORARY TABLE dataops_rollback (seq integer PRIMARY KEY, item_key text NOT NULL, rows_restored integer NOT NULL, restore text) ON COMMIT DROP;");

        // Only constant text and ASCII-escaped comments here, so the line ends can all become "\n".
        return ArtifactFile.Lf(sb.ToString());
    }

    /// <summary>The closing statements; constant text (the run id is a GUID), so the tail a crash leaves is always whole.</summary>
    private static string Tail(Guid runId) => ArtifactFile.Lf($$"""

        -- End of the items. The run must have applied no item this file lacks.
        DO $dataops_check$ DECLARE missing bigint; undone bigint; BEGIN
        {{LedgerStore.ScriptMissingItems(runId)}}
          IF missing > 0 THEN
            RAISE EXCEPTION 'DataOps rollback of run {{runId}} stopped: the run applied % items this file does not hold (it ended before writing them); nothing was restored. Write a complete script from the ledger: Export-BackfillRollback -RunId {{runId}}', missing;
          END IF;
        {{LedgerStore.ScriptUndoneItems(runId)}}
          IF undone > 0 THEN
            RAISE EXCEPTION 'DataOps rollback of run {{runId}} stopped: % of the items this file holds were undone already (by Undo-Backfill or a rollback script); nothing was restored. Export-BackfillRollback -RunId {{runId}} writes a script for the items still applied', undone;
          END IF;
        END $dataops_check$;

        -- Newest item first.
        DO $dataops_run$ DECLARE r record; BEGIN
          FOR r IN SELECT restore FROM pg_temp.dataops_rollback WHERE restore IS NOT NULL ORDER BY seq DESC LOOP
            EXECUTE r.restore;
          END LOOP;
        END $dataops_run$;

        -- Record the undo in the ledger, so a later Invoke-Backfill applies these items again.
        {{LedgerStore.ScriptMarkUndone(runId)}}

        -- Verification: each block above already checked its rows against the before-images.
        SELECT 'rollback of run {{runId}} verified' AS result, coalesce(sum(rows_restored), 0) AS rows_restored, count(*) FILTER (WHERE restore IS NOT NULL) AS items_restored FROM pg_temp.dataops_rollback;
        COMMIT;

        """);
}
