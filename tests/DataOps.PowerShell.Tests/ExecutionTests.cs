using System.Collections;
using System.Management.Automation;

namespace DataOps.PowerShell.Tests;

public sealed class ExecutionTests
{
    private static readonly Guid WorkflowA = Guid.Parse("aaaaaaaa-0000-0000-0000-000000000001");
    private static readonly Guid WorkflowB = Guid.Parse("bbbbbbbb-0000-0000-0000-000000000002");

    /// <summary>A database with the WorkflowExecution schema, three users and two workflows, and a session connected to it.</summary>
    private static (PsSession Session, string Cs) Setup()
    {
        var cs = TestCluster.CreateDatabaseWith("WorkflowExecution");
        Sql.Execute(cs, $"""
            INSERT INTO users (id, email) VALUES ('u1', 'u1@example.com'), ('u2', 'u2@example.com'), ('u3', 'u3@example.com');
            INSERT INTO workflows (id, name, description, created_by) VALUES ('{WorkflowA}', 'Billing', 'Monthly billing', 'u1'), ('{WorkflowB}', 'Onboarding', 'New users', 'u2');
            """);
        var s = new PsSession();
        var r = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return (s, cs);
    }

    private static object? Prop(PSObject o, string name) => o.Properties[name].Value;

    private static PSObject NewExecution(PsSession s, Guid workflow, string user, string temporalId = "t1")
    {
        var r = s.Run($"New-WorkflowExecution -WorkflowId {workflow} -TemporalWorkflowId {temporalId} -TemporalRunId r-{Guid.NewGuid():N} -CreatedBy {user} -Input @{{ orderId = 42; tags = @('a','b') }}");
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return r.Output.Single();
    }

