using System.Collections;
using System.Management.Automation;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// Issue 19, item 1: the module's objects used as an admin uses them in PowerShell: lists indexed
/// with [0], the module's own times passed back to time parameters, JSON columns as objects, enums
/// as names in ConvertTo-Json.
/// </summary>
public sealed class ResultObjectTests
{
    private static readonly string SampleJob = Path.Combine(Repo.Root, "examples", "jobs", "results-v1.2.1.job.json");
    private static readonly Guid Workflow = Guid.Parse("aaaaaaaa-0000-0000-0000-000000000001");

    private static PsSession Prism(int seed)
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        var s = new PsSession();
        var r = s.Run($"Connect-DataOps -ConnectionString $cs | Out-Null; New-PrismSampleData -Sessions 30 -Seed {seed} -PendingShare 0.5 | Out-Null", new Hashtable { ["cs"] = cs });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return s;
    }

    private static (PsSession Session, string Cs) Executions()
    {
        var cs = TestCluster.CreateDatabaseWith("WorkflowExecution");
        Sql.Execute(cs, $"""
            INSERT INTO users (id, email) VALUES ('u1', 'u1@example.com');
            INSERT INTO workflows (id, name, description, created_by) VALUES ('{Workflow}', 'Billing', 'Monthly billing', 'u1');
            """);
        var s = new PsSession();
        var r = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return (s, cs);
    }

    private static Hashtable Vars(string output) => new() { ["job"] = SampleJob, ["out"] = output, ["wf"] = Workflow };

    private static List<object?> Values(PsResult r)
    {
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return [.. r.Output.Select(o => o?.BaseObject)];
    }

    [Fact]
    public void Health_report_lists_index_to_one_element()
    {
        using var s = Prism(31);
        var output = Directory.CreateTempSubdirectory("dataops-objects-").FullName;

        var v = Values(s.Run("""
            $h = Test-ProdHealth -Job $job -OutputDirectory $out
            $h.PendingSample[0]
            $h.Checks[0].Check
            $h.PendingSample.Count -eq @($h.PendingSample).Count
            """, Vars(output)));

        Assert.IsType<string>(v[0]);
        Assert.IsType<string>(v[1]);
        Assert.True((bool)v[2]!);
    }

    [Fact]
    public void Soak_report_lists_index_to_one_element()
    {
        using var s = Prism(32);
        var output = Directory.CreateTempSubdirectory("dataops-objects-").FullName;

        var v = Values(s.Run("""
            $soak = Watch-StagingSoak -Job $job -Duration 1s -Interval 400ms -OutputDirectory $out | Select-Object -Last 1
            $soak.Checks[0].Check
            $soak.Reasons[0]
            $soak.Checks[0].Values[0] -is [double]
            """, Vars(output)));

        Assert.IsType<string>(v[0]);
        Assert.IsType<string>(v[1]);
        Assert.True((bool)v[2]!);
    }

    [Fact]
    public void Time_parameters_take_the_modules_own_DateTimeOffset_a_DateTime_and_a_string()
    {
        var (s, _) = Executions();
        using var _s = s;

        var v = Values(s.Run("""
            $e = New-WorkflowExecution -WorkflowId $wf -TemporalWorkflowId t1 -TemporalRunId r1 -CreatedBy u1
            @(Get-WorkflowExecution -Since $e.StartedAt).Count
            @(Get-WorkflowExecution -Since (Get-WorkflowExecution -First 1).StartedAt).Count
            @(Get-WorkflowExecution -Until $e.StartedAt).Count
            @(Get-WorkflowExecution -Since (Get-Date).AddHours(-1) -Until (Get-Date).AddHours(1)).Count
            @(Get-WorkflowExecution -Since '2000-01-01' -Until '2999-01-01T00:00:00Z').Count
            (Get-ExecutionStats -Since $e.StartedAt -Until $e.StartedAt.AddMinutes(1)).Total
            """, Vars(string.Empty)));

        Assert.Equal(new long[] { 1, 1, 0, 1, 1, 1 }, v.Select(x => Convert.ToInt64(x)).ToArray());

        var bad = s.Run("Get-WorkflowExecution -Since 'not a time'");
        Assert.StartsWith("ParameterArgumentTransformationError", Assert.Single(bad.Errors).FullyQualifiedErrorId);
    }

    [Fact]
    public void Input_and_output_are_objects_with_the_JSON_text_alongside_and_round_trip()
    {
        var (s, cs) = Executions();
        using var _s = s;

        var v = Values(s.Run("""
            $e = New-WorkflowExecution -WorkflowId $wf -TemporalWorkflowId t1 -TemporalRunId r1 -CreatedBy u1 -Input @{ orderId = 42; tags = @('a','b'); customer = @{ name = 'Ann' } }
            $e.Input.orderId
            $e.Input.tags[1]
            $e.Input.customer.name
            ($e.InputJson | ConvertFrom-Json).orderId
            $null -eq $e.Output
            $done = Set-WorkflowExecution -Id $e.Id -Status completed -Output @{ total = 99.5 } -PassThru
            $done.Output.total
            $listed = Get-WorkflowExecution -First 1
            $listed.Input.orderId
            # the objects go back in as they came out
            Set-WorkflowExecution -Id $e.Id -Output $e.Input
            (Get-WorkflowExecution -Id $e.Id).Output.customer.name
            $copy = New-WorkflowExecution -WorkflowId $wf -TemporalWorkflowId t2 -TemporalRunId r2 -CreatedBy u1 -Input $listed.Input
            $copy.Input.tags -join ','
            $e | Format-Table | Out-String -Width 80
            """, Vars(string.Empty)));

        Assert.Equal(42L, v[0]);
        Assert.Equal("b", v[1]);
        Assert.Equal("Ann", v[2]);
        Assert.Equal(42L, v[3]);
        Assert.True((bool)v[4]!);
        Assert.Equal(99.5, v[5]);
        Assert.Equal(42L, v[6]);
        Assert.Equal("Ann", v[7]);
        Assert.Equal("a,b", v[8]);
        Assert.Contains("Billing", (string)v[9]!);
        Assert.DoesNotContain("orderId", (string)v[9]!);
        Assert.Equal("Ann", Sql.Scalar(cs, "SELECT output->'customer'->>'name' FROM workflow_executions WHERE temporal_workflow_id = 't1'"));
    }

    [Fact]
    public void Stats_durations_are_TimeSpans_next_to_the_milliseconds_and_a_day_shows_as_a_date()
    {
        var (s, _) = Executions();
        using var _s = s;

        var v = Values(s.Run("""
            $e = New-WorkflowExecution -WorkflowId $wf -TemporalWorkflowId t1 -TemporalRunId r1 -CreatedBy u1
            Set-WorkflowExecution -Id $e.Id -Status completed -DurationMs 90500
            $day = Get-ExecutionStats -GroupBy Day
            $day.AverageDuration -is [TimeSpan]
            $day.P95Duration.TotalMilliseconds -eq $day.P95DurationMs
            $day.P50Duration.TotalSeconds
            $day.Day -eq [DateTime]::UtcNow.Date
            $day | Format-List | Out-String -Width 80
            """, Vars(string.Empty)));

        Assert.True((bool)v[0]!);
        Assert.True((bool)v[1]!);
        Assert.Equal(90.5, v[2]);
        Assert.True((bool)v[3]!);
        var list = (string)v[4]!;
        Assert.Matches(@"(?m)^Day\s+: \d{4}-\d{2}-\d{2}\s*$", list);
        Assert.Matches(@"(?m)^AverageDuration\s+: 00:01:30\.5", list);
    }

    [Fact]
    public void ConvertTo_Json_writes_names_for_statuses_outcomes_verdicts_and_sources()
    {
        using var s = Prism(33);
        var output = Directory.CreateTempSubdirectory("dataops-objects-").FullName;

        var v = Values(s.Run("""
            $item = Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out | Select-Object -First 1
            $item | ConvertTo-Json -Depth 1
            $soak = Watch-StagingSoak -Job $job -Duration 1s -Interval 400ms -OutputDirectory $out
            $soak[0] | ConvertTo-Json -Depth 1
            $soak[-1] | ConvertTo-Json -Depth 1
            Get-DataOpsConnection | ConvertTo-Json -Depth 1
            $item.Status -eq 'Applied'
            Install-DataOpsSchema -Component Prism | Select-Object -Last 1 | ConvertTo-Json -Depth 1
            """, Vars(output)));

        Assert.Matches("\"Status\": \"Applied\"", (string)v[0]!);
        Assert.Matches("\"ErrorCategory\": \"None\"", (string)v[0]!);
        Assert.Matches("\"Outcome\": \"(Pass|Fail|NoData|Error)\"", (string)v[1]!);
        Assert.Matches("\"Verdict\": \"(Go|NoGo|Inconclusive)\"", (string)v[2]!);
        Assert.Matches("\"Source\": \"ConnectionString\"", (string)v[3]!);
        Assert.True((bool)v[4]!);
        Assert.Matches("\"Component\": \"Prism\"", (string)v[5]!);
        Assert.Matches("\"Status\": \"AlreadyApplied\"", (string)v[5]!);
    }

    [Fact]
    public void A_sandbox_converts_to_JSON_with_its_status_and_action_as_names()
    {
        Assert.True(TestCluster.Port > 0); // the test run's sandbox is up
        using var s = new PsSession();

        var json = (string)s.Run("Get-DataOpsSandbox -Root $root | Select-Object -First 1 | ConvertTo-Json -Depth 1", new Hashtable { ["root"] = TestCluster.Root }).Output.Single().BaseObject;

        Assert.Matches("\"Status\": \"Running\"", json);
        Assert.Matches("\"Action\": \"None\"", json);
    }

    [Fact]
    public void An_execution_converts_to_JSON_with_names_and_its_input_as_an_object()
    {
        var (s, _) = Executions();
        using var _s = s;

        var json = (string)Values(s.Run("""
            New-WorkflowExecution -WorkflowId $wf -TemporalWorkflowId t1 -TemporalRunId r1 -CreatedBy u1 -Input @{ orderId = 42 } | ConvertTo-Json -Depth 3
            """, Vars(string.Empty))).Single()!;

        Assert.Matches("\"Status\": \"running\"", json);
        Assert.Matches("\"Source\": \"ConnectionString\"", json);
        Assert.Matches("\"Input\": \\{\\s*\"orderId\": 42", json);
        Assert.Contains("\"InputJson\":", json);
    }
}
