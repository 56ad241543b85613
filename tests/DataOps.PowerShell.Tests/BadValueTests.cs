using System.Collections;
using System.Management.Automation;
using System.Text.Json.Nodes;

namespace DataOps.PowerShell.Tests;

/// <summary>Values a user can type that are out of range get a clear error before anything happens.</summary>
public sealed class BadValueTests
{
    [Theory]
    [InlineData("([long]::MaxValue)")]
    [InlineData("9e18")]
    [InlineData("1000000001")]
    public void A_seed_count_out_of_range_is_refused_at_binding_and_writes_nothing(string count)
    {
        var cs = TestCluster.CreateDatabaseWith("ScriptExecution");
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });

        var r = s.Run($"New-ScriptExecutionSeed -Count {count} -Confirm:$false");

        var error = Assert.Single(r.Errors);
        Assert.StartsWith("ParameterArgumentValidationError", error.FullyQualifiedErrorId);
        Assert.Contains("1000000000", error.Exception.Message);
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM script_execution"));
        Assert.Equal(false, Sql.Scalar(cs, "SELECT is_called FROM script_execution_id_seq"));
    }

    [Fact]
    public void A_seed_that_does_not_fit_the_id_range_is_refused_and_leaves_the_sequence_usable()
    {
        var cs = TestCluster.CreateDatabaseWith("ScriptExecution");
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        Sql.Execute(cs, "SELECT setval('script_execution_id_seq', 9223372036854775800)");

        var r = s.Run("New-ScriptExecutionSeed -Count 100 -Confirm:$false");

        var error = Assert.Single(r.Errors);
        Assert.StartsWith("SeedIdRangeExhausted,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
        Assert.Contains("does not fit", error.Exception.Message);
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM script_execution"));
        // The sequence was not moved to its end: a later seed of a few rows still fits.
        Assert.True((long)Sql.Scalar(cs, "SELECT last_value FROM script_execution_id_seq")! < 9223372036854775805);
        var small = s.Run("New-ScriptExecutionSeed -Count 5 -Confirm:$false");
        Assert.False(small.HadErrors, string.Join("\n", small.Errors));
        Assert.Equal(5L, Sql.Scalar(cs, "SELECT count(*) FROM script_execution"));
    }

    [Fact]
    public void A_hashtable_that_contains_itself_as_Input_is_an_error_not_a_crash()
    {
        var cs = TestCluster.CreateDatabaseWith("WorkflowExecution");
        var workflow = Guid.NewGuid();
        Sql.Execute(cs, $"INSERT INTO users (id, email) VALUES ('u1', 'u1@example.com'); INSERT INTO workflows (id, name, description, created_by) VALUES ('{workflow}', 'W', 'd', 'u1')");
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });

        var r = s.Run($"$h = @{{ a = 1 }}; $h.self = $h; New-WorkflowExecution -WorkflowId {workflow} -TemporalWorkflowId t -TemporalRunId r -CreatedBy u1 -Input $h");

        var error = Assert.Single(r.Errors);
        Assert.StartsWith("JsonArgumentTooDeep,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM workflow_executions"));
    }

    [Theory]
    [InlineData("-Interval 0")]
    [InlineData("-Interval ([TimeSpan]::FromSeconds(-5))")]
    [InlineData("-Interval 50ms")]
    [InlineData("-Duration ([TimeSpan]::FromHours(-1))")]
    [InlineData("-Duration 0 -Interval 0")]
    [InlineData("-Duration 40d")]
    [InlineData("-Duration 1s -Interval 2s")]
    public void A_soak_window_out_of_range_is_refused_before_any_sample(string window)
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        var started = DateTime.UtcNow;

        var r = s.Run($"Watch-StagingSoak -Job $job {window} -OutputDirectory $out", new Hashtable { ["job"] = SampleJobs.Path, ["out"] = Directory.CreateTempSubdirectory("dataops-bad-").FullName });

        var error = Assert.Single(r.Errors);
        Assert.StartsWith("SoakWindowInvalid,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
        Assert.Empty(r.Output);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(20));
    }

    [Theory]
    [MemberData(nameof(BadJobs.Changes), MemberType = typeof(BadJobs))]
    public void Bad_values_in_a_job_file_are_refused_with_their_JSON_path(string what, string expected, string? validatorOnly)
    {
        Assert.NotNull(expected + validatorOnly); // validatorOnly is the schema agreement test's column
        var cs = TestCluster.CreateDatabaseWith("Prism");
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        var path = BadJobs.Changed(what);

        var command = what.StartsWith("soak", StringComparison.Ordinal) ? "Watch-StagingSoak -Job $job -OutputDirectory $out" : "Invoke-Backfill -Job $job -OutputDirectory $out -Confirm:$false";
        var r = s.Run(command, new Hashtable { ["job"] = path, ["out"] = Directory.CreateTempSubdirectory("dataops-bad-").FullName });

        var error = Assert.Single(r.Errors);
        Assert.True(error.Exception.Message.Contains(expected, StringComparison.Ordinal), error.Exception.Message);
        Assert.Contains(error.CategoryInfo.Category, new[] { ErrorCategory.InvalidData, ErrorCategory.InvalidArgument });
        Assert.Empty(r.Output);
    }
}
