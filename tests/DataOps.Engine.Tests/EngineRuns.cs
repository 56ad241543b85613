using DataOps.Engine.Backfill;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using DataOps.Tests;

namespace DataOps.Engine.Tests;

/// <summary>Runs a backfill through the engine (no PowerShell) for the engine tests: a run log, an output folder, the results.</summary>
internal static class EngineRuns
{
    public static async Task<List<BackfillItemResult>> RunAsync(ValidatedJob job, DatabaseFixture db, BackfillOptions options, string logName = "backfill-engine-test")
    {
        using var log = Log(logName);
        var results = new List<BackfillItemResult>();
        await foreach (var result in BackfillRunner.RunAsync(job, db.Connection, options, log, NullObserver.Instance))
        {
            results.Add(result);
        }

        return results;
    }

    public static RunLog Log(string name = "backfill-engine-test") => RunLog.Open(name, NullObserver.Instance, directory: Path.Combine(TestCluster.Root, "logs"));

    public static string Output() => Directory.CreateDirectory(Path.Combine(TestCluster.Root, "out", Guid.NewGuid().ToString("N"))).FullName;
}
