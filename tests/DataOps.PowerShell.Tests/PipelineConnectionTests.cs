using System.Collections;
using System.Management.Automation;
using System.Text.Json;
using DataOps.Tests;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// Issue 14, item 1: an object piped from one database is acted on in that database. Each test has
/// two databases, A (the session default) and B (a -NoDefault connection, $b), produces objects
/// from B and pipes them into the consumer: B changes and A does not. The same pipeline with an
/// explicit -Connection $a is refused (ConnectionMismatch) and changes nothing anywhere.
/// </summary>
public sealed class PipelineConnectionTests
{
    private static readonly string SampleJob = Path.Combine(Repo.Root, "examples", "jobs", "results-v1.2.1.job.json");

    /// <summary>Two databases with these components; the session's default is A; $a and $b are -NoDefault connections to each.</summary>
    /// <summary>Two WorkflowExecution databases, each with user u1 and the workflow <paramref name="workflow"/>.</summary>
    private static (PsSession Session, string A, string B) TwoDatabasesWithWorkflow(Guid workflow) => TwoDatabases("WorkflowExecution", $"""
        INSERT INTO users (id, email) VALUES ('u1', 'u1@example.com');
        INSERT INTO workflows (id, name, description, created_by) VALUES ('{workflow}', 'Billing', 'Monthly billing', 'u1');
        """);

    private static (PsSession Session, string A, string B) TwoDatabases(string component, string? arrange = null)
    {
        var a = TestCluster.CreateDatabaseWith(component);
        var b = TestCluster.CreateDatabaseWith(component);
        if (arrange is not null)
        {
            Sql.Execute(a, arrange);
            Sql.Execute(b, arrange);
        }

        var s = new PsSession();
        var r = s.Run(
            "Connect-DataOps -ConnectionString $csA | Out-Null; $a = Connect-DataOps -ConnectionString $csA -NoDefault; $b = Connect-DataOps -ConnectionString $csB -NoDefault",
            new Hashtable { ["csA"] = a, ["csB"] = b });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return (s, a, b);
    }

    private static long Count(string cs, string sql) => Convert.ToInt64(Sql.Scalar(cs, sql));

    private static string Database(string cs) => new Npgsql.NpgsqlConnectionStringBuilder(cs).Database!;

    private static void AssertMismatch(PsResult r, string a, string b)
    {
        Assert.NotEmpty(r.Errors);
        Assert.All(r.Errors, e =>
        {
            Assert.StartsWith("ConnectionMismatch,", e.FullyQualifiedErrorId);
            Assert.Equal(ErrorCategory.InvalidArgument, e.CategoryInfo.Category);
            Assert.Contains(Database(a), e.Exception.Message);
            Assert.Contains(Database(b), e.Exception.Message);
            Assert.Empty(Encodings.FoundIn(e.Exception.Message + e.TargetObject, TestCluster.Password));
        });
    }

    /// <summary>
    /// What a user can turn the object into: JSON of it (ConvertTo-Json's view, all public properties
    /// nested), PowerShell's CLIXML (Export-Clixml, remoting), and each property's text (what
    /// Format-List * and Export-Csv write; neither is in the hosted engine's command set).
    /// </summary>
    private static void AssertNoSecret(PSObject o)
    {
        var text = JsonSerializer.Serialize(o.BaseObject) + "\n" + PSSerializer.Serialize(o, 5) + "\n" +
            string.Join("\n", o.Properties.Select(p => $"{p.Name}: {p.Value}"));
        Assert.Contains(o.Properties["Connection"].Value.ToString()!, text);
        Assert.Contains("SafeConnectionString", text);
        Assert.Empty(Encodings.FoundIn(text, TestCluster.Password));
    }

