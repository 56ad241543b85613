using System.Collections;

namespace DataOps.PowerShell.Tests;

/// <summary>Every rate -ItemsPerMinute accepts runs to the end (rates above 60,000 used to stall after the first item).</summary>
public sealed class ThrottleCmdletTests
{
    [Theory]
    [InlineData(60_001)]
    [InlineData(120_000)]
    [InlineData(1_000_000)]
    public async Task A_run_at_a_high_rate_finishes_every_item(int perMinute)
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        using var s = new PsSession();
        var setup = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null; New-PrismSampleData -Sessions 200 -Seed 21 -PendingShare 0.5", new Hashtable { ["cs"] = cs });
        Assert.False(setup.HadErrors, string.Join("\n", setup.Errors));
        var pending = (int)setup.Output[0].Properties["Pending"].Value;
        Assert.True(pending > 40, $"{pending} pending");
        var output = Directory.CreateTempSubdirectory("dataops-rate-").FullName;

        var run = Task.Run(() => s.Run($"Invoke-Backfill -Job $job -ItemsPerMinute {perMinute} -OutputDirectory $out -Confirm:$false", new Hashtable { ["job"] = SampleJobs.Path, ["out"] = output }));
        var finished = await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(90)));

        Assert.True(finished == run, $"-ItemsPerMinute {perMinute} did not finish {pending} items in 90 s");
        var r = await run;
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        Assert.Equal(pending, r.Output.Count(o => o.Properties["Status"].Value.ToString() == "Applied"));
    }
}