    [Fact]
    public void Create_get_update_and_remove()
    {
        var (s, cs) = Setup();
        using var _ = s;

        var created = NewExecution(s, WorkflowA, "u1", "order-42");
        Assert.Equal("running", Prop(created, "Status"));
        Assert.Equal("Billing", Prop(created, "WorkflowName"));
        Assert.Equal("Monthly billing", Prop(created, "WorkflowDescription"));
        Assert.Null(Prop(created, "CompletedAt"));
        Assert.Equal(42L, Convert.ToInt64(Sql.Scalar(cs, "SELECT (input->>'orderId')::bigint FROM workflow_executions")));
        Assert.Equal("b", Sql.Scalar(cs, "SELECT input->'tags'->>1 FROM workflow_executions"));
        var id = (Guid)Prop(created, "Id")!;

        var byId = s.Run($"Get-WorkflowExecution -Id {id}").Output.Single();
        var byTemporal = s.Run("Get-WorkflowExecution -TemporalWorkflowId order-42").Output.Single();
        Assert.Equal(id, Prop(byId, "Id"));
        Assert.Equal(id, Prop(byTemporal, "Id"));

        var updated = s.Run($"Set-WorkflowExecution -Id {id} -Status completed -Output '{{\"total\": 99.5}}' -ActivitiesExecuted 7 -PassThru").Output.Single();
        Assert.Equal("completed", Prop(updated, "Status"));
        Assert.NotNull(Prop(updated, "CompletedAt"));
        Assert.True((long)Prop(updated, "DurationMs")! >= 0);
        Assert.Equal(7, Prop(updated, "ActivitiesExecuted"));
        Assert.Equal(99.5m, Convert.ToDecimal(Sql.Scalar(cs, "SELECT (output->>'total')::numeric FROM workflow_executions")));

        var removed = s.Run($"Remove-WorkflowExecution -Id {id} -Force -PassThru");
        Assert.Equal(id, Prop(removed.Output.Single(), "Id"));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM workflow_executions"));

        var missing = s.Run($"Get-WorkflowExecution -Id {id}");
        Assert.Empty(missing.Output);
        var error = Assert.Single(missing.Errors);
        Assert.StartsWith("ExecutionNotFound,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ObjectNotFound, error.CategoryInfo.Category);
    }

    [Fact]
    public void An_execution_piped_back_is_read_again_by_its_id_from_its_own_database()
    {
        var (s, cs) = Setup();
        using var _ = s;
        var first = NewExecution(s, WorkflowA, "u1", "order-7");
        var second = NewExecution(s, WorkflowA, "u1", "order-7"); // the newest run of the same Temporal workflow
        Sql.Execute(cs, $"UPDATE workflow_executions SET status = 'completed', completed_at = now() WHERE id = '{Prop(first, "Id")}'");
        // The session's default is now another database: the executions must still be read where they came from.
        var other = TestCluster.CreateDatabaseWith("WorkflowExecution");
        var vars = new Hashtable { ["first"] = first, ["second"] = second, ["other"] = other };
        Assert.False(s.Run("$elsewhere = Connect-DataOps -ConnectionString $other", vars).HadErrors);
        var database = new Npgsql.NpgsqlConnectionStringBuilder(cs).Database;

        var one = s.Run("$first | Get-WorkflowExecution", vars);
        var both = s.Run("$first, $second | Get-WorkflowExecution", vars);
        var typedSame = s.Run("$first | Get-WorkflowExecution -Connection $first.Connection", vars);

        foreach (var r in new[] { one, both, typedSame })
        {
            Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        }

        // By its Id, not by its Temporal workflow id (whose newest run is the second execution).
        var reread = one.Output.Single();
        Assert.Equal(Prop(first, "Id"), Prop(reread, "Id"));
        Assert.Equal("completed", Prop(reread, "Status"));
        Assert.Equal(database, Prop(PSObject.AsPSObject(Prop(reread, "Connection")!), "Database"));
        Assert.Equal([Prop(first, "Id"), Prop(second, "Id")], both.Output.Select(o => Prop(o, "Id")));
        Assert.Equal(Prop(first, "Id"), Prop(typedSame.Output.Single(), "Id"));

        // A -Connection that names another database refuses the execution instead of reading its id there.
        var mismatch = s.Run("$first | Get-WorkflowExecution -Connection $elsewhere", vars);
        Assert.Empty(mismatch.Output);
        Assert.StartsWith("ConnectionMismatch,", Assert.Single(mismatch.Errors).FullyQualifiedErrorId);

        // -TemporalWorkflowId is for the command line; a piped string binds nothing and lists nothing.
        var newest = s.Run("Get-WorkflowExecution -TemporalWorkflowId order-7 -Connection $first.Connection", vars);
        Assert.Equal(Prop(second, "Id"), Prop(newest.Output.Single(), "Id"));
        var text = s.Run("'order-7' | Get-WorkflowExecution", vars);
        Assert.Empty(text.Output);
        Assert.StartsWith("InputObjectNotBound,", Assert.Single(text.Errors).FullyQualifiedErrorId);
    }

    [Fact]
    public void Duration_can_be_given_and_remove_honours_WhatIf()
    {
        var (s, cs) = Setup();
        using var _ = s;
        var id = Prop(NewExecution(s, WorkflowB, "u2"), "Id");

        var updated = s.Run($"Set-WorkflowExecution -Id {id} -Status failed -ErrorMessage boom -DurationMs 1234 -PassThru").Output.Single();
        s.Run($"Remove-WorkflowExecution -Id {id} -WhatIf");

        Assert.Equal(1234L, Prop(updated, "DurationMs"));
        Assert.Equal("boom", Prop(updated, "ErrorMessage"));
        Assert.Equal(1L, Sql.Scalar(cs, "SELECT count(*) FROM workflow_executions"));
    }

    [Fact]
    public void Lists_newest_first_filtered_and_paged_in_SQL()
    {
        var (s, cs) = Setup();
        using var _ = s;
        Sql.Execute(cs, $"""
            INSERT INTO workflow_executions (workflow_id, temporal_workflow_id, temporal_run_id, status, started_at, created_by)
            SELECT CASE WHEN g % 3 = 0 THEN '{WorkflowB}'::uuid ELSE '{WorkflowA}'::uuid END, 'tw-' || g, 'run-' || g,
                   (ARRAY['running','completed','failed','cancelled','timed_out'])[1 + g % 5],
                   timestamptz '2026-03-01' + g * interval '1 hour', CASE WHEN g % 2 = 0 THEN 'u1' ELSE 'u2' END
            FROM generate_series(1, 60) g;
            """);

        var page = s.Run("Get-WorkflowExecution -CreatedBy u1 -First 5 -Skip 10 -IncludeTotalCount");

        Assert.False(page.HadErrors, string.Join("\n", page.Errors));
        Assert.Equal(30UL, Convert.ToUInt64(page.Output[0].BaseObject));
        var expected = (string)Sql.Scalar(cs, "SELECT string_agg(temporal_workflow_id, ',' ORDER BY started_at DESC) FROM (SELECT * FROM workflow_executions WHERE created_by = 'u1' ORDER BY started_at DESC OFFSET 10 LIMIT 5) x")!;
        Assert.Equal(expected, string.Join(",", page.Output.Skip(1).Select(o => Prop(o, "TemporalWorkflowId"))));

        var filtered = s.Run($"Get-WorkflowExecution -Status failed,timed_out -WorkflowId {WorkflowA} -Since '2026-03-02T00:00:00Z' -Until '2026-03-03T00:00:00Z'").Output;
        var expectedCount = Convert.ToInt64(Sql.Scalar(cs, $"SELECT count(*) FROM workflow_executions WHERE status IN ('failed','timed_out') AND workflow_id = '{WorkflowA}' AND started_at >= '2026-03-02T00:00:00Z' AND started_at < '2026-03-03T00:00:00Z'"));
        Assert.Equal(expectedCount, filtered.Count);
        Assert.True(expectedCount > 0);
        Assert.All(filtered, o => Assert.Contains((string)Prop(o, "Status")!, new[] { "failed", "timed_out" }));

        var all = s.Run("Get-WorkflowExecution").Output.Select(o => (DateTimeOffset)Prop(o, "StartedAt")!).ToList();
        Assert.Equal(60, all.Count);
        Assert.Equal(all.OrderByDescending(t => t), all);
    }

    [Fact]
    public void Pipeline_times_out_stale_running_executions_only()
    {
        var (s, cs) = Setup();
        using var _ = s;
        Sql.Execute(cs, $"""
            INSERT INTO workflow_executions (workflow_id, temporal_workflow_id, temporal_run_id, status, started_at, created_by) VALUES
              ('{WorkflowA}', 'stale-1', 'r', 'running', now() - interval '10 hours', 'u1'),
              ('{WorkflowA}', 'stale-2', 'r', 'running', now() - interval '7 hours', 'u2'),
              ('{WorkflowA}', 'fresh', 'r', 'running', now() - interval '1 hour', 'u1'),
              ('{WorkflowB}', 'done', 'r', 'completed', now() - interval '9 hours', 'u1');
            """);

        var r = s.Run("Get-WorkflowExecution -Status running -Until ([DateTime]::UtcNow.AddHours(-6)) | Set-WorkflowExecution -Status timed_out -ErrorMessage stale -PassThru");

        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        Assert.Equal(["stale-1", "stale-2"], r.Output.Select(o => (string)Prop(o, "TemporalWorkflowId")!).Order());
        Assert.Equal("running", Sql.Scalar(cs, "SELECT status FROM workflow_executions WHERE temporal_workflow_id = 'fresh'"));
        Assert.Equal("completed", Sql.Scalar(cs, "SELECT status FROM workflow_executions WHERE temporal_workflow_id = 'done'"));
        Assert.Equal(2L, Sql.Scalar(cs, "SELECT count(*) FROM workflow_executions WHERE status = 'timed_out' AND completed_at IS NOT NULL AND duration_ms >= 6 * 3600 * 1000"));
    }

    [Theory]
    [InlineData("running", "completed", "", true)]
    [InlineData("running", "failed", "", true)]
    [InlineData("running", "cancelled", "", true)]
    [InlineData("running", "timed_out", "", true)]
    [InlineData("running", "running", "", true)]
    [InlineData("completed", "completed", "", true)]
    [InlineData("completed", "running", "", false)]
    [InlineData("failed", "running", "", false)]
    [InlineData("completed", "failed", "", false)]
    [InlineData("timed_out", "cancelled", "", false)]
    [InlineData("completed", "running", "-AllowFinalStatusChange", true)]
    [InlineData("cancelled", "completed", "-AllowFinalStatusChange", true)]
    [InlineData("completed", "running", "-Force", false)]
    [InlineData("failed", "completed", "-Force -Confirm:$false", false)]
    public void Status_transitions_follow_the_rules(string from, string to, string switches, bool allowed)
    {
        var (s, cs) = Setup();
        using var _ = s;
        var id = Prop(NewExecution(s, WorkflowA, "u1"), "Id");
        if (from != "running")
        {
            Sql.Execute(cs, $"UPDATE workflow_executions SET status = '{from}', completed_at = now(), duration_ms = 5 WHERE id = '{id}'");
        }

        var r = s.Run($"Set-WorkflowExecution -Id {id} -Status {to} {switches} -PassThru");

        if (allowed)
        {
            Assert.False(r.HadErrors, string.Join("\n", r.Errors));
            var status = Prop(r.Output.Single(), "Status");
            Assert.Equal(to, status);
            Assert.Equal(to == "running", Prop(r.Output.Single(), "CompletedAt") is null);
        }
        else
        {
            var error = Assert.Single(r.Errors);
            Assert.StartsWith("InvalidStatusTransition,", error.FullyQualifiedErrorId);
            Assert.Equal(ErrorCategory.InvalidOperation, error.CategoryInfo.Category);
            Assert.Contains($"'{from}'", error.Exception.Message);
            Assert.Contains($"'{to}'", error.Exception.Message);
            Assert.Contains("-AllowFinalStatusChange", error.Exception.Message);
            Assert.DoesNotContain("-Force", error.Exception.Message);
            Assert.Equal(from, Sql.Scalar(cs, $"SELECT status FROM workflow_executions WHERE id = '{id}'"));
        }
    }

    [Fact]
    public async Task Concurrent_updates_from_two_sessions_lose_nothing()
    {
        var (s, cs) = Setup();
        using var _ = s;
        var id = Prop(NewExecution(s, WorkflowA, "u1"), "Id");
        using var other = new PsSession();
        other.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });

