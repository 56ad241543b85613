using System.Net;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace DataOps.Tests;

/// <summary>Every encoding a secret can take, produced by the encoders that produce it in the sinks.</summary>
internal static class Encodings
{
    private static readonly JsonSerializerOptions Relaxed = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static IReadOnlyDictionary<string, string> Of(string secret)
    {
        var escaped = Uri.EscapeDataString(secret);
        var formEncoded = WebUtility.UrlEncode(secret);
        var json = Json(secret);
        var relaxed = Json(secret, Relaxed);
        var forms = new Dictionary<string, string>
        {
            ["raw"] = secret,
            ["lower-cased"] = secret.ToLowerInvariant(),
            ["upper-cased"] = secret.ToUpperInvariant(),
            ["Uri.EscapeDataString"] = escaped,
            ["Uri.EscapeDataString, lower-case hex"] = LowerHex(escaped),
            ["Uri.EscapeDataString, lower-cased"] = escaped.ToLowerInvariant(),
            ["Uri.EscapeDataString, upper-cased"] = escaped.ToUpperInvariant(),
            ["WebUtility.UrlEncode"] = formEncoded,
            ["WebUtility.UrlEncode, lower-case hex"] = LowerHex(formEncoded),
            ["Uri.ToString of an escaped path"] = new Uri("http://h/" + escaped).ToString()["http://h/".Length..],
            ["JSON, default encoder"] = json,
            ["JSON, default encoder, lower-case hex"] = Regex.Replace(json, @"\\u[0-9A-F]{4}", m => m.Value.ToLowerInvariant()),
            ["JSON, relaxed encoder"] = relaxed,
            ["JSON, relaxed encoder, escaped solidus"] = relaxed.Replace("/", "\\/", StringComparison.Ordinal),
            ["JSON inside JSON"] = Json(json),
            ["JSON inside JSON, relaxed"] = Json(relaxed, Relaxed),
            ["JSON of the URL-encoded form"] = Json(escaped),
            ["JSON, lower-cased"] = json.ToLowerInvariant(),
            ["Markdown table cell"] = secret.Replace("|", "\\|", StringComparison.Ordinal),
            ["HTML"] = WebUtility.HtmlEncode(secret),
            ["SQL literal"] = secret.Replace("'", "''", StringComparison.Ordinal),
            ["PostgreSQL record text, CSV"] = secret.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\"\"", StringComparison.Ordinal),
        };
        return forms;
    }

    /// <summary>Finds the encodings of <paramref name="secret"/> that occur in <paramref name="text"/>.</summary>
    public static IEnumerable<string> FoundIn(string text, string secret) =>
        Of(secret).Where(f => text.Contains(f.Value, StringComparison.Ordinal)).Select(f => $"{f.Key}: {f.Value}");

    private static string Json(string value, JsonSerializerOptions? options = null) => JsonSerializer.Serialize(value, options)[1..^1];

    private static string LowerHex(string text) => Regex.Replace(text, "%[0-9A-F]{2}", m => m.Value.ToLowerInvariant());
}
