using System.Runtime.CompilerServices;
using DataOps.Engine.Backfill;
using DataOps.Engine.Jobs;

namespace DataOps.Engine.Tests;

/// <summary>
/// Every statement the backfill engine generates, as text, against a snapshot in Snapshots/ (as
/// gh-ost's builder tests do): a change to generated SQL shows up in review as a diff of these
/// files, and a refactoring that moves the builders cannot change what reaches the server unseen.
/// To accept a deliberate change, run with DATAOPS_UPDATE_SNAPSHOTS=1 and review the diff.
/// </summary>
public sealed class StatementSnapshotTests
{
    private static readonly Guid RunId = Guid.Parse("6f1c2a4e-0d7b-4c1e-9a55-3b2f4c6d7e8f");

    private static readonly CaptureTable Sessions = new(new CaptureSpec("prism.sessions", "id = @key::uuid", "$.capture[0]"), "prism.sessions", "sessions", ["id"]);

    private static readonly CaptureTable Profiles = new(new CaptureSpec("prism.profiles", "session_id = @key::uuid", "$.capture[1]"), "prism.profiles", "profiles", ["tenant", "id"]);

    /// <summary>A table with json columns: its images also keep their text (RowImages.JsonKey, HoldsJsonKey).</summary>
    private static readonly CaptureTable Documents = new(new CaptureSpec("prism.documents", "session_id = @key::uuid", "$.capture[2]"), "prism.documents", "documents", ["id"])
    {
        JsonColumns = ["body", "meta"],
        HoldsJsonColumns = ["history"],
    };

    public static TheoryData<string> Names => new(Statements().Keys);

