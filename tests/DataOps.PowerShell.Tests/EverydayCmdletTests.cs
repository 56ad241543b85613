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
    public void A_failed_query_is_a_non_terminating_error_of_that_input_with_its_ErrorId_SQLSTATE_and_query_and_the_next_input_still_runs()
    {
        var a = TestCluster.CreateDatabase();
        var b = TestCluster.CreateDatabase();
        Sql.Execute(a, "CREATE TABLE t (n int)");
        Sql.Execute(b, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)");
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $a -Name a -NoDefault | Out-Null; Connect-DataOps -ConnectionString $b -Name b -NoDefault | Out-Null", new Hashtable { ["a"] = a, ["b"] = b });
        const string Query = "SELECT 10 / (SELECT count(*) FROM t)::int AS n";

        // Database a has no row: its query divides by zero; b's still runs, and so does the next statement.
        var piped = s.Run("'a', 'b' | ForEach-Object { [pscustomobject]@{ Connection = $_ } } | Invoke-DataOpsQuery $q -ReadOnly; 'after'", new Hashtable { ["q"] = Query });
        var syntax = s.Run("Invoke-DataOpsQuery -Connection b 'SELEC 1' -ReadOnly; 'after'");
        var silenced = s.Run("Invoke-DataOpsQuery -Connection a $q -ReadOnly -ErrorAction SilentlyContinue -ErrorVariable failed; $failed.Count", new Hashtable { ["q"] = Query });
        var stop = s.Terminating("Invoke-DataOpsQuery", new Hashtable { ["Connection"] = "a", ["Query"] = Query, ["ReadOnly"] = true, ["ErrorAction"] = ActionPreference.Stop });

        var error = Assert.Single(piped.Errors);
        Assert.Equal("QueryFailed,DataOps.PowerShell.Cmdlets.InvokeDataOpsQueryCommand", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidData, error.CategoryInfo.Category);
        Assert.Equal(Query, error.TargetObject);
        Assert.Equal("22012", error.Exception.Data["SqlState"]);
        Assert.Contains("22012: division by zero", error.Exception.Message);
        Assert.NotNull(error.ErrorDetails?.RecommendedAction);
        Assert.Empty(DataOps.Tests.Encodings.FoundIn(error.ToString() + error.Exception, TestCluster.Password));
        Assert.Equal(10, (int)piped.Output[0].Properties["n"].Value);
        Assert.Equal("after", piped.Output[^1].BaseObject);

        var bad = Assert.Single(syntax.Errors);
        Assert.Equal(("QueryFailed", ErrorCategory.InvalidArgument, (object)"42601"), (bad.FullyQualifiedErrorId.Split(',')[0], bad.CategoryInfo.Category, bad.Exception.Data["SqlState"]));
        Assert.Equal("after", Assert.Single(syntax.Output).BaseObject);
        Assert.Empty(silenced.Errors);
        Assert.Equal(1, Assert.Single(silenced.Output).BaseObject);
        Assert.StartsWith("QueryFailed,", stop.FullyQualifiedErrorId);
    }

    [Fact]
    public void A_write_under_ReadOnly_and_a_missing_parameter_still_end_the_command_and_change_nothing()
    {
        var cs = TestCluster.CreateDatabase();
        Sql.Execute(cs, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)");
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });

        var write = s.Terminating("Invoke-DataOpsQuery", new Hashtable { ["Query"] = "DELETE FROM t", ["ReadOnly"] = true });
        var missing = s.Terminating("Invoke-DataOpsQuery", new Hashtable { ["Query"] = "SELECT * FROM t WHERE n = @n", ["ReadOnly"] = true });

        Assert.Equal(("ReadOnlyViolation", ErrorCategory.WriteError), (write.FullyQualifiedErrorId.Split(',')[0], write.CategoryInfo.Category));
        Assert.Equal(("QueryParameterMissing", ErrorCategory.InvalidArgument), (missing.FullyQualifiedErrorId.Split(',')[0], missing.CategoryInfo.Category));
        Assert.Equal(1L, Sql.Scalar(cs, "SELECT count(*) FROM t"));
    }
}
