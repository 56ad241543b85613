using System.Text.Json.Nodes;

namespace DataOps.PowerShell.Tests;

/// <summary>The sample job (examples/jobs/results-v1.2.1.job.json) as it ships, or changed and written to a file of its own.</summary>
internal static class SampleJobs
{
    public static string Path { get; } = System.IO.Path.Combine(Repo.Root, "examples", "jobs", "results-v1.2.1.job.json");

    /// <summary>The sample job with <paramref name="change"/> applied, in a new file (in <paramref name="directory"/>, else the temp folder).</summary>
    public static string With(Action<JsonObject> change, string? directory = null)
    {
        var job = JsonNode.Parse(File.ReadAllText(Path))!.AsObject();
        job.Remove("$schema");
        change(job);
        var path = System.IO.Path.Combine(directory ?? System.IO.Path.GetTempPath(), $"dataops-job-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, job.ToJsonString());
        return path;
    }
}
