using System.Collections;
using System.Text;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// The files an admin opens (health report and plan, soak report, backfill summary, results, batch
/// files, the rollback script written during the run and the one exported later) are UTF-8 without
/// BOM with "\n" line ends, and psql runs the rollback script as written.
/// </summary>
public sealed class ArtifactEncodingTests
{
    private static readonly string SampleJob = Path.Combine(Repo.Root, "examples", "jobs", "results-v1.2.1.job.json");
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    [Fact]
    public void Reports_plans_results_and_rollback_scripts_are_utf8_without_bom_with_lf_line_ends()
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        using var s = new PsSession();
        var output = Directory.CreateTempSubdirectory("dataops-encoding-").FullName;
        var vars = new Hashtable { ["cs"] = cs, ["job"] = SampleJob, ["out"] = output, ["export"] = Path.Combine(output, "exported rollback.sql") };
        var setup = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null; New-PrismSampleData -Sessions 30 -Seed 11 -PendingShare 0.5 | Out-Null", vars);
        Assert.False(setup.HadErrors, string.Join("\n", setup.Errors));

        s.Run("Watch-StagingSoak -Job $job -Duration 1s -Interval 400ms -OutputDirectory $out | Out-Null", vars);
        var run = s.Run("Test-ProdHealth -Job $job -OutputDirectory $out | Invoke-Backfill -ItemsPerMinute 0 -OutputDirectory $out", vars);
        Assert.False(run.HadErrors, string.Join("\n", run.Errors));
        vars["id"] = run.Output[0].Properties["RunId"].Value;
        var exported = s.Run("Export-BackfillRollback -RunId $id -Path $export", vars);
        Assert.False(exported.HadErrors, string.Join("\n", exported.Errors));

        var files = Directory.GetFiles(output, "*", SearchOption.AllDirectories);
        var names = files.Select(Path.GetFileName).ToList();
        foreach (var expected in new[] { "staging_observability.md", "prod_health_check.md", "prod_mini_backfill_plan.json", "backfill_summary.md", "execution_results.json", "batch_001.json", "exported rollback.sql" })
        {
            Assert.Contains(expected, names);
        }

        Assert.Contains(names, n => n!.StartsWith("rollback_", StringComparison.Ordinal) && n.EndsWith(".sql", StringComparison.Ordinal));
        foreach (var file in files.Where(f => f.EndsWith(".md", StringComparison.Ordinal) || f.EndsWith(".json", StringComparison.Ordinal) || f.EndsWith(".sql", StringComparison.Ordinal)))
        {
            var bytes = File.ReadAllBytes(file);
            Assert.True(bytes.Length > 0, file);
            Assert.False(bytes.AsSpan().StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]), $"{file} starts with a BOM");
            Assert.False(bytes.Contains((byte)'\r'), $"{file} holds a carriage return");
            Assert.Contains('\n', StrictUtf8.GetString(bytes)); // GetString throws on bytes that are not UTF-8
        }

        // psql reads "\n" scripts on every platform: the exported script restores the run.
        var (code, stdout, stderr) = PsqlClient.RunFile(cs, Path.Combine(output, "exported rollback.sql"));
        Assert.True(code == 0, stderr);
        Assert.Contains("verified", stdout);
    }
}
