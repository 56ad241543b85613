using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace DataOps.Engine.Logging;

/// <summary>
/// Removes known secret values, and anything that looks like a password in a connection string,
/// from text before it reaches a log, an error, a report or the console.
/// </summary>
/// <remarks>
/// A secret rarely reaches a sink as typed: a URL carries it percent-encoded
/// (Uri.EscapeDataString, or WebUtility.UrlEncode with '+' for a space, hex in either case), a JSON
/// file or an endpoint's JSON answer carries it escaped (System.Text.Json's default encoder writes
/// \u0022 and \u00E9, the relaxed one \" and raw 'é', other encoders \/ or lower-case hex, a JSON
/// string inside JSON doubles the backslashes), a Markdown table writes \|, SQL and CSV double
/// their quotes, and
/// DbConnectionStringBuilder's errors carry it lower-cased. So each secret becomes one pattern in
/// which every character matches any of its encodings, case-insensitively: every one of those
/// variants, and any mix of them (Uri.ToString() unescapes some characters and not others), is
/// masked whole. Secrets are tried longest first, so a secret that contains another is masked whole.
/// </remarks>
public sealed partial class SecretRedactor
{
    public const string Mask = "********";

    private readonly object _gate = new();
    private readonly HashSet<string> _secrets = new(StringComparer.Ordinal);
    private Regex? _pattern;

    /// <summary>Registers a value that must never be shown. Empty and very short values are ignored.</summary>
    public void Add(string? secret)
    {
        if (string.IsNullOrEmpty(secret) || secret.Length < 3)
        {
            return;
        }

        lock (_gate)
        {
            if (_secrets.Add(secret))
            {
                var alternatives = _secrets.OrderByDescending(s => s.Length).ThenBy(s => s, StringComparer.Ordinal).Select(AnyEncoding);
                _pattern = new Regex(string.Join("|", alternatives), RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);
            }
        }
    }

    public string Redact(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return text ?? string.Empty;
        }

        Regex? pattern;
        lock (_gate)
        {
            pattern = _pattern;
        }

        if (pattern is not null)
        {
            text = pattern.Replace(text, Mask);
        }

        return RedactConnectionString(text);
    }

    /// <summary>
    /// Masks the password of connection-string-like text: Password=, Pwd=, Psw= and SSL Password=
    /// pairs (Npgsql's keyword and its synonyms), quoted either way with doubled quotes inside, and
    /// the password of a postgres:// or postgresql:// URI.
    /// </summary>
    public static string RedactConnectionString(string text)
    {
        text = PasswordPair().Replace(text, m => m.Groups[1].Value + Mask);
        return UriPassword().Replace(text, m => m.Groups[1].Value + Mask + "@");
    }

    /// <summary>A pattern that matches <paramref name="secret"/> in any of the encodings it can take.</summary>
    private static string AnyEncoding(string secret)
    {
        var pattern = new StringBuilder();
        for (var i = 0; i < secret.Length; i += char.IsSurrogatePair(secret, i) ? 2 : 1)
        {
            var rune = char.ConvertToUtf32(secret, i);
            var text = char.ConvertFromUtf32(rune);
            var forms = new List<string> { Regex.Escape(text) };

            // Percent-encoding of the UTF-8 bytes (IgnoreCase covers %2f and %2F).
            forms.Add(string.Concat(Encoding.UTF8.GetBytes(text).Select(b => "%" + b.ToString("X2", CultureInfo.InvariantCulture))));

            // JSON \uXXXX of the UTF-16 units, behind any number of backslashes (JSON inside JSON).
            forms.Add(string.Concat(text.Select(c => @"\\+u" + ((int)c).ToString("X4", CultureInfo.InvariantCulture))));

            if (rune < 128 && !char.IsLetterOrDigit((char)rune) && !char.IsWhiteSpace((char)rune))
            {
                // \" \\ \/ in JSON, \| in Markdown: punctuation behind any number of backslashes.
                forms.Add(@"\\*" + Regex.Escape(text));
            }

            switch (rune)
            {
                case ' ':
                    forms.Add(@"\+");
                    break;
                case '\n':
                    forms.Add(@"\\+n");
                    break;
                case '\r':
                    forms.Add(@"\\+r");
                    break;
                case '\t':
                    forms.Add(@"\\+t");
                    break;
                case '\b':
                    forms.Add(@"\\+b");
                    break;
                case '\f':
                    forms.Add(@"\\+f");
                    break;
                case '<':
                    forms.Add("&lt;");
                    break;
                case '>':
                    forms.Add("&gt;");
                    break;
                case '&':
                    forms.Add("&amp;");
                    break;
                case '"':
                    forms.Add("&quot;");
                    forms.Add("\"\"");
                    break;
                case '\'':
                    forms.Add("&apos;");
                    forms.Add("''");
                    break;
            }

            if (char.IsWhiteSpace(text, 0))
            {
                // Line endings and tabs are flattened to spaces in one-line messages and tables.
                forms.Add(@"\s");
            }

            forms.Add("&#0*" + rune.ToString(CultureInfo.InvariantCulture) + ";");
            forms.Add("&#x0*" + rune.ToString("X", CultureInfo.InvariantCulture) + ";");
            pattern.Append("(?:").AppendJoin('|', forms).Append(')');
        }

        return pattern.ToString();
    }

    /// <summary>
    /// The values of Password, Pwd, Psw and SSL Password pairs as written and unquoted, found
    /// without the driver so that a string the driver refuses can still be redacted.
    /// </summary>
    internal static IEnumerable<string> PasswordValues(string connectionString)
    {
        foreach (Match m in PasswordPair().Matches(connectionString))
        {
            var value = m.Groups[2].Value.Trim();
            yield return value;
            if (value.Length >= 2 && value[0] is '"' or '\'' && value[^1] == value[0])
            {
                var quote = value[0].ToString();
                yield return value[1..^1].Replace(quote + quote, quote, StringComparison.Ordinal);
            }
            else if (value.Length >= 1 && value[0] is '"' or '\'')
            {
                yield return value[1..];
            }
        }
    }

    // The value: a well-formed quoted value (doubled quotes inside) that ends the pair; an
    // unterminated quoted value runs to the end, as the parser reads it; anything else runs up to
    // the next "; key =" or the end. So a malformed value (a stray quote inside) is masked whole
    // rather than up to its first quote.
    [GeneratedRegex(@"((?:password|pwd|psw)\s*=\s*)(""(?:[^""]|"""")*""(?=\s*(?:;|$))|'(?:[^']|'')*'(?=\s*(?:;|$))|""(?:[^""]|"""")*$|'(?:[^']|'')*$|.*?(?=;\s*[A-Za-z][A-Za-z ]*=|$))", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant | RegexOptions.Singleline)]
    private static partial Regex PasswordPair();

    // user:password@ after postgres:// or postgresql://, up to the last '@' before the query, so a
    // password with a raw '@' or '/' in it (pasted unencoded) is masked whole.
    [GeneratedRegex(@"(postgres(?:ql)?://[^:/?#@\s]*:)[^\s?#]*@", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex UriPassword();
}
