using System.Text;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>
/// A PowerShell wildcard pattern as a SQL ILIKE pattern, to narrow rows in the database before the
/// cmdlet matches them exactly with WildcardPattern: * is %, ? is _, a backtick escapes the next
/// character, and %, _ and \ are escaped. LIKE has no character classes, so a pattern with [...] narrows
/// nothing (%). The result matches every text the wildcard matches, never fewer.
/// </summary>
internal static class WildcardLike
{
    public static string ToLike(string pattern)
    {
        var like = new StringBuilder(pattern.Length + 4);
        for (var i = 0; i < pattern.Length; i++)
        {
            var c = pattern[i];
            switch (c)
            {
                case '`' when i + 1 < pattern.Length:
                    Literal(like, pattern[++i]);
                    break;
                case '*':
                    like.Append('%');
                    break;
                case '?':
                    like.Append('_');
                    break;
                case '[':
                    return "%";
                default:
                    Literal(like, c);
                    break;
            }
        }

        return like.ToString();
    }

    private static void Literal(StringBuilder like, char c)
    {
        if (c is '%' or '_' or '\\')
        {
            like.Append('\\');
        }

        like.Append(c);
    }
}
