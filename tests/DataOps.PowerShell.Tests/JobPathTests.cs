using System.Collections;
using System.Diagnostics;
using System.Management.Automation;
using System.Text.Json.Nodes;

namespace DataOps.PowerShell.Tests;

/// <summary>Job files are read as regular files of a sane size; run folders stay inside -OutputDirectory.</summary>
public sealed class JobPathTests
{
    private static readonly string[] JobCommands =
    [
        "Invoke-Backfill -Job $job -OutputDirectory $out -Confirm:$false",
        "Test-ProdHealth -Job $job -OutputDirectory $out",
        "Watch-StagingSoak -Job $job -Duration 1s -Interval 300ms -OutputDirectory $out",
    ];

    private static (PsSession Session, string Output) Connected()
    {
        var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = TestCluster.CreateDatabaseWith("Prism") });
        return (s, Directory.CreateTempSubdirectory("dataops-paths-").FullName);
    }

    [Theory]
    [InlineData("..")]
    [InlineData(".")]
    [InlineData(".hidden")]
    [InlineData("-rf")]
    [InlineData("a/../../b")]
    public void A_job_name_that_is_not_a_plain_name_is_refused_and_nothing_is_written_outside_the_output_directory(string name)
    {
        var (s, output) = Connected();
        using var _ = s;
        var path = SampleJobs.With(job => job["name"] = name, output);

        foreach (var command in JobCommands)
        {
            var r = s.Run(command, new Hashtable { ["job"] = path, ["out"] = Path.Combine(output, "runs") });

            var error = Assert.Single(r.Errors);
            Assert.StartsWith("JobFileInvalid,", error.FullyQualifiedErrorId);
            Assert.Contains("$.name:", error.Exception.Message);
        }

        // -OutputDirectory is output/runs: a run folder of job '..' would have landed in output itself.
        Assert.Equal([path], Directory.GetFileSystemEntries(output));
    }

    [Fact]
    public async Task A_fifo_as_the_job_file_is_refused_at_once_instead_of_blocking()
    {
        var (s, output) = Connected();
        using var _ = s;
        var fifo = Path.Combine(output, "job.json");
        using (var mk = Process.Start("mkfifo", [fifo]))
        {
            mk.WaitForExit();
            Assert.Equal(0, mk.ExitCode);
        }

        foreach (var command in JobCommands.Append("Test-DataOpsEnvironment -Job $job"))
        {
            var run = Task.Run(() => s.Run(command, new Hashtable { ["job"] = fifo, ["out"] = output }));

            var finished = await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(30)));
            Assert.True(finished == run, $"{command} blocked on a FIFO");
            var result = await run;
            var said = string.Join("\n", result.Errors.Select(e => e.FullyQualifiedErrorId + " " + e.Exception.Message).Concat(result.Output.Select(o => o.ToString())));
            Assert.Contains("not a regular file", said);
        }
    }

    [Theory]
    [InlineData("/proc/self/mem", "JobFileUnreadable", ErrorCategory.PermissionDenied)]
    [InlineData("/dev/zero", "JobFileTooLarge", ErrorCategory.InvalidData)]
    [InlineData("/tmp", "JobFileNotRegular", ErrorCategory.InvalidArgument)]
    [InlineData("/nonexistent/job.json", "JobFileNotFound", ErrorCategory.ObjectNotFound)]
    public void Unusable_job_paths_give_a_DataOps_error_not_a_raw_exception(string path, string errorId, ErrorCategory category)
    {
        var (s, output) = Connected();
        using var _ = s;

        var error = s.Terminating("Invoke-Backfill", new Hashtable { ["Job"] = path, ["OutputDirectory"] = output });

        Assert.StartsWith(errorId + ",", error.FullyQualifiedErrorId);
        Assert.Equal(category, error.CategoryInfo.Category);
        Assert.Equal(path, error.TargetObject);
    }

    [Fact]
    public void An_output_directory_that_cannot_be_made_gives_OutputDirectoryUnusable()
    {
        var (s, output) = Connected();
        using var _ = s;
        var file = Path.Combine(output, "a-file");
        File.WriteAllText(file, "not a folder");

        var r = s.Run("Test-ProdHealth -Job $job -OutputDirectory $out", new Hashtable { ["job"] = SampleJobs.Path, ["out"] = Path.Combine(file, "below") });

        var error = Assert.Single(r.Errors);
        Assert.StartsWith("OutputDirectoryUnusable,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.WriteError, error.CategoryInfo.Category);
    }
}
