using System.Collections;
using System.Management.Automation;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// What each stream carries (issue 19, item 4): -Debug the SQL sent and never a parameter value,
/// -Verbose clean lines once each, progress on the long cmdlets, success as host output.
/// </summary>
public sealed class StreamTests
{
    private static readonly string SampleJob = Path.Combine(Repo.Root, "examples", "jobs", "results-v1.2.1.job.json");

    private static PsSession Connected(string cs)
    {
        var s = new PsSession();
        var r = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return s;
    }

    [Fact]
    public void Debug_shows_each_statement_sent_with_its_duration_and_never_a_parameter_value()
    {
        using var s = Connected(TestCluster.CreateDatabaseWith("WorkflowExecution"));
        const string needle = "needle-user-7f3a";

        var r = s.Run("Get-WorkflowExecution -CreatedBy $who -First 5 -Debug", new Hashtable { ["who"] = needle });

        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        var sql = Assert.Single(r.Debug, d => d.Contains("FROM workflow_executions", StringComparison.Ordinal));
        Assert.Matches(@"^SQL \(\d+ ms\): SELECT ", sql);
        Assert.Contains("$", sql);
        Assert.DoesNotContain(needle, string.Join("\n", r.Debug));

        // Without -Debug nothing is traced.
        var quiet = s.Run("Get-WorkflowExecution -CreatedBy $who -First 5", new Hashtable { ["who"] = needle });
        Assert.Empty(quiet.Debug);
    }

    [Fact]
    public void Debug_without_Verbose_never_stops_for_a_prompt_its_verbose_lines_go_to_Debug()
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        using var s = Connected(cs);
        s.Run("New-PrismSampleData -Sessions 20 -Seed 4 -PendingShare 0.5 | Out-Null");
        var output = Directory.CreateTempSubdirectory("dataops-streams-").FullName;

        // PowerShell turns -Debug into Inquire for a compiled cmdlet's verbose lines: a host that cannot
        // prompt then fails (this host has no UI), an interactive one would ask at every line.
        var r = s.Run("Test-ProdHealth -Job $job -OutputDirectory $out -Debug", new Hashtable { ["job"] = SampleJob, ["out"] = output });

        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        Assert.Single(r.Output);
        Assert.Contains(r.Debug, d => d.StartsWith("SQL (", StringComparison.Ordinal) && d.Contains("prism.sessions", StringComparison.Ordinal));
        Assert.Contains(r.Debug, d => d.Contains("items still need", StringComparison.Ordinal));
        Assert.Empty(r.Verbose);
    }

    [Fact]
    public void Verbose_lines_read_as_text_once_each_with_no_template_leftovers()
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        using var s = Connected(cs);
        s.Run("New-PrismSampleData -Sessions 20 -Seed 4 -PendingShare 0.5 | Out-Null");
        var output = Directory.CreateTempSubdirectory("dataops-streams-").FullName;
        var failing = SampleJobs.With(job => job["soak"] = new JsonObject
        {
            ["checks"] = new JsonArray(new JsonObject { ["name"] = "never zero", ["query"] = "SELECT 1", ["expect"] = new JsonObject { ["equals"] = 0 } }),
        });

        var backfill = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -Verbose", new Hashtable { ["job"] = SampleJob, ["out"] = output });
        var soak = s.Run("Watch-StagingSoak -Job $job -Duration 1s -Interval 500ms -OutputDirectory $out -Verbose -WarningAction SilentlyContinue", new Hashtable { ["job"] = failing, ["out"] = output });

        Assert.False(backfill.HadErrors, string.Join("\n", backfill.Errors));
        Assert.False(soak.HadErrors, string.Join("\n", soak.Errors));
        var lines = backfill.Verbose.Concat(soak.Verbose).ToList();
        Assert.Contains(lines, l => Regex.IsMatch(l, @"^Run [0-9a-f]{12} of Invoke-Backfill started$"));
        Assert.Contains(lines, l => l == "never zero round 1: Fail (value 1; expected = 0)");
        Assert.Contains(lines, l => l.StartsWith("Watching 1 checks every 0.5s for 1.0s", StringComparison.Ordinal));
        // PowerShell's own ShouldProcess line quotes its operation; only ours are checked.
        Assert.All(lines.Where(l => !l.StartsWith("Performing the operation", StringComparison.Ordinal)), l =>
        {
            Assert.DoesNotMatch("\"[^\"]*\"", l); // Serilog's quoted strings
            Assert.DoesNotMatch(@"\bnull\b", l);
            Assert.DoesNotMatch(@"\d{2}:\d{2}:\d{2}\.\d{7}", l); // a raw TimeSpan
        });
        Assert.Equal(backfill.Verbose.Count, backfill.Verbose.Distinct().Count());
        Assert.Equal(soak.Verbose.Count, soak.Verbose.Distinct().Count());
    }

    [Fact]
    public void The_long_cmdlets_show_progress_and_close_their_bars()
    {
        var cs = TestCluster.CreateDatabase();
        using var s = Connected(cs);
        var output = Directory.CreateTempSubdirectory("dataops-streams-").FullName;

        var install = s.Run("Install-DataOpsSchema -Component WorkflowExecution, Prism -Force");
        var sample = s.Run("New-WorkflowSampleData -Executions 50000 -Seed 3 -Force");
        var prism = s.Run("New-PrismSampleData -Sessions 200 -Seed 3 -PendingShare 0.5 -Force");
        var health = s.Run("Test-ProdHealth -Job $job -OutputDirectory $out", new Hashtable { ["job"] = SampleJob, ["out"] = output });

        foreach (var (name, r) in new[] { ("Install-DataOpsSchema", install), ("New-WorkflowSampleData", sample), ("New-PrismSampleData", prism), ("Test-ProdHealth", health) })
        {
            Assert.False(r.HadErrors, name + ": " + string.Join("\n", r.Errors));
            Assert.Contains(r.Progress, p => p.RecordType == ProgressRecordType.Processing && p.Activity.StartsWith(name, StringComparison.Ordinal));
            Assert.Equal(ProgressRecordType.Completed, r.Progress[^1].RecordType);
        }

        Assert.Contains(health.Progress, p => p.StatusDescription.StartsWith("Reading the rows of", StringComparison.Ordinal));
        Assert.Contains(health.Progress, p => p.CurrentOperation == "tokenized access success %");
    }
}
