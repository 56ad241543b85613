using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace DataOps.Engine.Jobs;

/// <summary>
/// What a mini plan was made from, like a saved Terraform plan: the database's identity, when, and
/// a hash of each pending item's captured rows. Invoke-Backfill refuses the plan elsewhere or when
/// old, and skips an item whose rows changed since (Stale).
/// </summary>
public sealed record PlanFingerprint(string SystemIdentifier, string Database, string? Installation, DateTimeOffset GeneratedAt, IReadOnlyDictionary<string, string> Items)
{
    public static PlanFingerprint? From(BackfillJob job)
    {
        if (job.Fingerprint is not { } f)
        {
            return null;
        }

        try
        {
            var db = f.GetProperty("database");
            var items = f.GetProperty("items").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!, StringComparer.Ordinal);
            return new PlanFingerprint(
                db.GetProperty("systemIdentifier").GetString()!, db.GetProperty("name").GetString()!,
                db.TryGetProperty("installation", out var installation) ? installation.GetString() : null,
                DateTimeOffset.Parse(f.GetProperty("generatedAt").GetString()!, CultureInfo.InvariantCulture), items);
        }
        catch (Exception ex) when (ex is KeyNotFoundException or InvalidOperationException or FormatException or ArgumentNullException)
        {
            throw JobFile.Invalid(job.SourcePath, [$"$.fingerprint: not a fingerprint written by Test-ProdHealth ({ex.Message})."]);
        }
    }

    public JsonElement ToJson() => JsonSerializer.SerializeToElement(new
    {
        database = new { systemIdentifier = SystemIdentifier, name = Database, installation = Installation },
        generatedAt = GeneratedAt.ToString("o", CultureInfo.InvariantCulture),
        items = Items,
    });

    /// <summary>
    /// The hash of an item's captured rows: SHA-256 over each table's rows as to_jsonb text, in
    /// primary-key order, the same bytes whether read by the health check or inside the item's transaction.
    /// </summary>
    public static string Hash(ItemImage image, IReadOnlyList<CaptureTable> tables)
    {
        var text = new StringBuilder();
        foreach (var t in tables)
        {
            text.Append(t.QualifiedName).Append('\u001e');
            foreach (var row in image.Tables.GetValueOrDefault(t.QualifiedName) ?? [])
            {
                text.Append(row).Append('\u001f');
            }
        }

        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString()))).ToLowerInvariant();
    }
}
