using System.Collections.Concurrent;
using System.Text.RegularExpressions;

namespace DataOps.Engine.Logging;

/// <summary>
/// Removes known secret values, and anything that looks like a password in a connection string,
/// from text before it reaches a log, an error, a report or the console.
/// </summary>
public sealed partial class SecretRedactor
{
    public const string Mask = "********";

    private readonly ConcurrentDictionary<string, byte> _secrets = new(StringComparer.Ordinal);

    /// <summary>Registers a value that must never be shown. Empty and very short values are ignored.</summary>
    public void Add(string? secret)
    {
        if (!string.IsNullOrEmpty(secret) && secret.Length >= 3)
        {
            _secrets.TryAdd(secret, 0);
        }
    }

    public string Redact(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return text ?? string.Empty;
        }

        // Longest first, so a secret that contains another is masked whole.
        foreach (var secret in _secrets.Keys.OrderByDescending(s => s.Length))
        {
            text = text.Replace(secret, Mask, StringComparison.Ordinal);
        }

        return PasswordPair().Replace(text, m => m.Groups[1].Value + Mask);
    }

    /// <summary>Masks Password=... (and Pwd=...) pairs in connection-string-like text.</summary>
    public static string RedactConnectionString(string text) => PasswordPair().Replace(text, m => m.Groups[1].Value + Mask);

    [GeneratedRegex(@"((?:password|pwd)\s*=\s*)(""[^""]*""|'[^']*'|[^;]*)", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex PasswordPair();
}
