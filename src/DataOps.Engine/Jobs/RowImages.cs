using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace DataOps.Engine.Jobs;

/// <summary>The captured rows of one item: table name to rows (each row the JSON of to_jsonb(row), see <see cref="RowImages"/>).</summary>
public sealed class ItemImage
{
    public Dictionary<string, List<string>> Tables { get; } = new(StringComparer.Ordinal);

    /// <summary>The image as one JSON object; the rows are the server's JSON text, copied as they are (never parsed again).</summary>
    public string ToJson()
    {
        var sb = new StringBuilder("{");
        foreach (var (table, rows) in Tables)
        {
            sb.Append(sb.Length == 1 ? string.Empty : ",").Append(JsonSerializer.Serialize(table)).Append(":[");
            for (var i = 0; i < rows.Count; i++)
            {
                sb.Append(i == 0 ? string.Empty : ",").Append(rows[i]);
            }

            sb.Append(']');
        }

        return sb.Append('}').ToString();
    }

    public static ItemImage FromJson(string? json)
    {
        var image = new ItemImage();
        if (string.IsNullOrEmpty(json))
        {
            return image;
        }

        using var doc = JsonDocument.Parse(json);
        foreach (var table in doc.RootElement.EnumerateObject())
        {
            image.Tables[table.Name] = [.. table.Value.EnumerateArray().Select(r => r.GetRawText())];
        }

        return image;
    }
}

/// <summary>SQL pieces shared by the image capture and the restore statements.</summary>
/// <remarks>
/// A row's image is to_jsonb(row). That is exact for every type but json, jsonb and the types built on
/// them: a jsonb column holding the JSON value null and one holding SQL NULL both become null, and a
/// json column is converted to jsonb (key order, duplicate keys and whitespace are lost). The image of
/// a row of a table with such columns (<see cref="CaptureTable.JsonColumns"/>,
/// <see cref="CaptureTable.HoldsJsonColumns"/>) therefore also holds their text under two extra keys,
/// <see cref="JsonKey"/> and <see cref="HoldsJsonKey"/> (SQL NULL as null); the restore reads them
/// back exactly, and the drift check compares the same image, so a change of null state is drift.
/// Tables without such columns keep the plain to_jsonb(row) image, byte for byte, and so do images
/// written before (they have neither key and restore as they always did).
/// </remarks>
internal static class RowImages
{
    /// <summary>
    /// The key of a row image that holds the text of its json and jsonb columns (and domains over them):
    /// {"column": "text" or null}. A restore casts the text to json (assignment converts it to jsonb).
    /// </summary>
    public const string JsonKey = "dataops:json";

    /// <summary>
    /// The key of a row image that holds the text of its columns of arrays and composite types that
    /// contain json or jsonb: {"column": "text" or null}. A restore gives the text to the type's input
    /// function (jsonb_populate_record does that with a JSON string for such a column).
    /// </summary>
    public const string HoldsJsonKey = "dataops:holds-json";

    /// <summary>
    /// The image of one row (<paramref name="alias"/>): to_jsonb, plus the text of the columns it loses. Always
    /// to_jsonb(alias.*): a bare to_jsonb(alias) is the column of that name when the table has one (a table
    /// "orders" with a column "orders", or the images' alias r beside a column r), not the row.
    /// </summary>
    public static string RowImage(CaptureTable t, string alias) => RowImage(alias, t.JsonColumns, t.HoldsJsonColumns);

    /// <summary>
    /// The image of one row: to_jsonb(<paramref name="alias"/>), and for tables with json columns the
    /// two keys that hold their text. Capture and restore build it from the same lists (the capture
    /// from the catalog, a restore from the image's keys), so the jsonb is the same.
    /// </summary>
    public static string RowImage(string alias, IReadOnlyList<string> json, IReadOnlyList<string> holding)
    {
        if (json.Count == 0 && holding.Count == 0)
        {
            return $"to_jsonb({alias}.*)";
        }

        var parts = new List<string>();
        if (json.Count > 0)
        {
            parts.Add($"{Backfill.ScriptText.Literal(JsonKey)}, {ColumnTexts(alias, json)}");
        }

        if (holding.Count > 0)
        {
            parts.Add($"{Backfill.ScriptText.Literal(HoldsJsonKey)}, {ColumnTexts(alias, holding)}");
        }

        return $"(to_jsonb({alias}.*) || jsonb_build_object({string.Join(", ", parts)}))";
    }

    /// <summary>{"column": column::text, ...}; jsonb_build_object takes at most 100 arguments, so 50 columns a call.</summary>
    private static string ColumnTexts(string alias, IReadOnlyList<string> columns) =>
        string.Join(" || ", columns.Chunk(50).Select(chunk =>
            $"jsonb_build_object({string.Join(", ", chunk.Select(c => $"{Backfill.ScriptText.Literal(c)}, {alias}.{BackfillSql.Quote(c)}::text"))})"));

