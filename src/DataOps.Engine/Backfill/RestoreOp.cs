using System.Text;
using System.Text.Json.Nodes;
using DataOps.Engine.Jobs;

namespace DataOps.Engine.Backfill;

public enum RestoreKind
{
    /// <summary>The backfill inserted the row: delete it.</summary>
    Delete,

    /// <summary>The backfill changed the row: put the old values back.</summary>
    Update,

    /// <summary>The backfill deleted the row: insert it again.</summary>
    Insert,
}

/// <summary>
/// One row to put back. It applies only if the row still equals its after-image (for Insert: if
/// no row with its key exists), otherwise it is drift and nothing of the item is restored.
/// </summary>
public sealed record RestoreOp(string ItemKey, RestoreKind Kind, string Table, string RowReference, IReadOnlyList<string> PrimaryKey, string? Before, string? After)
{
    private string Ref => BackfillSql.Quote(RowReference);

    private string Pk => string.Join(", ", PrimaryKey.Select(BackfillSql.Quote));

    private IReadOnlyList<string> Columns => [.. JsonNode.Parse(Before!)!.AsObject().Select(p => p.Key)];

    /// <summary>A short description of the row, by primary key.</summary>
    public string RowLabel
    {
        get
        {
            var row = JsonNode.Parse(Before ?? After!)!.AsObject();
            return $"{Table} ({string.Join(", ", PrimaryKey.Select(k => $"{k}={row[k]?.ToJsonString()}"))})";
        }
    }

    /// <summary>The parameterized statement (@before, @after); exactly one row must be affected.</summary>
    public string Sql => Kind switch
    {
        RestoreKind.Delete => $"DELETE FROM {Table} WHERE ({Pk}) = (SELECT {Pk} FROM jsonb_populate_record(NULL::{Table}, @after::jsonb)) AND to_jsonb({Ref}) = @after::jsonb",
        RestoreKind.Update => $"UPDATE {Table} SET ({string.Join(", ", Columns.Select(BackfillSql.Quote))}) = (SELECT {string.Join(", ", Columns.Select(BackfillSql.Quote))} FROM jsonb_populate_record(NULL::{Table}, @before::jsonb)) " +
                              $"WHERE ({Pk}) = (SELECT {Pk} FROM jsonb_populate_record(NULL::{Table}, @before::jsonb)) AND to_jsonb({Ref}) = @after::jsonb",
        _ => $"INSERT INTO {Table} SELECT * FROM jsonb_populate_record(NULL::{Table}, @before::jsonb) ON CONFLICT DO NOTHING",
    };

    /// <summary>
    /// The same as a psql-runnable block with the images inlined as literals, raising on drift and
    /// checking the result. Nothing taken from data leaves a quoted literal: the comment line holds
    /// the key and row label escaped to printable ASCII (psql ends a comment at CR as well as LF, and
    /// a line that then starts with a backslash is a meta-command such as \!), and the DO body's
    /// dollar-quote tag is one that the body does not contain.
    /// </summary>
    public string ToScript(string runId)
    {
        var sql = Sql.Replace("@before::jsonb", Literal(Before), StringComparison.Ordinal).Replace("@after::jsonb", Literal(After), StringComparison.Ordinal);
        var check = Kind == RestoreKind.Delete
            ? $"PERFORM 1 FROM {Table} WHERE ({Pk}) = (SELECT {Pk} FROM jsonb_populate_record(NULL::{Table}, {Literal(After)})); IF FOUND THEN RAISE EXCEPTION 'DataOps rollback check failed: % still exists', {ScriptText.Literal(RowLabel)}; END IF;"
            : $"PERFORM 1 FROM {Table} WHERE ({Pk}) = (SELECT {Pk} FROM jsonb_populate_record(NULL::{Table}, {Literal(Before)})) AND to_jsonb({Ref}) = {Literal(Before)}; IF NOT FOUND THEN RAISE EXCEPTION 'DataOps rollback check failed: % does not equal its before-image', {ScriptText.Literal(RowLabel)}; END IF;";
        var body = new StringBuilder()
            .Append($"  {sql};").Append('\n')
            .Append($"  IF NOT FOUND THEN RAISE EXCEPTION 'DataOps rollback of run {runId} stopped: % (item %) changed since the backfill (it no longer equals the after-image); nothing was restored', {ScriptText.Literal(RowLabel)}, {ScriptText.Literal(ItemKey)}; END IF;").Append('\n')
            .Append($"  {check}").Append('\n')
            .ToString();
        var tag = ScriptText.DollarTag(body);
        return new StringBuilder()
            .Append($"-- item {ScriptText.QuotedComment(ItemKey)}: {Kind.ToString().ToLowerInvariant()} {ScriptText.Comment(RowLabel)}").Append('\n')
            .Append($"DO {tag} BEGIN").Append('\n')
            .Append(body)
            .Append($"END {tag};").Append('\n')
            .ToString();
    }

    private static string Literal(string? json) => json is null ? "NULL" : ScriptText.Literal(json) + "::jsonb";

    /// <summary>The operations that undo one item, in a safe order: inserted rows go first (children before parents), then updates and re-inserts.</summary>
    public static IReadOnlyList<RestoreOp> ForItem(string key, ItemImage before, ItemImage after, IReadOnlyList<CaptureTable> tables)
    {
        var ops = new List<RestoreOp>();
        string PkOf(CaptureTable t, string row)
        {
            var o = JsonNode.Parse(row)!.AsObject();
            return string.Join("\u001f", t.PrimaryKey.Select(k => o[k]?.ToJsonString() ?? "null"));
        }

        foreach (var t in tables.Reverse())
        {
            var beforeRows = (before.Tables.GetValueOrDefault(t.QualifiedName) ?? []).ToDictionary(r => PkOf(t, r));
            foreach (var row in after.Tables.GetValueOrDefault(t.QualifiedName) ?? [])
            {
                if (!beforeRows.ContainsKey(PkOf(t, row)))
                {
                    ops.Add(new RestoreOp(key, RestoreKind.Delete, t.QualifiedName, t.RowReference, t.PrimaryKey, null, row));
                }
            }
        }

        foreach (var t in tables)
        {
            var afterRows = (after.Tables.GetValueOrDefault(t.QualifiedName) ?? []).ToDictionary(r => PkOf(t, r));
            foreach (var row in before.Tables.GetValueOrDefault(t.QualifiedName) ?? [])
            {
                if (!afterRows.TryGetValue(PkOf(t, row), out var now))
                {
                    ops.Add(new RestoreOp(key, RestoreKind.Insert, t.QualifiedName, t.RowReference, t.PrimaryKey, row, null));
                }
                else if (!JsonNode.DeepEquals(JsonNode.Parse(now), JsonNode.Parse(row)))
                {
                    ops.Add(new RestoreOp(key, RestoreKind.Update, t.QualifiedName, t.RowReference, t.PrimaryKey, row, now));
                }
            }
        }

        return ops;
    }
}
