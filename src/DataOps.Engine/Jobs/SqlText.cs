namespace DataOps.Engine.Jobs;

/// <summary>
/// Reads SQL text from a job file the way PostgreSQL's lexer does, far enough to find the
/// semicolons that end a statement: not inside '...', E'...', "...", $tag$...$tag$, -- comments or
/// nested /* */ comments. It serves validation (which field holds more than one statement, and
/// where); what runs is held to one statement by the protocol itself (see <see cref="BackfillSql"/>).
/// </summary>
internal static class SqlText
{
    /// <summary>
    /// The 1-based character position of a semicolon that ends a statement and is followed by
    /// more SQL (a second statement), or null. A trailing semicolon (then only blanks and
    /// comments) is allowed.
    /// </summary>
    public static int? SecondStatementAt(string sql)
    {
        foreach (var at in TopLevelSemicolons(sql))
        {
            if (!OnlyBlanksAndComments(sql, at + 1))
            {
                return at + 1;
            }
        }

        return null;
    }

    /// <summary>The validation problem of a field that holds more than one statement, or null.</summary>
    public static string? MoreThanOneStatement(string path, string? sql) => sql is not null && SecondStatementAt(sql) is { } at
        ? $"{path}: holds more than one statement (another begins after the ';' at character {at}); each SQL field must be exactly one statement."
        : null;

    /// <summary>The validation problem of an expression fragment (a capture's where) that holds a statement-ending semicolon, or null.</summary>
    public static string? NotAFragment(string path, string? sql) => sql is not null && TopLevelSemicolons(sql).Select(i => (int?)i).FirstOrDefault() is { } at
        ? $"{path}: holds a ';' at character {at + 1}; a where condition is one expression, not statements."
        : null;

    /// <summary>The text without a trailing semicolon (and the blanks and comments after it), for use inside a larger statement.</summary>
    public static string WithoutTrailingSemicolon(string sql)
    {
        foreach (var at in TopLevelSemicolons(sql))
        {
            if (OnlyBlanksAndComments(sql, at + 1))
            {
                return sql[..at];
            }
        }

        return sql;
    }

    /// <summary>Offsets of the semicolons outside literals, quoted identifiers and comments.</summary>
    private static IEnumerable<int> TopLevelSemicolons(string sql) =>
        Tokens(sql).Where(t => t.Kind == SqlTokenKind.Punctuation && sql[t.Start] == ';').Select(t => t.Start);

    /// <summary>
    /// The text cut into tokens as PostgreSQL's lexer sees them, far enough for validation: words
    /// (keywords and unquoted identifiers, also numbers), quoted identifiers, literals ('...', E'...',
    /// $tag$...$tag$), comments and single punctuation characters. Blanks are skipped. An unterminated
    /// literal or comment runs to the end of the text.
    /// </summary>
    internal static IEnumerable<SqlToken> Tokens(string sql)
    {
        var i = 0;
        while (i < sql.Length)
        {
            var c = sql[i];
            var next = i + 1 < sql.Length ? sql[i + 1] : '\0';
            var start = i;
            SqlTokenKind kind;
            if (c == '-' && next == '-')
            {
                i = EndOfLine(sql, i);
                kind = SqlTokenKind.Comment;
            }
            else if (c == '/' && next == '*')
            {
                i = EndOfBlockComment(sql, i);
                kind = SqlTokenKind.Comment;
            }
            else if (c == '\'')
            {
                var escapes = i > 0 && sql[i - 1] is 'e' or 'E' && (i < 2 || !IsIdentifierChar(sql[i - 2]));
                i = EndOfQuoted(sql, i, '\'', escapes);
                kind = SqlTokenKind.Literal;
            }
            else if (c == '"')
            {
                i = EndOfQuoted(sql, i, '"', backslashEscapes: false);
                kind = SqlTokenKind.QuotedIdentifier;
            }
            else if (c == '$' && (i == 0 || !IsIdentifierChar(sql[i - 1])) && DollarTag(sql, i) is { } tag)
            {
                var close = sql.IndexOf(tag, i + tag.Length, StringComparison.Ordinal);
                i = close < 0 ? sql.Length : close + tag.Length;
                kind = SqlTokenKind.Literal;
            }
            else if (IsBlank(c))
            {
                i++;
                continue;
            }
            else if (IsIdentifierChar(c) && c != '$')
            {
                while (i < sql.Length && IsIdentifierChar(sql[i]))
                {
                    i++;
                }

                kind = SqlTokenKind.Word;
            }
            else
            {
                i++;
                kind = SqlTokenKind.Punctuation;
            }

            yield return new SqlToken(kind, start, i - start);
        }
    }

