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

    /// <summary>Consecutive updates of one table and item from this many rows on are restored by one statement (a keyset chunk's thousands of rows).</summary>
    internal const int BulkRows = 16;

    /// <summary>
    /// An item's restore operations as steps: each update run of <see cref="BulkRows"/> or more rows of
    /// one table becomes one group, everything else stays one row per step, in the same order.
    /// </summary>
    public static IEnumerable<IReadOnlyList<RestoreOp>> Steps(IReadOnlyList<RestoreOp> ops)
    {
        var i = 0;
        while (i < ops.Count)
        {
            var j = i;
            while (j < ops.Count && ops[j].Kind == RestoreKind.Update && ops[i].Kind == RestoreKind.Update && ops[j].Table == ops[i].Table && ops[j].ItemKey == ops[i].ItemKey)
            {
                j++;
            }

            if (j - i >= BulkRows)
            {
                yield return ops.Skip(i).Take(j - i).ToList();
                i = j;
            }
            else
            {
                yield return [ops[i++]];
            }
        }
    }

    /// <summary>
    /// Many updates of one table as one statement (@before and @after: JSON arrays of the rows, in the
    /// same order): each row is put back only if it still equals its after-image; the caller compares
    /// the count of rows updated with the rows given. The pairs are fenced (OFFSET 0) so each row's
    /// record is built once, not once per column.
    /// </summary>
    public static string BulkUpdateSql(IReadOnlyList<RestoreOp> group)
    {
        var first = group[0];
        var columns = first.Columns.Select(BackfillSql.Quote).ToList();
        var pk = first.PrimaryKey.Select(BackfillSql.Quote).ToList();
        return $"UPDATE {first.Table} AS dataops_t SET ({string.Join(", ", columns)}) = ROW({string.Join(", ", columns.Select(c => $"(p.b).{c}"))}) " +
               $"FROM (SELECT jsonb_populate_record(NULL::{first.Table}, b.value) AS b, a.value AS a FROM jsonb_array_elements(@before::jsonb) WITH ORDINALITY AS b(value, i) JOIN jsonb_array_elements(@after::jsonb) WITH ORDINALITY AS a(value, i) USING (i) OFFSET 0) p " +
               $"WHERE ({string.Join(", ", pk.Select(k => $"dataops_t.{k}"))}) = ({string.Join(", ", pk.Select(k => $"(p.b).{k}"))}) AND to_jsonb(dataops_t) = p.a";
    }

    /// <summary>How many of the rows (@before, a JSON array) now equal their before-images: the check after a bulk update.</summary>
    private static string BulkCheckSql(IReadOnlyList<RestoreOp> group)
    {
        var first = group[0];
        var pk = first.PrimaryKey.Select(BackfillSql.Quote).ToList();
        return $"SELECT count(*) FROM {first.Table} AS dataops_t JOIN (SELECT jsonb_populate_record(NULL::{first.Table}, b.value) AS b, b.value AS j FROM jsonb_array_elements(@before::jsonb) AS b(value) OFFSET 0) p " +
               $"ON ({string.Join(", ", pk.Select(k => $"dataops_t.{k}"))}) = ({string.Join(", ", pk.Select(k => $"(p.b).{k}"))}) WHERE to_jsonb(dataops_t) = p.j";
    }

    /// <summary>The JSON array of a group's before- or after-images.</summary>
    public static string Array(IReadOnlyList<RestoreOp> group, bool before) => "[" + string.Join(",", group.Select(o => before ? o.Before : o.After)) + "]";

    /// <summary>
    /// A step (see <see cref="Steps"/>) as a psql-runnable block: one row as <see cref="ToScript(string)"/>; a
    /// bulk update with its two images inlined once each as literals, raising on drift (how many rows
    /// changed since the backfill) and checking that every row equals its before-image afterwards.
    /// </summary>
    public static string ToScript(IReadOnlyList<RestoreOp> step, string runId)
    {
        if (step.Count == 1)
        {
            return step[0].ToScript(runId);
        }

        var first = step[0];
        var n = step.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var label = ScriptText.Literal(first.Table);
        var key = ScriptText.Literal(first.ItemKey);
        var update = BulkUpdateSql(step).Replace("@before::jsonb", "dataops_before", StringComparison.Ordinal).Replace("@after::jsonb", "dataops_after", StringComparison.Ordinal);
        var check = BulkCheckSql(step).Replace("@before::jsonb", "dataops_before", StringComparison.Ordinal).Replace("SELECT count(*) FROM", "SELECT count(*) INTO dataops_n FROM", StringComparison.Ordinal);
        var body = new StringBuilder()
            .Append($"  dataops_before jsonb := {Literal(Array(step, before: true))};").Append('\n')
            .Append($"  dataops_after jsonb := {Literal(Array(step, before: false))};").Append('\n')
            .Append("  dataops_n bigint;").Append('\n')
            .Append("BEGIN").Append('\n')
            .Append($"  {update};").Append('\n')
            .Append("  GET DIAGNOSTICS dataops_n = ROW_COUNT;").Append('\n')
            .Append($"  IF dataops_n <> {n} THEN RAISE EXCEPTION 'DataOps rollback of run {runId} stopped: % of {n} rows of % (item %) changed since the backfill (they no longer equal their after-images); nothing was restored', {n} - dataops_n, {label}, {key}; END IF;").Append('\n')
            .Append($"  {check};").Append('\n')
            .Append($"  IF dataops_n <> {n} THEN RAISE EXCEPTION 'DataOps rollback check failed: % of {n} rows of % do not equal their before-images', {n} - dataops_n, {label}; END IF;").Append('\n')
            .ToString();
        var tag = ScriptText.DollarTag(body);
        return new StringBuilder()
            .Append($"-- item {ScriptText.QuotedComment(first.ItemKey)}: update {n} rows of {ScriptText.Comment(first.Table)}").Append('\n')
            .Append($"DO {tag} DECLARE").Append('\n')
            .Append(body)
            .Append($"END {tag};").Append('\n')
            .ToString();
    }

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
