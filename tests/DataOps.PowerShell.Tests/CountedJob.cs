namespace DataOps.PowerShell.Tests;

/// <summary>A job over the table counted (k int PRIMARY KEY, n int): each item runs <c>step</c> on its row, verified by n >= 1.</summary>
internal static class CountedJob
{
    public const string Increment = "UPDATE counted SET n = n + 1 WHERE k = @key::int";

    /// <summary>Writes the job file to a temporary path and returns it.</summary>
    public static string Write(string name, string step = Increment)
    {
        var job = Path.Combine(Path.GetTempPath(), $"dataops-job-{Guid.NewGuid():N}.json");
        File.WriteAllText(job, $$"""
            {
              "version": 1, "name": "{{name}}",
              "items": { "discover": "SELECT k::text AS key FROM counted ORDER BY k" },
              "capture": [ { "table": "counted", "where": "k = @key::int" } ],
              "steps": [ { "name": "count", "sql": "{{step}}" } ],
              "verify": "SELECT n >= 1 FROM counted WHERE k = @key::int"
            }
            """);
        return job;
    }
}
