using System.Collections;
using System.Management.Automation;
using System.Net;
using System.Net.Sockets;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// -Connection with several targets (issue 18, item 3): real databases on the test cluster, a real
/// sandbox of its own, and a loopback port nothing listens on.
/// </summary>
public sealed class FleetTests
{
    private static readonly string SampleJob = Path.Combine(Repo.Root, "examples", "jobs", "results-v1.2.1.job.json");

    /// <summary>A loopback port nothing listens on: bound, read, released.</summary>
    internal static int DeadPort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static string DeadTarget() => $"Host=127.0.0.1;Port={DeadPort()};Database=dataops;Username=postgres;Password={TestCluster.Password};Timeout=3";

    /// <summary>A Prism database with sample data: some sessions still need the backfill (pendingShare above 0) or none.</summary>
    private static string PrismDatabase(PsSession s, int seed, double pendingShare)
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        var r = s.Run($"New-PrismSampleData -Connection $cs -Sessions 40 -Seed {seed} -PendingShare {pendingShare.ToString(System.Globalization.CultureInfo.InvariantCulture)} -Force | Out-Null", new Hashtable { ["cs"] = cs });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return cs;
    }

    private static string Text(PsResult r) =>
        string.Join("\n", r.Output.Select(o => o.ToString()).Concat(r.Errors.Select(e => $"{e.Exception.Message} {e.TargetObject} {e.ErrorDetails?.RecommendedAction}")).Concat(r.Verbose).Concat(r.Warnings)
            .Concat(r.Output.SelectMany(o => o.Properties.Select(p => $"{p.Name}={SafeValue(p)}"))));

    private static string SafeValue(PSPropertyInfo p)
    {
        try
        {
            return p.Value?.ToString() ?? string.Empty;
        }
        catch (GetValueInvocationException)
        {
            return string.Empty;
        }
    }

    [Fact]
    public void Three_targets_one_needing_the_backfill_one_clean_one_on_a_dead_port_in_one_call()
    {
        _ = TestCluster.Port;
        var name = "fleet-" + Guid.NewGuid().ToString("N")[..6];
        using var s = new PsSession();
        var output = Directory.CreateTempSubdirectory("dataops-fleet-").FullName;
        var vars = new Hashtable { ["name"] = name, ["root"] = TestCluster.Root, ["job"] = SampleJob, ["out"] = output, ["dead"] = DeadTarget() };
        try
        {
            // The target needing the backfill is a sandbox of its own, passed as the object Start-DataOpsSandbox returns.
            var started = s.Run("$sb = Start-DataOpsSandbox -Name $name -Root $root -NoDefault; Install-DataOpsSchema -Connection $sb -Component Prism -Force | Out-Null; New-PrismSampleData -Connection $sb -Sessions 40 -Seed 5 -PendingShare 0.4 -Force | Out-Null", vars);
            Assert.False(started.HadErrors, string.Join("\n", started.Errors));
            vars["clean"] = PrismDatabase(s, 6, 0);

            // A sandbox object is a -Connection for one target too, on any database cmdlet.
            var one = s.Run("Invoke-DataOpsQuery 'SELECT current_setting(''port'')::int' -Connection $sb -As Scalar -ReadOnly", vars);
            Assert.False(one.HadErrors, string.Join("\n", one.Errors));
            Assert.Equal(s.Run("$sb.Port", vars).Output.Single().BaseObject, one.Output.Single().BaseObject);

            var r = s.Run("Test-ProdHealth -Job $job -Connection $sb, $clean, $dead -OutputDirectory $out", vars);

            var rows = r.Output.ToDictionary(o => (string)o.Properties["Target"].Value, o => (string)o.Properties["Status"].Value);
            Assert.Equal(3, rows.Count);
            Assert.Equal("ActionNeeded", rows[name]);
            var clean = rows.Keys.Single(k => k.Contains(":" + TestCluster.Port + "/", StringComparison.Ordinal));
            Assert.Equal("Healthy", rows[clean]);
            var dead = rows.Keys.Single(k => k != name && k != clean);
            Assert.Equal("ConnectionFailed", rows[dead]);
            Assert.All(r.Output, o => Assert.Equal("DataOps.Fleet.HealthResult", o.TypeNames[0]));

            // The dead target is also a non-terminating error naming it; the others were still checked.
            var error = Assert.Single(r.Errors);
            Assert.StartsWith("ConnectionFailed,", error.FullyQualifiedErrorId);
            Assert.Equal(ErrorCategory.ConnectionError, error.CategoryInfo.Category);
            Assert.Equal(dead, error.TargetObject);
            Assert.StartsWith(dead + ": ", error.Exception.Message);

            // Each target's files in a folder of its own; the pending one has its plan there.
            var pending = r.Output.Single(o => (string)o.Properties["Target"].Value == name);
            Assert.StartsWith(Path.Combine(output, name) + Path.DirectorySeparatorChar, (string)pending.Properties["PlanPath"].Value);
            Assert.True(File.Exists((string)pending.Properties["ReportPath"].Value));
            var healthy = r.Output.Single(o => (string)o.Properties["Target"].Value == clean);
            Assert.DoesNotContain(Path.Combine(output, name), (string)healthy.Properties["ReportPath"].Value);
            Assert.Null(healthy.Properties["PlanPath"].Value);

            Assert.DoesNotContain(TestCluster.Password, Text(r));

            // The table names every target at 80 columns.
            var table = s.Run("Test-ProdHealth -Job $job -Connection $sb, $clean, $dead -OutputDirectory $out -ErrorAction SilentlyContinue | Out-String -Width 80", vars);
            var text = string.Concat(table.Output.Select(o => o.ToString()));
            Assert.Contains("Target", text);
            Assert.Contains("ActionNeeded", text);
            Assert.Contains("ConnectionFailed", text);
            Assert.All(text.Split('\n'), line => Assert.True(line.TrimEnd().Length <= 80, line));

            // One -Quiet answer for the fleet.
            Assert.False((bool)s.Run("Test-ProdHealth -Job $job -Connection $sb, $clean, $dead -OutputDirectory $out -Quiet -ErrorAction SilentlyContinue", vars).Output.Single().BaseObject);

            // The fleet's reports pipe into Invoke-Backfill, each in its own database; the failed row is skipped.
            var applied = s.Run("Test-ProdHealth -Job $job -Connection $sb, $clean, $dead -OutputDirectory $out -ErrorAction SilentlyContinue | Invoke-Backfill -ItemsPerMinute 0 -OutputDirectory $out -Force -WarningAction SilentlyContinue", vars);
            Assert.Empty(applied.Errors);
            Assert.NotEmpty(applied.Output);
            Assert.True((bool)s.Run("Test-ProdHealth -Job $job -Connection $sb, $clean -OutputDirectory $out -Quiet", vars).Output.Single().BaseObject);
        }
        finally
        {
            s.Run("Stop-DataOpsSandbox -Name $name -Root $root -Remove -Confirm:$false", vars);
            Directory.Delete(output, recursive: true);
        }
    }

    [Fact]
    public void A_failing_target_never_stops_the_others()
    {
        using var s = new PsSession();
        var a = TestCluster.CreateDatabase();
        var b = TestCluster.CreateDatabase();
        var vars = new Hashtable { ["a"] = a, ["b"] = b, ["dead"] = DeadTarget() };

        // One at a time, the dead target first: the others still run after it failed.
        var r = s.Run("Install-DataOpsSchema -Connection $dead, $a, $b -Component WorkflowExecution -ThrottleLimit 1 -Force -Verbose", vars);

        var error = Assert.Single(r.Errors);
        Assert.StartsWith("ConnectionFailed,", error.FullyQualifiedErrorId);
        var targets = r.Output.Select(o => (string)o.Properties["Target"].Value).Distinct().ToList();
        Assert.Equal(2, targets.Count);
        Assert.DoesNotContain(error.TargetObject, targets);
        foreach (var cs in new[] { a, b })
        {
            Assert.Equal(1L, Sql.Scalar(cs, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name = 'workflow_executions'"));
        }

        Assert.Contains(r.Verbose, v => v.StartsWith('['));
        Assert.DoesNotContain(TestCluster.Password, Text(r));
    }

    [Fact]
    public void A_fleet_soak_and_preflight_name_every_target_and_keep_their_files_apart()
    {
        using var s = new PsSession();
        var a = PrismDatabase(s, 11, 0.3);
        var b = PrismDatabase(s, 12, 0);
        var output = Directory.CreateTempSubdirectory("dataops-fleet-soak-").FullName;
        var vars = new Hashtable { ["a"] = a, ["b"] = b, ["dead"] = DeadTarget(), ["job"] = SampleJob, ["out"] = output };
        try
        {
            var soak = s.Run("Watch-StagingSoak -Job $job -Connection $a, $b -Duration 1s -Interval 500ms -OutputDirectory $out -WarningAction SilentlyContinue", vars);
            Assert.False(soak.HadErrors, string.Join("\n", soak.Errors));
            var reports = soak.Output.Where(o => o.Properties["Verdict"] is not null).ToList();
            Assert.Equal(2, reports.Count);
            Assert.Equal(2, reports.Select(o => (string)o.Properties["Target"].Value).Distinct().Count());
            Assert.All(soak.Output, o => Assert.NotNull(o.Properties["Target"]?.Value));
            Assert.Equal(2, reports.Select(o => Path.GetRelativePath(output, (string)o.Properties["ReportPath"].Value).Split(Path.DirectorySeparatorChar)[0]).Distinct().Count());
            var last = s.Run("$DataOpsLastSoak").Output;
            Assert.Equal(2, last.Count);

            // A preflight reports an unreachable database as a failed Connection check, as it does for one target.
            var preflight = s.Run("Test-DataOpsEnvironment -Job $job -Connection $a, $dead", vars);
            Assert.False(preflight.HadErrors, string.Join("\n", preflight.Errors));
            var failed = preflight.Output.Where(o => !(bool)o.Properties["Passed"].Value).ToList();
            Assert.Contains(failed, o => (string)o.Properties["Name"].Value == "Connection");
            Assert.All(failed, o => Assert.StartsWith("127.0.0.1:", (string)o.Properties["Target"].Value, StringComparison.Ordinal));
            Assert.DoesNotContain(TestCluster.Password, Text(preflight));
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }

    [Fact]
    public void A_fleet_backfill_is_one_run_per_target_with_its_own_files_and_ledger()
    {
        using var s = new PsSession();
        var a = PrismDatabase(s, 7, 0.5);
        var b = PrismDatabase(s, 8, 0.5);
        var output = Directory.CreateTempSubdirectory("dataops-fleet-bf-").FullName;
        var vars = new Hashtable { ["a"] = a, ["b"] = b, ["dead"] = DeadTarget(), ["job"] = SampleJob, ["out"] = output };
        try
        {
            var before = (long)Sql.Scalar(a, "SELECT count(*) FROM prism.profiles")!;
            var whatIf = s.Run("Invoke-Backfill -Job $job -Connection $a, $b -WhatIf", vars);
            Assert.False(whatIf.HadErrors, string.Join("\n", whatIf.Errors));
            Assert.Equal(before, (long)Sql.Scalar(a, "SELECT count(*) FROM prism.profiles")!);
            Assert.Empty(Directory.GetFileSystemEntries(output));

            var r = s.Run("Invoke-Backfill -Job $job -Connection $a, $dead, $b -ItemsPerMinute 0 -OutputDirectory $out -Force -WarningAction SilentlyContinue", vars);

            Assert.StartsWith("ConnectionFailed,", Assert.Single(r.Errors).FullyQualifiedErrorId);
            var byTarget = r.Output.GroupBy(o => (string)o.Properties["Target"].Value).ToDictionary(g => g.Key, g => g.ToList());
            Assert.Equal(2, byTarget.Count);
            Assert.All(r.Output, o => Assert.Equal("Applied", o.Properties["Status"].Value.ToString()));
            var runIds = byTarget.Values.Select(items => items.Select(o => o.Properties["RunId"].Value).Distinct().Single()).ToList();
            Assert.NotEqual(runIds[0], runIds[1]);
            foreach (var cs in new[] { a, b })
            {
                Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM prism.sessions s WHERE s.status = 'completed' AND (s.fc_kind <> 'functions' OR NOT EXISTS (SELECT 1 FROM prism.profiles p WHERE p.session_id = s.id AND p.results_version = 'v1.2.1'))"));
            }

            // One folder per target, each with its own rollback script.
            var scripts = Directory.GetFiles(output, "rollback_*.sql", SearchOption.AllDirectories);
            Assert.Equal(2, scripts.Length);
            Assert.Equal(2, scripts.Select(p => Path.GetRelativePath(output, p).Split(Path.DirectorySeparatorChar)[0]).Distinct().Count());
            Assert.DoesNotContain(TestCluster.Password, Text(r));
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }

    [Fact]
    public void One_target_is_unchanged_and_a_fleet_reports_progress_per_target_under_a_parent()
    {
        using var s = new PsSession();
        var a = PrismDatabase(s, 9, 0.3);
        var b = PrismDatabase(s, 10, 0);
        var output = Directory.CreateTempSubdirectory("dataops-fleet-one-").FullName;
        var vars = new Hashtable { ["a"] = a, ["b"] = b, ["job"] = SampleJob, ["out"] = output };
        try
        {
            var one = s.Run("Test-ProdHealth -Job $job -Connection $a -OutputDirectory $out", vars);
            var report = Assert.Single(one.Output);
            Assert.Null(report.Properties["Target"]);
            Assert.Null(report.Properties["Status"]);
            Assert.Equal("DataOps.Engine.Health.ProdHealthReport", report.TypeNames[0]);
            Assert.StartsWith(Path.Combine(output, "results-v1.2.1"), (string)report.Properties["ReportPath"].Value);

            var fleet = s.Run("Test-ProdHealth -Job $job -Connection $a, $b -OutputDirectory $out -Verbose", vars);
            Assert.False(fleet.HadErrors, string.Join("\n", fleet.Errors));
            var parents = fleet.Progress.Where(p => p.ParentActivityId == -1 && p.Activity.StartsWith("Test-ProdHealth on 2 targets", StringComparison.Ordinal)).ToList();
            Assert.NotEmpty(parents);
            Assert.Equal(ProgressRecordType.Completed, parents[^1].RecordType);
            var children = fleet.Progress.Where(p => p.ParentActivityId == parents[0].ActivityId).ToList();
            Assert.True(children.Select(c => c.ActivityId).Distinct().Count() >= 2);
            Assert.All(children, c => Assert.True(c.Activity.StartsWith("127.0.0.1:", StringComparison.Ordinal), c.Activity));
            Assert.Contains(fleet.Verbose, v => v.StartsWith('[') && v.Contains("] Healthy", StringComparison.Ordinal));
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }

    [Fact]
    public void Connection_takes_connection_strings_and_environment_names_and_throttle_limit_is_validated()
    {
        using var s = new PsSession();
        var a = TestCluster.CreateDatabaseWith("WorkflowExecution");
        var b = TestCluster.CreateDatabaseWith("WorkflowExecution");
        var variable = "DATAOPS_FLEETB" + Guid.NewGuid().ToString("N")[..6].ToUpperInvariant() + "_CONNECTION";
        var environment = variable["DATAOPS_".Length..^"_CONNECTION".Length].ToLowerInvariant();
        Environment.SetEnvironmentVariable(variable, b);
        try
        {
            var vars = new Hashtable { ["a"] = a, ["envname"] = environment };
            var r = s.Run("Get-ExecutionStats -Connection $a, $envname", vars);
            Assert.False(r.HadErrors, string.Join("\n", r.Errors));
            Assert.Equal(2, r.Output.Count);
            Assert.Contains(r.Output, o => (string)o.Properties["Target"].Value == environment);
            Assert.DoesNotContain(TestCluster.Password, Text(r));

            foreach (var bad in new[] { 0, 33 })
            {
                var refused = s.Run($"Get-ExecutionStats -Connection $a, $envname -ThrottleLimit {bad}", vars);
                Assert.StartsWith("ParameterArgumentValidationError,", Assert.Single(refused.Errors).FullyQualifiedErrorId);
            }

            var unknown = s.Run("Get-ExecutionStats -Connection $a, nosuchname", vars);
            Assert.Contains("No connection named 'nosuchname'", Assert.Single(unknown.Errors).Exception.Message);
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, null);
        }
    }
}