    [Fact]
    public void Seed_results_remove_the_seed_of_their_own_database()
    {
        var (s, a, b) = TwoDatabases("ScriptExecution");
        using var _ = s;
        Assert.False(s.Run("New-ScriptExecutionSeed -Count 300 -Seed 1 -Confirm:$false | Out-Null").HadErrors);

        // The pipeline: B's seed run 1 is removed, A's seed run 1 stays.
        var removed = s.Run("New-ScriptExecutionSeed -Connection $b -Count 200 -Seed 2 | Remove-ScriptExecutionSeed -Confirm:$false");

        Assert.False(removed.HadErrors, string.Join("\n", removed.Errors));
        Assert.Equal(0, Count(b, "SELECT count(*) FROM script_execution"));
        Assert.Equal(300, Count(a, "SELECT count(*) FROM script_execution"));
        var run = removed.Output.Single();
        Assert.Equal(200L, run.Properties["Removed"].Value);
        Assert.Equal(Database(b), run.Properties["Connection"].Value.ToString()!.Split('/')[^1]);
        AssertNoSecret(run);

        // A typed -Connection naming another database is refused, and nothing changes anywhere.
        var refused = s.Run("New-ScriptExecutionSeed -Connection $b -Count 200 -Seed 3 | Remove-ScriptExecutionSeed -Connection $a -Confirm:$false");

        AssertMismatch(refused, a, b);
        Assert.Empty(refused.Output);
        Assert.Equal(200, Count(b, "SELECT count(*) FROM script_execution"));
        Assert.Equal(300, Count(a, "SELECT count(*) FROM script_execution"));
        Assert.Equal(1, Count(a, "SELECT count(*) FROM dataops.seed_run WHERE status = 'completed'"));

        // Another connection object to the same database is not a mismatch.
        var same = s.Run("New-ScriptExecutionSeed -Connection $b -Count 50 -Seed 4 | Remove-ScriptExecutionSeed -Connection (Connect-DataOps -ConnectionString $csB -NoDefault) -Confirm:$false", new Hashtable { ["csB"] = b });
        Assert.False(same.HadErrors, string.Join("\n", same.Errors));
        Assert.Equal(50L, same.Output.Single().Properties["Removed"].Value);
        Assert.Equal(200, Count(b, "SELECT count(*) FROM script_execution"));
    }

    [Fact]
    public void Backfill_results_and_runs_are_undone_and_listed_in_their_own_database()
    {
        var (s, a, b) = TwoDatabases("Prism");
        using var _ = s;
        var output = Directory.CreateTempSubdirectory("dataops-pipe-").FullName;
        var vars = new Hashtable { ["job"] = SampleJob, ["out"] = output };
        Assert.False(s.Run("New-PrismSampleData -Sessions 30 -Seed 5 -PendingShare 0.5 | Out-Null; New-PrismSampleData -Connection $b -Sessions 30 -Seed 5 -PendingShare 0.5 | Out-Null").HadErrors);
        const string pending = "SELECT count(*) FROM prism.sessions s LEFT JOIN prism.profiles p ON p.session_id = s.id WHERE s.status = 'completed' AND (p.id IS NULL OR p.results_version IS DISTINCT FROM 'v1.2.1' OR s.fc_kind <> 'functions')";
        var pendingA = Count(a, pending);
        Assert.True(pendingA > 0);

        var applied = s.Run("$items = Invoke-Backfill -Job $job -Connection $b -ItemsPerMinute 0 -OutputDirectory $out -Confirm:$false; $items", vars);
        Assert.False(applied.HadErrors, string.Join("\n", applied.Errors));
        Assert.Equal(0, Count(b, pending));
        AssertNoSecret(applied.Output[0]);

        // Get-BackfillRun from an item result finds the run in B (A has none).
        var listed = s.Run("$items[0] | Get-BackfillRun");
        Assert.False(listed.HadErrors, string.Join("\n", listed.Errors));
        var run = listed.Output.Single();
        Assert.Equal(applied.Output[0].Properties["RunId"].Value, run.Properties["RunId"].Value);
        AssertNoSecret(run);

        // A typed -Connection for A refuses B's run: B stays applied, A untouched.
        var refused = s.Run("$items[0] | Get-BackfillRun -Connection $a; Get-BackfillRun -Connection $b | Undo-Backfill -Connection $a -Confirm:$false");
        AssertMismatch(refused, a, b);
        Assert.Equal(2, refused.Errors.Count);
        Assert.Empty(refused.Output);
        Assert.Equal(0, Count(b, pending));
        Assert.Equal(pendingA, Count(a, pending));

        // Piped on its own, the run is undone in B.
        var undone = s.Run("Get-BackfillRun -Connection $b | Undo-Backfill -Confirm:$false");
        Assert.False(undone.HadErrors, string.Join("\n", undone.Errors));
        Assert.All(undone.Output, o => Assert.Equal("Restored", o.Properties["Status"].Value.ToString()));
        Assert.Equal(pendingA, Count(b, pending));
        Assert.Equal(pendingA, Count(a, pending));
        Assert.Equal(0, Count(a, "SELECT count(*) FROM dataops.run"));
    }

