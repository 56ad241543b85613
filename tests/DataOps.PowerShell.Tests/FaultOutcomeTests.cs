using System.Collections;
using System.Management.Automation;

namespace DataOps.PowerShell.Tests;

/// <summary>Failures a user can cause or meet end in a DataOps ErrorId and category, never a raw driver exception.</summary>
public sealed class FaultOutcomeTests
{
    /// <summary>The sample's content apart from its timestamps (they are relative to the time it was made).</summary>
    private const string Checksum = "SELECT md5(coalesce((SELECT string_agg(concat_ws('|', id, user_id, status, fc_kind), ',' ORDER BY id) FROM prism.sessions), '') || coalesce((SELECT string_agg(concat_ws('|', session_id, results_version), ',' ORDER BY session_id) FROM prism.profiles), ''))";

    [Fact]
    public void The_same_Prism_sample_twice_is_refused_cleanly_and_Reset_gives_the_same_state_again()
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        var first = s.Run("New-PrismSampleData -Sessions 30 -Seed 42 -PendingShare 0.5");
        Assert.False(first.HadErrors, string.Join("\n", first.Errors));
        var original = Sql.Scalar(cs, Checksum);

        var again = s.Run("New-PrismSampleData -Sessions 30 -Seed 42 -PendingShare 0.5");

        var error = Assert.Single(again.Errors);
        Assert.StartsWith("SampleDataExists,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidOperation, error.CategoryInfo.Category);
        Assert.Contains("-Reset", error.Exception.Message);
        Assert.Equal(original, Sql.Scalar(cs, Checksum));

        // Change the data as a test would (a backfill), then -Reset puts the same sample back.
        Sql.Execute(cs, "UPDATE prism.sessions SET fc_kind = 'functions'; DELETE FROM prism.profiles");
        var reset = s.Run("New-PrismSampleData -Sessions 30 -Seed 42 -PendingShare 0.5 -Reset");

        Assert.False(reset.HadErrors, string.Join("\n", reset.Errors));
        Assert.Equal(first.Output[0].Properties["Pending"].Value, reset.Output[0].Properties["Pending"].Value);
        Assert.Equal(original, Sql.Scalar(cs, Checksum));
    }

    [Fact]
    public void One_failed_item_of_a_pipeline_is_a_non_terminating_error_and_the_next_items_go_on()
    {
        var cs = TestCluster.CreateDatabaseWith("WorkflowExecution");
        var workflow = Guid.NewGuid();
        Sql.Execute(cs, $"INSERT INTO users (id, email) VALUES ('u1', 'u1@example.com'); INSERT INTO workflows (id, name, description, created_by) VALUES ('{workflow}', 'W', 'd', 'u1')");
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });

        var created = s.Run($$"""
            @(
              [pscustomobject]@{ WorkflowId = '{{Guid.NewGuid()}}'; TemporalWorkflowId = 't0'; TemporalRunId = 'r0'; CreatedBy = 'u1' },
              [pscustomobject]@{ WorkflowId = '{{workflow}}'; TemporalWorkflowId = 't1'; TemporalRunId = 'r1'; CreatedBy = 'nobody' },
              [pscustomobject]@{ WorkflowId = '{{workflow}}'; TemporalWorkflowId = 't2'; TemporalRunId = 'r2'; CreatedBy = 'u1' }
            ) | New-WorkflowExecution
            """);

        Assert.Equal(["WorkflowNotFound", "UserNotFound"], created.Errors.Select(e => e.FullyQualifiedErrorId.Split(',')[0]));
        Assert.Equal("t2", Assert.Single(created.Output).Properties["TemporalWorkflowId"].Value);
        Assert.Equal(1L, Sql.Scalar(cs, "SELECT count(*) FROM workflow_executions"));

        var stopped = s.Run("'no-such-sandbox', 'nor-this-one' | Stop-DataOpsSandbox -Root $root -Confirm:$false; 'after'", new Hashtable { ["root"] = TestCluster.Root });

        Assert.Equal(["SandboxNotFound", "SandboxNotFound"], stopped.Errors.Select(e => e.FullyQualifiedErrorId.Split(',')[0]));
        Assert.Equal("after", Assert.Single(stopped.Output).BaseObject);
    }

    [Theory]
    [InlineData("/proc/dataops-sandboxes")]
    [InlineData("FILE")]
    public void An_unusable_sandbox_root_is_SandboxRootUnusable(string root)
    {
        if (root == "FILE")
        {
            root = Path.Combine(Directory.CreateTempSubdirectory("dataops-root-").FullName, "a-file");
            File.WriteAllText(root, "not a folder");
        }

        using var s = new PsSession();

        var error = s.Terminating("Start-DataOpsSandbox", new Hashtable { ["Name"] = "unusable", ["Root"] = root, ["NoDefault"] = true });

        Assert.StartsWith("SandboxRootUnusable,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.WriteError, error.CategoryInfo.Category);
        Assert.Equal(root, error.TargetObject);
        Assert.Contains("-Root", error.Exception.Message);
    }

    [Fact]
    public void Backfill_runs_on_a_database_without_Core_or_with_an_unknown_id_are_clear_errors()
    {
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = TestCluster.CreateDatabase() });

        var noCore = s.Run("Get-BackfillRun; Undo-Backfill -RunId ([guid]::NewGuid()) -Confirm:$false");

        Assert.Equal(["SchemaMissing", "SchemaMissing"], noCore.Errors.Select(e => e.FullyQualifiedErrorId.Split(',')[0]));
        Assert.All(noCore.Errors, e => Assert.Equal(ErrorCategory.NotInstalled, e.CategoryInfo.Category));

        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = TestCluster.CreateDatabaseWith("Core") });
        var unknown = Guid.NewGuid();
        var missing = s.Run("$ids | Get-BackfillRun; 'after'", new Hashtable { ["ids"] = new[] { new PSObject(new { RunId = unknown }), new PSObject(new { RunId = Guid.NewGuid() }) } });

        Assert.Equal(["RunNotFound", "RunNotFound"], missing.Errors.Select(e => e.FullyQualifiedErrorId.Split(',')[0]));
        Assert.Equal(unknown, missing.Errors[0].TargetObject);
        Assert.Equal("after", Assert.Single(missing.Output).BaseObject);
    }
}