    private static Dictionary<string, string> Statements()
    {
        var job = new ValidatedJob(JobFile.Load(Path.Combine(RepoRoot(), "examples", "jobs", "results-v1.2.1.job.json")), [Sessions, Profiles]);
        var before = new ItemImage();
        before.Tables["prism.sessions"] = ["""{"id": "a1", "fc_kind": "legacy", "note": "it's"}"""];
        before.Tables["prism.profiles"] = ["""{"tenant": 1, "id": 7, "results_version": "v1.2.0"}"""];
        var after = new ItemImage();
        after.Tables["prism.sessions"] = ["""{"id": "a1", "fc_kind": "functions", "note": "it's"}"""];
        after.Tables["prism.profiles"] = ["""{"tenant": 1, "id": 7, "results_version": "v1.2.1"}""", """{"tenant": 1, "id": 8, "results_version": "v1.2.1"}"""];
        var restore = RestoreOp.ForItem("a1", before, after, [Sessions, Profiles]);
        var deleted = new ItemImage();
        deleted.Tables["prism.sessions"] = [];
        deleted.Tables["prism.profiles"] = [];

        var docBefore = new ItemImage();
        docBefore.Tables["prism.documents"] = [
            """{"id": 1, "body": null, "meta": {"a": 1}, "history": null, "dataops:json": {"body": "null", "meta": "{\"b\":1, \"a\":1}"}, "dataops:holds-json": {"history": null}}""",
            """{"id": 2, "body": null, "meta": null, "history": [null], "dataops:json": {"body": null, "meta": null}, "dataops:holds-json": {"history": "{\"null\"}"}}"""];
        var docAfter = new ItemImage();
        docAfter.Tables["prism.documents"] = [
            """{"id": 1, "body": null, "meta": {"a": 1}, "history": null, "dataops:json": {"body": null, "meta": "{\"a\": 1}"}, "dataops:holds-json": {"history": null}}""",
            """{"id": 3, "body": {}, "meta": null, "history": null, "dataops:json": {"body": "{}", "meta": null}, "dataops:holds-json": {"history": null}}"""];
        var docRestore = RestoreOp.ForItem("a1", docBefore, docAfter, [Documents]);
        var docBulk = Enumerable.Repeat(docRestore.Single(op => op.Kind == RestoreKind.Update), RestoreOp.BulkRows).ToList();

        return new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["json-before-image-0"] = RowImages.BeforeImageSelect(Documents, 0),
            ["json-after-image-0"] = RowImages.AfterImageSelect(Documents, 0),
            ["json-restore-ops"] = string.Join("\n", docRestore.Select(op => $"{op.Kind}: {op.Sql}")),
            ["json-restore-script"] = string.Concat(docRestore.Select(op => op.ToScript(RunId.ToString()))),
            ["json-restore-bulk"] = RestoreOp.BulkUpdateSql(docBulk),
            ["json-restore-bulk-script"] = RestoreOp.ToScript(docBulk, RunId.ToString()),
            ["item-settings-transaction"] = ItemExecutor.ItemSettingsSelect(local: true),
            ["item-settings-session"] = ItemExecutor.ItemSettingsSelect(local: false),
            ["before-image-0"] = RowImages.BeforeImageSelect(Sessions, 0),
            ["after-image-1"] = RowImages.AfterImageSelect(Profiles, 1),
            ["image-select"] = RowImages.ImageSelect(Profiles, forUpdate: false),
            ["image-select-for-update"] = RowImages.ImageSelect(Sessions, forUpdate: true),
            ["query-wrapper"] = BackfillSql.Query("SELECT s.id::text AS key FROM prism.sessions s WHERE s.status = 'completed';"),
            ["lease-check"] = JobLease.CheckSql(),
            ["lease-check-no-lock"] = JobLease.CheckSql(lockRow: false),
            ["ledger-applied"] = LedgerStore.AppliedInsert(2),
            ["ledger-applied-on-server"] = GroupExecutor.LedgerStatement(job),
            ["dry-run-item-on-server"] = GroupExecutor.DryRunStatement(job),
            ["plan-check-on-server"] = GroupExecutor.PlanCheckStatement(2),
            ["ledger-supersede"] = LedgerStore.Supersede,
            ["ledger-undone"] = LedgerStore.UndoneInsert,
            ["ledger-drifted"] = LedgerStore.DriftedInsert,
            ["ledger-live-applied"] = LedgerStore.LiveApplied(newestFirst: false),
            ["ledger-live-applied-newest-first"] = LedgerStore.LiveApplied(newestFirst: true),
            ["script-missing-items"] = LedgerStore.ScriptMissingItems(RunId),
            ["script-mark-undone"] = LedgerStore.ScriptMarkUndone(RunId),
            ["restore-ops"] = string.Join("\n", restore.Select(op => $"{op.Kind}: {op.Sql}")),
            ["restore-ops-of-a-deleted-item"] = string.Join("\n", RestoreOp.ForItem("a1", before, deleted, [Sessions, Profiles]).Select(op => $"{op.Kind}: {op.Sql}")),
            ["restore-script"] = string.Concat(restore.Select(op => op.ToScript(RunId.ToString()))),
        };
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Generated_statement_matches_its_snapshot(string name)
    {
        var actual = Statements()[name].ReplaceLineEndings("\n").TrimEnd() + "\n";
        var file = Path.Combine(SnapshotFolder(), name + ".sql");
        if (Environment.GetEnvironmentVariable("DATAOPS_UPDATE_SNAPSHOTS") == "1")
        {
            File.WriteAllText(file, actual);
        }

        Assert.True(File.Exists(file), $"No snapshot {file}: run with DATAOPS_UPDATE_SNAPSHOTS=1 to write it, and review it.");
        Assert.Equal(File.ReadAllText(file).ReplaceLineEndings("\n"), actual);
    }

    [Fact]
    public void Every_snapshot_file_belongs_to_a_statement()
    {
        var names = Statements().Keys.ToHashSet(StringComparer.Ordinal);
        var stale = Directory.GetFiles(SnapshotFolder(), "*.sql").Select(Path.GetFileNameWithoutExtension).Where(n => !names.Contains(n!)).ToList();
        Assert.Empty(stale);
    }

    private static string SnapshotFolder([CallerFilePath] string source = "") => Path.Combine(Path.GetDirectoryName(source)!, "Snapshots");

    private static string RepoRoot([CallerFilePath] string source = "") => Path.GetFullPath(Path.Combine(Path.GetDirectoryName(source)!, "..", ".."));
}
