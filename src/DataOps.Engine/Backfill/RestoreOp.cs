using System.Text;
using System.Text.Json;
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

    private IReadOnlyList<string> Columns => [.. JsonNode.Parse(Before!)!.AsObject().Select(p => p.Key).Where(k => !RowImages.IsExtraKey(k))];

    /// <summary>The json columns an image keeps as text (RowImages.JsonKey, HoldsJsonKey); none for images without them.</summary>
    private static (IReadOnlyList<string> Json, IReadOnlyList<string> Holds) JsonColumnsOf(string? image) =>
        image is null ? ([], []) : RowImages.JsonColumnsOf(JsonNode.Parse(image)!.AsObject());

    /// <summary>Whether the row's images keep json columns as text: then the restore reads them from there.</summary>
    private bool HasJsonText => JsonColumnsOf(Before ?? After) is { } j && j.Json.Count + j.Holds.Count > 0;

    /// <summary>The image of the row as it is now, built as the capture built <paramref name="image"/> (to compare the two).</summary>
    private string ImageNow(string reference, string? image)
    {
        var (json, holds) = JsonColumnsOf(image);
        return RowImages.RowImage(reference, json, holds);
    }

    /// <summary>
    /// FROM of a subquery that reads one image (<paramref name="image"/>, SQL of a jsonb value) as a row:
    /// dataops_i.i is the image, dataops_r the record. Columns that hold json get their text (the
    /// type's input function reads it back); json columns are read by <see cref="Values"/>.
    /// </summary>
    private string ImageSource(string image, IReadOnlyList<string> holds) =>
        $"(SELECT {image} AS i) dataops_i, LATERAL jsonb_populate_record(NULL::{Table}, " +
        (holds.Count > 0 ? $"dataops_i.i || coalesce(dataops_i.i -> {ScriptText.Literal(RowImages.HoldsJsonKey)}, '{{}}'::jsonb)" : "dataops_i.i") + ") dataops_r";

    /// <summary>
    /// The values of <paramref name="columns"/> from an image: json columns from their text, cast to
    /// json (assigned to a jsonb column or a domain, PostgreSQL converts it) or, to compare a key, to
    /// jsonb; every other column from the record.
    /// </summary>
    private static string Values(IEnumerable<string> columns, IReadOnlyList<string> json, string texts, string record, bool key) =>
        string.Join(", ", columns.Select(c => json.Contains(c, StringComparer.Ordinal)
            ? $"({texts} ->> {ScriptText.Literal(c)})::{(key ? "jsonb" : "json")}"
            : $"{record}.{BackfillSql.Quote(c)}"));

    /// <summary>The row's primary key from an image (SQL of a jsonb value), as a subquery.</summary>
    private string KeyFrom(string image, string? imageJson)
    {
        if (!HasJsonText)
        {
            return $"(SELECT {Pk} FROM jsonb_populate_record(NULL::{Table}, {image}))";
        }

        var (json, holds) = JsonColumnsOf(imageJson);
        return $"(SELECT {Values(PrimaryKey, json, $"(dataops_i.i -> {ScriptText.Literal(RowImages.JsonKey)})", "dataops_r", key: true)} FROM {ImageSource(image, holds)})";
    }

    /// <summary>A short description of the row, by primary key.</summary>
    public string RowLabel
    {
        get
        {
            var row = JsonNode.Parse(Before ?? After!)!.AsObject();
            return $"{Table} ({string.Join(", ", PrimaryKey.Select(k => $"{k}={row[k]?.ToJsonString()}"))})";
        }
    }

    /// <summary>
    /// The parameterized statement (@before, @after); exactly one row must be affected. For images
    /// with json columns' text (RowImages) the values come from that text and the drift check compares
    /// the same image; images without it get the statements they always had.
    /// </summary>
    public string Sql => HasJsonText ? JsonSql : Kind switch
    {
        RestoreKind.Delete => $"DELETE FROM {Table} WHERE ({Pk}) = (SELECT {Pk} FROM jsonb_populate_record(NULL::{Table}, @after::jsonb)) AND to_jsonb({Ref}.*) = @after::jsonb",
        RestoreKind.Update => $"UPDATE {Table} SET ({string.Join(", ", Columns.Select(BackfillSql.Quote))}) = (SELECT {string.Join(", ", Columns.Select(BackfillSql.Quote))} FROM jsonb_populate_record(NULL::{Table}, @before::jsonb)) " +
                              $"WHERE ({Pk}) = (SELECT {Pk} FROM jsonb_populate_record(NULL::{Table}, @before::jsonb)) AND to_jsonb({Ref}.*) = @after::jsonb",
        _ => $"INSERT INTO {Table} SELECT * FROM jsonb_populate_record(NULL::{Table}, @before::jsonb) ON CONFLICT DO NOTHING",
    };

    private string JsonSql
    {
        get
        {
            var texts = $"(dataops_i.i -> {ScriptText.Literal(RowImages.JsonKey)})";
            var (json, holds) = JsonColumnsOf(Before);
            var columns = Kind == RestoreKind.Delete ? string.Empty : string.Join(", ", Columns.Select(BackfillSql.Quote));
            var values = Kind == RestoreKind.Delete ? string.Empty : $"{Values(Columns, json, texts, "dataops_r", key: false)} FROM {ImageSource("@before::jsonb", holds)}";
            return Kind switch
            {
                RestoreKind.Delete => $"DELETE FROM {Table} WHERE ({Pk}) = {KeyFrom("@after::jsonb", After)} AND {ImageNow(Ref, After)} = @after::jsonb",
                RestoreKind.Update => $"UPDATE {Table} SET ({columns}) = (SELECT {values}) WHERE ({Pk}) = {KeyFrom("@before::jsonb", Before)} AND {ImageNow(Ref, After)} = @after::jsonb",
                _ => $"INSERT INTO {Table} ({columns}) SELECT {values} ON CONFLICT DO NOTHING",
            };
        }
    }

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
            ? $"PERFORM 1 FROM {Table} WHERE ({Pk}) = {KeyFrom(Literal(After), After)}; IF FOUND THEN RAISE EXCEPTION 'DataOps rollback check failed: % still exists', {ScriptText.Literal(RowLabel)}; END IF;"
            : $"PERFORM 1 FROM {Table} WHERE ({Pk}) = {KeyFrom(Literal(Before), Before)} AND {ImageNow(Ref, Before)} = {Literal(Before)}; IF NOT FOUND THEN RAISE EXCEPTION 'DataOps rollback check failed: % does not equal its before-image', {ScriptText.Literal(RowLabel)}; END IF;";
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
        if (first.HasJsonText)
        {
            // Images with json columns' text: the values, the keys and the drift check as in Sql.
            var (json, _) = JsonColumnsOf(first.Before);
            return $"UPDATE {first.Table} AS dataops_t SET ({string.Join(", ", columns)}) = ROW({Values(first.Columns, json, "p.dataops_json", "(p.b)", key: false)}) " +
                   $"FROM (SELECT {BulkRecord(first)} AS b, b.value -> {ScriptText.Literal(RowImages.JsonKey)} AS dataops_json, a.value AS a FROM jsonb_array_elements(@before::jsonb) WITH ORDINALITY AS b(value, i) JOIN jsonb_array_elements(@after::jsonb) WITH ORDINALITY AS a(value, i) USING (i) OFFSET 0) p " +
                   $"WHERE ({string.Join(", ", pk.Select(k => $"dataops_t.{k}"))}) = ({Values(first.PrimaryKey, json, "p.dataops_json", "(p.b)", key: true)}) AND {first.ImageNow("dataops_t", first.After)} = p.a";
        }

        return $"UPDATE {first.Table} AS dataops_t SET ({string.Join(", ", columns)}) = ROW({string.Join(", ", columns.Select(c => $"(p.b).{c}"))}) " +
               $"FROM (SELECT jsonb_populate_record(NULL::{first.Table}, b.value) AS b, a.value AS a FROM jsonb_array_elements(@before::jsonb) WITH ORDINALITY AS b(value, i) JOIN jsonb_array_elements(@after::jsonb) WITH ORDINALITY AS a(value, i) USING (i) OFFSET 0) p " +
               $"WHERE ({string.Join(", ", pk.Select(k => $"dataops_t.{k}"))}) = ({string.Join(", ", pk.Select(k => $"(p.b).{k}"))}) AND to_jsonb(dataops_t.*) = p.a";
    }

    /// <summary>The record of a bulk group's before-image b.value, the text of columns that hold json read back (see ImageSource).</summary>
    private static string BulkRecord(RestoreOp first) =>
        JsonColumnsOf(first.Before).Holds.Count > 0
            ? $"jsonb_populate_record(NULL::{first.Table}, b.value || coalesce(b.value -> {ScriptText.Literal(RowImages.HoldsJsonKey)}, '{{}}'::jsonb))"
            : $"jsonb_populate_record(NULL::{first.Table}, b.value)";

    /// <summary>How many of the rows (@before, a JSON array) now equal their before-images: the check after a bulk update.</summary>
    private static string BulkCheckSql(IReadOnlyList<RestoreOp> group)
    {
        var first = group[0];
        var pk = first.PrimaryKey.Select(BackfillSql.Quote).ToList();
        if (first.HasJsonText)
        {
            var (json, _) = JsonColumnsOf(first.Before);
            return $"SELECT count(*) FROM {first.Table} AS dataops_t JOIN (SELECT {BulkRecord(first)} AS b, b.value -> {ScriptText.Literal(RowImages.JsonKey)} AS dataops_json, b.value AS j FROM jsonb_array_elements(@before::jsonb) AS b(value) OFFSET 0) p " +
                   $"ON ({string.Join(", ", pk.Select(k => $"dataops_t.{k}"))}) = ({Values(first.PrimaryKey, json, "p.dataops_json", "(p.b)", key: true)}) WHERE {first.ImageNow("dataops_t", first.Before)} = p.j";
        }

        return $"SELECT count(*) FROM {first.Table} AS dataops_t JOIN (SELECT jsonb_populate_record(NULL::{first.Table}, b.value) AS b, b.value AS j FROM jsonb_array_elements(@before::jsonb) AS b(value) OFFSET 0) p " +
               $"ON ({string.Join(", ", pk.Select(k => $"dataops_t.{k}"))}) = ({string.Join(", ", pk.Select(k => $"(p.b).{k}"))}) WHERE to_jsonb(dataops_t.*) = p.j";
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
        var sb = new StringBuilder();
        Script(step, runId).WriteTo(sb);
        return sb.ToString();
    }

    /// <summary>
    /// A step's block, not yet written out: a keyset chunk's block holds megabytes of rows, so it is
    /// written once, straight into the caller's buffer, and its dollar-quote tags are chosen by
    /// looking at its pieces (the rows, and the text around them) instead of copies of the whole.
    /// </summary>
    internal sealed class StepScript
    {
        private readonly string? _whole;
        private readonly IReadOnlyList<RestoreOp>? _bulk;
        private readonly string _head = string.Empty;
        private readonly string _rest = string.Empty;

        public StepScript(string whole) => _whole = whole;

        public StepScript(IReadOnlyList<RestoreOp> bulk, string head, string rest) => (_bulk, _head, _rest) = (bulk, head, rest);

        /// <summary>
        /// Texts that together hold every character of the block that could be part of a dollar-quote
        /// tag: a tag ($, letters, digits, _) never spans two of them, since each row starts and ends
        /// with a brace and only punctuation lies between them.
        /// </summary>
        public IEnumerable<string> Pieces => _whole is not null ? [_whole] : [_head, _rest, .. _bulk!.Select(o => o.Before!), .. _bulk!.Select(o => o.After!)];

        public void WriteTo(StringBuilder sb)
        {
            if (_whole is not null)
            {
                sb.Append(_whole);
                return;
            }

            sb.Append(_head);
            sb.Append("  dataops_before jsonb := ");
            AppendArrayLiteral(sb, _bulk!, before: true);
            sb.Append(";\n  dataops_after jsonb := ");
            AppendArrayLiteral(sb, _bulk!, before: false);
            sb.Append(";\n").Append(_rest);
        }

        /// <summary>The JSON array of the rows' images as a standard literal cast to jsonb, written row by row (ScriptText.Literal's rules).</summary>
        private static void AppendArrayLiteral(StringBuilder sb, IReadOnlyList<RestoreOp> group, bool before)
        {
            sb.Append("'[");
            for (var i = 0; i < group.Count; i++)
            {
                ScriptText.AppendLiteralText(sb.Append(i == 0 ? string.Empty : ","), (before ? group[i].Before : group[i].After)!);
            }

            sb.Append("]'::jsonb");
        }
    }

    /// <summary>A step's block (see <see cref="ToScript(IReadOnlyList{RestoreOp}, string)"/>), to be written out by the caller.</summary>
    internal static StepScript Script(IReadOnlyList<RestoreOp> step, string runId)
    {
        if (step.Count == 1)
        {
            return new StepScript(step[0].ToScript(runId));
        }

        var first = step[0];
        var n = step.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var label = ScriptText.Literal(first.Table);
        var key = ScriptText.Literal(first.ItemKey);
        var update = BulkUpdateSql(step).Replace("@before::jsonb", "dataops_before", StringComparison.Ordinal).Replace("@after::jsonb", "dataops_after", StringComparison.Ordinal);
        var check = BulkCheckSql(step).Replace("@before::jsonb", "dataops_before", StringComparison.Ordinal).Replace("SELECT count(*) FROM", "SELECT count(*) INTO dataops_n FROM", StringComparison.Ordinal);
        var rest = new StringBuilder()
            .Append("  dataops_n bigint;").Append('\n')
            .Append("BEGIN").Append('\n')
            .Append($"  {update};").Append('\n')
            .Append("  GET DIAGNOSTICS dataops_n = ROW_COUNT;").Append('\n')
            .Append($"  IF dataops_n <> {n} THEN RAISE EXCEPTION 'DataOps rollback of run {runId} stopped: % of {n} rows of % (item %) changed since the backfill (they no longer equal their after-images); nothing was restored', {n} - dataops_n, {label}, {key}; END IF;").Append('\n')
            .Append($"  {check};").Append('\n')
            .Append($"  IF dataops_n <> {n} THEN RAISE EXCEPTION 'DataOps rollback check failed: % of {n} rows of % do not equal their before-images', {n} - dataops_n, {label}; END IF;").Append('\n')
            .ToString();

        // The tag must not occur in the body: the two literals (their rows) and the statements after them.
        var tag = ScriptText.DollarTag([rest, .. step.Select(o => o.Before!), .. step.Select(o => o.After!)]);
        var head = $"-- item {ScriptText.QuotedComment(first.ItemKey)}: update {n} rows of {ScriptText.Comment(first.Table)}\nDO {tag} DECLARE\n";
        return new StepScript(step, head, rest + $"END {tag};\n");
    }

    /// <summary>
    /// The operations that undo one item, in a safe order: inserted rows go first (children before
    /// parents), then updates and re-inserts. Rows are matched by primary key and compared by their
    /// text: both images of an item come from the same server expression, whose JSON output is the
    /// same for the same values (a keyset chunk's thousands of rows are each parsed once, for the key).
    /// </summary>
    public static IReadOnlyList<RestoreOp> ForItem(string key, ItemImage before, ItemImage after, IReadOnlyList<CaptureTable> tables)
    {
        var ops = new List<RestoreOp>();
        // Each image's rows of a table, by primary key: every row is read once, for its key.
        static Dictionary<string, string> ByKey(CaptureTable t, ItemImage image)
        {
            var rows = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var row in image.Tables.GetValueOrDefault(t.QualifiedName) ?? [])
            {
                rows[KeyOf(t, row)] = row;
            }

            return rows;
        }

        foreach (var t in tables.Reverse())
        {
            var beforeRows = ByKey(t, before);
            foreach (var row in after.Tables.GetValueOrDefault(t.QualifiedName) ?? [])
            {
                if (!beforeRows.ContainsKey(KeyOf(t, row)))
                {
                    ops.Add(new RestoreOp(key, RestoreKind.Delete, t.QualifiedName, t.RowReference, t.PrimaryKey, null, row));
                }
            }
        }

        foreach (var t in tables)
        {
            var afterRows = ByKey(t, after);
            foreach (var row in before.Tables.GetValueOrDefault(t.QualifiedName) ?? [])
            {
                if (!afterRows.TryGetValue(KeyOf(t, row), out var now))
                {
                    ops.Add(new RestoreOp(key, RestoreKind.Insert, t.QualifiedName, t.RowReference, t.PrimaryKey, row, null));
                }
                else if (!string.Equals(now, row, StringComparison.Ordinal))
                {
                    ops.Add(new RestoreOp(key, RestoreKind.Update, t.QualifiedName, t.RowReference, t.PrimaryKey, row, now));
                }
            }
        }

        return ops;
    }

    /// <summary>
    /// A row's primary key values (their JSON text), from its image: read with a forward-only reader
    /// that stops at the last key column (no document is built; a chunk has thousands of rows).
    /// </summary>
    private static string KeyOf(CaptureTable t, string row)
    {
        var bytes = System.Buffers.ArrayPool<byte>.Shared.Rent(Encoding.UTF8.GetMaxByteCount(row.Length));
        try
        {
            var reader = new Utf8JsonReader(bytes.AsSpan(0, Encoding.UTF8.GetBytes(row, bytes)));
            var values = new string?[t.PrimaryKey.Count];
            var found = 0;
            reader.Read();
            while (found < values.Length && reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var index = IndexOf(t.PrimaryKey, ref reader);
                reader.Read();
                var start = (int)reader.TokenStartIndex;
                reader.Skip();
                if (index >= 0 && values[index] is null)
                {
                    values[index] = Encoding.UTF8.GetString(bytes, start, (int)reader.BytesConsumed - start);
                    found++;
                }
            }

            return values.Length == 1 ? values[0] ?? "null" : string.Join("\u001f", values.Select(v => v ?? "null"));
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(bytes);
        }
    }

    /// <summary>Which of <paramref name="names"/> the property name under the reader is (-1: none).</summary>
    private static int IndexOf(IReadOnlyList<string> names, ref Utf8JsonReader reader)
    {
        for (var i = 0; i < names.Count; i++)
        {
            if (reader.ValueTextEquals(names[i]))
            {
                return i;
            }
        }

        return -1;
    }
}
