using System.Collections;
using System.Management.Automation;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// Issue 19, item 6, where the hosted engine sees what pwsh hides: runspaces side by side, the
/// database behind a pipeline, and preference variables.
/// </summary>
public sealed class EverydayCmdletTests
{
    private static readonly string SampleJob = Path.Combine(Repo.Root, "examples", "jobs", "results-v1.2.1.job.json");

    [Fact]
    public void Named_connections_belong_to_the_runspace_that_made_them()
    {
        var cs = TestCluster.CreateDatabase();
        using var first = new PsSession();
        using var second = new PsSession();

        var made = first.Run("Connect-DataOps -ConnectionString $cs -Name mine -NoDefault | Out-Null; Invoke-DataOpsQuery -Connection mine 'SELECT 42' -As Scalar -ReadOnly", new Hashtable { ["cs"] = cs });
        var listed = second.Run("Get-DataOpsConnection -Name *");
        var used = second.Run("Invoke-DataOpsQuery -Connection mine 'SELECT 42' -As Scalar -ReadOnly");

        Assert.False(made.HadErrors, string.Join("\n", made.Errors));
        Assert.Equal(42, made.Single<int>());
        Assert.Empty(listed.Output);
        var error = Assert.Single(used.Errors);
        Assert.StartsWith("ParameterArgumentTransformationError,", error.FullyQualifiedErrorId);
        Assert.Contains("No connection named 'mine'", error.Exception.Message);
    }

    [Fact]
    public void Backfill_items_are_read_from_the_database_their_run_came_from()
    {
        var a = TestCluster.CreateDatabaseWith("Prism");
        var b = TestCluster.CreateDatabaseWith("Prism");
        var output = Directory.CreateTempSubdirectory("dataops-items-").FullName;
        using var s = new PsSession();
        var arranged = s.Run(
            "Connect-DataOps -ConnectionString $csA | Out-Null; $a = Connect-DataOps -ConnectionString $csA -NoDefault; $b = Connect-DataOps -ConnectionString $csB -NoDefault -Name b; " +
            "New-PrismSampleData -Connection $b -Sessions 20 -Seed 5 -PendingShare 0.5 | Out-Null; " +
            "$run = @(Invoke-Backfill -Connection b -Job $job -ItemsPerMinute 0 -OutputDirectory $out -WarningAction SilentlyContinue)",
            new Hashtable { ["csA"] = a, ["csB"] = b, ["job"] = SampleJob, ["out"] = output });
        Assert.False(arranged.HadErrors, string.Join("\n", arranged.Errors));

        var own = s.Run("Get-BackfillRun -Connection b | Get-BackfillItem");
        var wrong = s.Run("Get-BackfillRun -Connection b | Get-BackfillItem -Connection $a");
        var applied = Convert.ToInt64(Sql.Scalar(b, "SELECT count(*) FROM dataops.ledger WHERE status = 'applied'"));

        Assert.False(own.HadErrors, string.Join("\n", own.Errors));
        Assert.True(applied > 0);
        Assert.Equal(applied, own.Output.Count);
        Assert.All(own.Output, o => Assert.Equal("Applied", o.Properties["Status"].Value));
        Assert.Empty(wrong.Output);
        var mismatch = Assert.Single(wrong.Errors);
        Assert.StartsWith("ConnectionMismatch,", mismatch.FullyQualifiedErrorId);
    }

    [Fact]
    public void WhatIfPreference_keeps_a_write_from_running_and_lets_a_read_only_query_run()
    {
        var cs = TestCluster.CreateDatabase();
        Sql.Execute(cs, "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)");
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });

        var r = s.Run("$WhatIfPreference = $true; Invoke-DataOpsQuery 'DELETE FROM t' -As NonQuery; Invoke-DataOpsQuery 'SELECT count(*) FROM t' -As Scalar -ReadOnly");

        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        Assert.Equal(2L, r.Single<long>());
        Assert.Equal(2L, Convert.ToInt64(Sql.Scalar(cs, "SELECT count(*) FROM t")));
    }

    [Fact]
    public void A_failed_query_is_one_terminating_error_with_its_ErrorId_category_and_query()
    {
        var cs = TestCluster.CreateDatabase();
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });

        var error = s.Terminating("Invoke-DataOpsQuery", new Hashtable { ["Query"] = "SELECT * FROM no_such_table", ["ReadOnly"] = true });

        Assert.Equal("QueryFailed,DataOps.PowerShell.Cmdlets.InvokeDataOpsQueryCommand", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
        Assert.Equal("SELECT * FROM no_such_table", error.TargetObject);
        Assert.Equal("42P01", error.Exception.Data["SqlState"]);
        Assert.NotNull(error.ErrorDetails?.RecommendedAction);
        Assert.Empty(DataOps.Tests.Encodings.FoundIn(error.ToString() + error.Exception, TestCluster.Password));
    }
}
