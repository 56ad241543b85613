using System.Text.Json;

namespace DataOps.Engine.Jobs;

/// <summary>
/// $.items.keyset: instead of a list of keys, the run walks <paramref name="Table"/> in the order of
/// its key column <paramref name="Key"/>, in chunks (key ranges) sized to take about
/// <paramref name="ChunkTime"/> each, between <paramref name="MinChunkSize"/> and
/// <paramref name="MaxChunkSize"/> rows. Only rows whose key is at most the largest key when the run
/// starts are taken; <paramref name="Where"/> (optional) narrows the rows. Each chunk is one item: its
/// SQL uses @lo and @hi (the chunk's first and last key, as text) instead of @key.
/// </summary>
public sealed record KeysetSpec(
    string Table, string Key, string? Where, TimeSpan ChunkTime, int MinChunkSize, int MaxChunkSize, TimeSpan StatementTimeout)
{
    public static readonly TimeSpan DefaultChunkTime = TimeSpan.FromSeconds(1);

    public static readonly TimeSpan MinChunkTime = TimeSpan.FromMilliseconds(10);

    public static readonly TimeSpan MaxChunkTime = TimeSpan.FromSeconds(30);

    public const int DefaultMinChunkSize = 100;

    public const int DefaultMaxChunkSize = 10_000;

    /// <summary>The largest chunk: its before- and after-images travel as one ledger row.</summary>
    public const int MaxChunkSizeLimit = 100_000;

    /// <summary>A chunk statement's server-side limit by default (the one-item path's); a chunk that hits it is halved and tried again.</summary>
    public static readonly TimeSpan DefaultStatementTimeout = TimeSpan.FromSeconds(60);

    public static readonly TimeSpan MinStatementTimeout = TimeSpan.FromMilliseconds(100);

    public static readonly TimeSpan MaxStatementTimeout = TimeSpan.FromSeconds(60);

    /// <summary>
    /// The key column's name as the catalog holds it: a double-quoted key ("\"Account Id\"") is SQL's
    /// spelling of the name inside the quotes; a plain one is the name itself, case kept.
    /// </summary>
    public string KeyColumn => Key.Length >= 2 && Key[0] == '"' && Key[^1] == '"' ? Key[1..^1].Replace("\"\"", "\"", StringComparison.Ordinal) : Key;

    /// <summary>The size of the first chunk: the smallest, so the first measurement costs little.</summary>
    public int FirstChunkSize => MinChunkSize;

    /// <summary>
    /// The next chunk's size from the last one's: rows per second seen times the target time,
    /// at most double and at least half the last size (a slow server is followed, not chased), within
    /// [MinChunkSize, MaxChunkSize]. A chunk with no time measured doubles.
    /// </summary>
    public int NextChunkSize(int lastSize, int lastRows, TimeSpan lastTime)
    {
        double next = lastTime <= TimeSpan.Zero || lastRows == 0
            ? lastSize * 2.0
            : lastRows / lastTime.TotalSeconds * ChunkTime.TotalSeconds;
        next = Math.Clamp(next, lastSize / 2.0, lastSize * 2.0);
        return (int)Math.Clamp(Math.Round(next), MinChunkSize, MaxChunkSize);
    }
}

/// <summary>
/// One chunk of a keyset walk: its first and last key (inclusive), as text. Its item key, as the
/// ledger and the run's files show it, is the JSON array ["lo","hi"].
/// </summary>
public readonly record struct KeysetChunk(string Lo, string Hi)
{
    /// <summary>
    /// ["lo","hi"], readable: quotes, backslashes and control characters are escaped as JSON needs,
    /// apostrophes, plus signs and letters of other scripts are not (the default encoder wrote
    /// \u0027 and \u002B into results, logs and the ledger). Keys written either way are read as JSON.
    /// </summary>
    public string Key => JsonSerializer.Serialize(new[] { Lo, Hi }, Readable);

    private static readonly JsonSerializerOptions Readable = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The chunk an item key names, if it names one.</summary>
    public static bool TryParse(string? key, out KeysetChunk chunk)
    {
        chunk = default;
        if (key is null || key.Length < 2 || key[0] != '[')
        {
            return false;
        }

        try
        {
            var pair = JsonSerializer.Deserialize<string[]>(key);
            if (pair is [var lo, var hi] && lo is not null && hi is not null)
            {
                chunk = new KeysetChunk(lo, hi);
                return true;
            }
        }
        catch (JsonException)
        {
        }

        return false;
    }

    public override string ToString() => Key;
}

/// <summary>
/// The keyset walk's table and key column as the database describes them (see <see cref="JobValidator"/>):
/// <paramref name="QualifiedName"/> as regclass prints it (quoted where needed), <paramref name="KeyColumn"/>
/// the column's name as the catalog holds it; <paramref name="Collate"/>: " COLLATE schema.name" when the
/// column's collation is not the database's default, so the ledger's chunk bounds sort as the walk does.
/// </summary>
public sealed record KeysetTarget(string QualifiedName, string KeyColumn, string KeyType, bool Indexed, string Collate = "")
{
    /// <summary>The key column in SQL text: always quoted, so any name (capitals, spaces, reserved words) means exactly that column.</summary>
    public string QuotedKey => BackfillSql.Quote(KeyColumn);

    /// <summary>The key column for people: quoted only where SQL needs it (as regclass prints the table).</summary>
    public string KeyLabel => KeyColumn.Length > 0 && (KeyColumn[0] is >= 'a' and <= 'z' or '_') && KeyColumn.All(c => c is >= 'a' and <= 'z' or >= '0' and <= '9' or '_') ? KeyColumn : QuotedKey;
}

/// <summary>What a keyset job's next run would walk: keys after <paramref name="After"/> (null: from the first) up to <paramref name="Bound"/> (null: no row), of a table of about <paramref name="EstimatedRows"/> rows (0: unknown).</summary>
public sealed record KeysetPreview(string Table, string Key, string? After, string? Bound, long EstimatedRows)
{
    public override string ToString() => Bound is null
        ? $"no row of {Table} to walk"
        : $"rows of {Table} with {Key} {(After is null ? "from the first key" : $"after {After}")} up to {Bound}{(EstimatedRows > 0 ? $" (the table has about {EstimatedRows} rows)" : string.Empty)}, in chunks";
}