    private static bool OnlyBlanksAndComments(string sql, int from)
    {
        var i = from;
        while (i < sql.Length)
        {
            if (IsBlank(sql[i]))
            {
                i++;
            }
            else if (sql[i] == '-' && i + 1 < sql.Length && sql[i + 1] == '-')
            {
                i = EndOfLine(sql, i);
            }
            else if (sql[i] == '/' && i + 1 < sql.Length && sql[i + 1] == '*')
            {
                i = EndOfBlockComment(sql, i);
            }
            else if (sql[i] == ';')
            {
                i++;
            }
            else
            {
                return false;
            }
        }

        return true;
    }

    private static int EndOfLine(string sql, int i)
    {
        while (i < sql.Length && sql[i] is not '\n' and not '\r')
        {
            i++;
        }

        return i;
    }

    /// <summary>PostgreSQL's block comments nest.</summary>
    private static int EndOfBlockComment(string sql, int i)
    {
        var depth = 0;
        while (i < sql.Length)
        {
            if (sql[i] == '/' && i + 1 < sql.Length && sql[i + 1] == '*')
            {
                depth++;
                i += 2;
            }
            else if (sql[i] == '*' && i + 1 < sql.Length && sql[i + 1] == '/')
            {
                i += 2;
                if (--depth == 0)
                {
                    return i;
                }
            }
            else
            {
                i++;
            }
        }

        return i;
    }

    /// <summary>Past the closing quote; a doubled quote is part of the text, and in E'...' so is a backslash-escaped character.</summary>
    private static int EndOfQuoted(string sql, int i, char quote, bool backslashEscapes)
    {
        i++;
        while (i < sql.Length)
        {
            if (backslashEscapes && sql[i] == '\\')
            {
                i += 2;
            }
            else if (sql[i] == quote)
            {
                if (i + 1 < sql.Length && sql[i + 1] == quote)
                {
                    i += 2;
                }
                else
                {
                    return i + 1;
                }
            }
            else
            {
                i++;
            }
        }

        return i;
    }

    /// <summary>The tag ($$ or $name$) that starts at <paramref name="i"/>, or null if '$' starts no dollar quote there (a $1 parameter, say).</summary>
    private static string? DollarTag(string sql, int i)
    {
        // PostgreSQL's dolq_start [A-Za-z\200-\377_] and dolq_cont (also 0-9): any non-ASCII character is part of a tag.
        var j = i + 1;
        if (j < sql.Length && IsIdentifierChar(sql[j]) && !char.IsAsciiDigit(sql[j]) && sql[j] != '$')
        {
            while (j < sql.Length && IsIdentifierChar(sql[j]) && sql[j] != '$')
            {
                j++;
            }
        }

        return j < sql.Length && sql[j] == '$' ? sql[i..(j + 1)] : null;
    }

    /// <summary>
    /// PostgreSQL's identifier characters: ASCII letters, digits, '_', '$' and every non-ASCII character
    /// (ident_start [A-Za-z\200-\377_]), letter or not: "€$a$" is one identifier there, not '€' and a dollar quote.
    /// </summary>
    private static bool IsIdentifierChar(char c) => c >= '\u0080' || char.IsAsciiLetterOrDigit(c) || c is '_' or '$';

    /// <summary>PostgreSQL's blanks are ASCII only: a no-break space is an identifier character there.</summary>
    private static bool IsBlank(char c) => c is ' ' or '\t' or '\n' or '\r' or '\f' or '\v';
}

/// <summary>What a <see cref="SqlToken"/> is.</summary>
internal enum SqlTokenKind
{
    /// <summary>A keyword, an unquoted identifier or a number.</summary>
    Word,

    /// <summary>"an identifier", quotes included.</summary>
    QuotedIdentifier,

    /// <summary>'...', E'...' or $tag$...$tag$, quotes included (a prefix such as E or U&amp; is a Word before it).</summary>
    Literal,

    /// <summary>-- to the end of the line, or a (nested) /* */ comment.</summary>
    Comment,

    /// <summary>One character of anything else: ( ) , . ; operators.</summary>
    Punctuation,
}

/// <summary>A token of SQL text: its kind and where it is (0-based offset, length).</summary>
internal readonly record struct SqlToken(SqlTokenKind Kind, int Start, int Length)
{
    public string Text(string sql) => sql.Substring(Start, Length);
}