    /// <summary>
    /// The columns of a table whose values to_jsonb does not keep exactly, by <see cref="JsonKey"/>
    /// (json, jsonb and domains over them: plain) and <see cref="HoldsJsonKey"/> (arrays, composite
    /// types and domains that contain them at any depth). Ranges are left out: to_jsonb keeps a range
    /// as its text, whatever its subtype. The walk goes down from the table's own column types (a walk
    /// up from json to every type that holds it took 3 s on a database of 3,000 tables, measured).
    /// </summary>
    public const string JsonColumnsSql = """
        WITH RECURSIVE walk(attnum, oid, plain) AS (
            SELECT a.attnum, a.atttypid, true FROM pg_attribute a WHERE a.attrelid = @oid::oid AND a.attnum > 0 AND NOT a.attisdropped
            UNION
            SELECT w.attnum, x.oid, w.plain AND x.domain
            FROM walk w JOIN pg_type t ON t.oid = w.oid
            CROSS JOIN LATERAL (
                SELECT t.typbasetype, true WHERE t.typtype = 'd'
                UNION ALL SELECT t.typelem, false WHERE t.typelem <> 0 AND t.typlen = -1
                UNION ALL SELECT c.atttypid, false FROM pg_attribute c WHERE t.typtype = 'c' AND c.attrelid = t.typrelid AND c.attnum > 0 AND NOT c.attisdropped
            ) x(oid, domain)
        )
        SELECT a.attname::text, bool_and(w.plain)
        FROM walk w JOIN pg_attribute a ON a.attrelid = @oid::oid AND a.attnum = w.attnum
        WHERE w.oid IN ('json'::regtype, 'jsonb'::regtype)
        GROUP BY a.attnum, a.attname
        ORDER BY a.attnum
        """;

    /// <summary>The column lists of an image's extra keys (empty for images without them: other tables', and every image written before).</summary>
    public static (IReadOnlyList<string> Json, IReadOnlyList<string> Holding) JsonColumnsOf(JsonObject row) =>
        (Keys(row[JsonKey]), Keys(row[HoldsJsonKey]));

    private static IReadOnlyList<string> Keys(JsonNode? node) => node is JsonObject o ? [.. o.Select(p => p.Key)] : [];

    /// <summary>Whether a key of a row image is one of the extra keys, not a column.</summary>
    public static bool IsExtraKey(string key) => key is JsonKey or HoldsJsonKey;

    /// <summary>
    /// The rows a capture predicate selects, as a JSON array of to_jsonb(row) in primary-key order.
    /// Test-ProdHealth hashes the same text (without the lock) that the item transaction captures.
    /// </summary>
    public static string ImageSelect(CaptureTable t, bool forUpdate) =>
        $"coalesce((SELECT jsonb_agg({RowImage(t, "r")} ORDER BY {PkOf(t, "r")}) FROM (SELECT * FROM {t.QualifiedName} WHERE ({t.Spec.Where}) ORDER BY {RowImages.PkList(t)}{(forUpdate ? " FOR UPDATE" : string.Empty)}) r), '[]'::jsonb)::text";

    /// <summary>Locks a capture table's rows of the item and keeps their image in the transaction-local setting dataops.before_N.</summary>
    public static string BeforeImageSelect(CaptureTable t, int index) =>
        $"SELECT set_config('dataops.before_{index}', {ImageSelect(t, forUpdate: true)}, true)";

    /// <summary>
    /// The after-image of a capture table (jsonb): the rows its predicate selects now, and the rows of
    /// the before-image (kept in the setting dataops.before_N), which the steps may have moved out
    /// of the predicate or deleted.
    /// </summary>
    public static string AfterImageSelect(CaptureTable t, int index) =>
        $"coalesce((SELECT jsonb_agg({RowImage(t, "r")} ORDER BY {PkOf(t, "r")}) FROM (SELECT * FROM {t.QualifiedName} WHERE ({t.Spec.Where}) OR {RowImages.InImage(t, $"current_setting('dataops.before_{index}')::jsonb")}) r), '[]'::jsonb)";

    /// <summary>
    /// Whether a keyset chunk captures the table in the chunk form (<see cref="ChunkBeforeSelect"/>): a
    /// one-column primary key whose keys travel as an array of its type (<see cref="CaptureTable.KeyType"/>) and no json columns.
    /// </summary>
    public static bool TakesChunkForm(CaptureTable t) => t.KeyType is not null && t.JsonColumns.Count == 0 && t.HoldsJsonColumns.Count == 0;

