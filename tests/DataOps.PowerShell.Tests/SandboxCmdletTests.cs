using System.Collections;
using System.Management.Automation;

namespace DataOps.PowerShell.Tests;

public sealed class SandboxCmdletTests
{
    [Fact]
    public void No_binaries_is_a_clear_not_installed_error()
    {
        var empty = Directory.CreateTempSubdirectory("dataops-nobin-").FullName;
        try
        {
            using var s = new PsSession();
            var error = s.Terminating("Start-DataOpsSandbox", new Hashtable { ["Name"] = "nobin", ["Root"] = TestCluster.Root, ["BinDirectory"] = empty });

            Assert.StartsWith("PostgresBinariesNotFound,", error.FullyQualifiedErrorId);
            Assert.Equal(ErrorCategory.NotInstalled, error.CategoryInfo.Category);
            Assert.Contains("apt-get install postgresql", error.Exception.Message);
            Assert.Contains("DATAOPS_PG_BIN", error.ErrorDetails.RecommendedAction);
            Assert.False(Directory.Exists(Path.Combine(TestCluster.Root, "nobin")));
        }
        finally
        {
            Directory.Delete(empty);
        }
    }

    [Fact]
    public void Start_sets_the_default_connection_and_stop_clears_it()
    {
        _ = TestCluster.Port; // the shared template exists, so this start is a copy
        var name = "cmd-" + Guid.NewGuid().ToString("N")[..6];
        using var s = new PsSession();
        var vars = new Hashtable { ["name"] = name, ["root"] = TestCluster.Root };
        try
        {
            var started = s.Run("Start-DataOpsSandbox -Name $name -Root $root", vars);
            Assert.False(started.HadErrors, string.Join("\n", started.Errors));
            var sandbox = started.Output.Single();
            Assert.Equal("Running", sandbox.Properties["Status"].Value.ToString());
            Assert.Equal("Created", sandbox.Properties["Action"].Value.ToString());

            var current = s.Run("Get-DataOpsConnection").Output.Single();
            Assert.Equal("Sandbox", current.Properties["Source"].Value.ToString());
            Assert.Equal(sandbox.Properties["Port"].Value, current.Properties["Port"].Value);

            var listed = s.Run("Get-DataOpsSandbox -Name $name -Root $root", vars).Output.Single();
            Assert.Equal("Running", listed.Properties["Status"].Value.ToString());

            // -WhatIf leaves it running.
            s.Run("Stop-DataOpsSandbox -Name $name -Root $root -WhatIf", vars);
            Assert.Equal("Running", s.Run("(Get-DataOpsSandbox -Name $name -Root $root).Status", vars).Output.Single().ToString());

            var stopped = s.Run("Get-DataOpsSandbox -Name $name -Root $root | Stop-DataOpsSandbox -Root $root -PassThru", vars);
            Assert.False(stopped.HadErrors, string.Join("\n", stopped.Errors));
            Assert.Equal("Stopped", stopped.Output.Single().Properties["Status"].Value.ToString());
            Assert.Empty(s.Run("Get-DataOpsConnection").Output);
        }
        finally
        {
            s.Run("Stop-DataOpsSandbox -Name $name -Root $root -Remove -Confirm:$false", vars);
        }

        var gone = s.Run("Get-DataOpsSandbox -Name $name -Root $root", vars);
        Assert.StartsWith("SandboxNotFound,", Assert.Single(gone.Errors).FullyQualifiedErrorId);
    }

    [Fact]
    public void Bad_name_is_rejected_before_anything_is_created()
    {
        using var s = new PsSession();
        var error = s.Terminating("Start-DataOpsSandbox", new Hashtable { ["Name"] = "no spaces/allowed", ["Root"] = TestCluster.Root });

        Assert.StartsWith("SandboxNameInvalid,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
        Assert.Equal("no spaces/allowed", error.TargetObject);
    }
}