        // Field updates interleave: each session's last write of its own field must survive.
        var a = Task.Run(() => Enumerable.Range(1, 25).Select(i => s.Run($"Set-WorkflowExecution -Id {id} -Output @{{ step = {i} }}")).ToList());
        var b = Task.Run(() => Enumerable.Range(1, 25).Select(i => other.Run($"Set-WorkflowExecution -Id {id} -ActivitiesExecuted {i}")).ToList());
        var (resultsA, resultsB) = (await a, await b);
        Assert.DoesNotContain(resultsA.Concat(resultsB), r => r.HadErrors);
        Assert.Equal(25L, Convert.ToInt64(Sql.Scalar(cs, $"SELECT (output->>'step')::int FROM workflow_executions WHERE id = '{id}'")));
        Assert.Equal(25, Sql.Scalar(cs, $"SELECT activities_executed FROM workflow_executions WHERE id = '{id}'"));

        // Racing final statuses: exactly one wins, the other is told, and the row shows the winner.
        var done = Task.Run(() => s.Run($"Set-WorkflowExecution -Id {id} -Status completed"));
        var fail = Task.Run(() => other.Run($"Set-WorkflowExecution -Id {id} -Status failed"));
        var (doneResult, failResult) = (await done, await fail);
        var winners = new[] { (doneResult, "completed"), (failResult, "failed") }.Where(x => !x.Item1.HadErrors).ToList();
        var winner = Assert.Single(winners);
        var loser = new[] { doneResult, failResult }.Single(r => r.HadErrors);
        Assert.StartsWith("InvalidStatusTransition,", loser.Errors.Single().FullyQualifiedErrorId);
        Assert.Equal(winner.Item2, Sql.Scalar(cs, $"SELECT status FROM workflow_executions WHERE id = '{id}'"));
    }

    [Fact]
    public void Bad_input_is_specific_and_writes_nothing()
    {
        var (s, cs) = Setup();
        using var _ = s;

        var unknownWorkflow = s.Run($"New-WorkflowExecution -WorkflowId {Guid.NewGuid()} -TemporalWorkflowId t -TemporalRunId r -CreatedBy u1");
        var unknownUser = s.Run($"New-WorkflowExecution -WorkflowId {WorkflowA} -TemporalWorkflowId t -TemporalRunId r -CreatedBy nobody");
        var badJson = s.Run($"New-WorkflowExecution -WorkflowId {WorkflowA} -TemporalWorkflowId t -TemporalRunId r -CreatedBy u1 -Input '{{not json'");
        var window = s.Run("Get-WorkflowExecution -Since '2026-02-01' -Until '2026-01-01'");
        var statsWindow = s.Run("Get-ExecutionStats -Since '2026-02-01' -Until '2026-02-01'");
        var missingSet = s.Run($"Set-WorkflowExecution -Id {Guid.NewGuid()} -Status completed");
        var missingRemove = s.Run($"Remove-WorkflowExecution -Id {Guid.NewGuid()} -Force");
        var missingTemporal = s.Run("Set-WorkflowExecution -TemporalWorkflowId nope -Status completed");

        Assert.StartsWith("WorkflowNotFound,", unknownWorkflow.Errors.Single().FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ObjectNotFound, unknownWorkflow.Errors.Single().CategoryInfo.Category);
        Assert.StartsWith("UserNotFound,", unknownUser.Errors.Single().FullyQualifiedErrorId);
        Assert.Contains("nobody", unknownUser.Errors.Single().Exception.Message);
        Assert.StartsWith("JsonInvalid,", badJson.Errors.Single().FullyQualifiedErrorId);
        Assert.StartsWith("TimeWindowInvalid,", window.Errors.Single().FullyQualifiedErrorId);
        Assert.StartsWith("TimeWindowInvalid,", statsWindow.Errors.Single().FullyQualifiedErrorId);
        Assert.StartsWith("ExecutionNotFound,", missingSet.Errors.Single().FullyQualifiedErrorId);
        Assert.StartsWith("ExecutionNotFound,", missingRemove.Errors.Single().FullyQualifiedErrorId);
        Assert.StartsWith("ExecutionNotFound,", missingTemporal.Errors.Single().FullyQualifiedErrorId);
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM workflow_executions"));

        Assert.ThrowsAny<ParameterBindingException>(() => s.Invoke("Get-WorkflowExecution", new Hashtable { ["First"] = -1 }));
        var status = Assert.ThrowsAny<ParameterBindingException>(() => s.Invoke("Get-WorkflowExecution", new Hashtable { ["Status"] = "paused" }));
        Assert.Contains("timed_out", status.Message);
        Assert.ThrowsAny<ParameterBindingException>(() => s.Invoke("Set-WorkflowExecution", new Hashtable { ["Id"] = Guid.NewGuid(), ["Status"] = "done" }));
    }

    [Fact]
    public void Stats_match_independently_computed_values()
    {
        var (s, cs) = Setup();
        using var _ = s;
        // 200 executions with known statuses and durations, spread over users, workflows and days.
        var rows = Enumerable.Range(0, 200).Select(i => (
            Workflow: i % 4 == 0 ? WorkflowB : WorkflowA,
            User: $"u{1 + (i % 3)}",
            Status: i % 10 == 0 ? "running" : (i % 7) switch { 0 => "failed", 1 => "cancelled", 2 => "timed_out", _ => "completed" },
            Day: new DateTime(2026, 4, 1 + (i % 5), 0, 0, 0, DateTimeKind.Utc),
            Duration: i % 10 == 0 ? (long?)null : (i * 37 % 1000) + 10)).ToList();
        Sql.Execute(cs, "INSERT INTO workflow_executions (workflow_id, temporal_workflow_id, temporal_run_id, status, started_at, duration_ms, created_by) VALUES " +
            string.Join(",", rows.Select((r, i) => $"('{r.Workflow}', 'tw{i}', 'r{i}', '{r.Status}', '{r.Day:yyyy-MM-dd}T{i % 24:00}:00:00Z', {(r.Duration?.ToString() ?? "NULL")}, '{r.User}')")));

        void Check(PSObject actual, IEnumerable<(Guid Workflow, string User, string Status, DateTime Day, long? Duration)> group)
        {
            var g = group.ToList();
            long Count(string status) => g.Count(r => r.Status == status);
            var finished = g.Count(r => r.Status != "running");
            var durations = g.Where(r => r.Duration is not null).Select(r => (double)r.Duration!.Value).Order().ToList();
            Assert.Equal((long)g.Count, Prop(actual, "Total"));
            Assert.Equal(Count("running"), Prop(actual, "Running"));
            Assert.Equal(Count("completed"), Prop(actual, "Completed"));
            Assert.Equal(Count("failed"), Prop(actual, "Failed"));
            Assert.Equal(Count("cancelled"), Prop(actual, "Cancelled"));
            Assert.Equal(Count("timed_out"), Prop(actual, "TimedOut"));
            if (finished == 0)
            {
                Assert.Null(Prop(actual, "SuccessRate"));
            }
            else
            {
                Assert.Equal((double)Count("completed") / finished, (double)Prop(actual, "SuccessRate")!, 9);
            }

            if (durations.Count > 0)
            {
                Assert.Equal(durations.Average(), (double)Prop(actual, "AverageDurationMs")!, 6);
                Assert.Equal(Percentile(durations, 0.5), (double)Prop(actual, "P50DurationMs")!, 6);
                Assert.Equal(Percentile(durations, 0.95), (double)Prop(actual, "P95DurationMs")!, 6);
            }
        }

        var all = s.Run("Get-ExecutionStats").Output.Single();
        Assert.Equal("All", Prop(all, "Group"));
        Check(all, rows);

        var byWorkflow = s.Run("Get-ExecutionStats -GroupBy Workflow").Output;
        Assert.Equal(2, byWorkflow.Count);
        foreach (var o in byWorkflow)
        {
            Check(o, rows.Where(r => r.Workflow == (Guid)Prop(o, "WorkflowId")!));
        }

        Assert.Contains(byWorkflow, o => (string)Prop(o, "WorkflowName")! == "Onboarding");

        foreach (var o in s.Run("Get-ExecutionStats -GroupBy User").Output)
        {
            Check(o, rows.Where(r => r.User == (string)Prop(o, "CreatedBy")!));
        }

        var byStatus = s.Run("Get-ExecutionStats -GroupBy Status").Output;
        Assert.Equal(5, byStatus.Count);
        foreach (var o in byStatus)
        {
            Check(o, rows.Where(r => r.Status == (string)Prop(o, "Status")!));
        }

        var byDay = s.Run("Get-ExecutionStats -GroupBy Day").Output;
        Assert.Equal(5, byDay.Count);
        foreach (var o in byDay)
        {
            Check(o, rows.Where(r => r.Day == (DateTime)Prop(o, "Day")!));
        }

        var filtered = s.Run($"Get-ExecutionStats -CreatedBy u2 -WorkflowId {WorkflowA} -Since '2026-04-02T00:00:00Z' -Until '2026-04-04T00:00:00Z'").Output.Single();
        Check(filtered, rows.Where(r => r.User == "u2" && r.Workflow == WorkflowA && r.Day >= new DateTime(2026, 4, 2) && r.Day < new DateTime(2026, 4, 4)));

        var none = s.Run("Get-ExecutionStats -CreatedBy u-unknown").Output.Single();
        Assert.Equal(0L, Prop(none, "Total"));
        Assert.Null(Prop(none, "SuccessRate"));
    }

    /// <summary>PostgreSQL's percentile_cont: linear interpolation between the closest ranks.</summary>
    private static double Percentile(IReadOnlyList<double> sorted, double p)
    {
        var position = p * (sorted.Count - 1);
        var lower = (int)Math.Floor(position);
        var upper = Math.Min(lower + 1, sorted.Count - 1);
        return sorted[lower] + ((position - lower) * (sorted[upper] - sorted[lower]));
    }

    [Fact]
    public void Sample_data_fills_the_tables_for_stats_and_needs_the_component()
    {
        var (s, cs) = Setup();
        using var _ = s;

        var sample = s.Run("New-WorkflowSampleData -Users 5 -Workflows 7 -Executions 500 -Seed 1").Output.Single();
        var stats = s.Run("Get-ExecutionStats -GroupBy Status").Output;

        Assert.Equal(500, sample.Properties["Executions"].Value);
        Assert.Equal(500L, Sql.Scalar(cs, "SELECT count(*) FROM workflow_executions WHERE temporal_workflow_id LIKE 'sample-%'"));
        Assert.Equal(7L, Sql.Scalar(cs, "SELECT count(*) FROM workflows WHERE name LIKE 'sample-workflow-%'"));
        Assert.Equal(5, stats.Count);
        Assert.True(Convert.ToInt64(Sql.Scalar(cs, "SELECT count(DISTINCT duration_ms) FROM workflow_executions")) > 100);

        using var bare = new PsSession();
        var empty = TestCluster.CreateDatabase();
        var error = Assert.Single(bare.Run("New-WorkflowSampleData -Connection (Connect-DataOps -ConnectionString $cs -NoDefault)", new Hashtable { ["cs"] = empty }).Errors);
        Assert.StartsWith("SchemaMissing,", error.FullyQualifiedErrorId);
    }
}