    [Fact]
    public void Executions_piped_from_two_databases_are_summarised_in_the_first_and_the_others_refused()
    {
        var workflow = Guid.NewGuid();
        var (s, a, b) = TwoDatabasesWithWorkflow(workflow);
        using var _ = s;
        var vars = new Hashtable { ["wf"] = workflow };
        var r = s.Run("""
            $inB = 1..3 | ForEach-Object { New-WorkflowExecution -Connection $b -WorkflowId $wf -TemporalWorkflowId "b$_" -TemporalRunId r1 -CreatedBy u1 }
            $inA = New-WorkflowExecution -Connection $a -WorkflowId $wf -TemporalWorkflowId a1 -TemporalRunId r1 -CreatedBy u1
            @($inB) + @($inA) | Get-ExecutionStats
            """, vars);

        // One result over B's three executions; A's is refused, not counted and not a second row.
        var stats = Assert.Single(r.Output);
        Assert.Equal(3L, stats.Properties["Total"].Value);
        Assert.Equal(Database(b), ((dynamic)stats.Properties["Connection"].Value).Database);
        var error = Assert.Single(r.Errors);
        Assert.StartsWith("ConnectionMismatch,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
        Assert.Contains(Database(a), error.Exception.Message);
        Assert.Contains(Database(b), error.Exception.Message);
    }

    [Fact]
    public void Executions_are_set_counted_and_removed_in_their_own_database()
    {
        var workflow = Guid.NewGuid();
        var (s, a, b) = TwoDatabasesWithWorkflow(workflow);
        using var _ = s;
        var vars = new Hashtable { ["wf"] = workflow };
        var created = s.Run("$e = New-WorkflowExecution -Connection $b -WorkflowId $wf -TemporalWorkflowId t1 -TemporalRunId r1 -CreatedBy u1; $e", vars);
        Assert.False(created.HadErrors, string.Join("\n", created.Errors));
        var id = (Guid)created.Output.Single().Properties["Id"].Value;
        AssertNoSecret(created.Output.Single());

        // A's twin: the same id in the default database, which a pipeline must not touch.
        Sql.Execute(a, $"INSERT INTO workflow_executions (id, workflow_id, temporal_workflow_id, temporal_run_id, created_by) VALUES ('{id}', '{workflow}', 't1', 'r1', 'u1')");
        string Status(string cs) => (string)Sql.Scalar(cs, $"SELECT status FROM workflow_executions WHERE id = '{id}'")!;

        // Typed -Connection $a: every consumer refuses B's execution; nothing changes anywhere.
        var refused = s.Run("""
            $e | Set-WorkflowExecution -Connection $a -Status failed -Confirm:$false
            $e | Get-ExecutionStats -Connection $a
            $e | Remove-WorkflowExecution -Connection $a -Confirm:$false
            """);
        AssertMismatch(refused, a, b);
        Assert.Equal(3, refused.Errors.Count);
        Assert.Empty(refused.Output);
        Assert.Equal("running", Status(a));
        Assert.Equal("running", Status(b));

        var set = s.Run("$e | Set-WorkflowExecution -Status completed -Confirm:$false -PassThru");
        Assert.False(set.HadErrors, string.Join("\n", set.Errors));
        Assert.Equal("completed", Status(b));
        Assert.Equal("running", Status(a));

        var stats = s.Run("$e | Get-ExecutionStats").Output.Single();
        Assert.Equal(1L, stats.Properties["Completed"].Value);
        Assert.Equal(0L, stats.Properties["Running"].Value);
        AssertNoSecret(stats);

        var removed = s.Run("$e | Remove-WorkflowExecution -Confirm:$false");
        Assert.False(removed.HadErrors, string.Join("\n", removed.Errors));
        Assert.Equal(0, Count(b, "SELECT count(*) FROM workflow_executions"));
        Assert.Equal(1, Count(a, "SELECT count(*) FROM workflow_executions"));
    }

    [Fact]
    public void A_health_report_runs_its_plan_in_its_own_database()
    {
        var (s, a, b) = TwoDatabases("Prism");
        using var _ = s;
        var output = Directory.CreateTempSubdirectory("dataops-pipe-").FullName;
        var vars = new Hashtable { ["job"] = SampleJob, ["out"] = output };
        Assert.False(s.Run("New-PrismSampleData -Sessions 30 -Seed 6 -PendingShare 0.5 | Out-Null; New-PrismSampleData -Connection $b -Sessions 30 -Seed 6 -PendingShare 0.5 | Out-Null").HadErrors);
        const string pending = "SELECT count(*) FROM prism.sessions s LEFT JOIN prism.profiles p ON p.session_id = s.id WHERE s.status = 'completed' AND (p.id IS NULL OR p.results_version IS DISTINCT FROM 'v1.2.1' OR s.fc_kind <> 'functions')";
        var pendingA = Count(a, pending);
        Assert.True(pendingA > 0);

        var refused = s.Run("Test-ProdHealth -Job $job -Connection $b -OutputDirectory $out | Invoke-Backfill -Connection $a -ItemsPerMinute 0 -OutputDirectory $out -Confirm:$false", vars);
        AssertMismatch(refused, a, b);
        Assert.Empty(refused.Output);
        Assert.Equal(pendingA, Count(b, pending));
        Assert.Equal(pendingA, Count(a, pending));

        var report = s.Run("Test-ProdHealth -Job $job -Connection $b -OutputDirectory $out", vars).Output.Single();
        AssertNoSecret(report);
        var applied = s.Run("$r | Invoke-Backfill -ItemsPerMinute 0 -OutputDirectory $out -Confirm:$false", new Hashtable { ["r"] = report, ["out"] = output });
        Assert.False(applied.HadErrors, string.Join("\n", applied.Errors));
        Assert.Equal(pendingA, applied.Output.Count);
        Assert.Equal(0, Count(b, pending));
        Assert.Equal(pendingA, Count(a, pending));
    }

    [Fact]
    public void A_piped_sandbox_is_stopped_under_its_own_root()
    {
        _ = TestCluster.Port; // pg binaries are found and work
        var rootA = Directory.CreateTempSubdirectory("dataops-root-a-").FullName;
        var rootB = Directory.CreateTempSubdirectory("dataops-root-b-").FullName;
        try
        {
            // Two stopped namesakes, one per root (a sandbox folder with a data directory).
            Directory.CreateDirectory(Path.Combine(rootA, "twin", "data"));
            Directory.CreateDirectory(Path.Combine(rootB, "twin", "data"));
            using var s = new PsSession();
            var vars = new Hashtable { ["a"] = rootA, ["b"] = rootB };

            var listed = s.Run("Get-DataOpsSandbox -Root $b", vars).Output.Single();
            Assert.Equal(rootB, listed.Properties["Root"].Value);

            var refused = s.Run("Get-DataOpsSandbox -Root $b | Stop-DataOpsSandbox -Root $a -Remove -Confirm:$false", vars);
            var error = Assert.Single(refused.Errors);
            Assert.StartsWith("SandboxRootMismatch,", error.FullyQualifiedErrorId);
            Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
            Assert.Contains(rootA, error.Exception.Message);
            Assert.Contains(rootB, error.Exception.Message);
            Assert.True(Directory.Exists(Path.Combine(rootA, "twin")));
            Assert.True(Directory.Exists(Path.Combine(rootB, "twin")));

            var stopped = s.Run("Get-DataOpsSandbox -Root $b | Stop-DataOpsSandbox -Remove -Confirm:$false -PassThru", vars);
            Assert.False(stopped.HadErrors, string.Join("\n", stopped.Errors));
            Assert.Equal("Removed", stopped.Output.Single().Properties["Status"].Value.ToString());
            Assert.False(Directory.Exists(Path.Combine(rootB, "twin")));
            Assert.True(Directory.Exists(Path.Combine(rootA, "twin")));
        }
        finally
        {
            Directory.Delete(rootA, recursive: true);
            Directory.Delete(rootB, recursive: true);
        }
    }

    [Fact]
    public void A_piped_object_that_binds_nothing_is_refused_not_taken_as_no_filter()
    {
        var (s, a, _) = TwoDatabases("ScriptExecution");
        using var __ = s;
        Assert.False(s.Run("New-ScriptExecutionSeed -Count 100 -Seed 1 -Confirm:$false | Out-Null").HadErrors);

        var r = s.Run("[pscustomobject]@{ X = 1 }, 'text' | Remove-ScriptExecutionSeed -Confirm:$false; [pscustomobject]@{ X = 1 } | Get-WorkflowExecution", new Hashtable { ["root"] = TestCluster.Root });
        // Get-DataOpsSandbox takes piped strings as names (like Stop-DataOpsSandbox): a filter, never "every sandbox".
        var name = s.Run("'text' | Get-DataOpsSandbox -Root $root", new Hashtable { ["root"] = TestCluster.Root });

        Assert.Equal(3, r.Errors.Count);
        Assert.All(r.Errors, e => Assert.StartsWith("InputObjectNotBound,", e.FullyQualifiedErrorId));
        Assert.Empty(r.Output);
        Assert.StartsWith("SandboxNotFound,", Assert.Single(name.Errors).FullyQualifiedErrorId);
        Assert.Empty(name.Output);
        Assert.Equal(100, Count(a, "SELECT count(*) FROM script_execution"));
    }
}
