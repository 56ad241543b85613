using System.Globalization;
using System.Text;

namespace DataOps.Engine.Backfill;

/// <summary>
/// Text that goes into a psql script (the rollback script). psql reads its input in two layers: its
/// own lexer, where a line starting with a backslash is a meta-command (\! runs a shell command) and
/// :name is a variable, and then the server's. A value from data is only ever put into a script as
/// a single-quoted literal (inert to both layers once the script has set standard_conforming_strings
/// on and client_encoding UTF8, as pg_dump's output does) or as a comment escaped to printable ASCII,
/// so it can hold no line break (psql ends a comment at CR as well as LF).
/// </summary>
internal static class ScriptText
{
    /// <summary>
    /// The settings a script starts with, before any line that holds data: psql and the server then
    /// lex literals the same way whatever the database's or the client's defaults are (a backslash
    /// is plain text in a literal, the bytes are read as UTF-8).
    /// </summary>
    public const string Preamble = "SET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;";

    /// <summary>A standard SQL string literal: single quotes doubled, nothing else special.</summary>
    public static string Literal(string value)
    {
        RefuseNul(value);
        return "'" + value.Replace("'", "''", StringComparison.Ordinal) + "'";
    }

    /// <summary>
    /// The inside of a <see cref="Literal"/> (single quotes doubled, NUL refused), appended to
    /// <paramref name="sb"/>: a literal built from many values without a copy of each (a keyset chunk's rows).
    /// </summary>
    public static void AppendLiteralText(StringBuilder sb, ReadOnlySpan<char> value)
    {
        RefuseNul(value);
        int quote;
        while ((quote = value.IndexOf('\'')) >= 0)
        {
            sb.Append(value[..(quote + 1)]).Append('\'');
            value = value[(quote + 1)..];
        }

        sb.Append(value);
    }

    /// <summary>PostgreSQL text cannot hold NUL, so no row or key can; refuse rather than write a script psql would cut short.</summary>
    public static void RefuseNul(ReadOnlySpan<char> value)
    {
        if (value.Contains('\0'))
        {
            throw new DataOpsException("RollbackScriptUnsafe", DataOpsErrorKind.InvalidData, "A value for the rollback script contains a NUL character, which no PostgreSQL literal can hold.", null);
        }
    }

    /// <summary>
    /// Text for a comment: printable ASCII stays (a backslash is doubled), everything else is a
    /// JSON-style escape (\n, \r, \t, \uXXXX), so the comment is one line whatever the value holds.
    /// </summary>
    public static string Comment(string value)
    {
        var sb = new StringBuilder(value.Length + 8);
        foreach (var c in value)
        {
            switch (c)
            {
                case '\\': sb.Append(@"\\"); break;
                case '\n': sb.Append(@"\n"); break;
                case '\r': sb.Append(@"\r"); break;
                case '\t': sb.Append(@"\t"); break;
                case >= ' ' and <= '~': sb.Append(c); break;
                default: sb.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}"); break;
            }
        }

        return sb.ToString();
    }

    /// <summary>A value as a JSON string of printable ASCII (for comments that a reader may want to parse back, such as an item key).</summary>
    public static string QuotedComment(string value) => "\"" + Comment(value).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";

    /// <summary>A dollar-quote tag that <paramref name="body"/> does not contain, so the body cannot end the quote early.</summary>
    public static string DollarTag(string body, string preferred = "$dataops$") => DollarTag([body], preferred);

    /// <summary>A dollar-quote tag that none of <paramref name="pieces"/> contains (the pieces of a body that no tag can span).</summary>
    public static string DollarTag(IEnumerable<string> pieces, string preferred = "$dataops$")
    {
        var all = pieces as IReadOnlyCollection<string> ?? [.. pieces];
        var tag = preferred;
        for (var i = 1; all.Any(p => p.Contains(tag, StringComparison.Ordinal)); i++)
        {
            tag = $"{preferred[..^1]}_{i}$";
        }

        return tag;
    }
}
