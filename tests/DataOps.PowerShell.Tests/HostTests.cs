using System.Diagnostics;

namespace DataOps.PowerShell.Tests;

public sealed class HostTests
{
    private static string HostDll => Path.Combine(Repo.Root, "src", "DataOps.Host", "bin", Repo.Configuration, "net10.0", "DataOps.Host.dll");

    private static (int ExitCode, string Out, string Err) RunHost(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        psi.ArgumentList.Add(HostDll);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["DATAOPS_SANDBOX_ROOT"] = TestCluster.Root;
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(120_000), "DataOps.Host did not finish");
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void Exit_code_of_the_script_is_the_process_exit_code()
    {
        var (code, _, _) = RunHost("-Command", "exit 3");
        Assert.Equal(3, code);
    }

    [Fact]
    public void Terminating_error_exits_1_with_the_error_on_stderr()
    {
        var script = Path.Combine(Path.GetTempPath(), $"dataops-host-{Guid.NewGuid():N}.ps1");
        File.WriteAllText(script, "param([string]$Who)\n\"hello $Who\"\n$ErrorActionPreference = 'Stop'\nInstall-DataOpsSchema\n'not reached'\n");
        try
        {
            var (code, stdout, stderr) = RunHost("-File", script, "-Who", "admin");

            Assert.Equal(1, code);
            Assert.Contains("hello admin", stdout);
            Assert.DoesNotContain("not reached", stdout);
            Assert.Contains("No database connection", stderr);
            Assert.Contains("ConnectionMissing", stderr);
        }
        finally
        {
            File.Delete(script);
        }
    }

    [Fact]
    public void Output_uses_the_module_table_views_and_no_colour_codes()
    {
        _ = TestCluster.Port;
        var (code, stdout, stderr) = RunHost("-Command", "Get-DataOpsSandbox -Name pstests");

        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n').Select(l => l.TrimEnd()).Where(l => l.Length > 0).ToList();
        Assert.Matches(@"^Name\s+Status\s+Action\s+Port\s+Version\s+DataDirectory$", lines[0]);
        Assert.Matches(@"^pstests\s+Running\s+", lines[2]);
        Assert.DoesNotContain("\u001b[", stdout);
    }

    [Fact]
    public void Prompts_fail_clearly_when_there_is_no_console_input()
    {
        var (code, _, stderr) = RunHost("-NonInteractive", "-Command", "$ErrorActionPreference='Stop'; Stop-DataOpsSandbox -Name pstests-none -Confirm");

        Assert.Equal(1, code);
        Assert.Contains("non-interactive", stderr);
    }

    [Fact]
    public void Unknown_option_is_a_usage_error()
    {
        var (code, _, stderr) = RunHost("-Bogus");
        Assert.Equal(64, code);
        Assert.Contains("Usage:", stderr);
    }
}
