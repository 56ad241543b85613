using System.Collections;
using System.Management.Automation;

namespace DataOps.PowerShell.Tests;

public sealed class InstallSchemaTests
{
    private static bool SchemaExists(string cs) => (bool)Sql.Scalar(cs, "SELECT to_regnamespace('dataops') IS NOT NULL")!;

    [Fact]
    public void Without_a_connection_it_stops_with_ConnectionMissing()
    {
        using var s = new PsSession();
        var error = s.Terminating("Install-DataOpsSchema");

        Assert.StartsWith("ConnectionMissing,", error.FullyQualifiedErrorId);
        Assert.Contains("Connect-DataOps", error.Exception.Message);
    }

    [Fact]
    public void Installs_then_reports_already_applied_and_logs_the_run()
    {
        var cs = TestCluster.CreateDatabase();
        using var s = new PsSession();
        var vars = new Hashtable { ["cs"] = cs };

        var first = s.Run("$c = Connect-DataOps -ConnectionString $cs; Install-DataOpsSchema -Connection $c -Verbose", vars);
        var second = s.Run("Install-DataOpsSchema", vars);

        Assert.False(first.HadErrors, string.Join("\n", first.Errors));
        Assert.All(first.Output, o => Assert.Equal("Applied", o.Properties["Status"].Value.ToString()));
        Assert.Equal(["Core", "ScriptExecution", "WorkflowExecution", "Prism"], first.Output.Select(o => o.Properties["Component"].Value.ToString()).Distinct());
        Assert.Equal((long)first.Output.Count, Sql.Scalar(cs, "SELECT count(*) FROM dataops.schema_versions"));
        Assert.All(second.Output, o => Assert.Equal("AlreadyApplied", o.Properties["Status"].Value.ToString()));
        Assert.True((bool)Sql.Scalar(cs, "SELECT to_regclass('public.script_execution') IS NOT NULL")!);
        Assert.True((bool)Sql.Scalar(cs, "SELECT to_regclass('prism.sessions') IS NOT NULL")!);

        var logLine = Assert.Single(first.Verbose, v => v.StartsWith("Run log: ", StringComparison.Ordinal));
        var logPath = logLine["Run log: ".Length..];
        var log = File.ReadAllText(logPath);
        Assert.Contains("\"Operation\":\"Install-DataOpsSchema\"", log);
        Assert.Contains("Applied", log);
        Assert.DoesNotContain(TestCluster.Password, log);
        Assert.DoesNotContain(first.Verbose, v => v.Contains(TestCluster.Password));
    }

    [Fact]
    public void WhatIf_lists_pending_scripts_and_changes_nothing()
    {
        var cs = TestCluster.CreateDatabase();
        using var s = new PsSession();

        var result = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null; Install-DataOpsSchema -Component WorkflowExecution -WhatIf", new Hashtable { ["cs"] = cs });

        Assert.False(result.HadErrors, string.Join("\n", result.Errors));
        Assert.Equal(["Core", "WorkflowExecution"], result.Output.Select(o => o.Properties["Component"].Value.ToString()).Distinct());
        Assert.Contains("Core/0001_bookkeeping.sql", result.Output.Select(o => o.Properties["Script"].Value.ToString()));
        Assert.Contains("WorkflowExecution/0001_workflow_execution.sql", result.Output.Select(o => o.Properties["Script"].Value.ToString()));
        Assert.All(result.Output, o => Assert.Equal("Pending", o.Properties["Status"].Value.ToString()));
        Assert.False(SchemaExists(cs));
    }

    [Fact]
    public void Unknown_component_is_a_binding_error_naming_the_valid_ones()
    {
        using var s = new PsSession();
        var ex = Assert.ThrowsAny<ParameterBindingException>(() => s.Invoke("Install-DataOpsSchema", new Hashtable { ["Component"] = "Inventory" }));

        Assert.Contains("Inventory", ex.Message);
        Assert.Contains("ScriptExecution", ex.Message);
        Assert.Contains("WorkflowExecution", ex.Message);
    }

    [Fact]
    public void Production_writes_need_confirmation_unless_forced()
    {
        var cs = TestCluster.CreateDatabase();
        using var s = new PsSession();
        var vars = new Hashtable { ["cs"] = cs };
        s.Run("$prod = Connect-DataOps -ConnectionString $cs -Production", vars);

        // No one can answer the prompt in this host, so the write must not happen.
        var refused = s.Run("Install-DataOpsSchema -Connection $prod -Component Core");
        var error = Assert.Single(refused.Errors);
        Assert.StartsWith("ConfirmationRequired,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidOperation, error.CategoryInfo.Category);
        Assert.Contains("pass -Confirm:$false", error.Exception.Message);
        Assert.Contains("PRODUCTION", error.Exception.Message);
        Assert.False(SchemaExists(cs));

        // An explicit -Confirm asks even with -Force; no one can answer here, so nothing is written.
        var asked = s.Run("Install-DataOpsSchema -Connection $prod -Component Core -Force -Confirm");
        Assert.True(asked.HadErrors);
        Assert.False(SchemaExists(cs));

        var forced = s.Run("Install-DataOpsSchema -Connection $prod -Component Core -Force");
        Assert.False(forced.HadErrors, string.Join("\n", forced.Errors));
        Assert.True(SchemaExists(cs));

        var confirmedOff = s.Run("Install-DataOpsSchema -Connection $prod -Component Prism -Confirm:$false");
        Assert.False(confirmedOff.HadErrors, string.Join("\n", confirmedOff.Errors));
        Assert.True((bool)Sql.Scalar(cs, "SELECT to_regclass('prism.sessions') IS NOT NULL")!);
    }

    [Fact]
    public void Non_production_connection_writes_without_a_prompt()
    {
        var cs = TestCluster.CreateDatabase();
        using var s = new PsSession();

        var result = s.Run("Install-DataOpsSchema -Connection (Connect-DataOps -ConnectionString $cs -NoDefault) -Component Core", new Hashtable { ["cs"] = cs });

        Assert.False(result.HadErrors, string.Join("\n", result.Errors));
        Assert.True(SchemaExists(cs));
    }
}