    /// <summary>
    /// A keyset chunk's before-image of a table (<see cref="TakesChunkForm"/>): the rows locked FOR
    /// UPDATE as json_agg(to_json(row)), kept in dataops.before_N, and their keys as an array in
    /// dataops.before_keys_N. On a chunk of 10,000 rows the JSON takes about half the server time of
    /// jsonb_agg(to_jsonb(row)) (measured); it holds the same values once read as jsonb, which the
    /// ledger and every restore do, and both images of a chunk are built alike, so their texts compare.
    /// The rows are locked in key order; the aggregates take them as they come (no second sort: rows
    /// are matched by key, never by their place in the image).
    /// </summary>
    public static string ChunkBeforeSelect(CaptureTable t, int index)
    {
        var pk = BackfillSql.Quote(t.PrimaryKey[0]);
        return $"SELECT set_config('dataops.before_{index}', coalesce(json_agg(to_json(r.*)), '[]')::text, true), " +
               $"set_config('dataops.before_keys_{index}', coalesce(array_agg(r.{pk}), '{{}}')::text, true) " +
               $"FROM (SELECT * FROM {t.QualifiedName} WHERE ({t.Spec.Where}) ORDER BY {pk} FOR UPDATE) r";
    }

    /// <summary>
    /// A keyset chunk's after-image of a table (json, see <see cref="ChunkBeforeSelect"/>): the rows
    /// the predicate selects now and the rows whose keys the before-image holds, found by the primary
    /// key's index from the key array (not taken out of the image's JSON again, which cost more than
    /// the image itself on large chunks, measured).
    /// </summary>
    public static string ChunkAfterSelect(CaptureTable t, int index)
    {
        var pk = BackfillSql.Quote(t.PrimaryKey[0]);
        return $"coalesce((SELECT json_agg(to_json(r.*)) FROM (SELECT * FROM {t.QualifiedName} WHERE ({t.Spec.Where}) " +
               $"OR {pk} = ANY(CAST(current_setting('dataops.before_keys_{index}') AS {t.KeyType}[]))) r), '[]'::json)";
    }

    /// <summary>
    /// An item's image as its transaction keeps it, as one jsonb object: for each capture table N, its
    /// name (@dataops_table_N) and the rows in the setting dataops.WHICH_N.
    /// </summary>
    public static string FromSettings(string which, int tables) =>
        ImageObject(Enumerable.Range(0, tables).Select(i => $"current_setting('dataops.{which}_{i}')::jsonb"));

    /// <summary>
    /// {table: rows} of an item's image from one jsonb expression per capture table N (named by
    /// @dataops_table_N). jsonb_build_object takes at most 100 arguments, so 50 tables a call, joined with ||.
    /// </summary>
    public static string ImageObject(IEnumerable<string> rows)
    {
        var pairs = rows.Select((r, i) => $"@dataops_table_{i}::text, {r}").ToList();
        return pairs.Count == 0 ? "'{}'::jsonb" : "(" + string.Join(" || ", pairs.Chunk(50).Select(c => $"jsonb_build_object({string.Join(", ", c)})")) + ")";
    }

    /// <summary>The rows of an image (a JSON array) as their text, read forward without building a document.</summary>
    public static List<string> Rows(string jsonArray)
    {
        var bytes = Encoding.UTF8.GetBytes(jsonArray);
        var reader = new Utf8JsonReader(bytes);
        var rows = new List<string>();
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartArray)
        {
            throw new JsonException("A row image is not a JSON array.");
        }

        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            var start = (int)reader.TokenStartIndex;
            reader.Skip();
            rows.Add(Encoding.UTF8.GetString(bytes, start, (int)reader.BytesConsumed - start));
        }

        return rows;
    }

    private static string PkOf(CaptureTable t, string alias) => string.Join(", ", t.PrimaryKey.Select(k => $"{alias}.{BackfillSql.Quote(k)}"));


    public static string PkList(CaptureTable t) => string.Join(", ", t.PrimaryKey.Select(BackfillSql.Quote));

    /// <summary>
    /// A predicate: the row's primary key is one of the rows in <paramref name="jsonArray"/> (an
    /// image). The first key column is matched with <c>= ANY(ARRAY(...))</c> so the planner can use
    /// the primary key index even beside an OR; a plain <c>IN (SELECT ... FROM
    /// jsonb_populate_recordset(...))</c> next to an OR made it scan the whole table for every item
    /// (0.7 ms per item on 10,000 rows, measured). Composite keys add the exact tuple match.
    /// </summary>
    public static string InImage(CaptureTable t, string jsonArray)
    {
        var rows = $"jsonb_populate_recordset(NULL::{t.QualifiedName}, {jsonArray})";
        var first = BackfillSql.Quote(t.PrimaryKey[0]);
        var indexable = $"{first} = ANY(ARRAY(SELECT {first} FROM {rows}))";
        return t.PrimaryKey.Count == 1
            ? $"({indexable})"
            : $"({indexable} AND ({PkList(t)}) IN (SELECT {PkList(t)} FROM {rows}))";
    }
}
