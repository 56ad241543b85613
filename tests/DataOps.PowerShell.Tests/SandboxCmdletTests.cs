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

    private static object? Prop(PSObject o, string name) => o.Properties[name].Value;

    /// <summary>A command in a new 'pwsh -NonInteractive' process (CI, a runbook): its exit code and both streams.</summary>
    private static (int ExitCode, string Out, string Err) NonInteractivePwsh(string command)
    {
        using var process = System.Diagnostics.Process.Start(Repo.Pwsh($"Import-Module '{Repo.Manifest}'; {command}"))!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(120_000), "pwsh did not finish in 120 s");
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void Remove_and_Reset_ask_before_deleting_data_and_a_session_that_cannot_ask_deletes_nothing()
    {
        using var sb = new OwnSandbox("ask");
        var (name, folder) = (sb.Name, sb.Folder);
        var marker = Path.Combine(folder, "earlier-data.txt");
        PSObject Listed() => sb.Run("Get-DataOpsSandbox -Name $name -Root $root").Output.Single();
        string Started(string switches)
        {
            var r = sb.Run("Start-DataOpsSandbox -Name $name -Root $root -NoDefault " + switches);
            Assert.False(r.HadErrors, string.Join("\n", r.Errors));
            return Prop(r.Output.Single(), "Action")!.ToString()!;
        }

        void AssertRefused(PsResult r)
        {
            var error = Assert.Single(r.Errors);
            Assert.StartsWith("ConfirmationRequired,", error.FullyQualifiedErrorId);
            Assert.Equal(ErrorCategory.InvalidOperation, error.CategoryInfo.Category);
            Assert.Equal(name, error.TargetObject);
            Assert.Contains($"sandbox '{name}' deletes its data", error.Exception.Message);
            Assert.Contains("-Confirm:$false", error.Exception.Message);
            Assert.True(File.Exists(marker), "the sandbox's data was deleted without a yes");
        }

        // -Reset of a sandbox that does not exist yet deletes nothing, so it does not ask.
        Assert.Equal("Created", Started("-Reset"));
        var pid = Prop(Listed(), "ProcessId");
        File.WriteAllText(marker, "earlier data");

        // This host cannot answer a prompt, like pwsh -NonInteractive or CI: refused, nothing deleted or stopped.
        AssertRefused(sb.Run("Start-DataOpsSandbox -Name $name -Root $root -Reset -NoDefault"));
        AssertRefused(sb.Run("Stop-DataOpsSandbox -Name $name -Root $root -Remove"));
        Assert.Equal("Running", Prop(Listed(), "Status")!.ToString());
        Assert.Equal(pid, Prop(Listed(), "ProcessId"));

        // The same in a real pwsh -NonInteractive process.
        var ci = NonInteractivePwsh($"Stop-DataOpsSandbox -Name {name} -Root '{TestCluster.Root}' -Remove");
        Assert.NotEqual(0, ci.ExitCode);
        Assert.Contains("-Confirm:$false", ci.Err);
        Assert.True(File.Exists(marker));

        // An explicit -Confirm asks even with -Force (and no one can answer here); -WhatIf deletes nothing.
        Assert.True(sb.Run("Stop-DataOpsSandbox -Name $name -Root $root -Remove -Force -Confirm").HadErrors);
        Assert.True(sb.Run("Start-DataOpsSandbox -Name $name -Root $root -Reset -Force -Confirm -NoDefault").HadErrors);
        Assert.False(sb.Run("Stop-DataOpsSandbox -Name $name -Root $root -Remove -WhatIf").HadErrors);
        Assert.False(sb.Run("Start-DataOpsSandbox -Name $name -Root $root -Reset -WhatIf -NoDefault").HadErrors);
        Assert.True(File.Exists(marker));
        Assert.Equal(pid, Prop(Listed(), "ProcessId"));

        // A plain stop and a plain start do not ask, and keep the data.
        var stopped = sb.Run("Stop-DataOpsSandbox -Name $name -Root $root -PassThru");
        Assert.False(stopped.HadErrors, string.Join("\n", stopped.Errors));
        Assert.Equal("Stopped", Prop(stopped.Output.Single(), "Status")!.ToString());
        Assert.Equal("Resumed", Started(string.Empty));
        Assert.True(File.Exists(marker));

        // -Force and -Confirm:$false are the yes.
        foreach (var yes in new[] { "-Force", "-Confirm:$false" })
        {
            File.WriteAllText(marker, "earlier data");
            Assert.Equal("Created", Started("-Reset " + yes));
            Assert.False(File.Exists(marker));
        }

        foreach (var yes in new[] { "-Force", "-Confirm:$false" })
        {
            Started(string.Empty);
            var removed = sb.Run("Stop-DataOpsSandbox -Name $name -Root $root -Remove " + yes);
            Assert.False(removed.HadErrors, string.Join("\n", removed.Errors));
            Assert.False(Directory.Exists(folder));
        }

        // Nothing left to delete: an unknown sandbox is SandboxNotFound, not a question.
        var missing = sb.Run("Stop-DataOpsSandbox -Name $name -Root $root -Remove");
        Assert.StartsWith("SandboxNotFound,", Assert.Single(missing.Errors).FullyQualifiedErrorId);
    }

    [Fact]
    public void Several_names_are_listed_and_an_unknown_one_is_a_non_terminating_SandboxNotFound()
    {
        using var sb = new OwnSandbox("names");
        Assert.False(sb.Run("Start-DataOpsSandbox -Name $name -Root $root -NoDefault").HadErrors);

        var byParameter = sb.Run("Get-DataOpsSandbox -Name no-such-sandbox, $name -Root $root; 'after'");
        var piped = sb.Run("'no-such-sandbox', $name, 'nor-this-one' | Get-DataOpsSandbox -Root $root; 'after'");

        foreach (var (r, unknown) in new[] { (byParameter, 1), (piped, 2) })
        {
            Assert.Equal(unknown, r.Errors.Count);
            Assert.All(r.Errors, e => Assert.StartsWith("SandboxNotFound,", e.FullyQualifiedErrorId));
            Assert.All(r.Errors, e => Assert.Equal(ErrorCategory.ObjectNotFound, e.CategoryInfo.Category));
            Assert.Equal(sb.Name, Prop(r.Output[0], "Name"));
            Assert.Equal("after", r.Output[^1].BaseObject);
            Assert.Equal(2, r.Output.Count);
        }

        Assert.Equal("no-such-sandbox", piped.Errors[0].TargetObject);
        Assert.Equal("nor-this-one", piped.Errors[1].TargetObject);
    }

    [Fact]
    public void Names_take_wildcards_and_a_pattern_that_matches_nothing_lists_nothing_without_an_error()
    {
        using var sb = new OwnSandbox("wild");
        Assert.False(sb.Run("Start-DataOpsSandbox -Name $name -Root $root -NoDefault").HadErrors);

        var matched = sb.Run("Get-DataOpsSandbox -Name 'WILD-*' -Root $root; 'after'");
        var none = sb.Run("Get-DataOpsSandbox -Name 'no-such-*', ($name.Substring(0, 6) + '?' + $name.Substring(7)) -Root $root; 'after'");

        Assert.False(matched.HadErrors, string.Join("\n", matched.Errors));
        Assert.Contains(matched.Output, o => Prop(o, "Name") as string == sb.Name);
        Assert.All(matched.Output.SkipLast(1), o => Assert.StartsWith("wild-", (string)Prop(o, "Name")!));
        Assert.Empty(none.Errors);
        Assert.Equal(sb.Name, Prop(none.Output[0], "Name"));
        Assert.Equal(["after"], none.Output.Skip(1).Select(o => o.BaseObject));
    }

    [Fact]
    public void Reusing_a_sandbox_this_process_started_does_not_warn_but_one_left_by_another_process_does()
    {
        using var sb = new OwnSandbox("reuse");
        Assert.False(sb.Run("Start-DataOpsSandbox -Name $name -Root $root -NoDefault").HadErrors);

        var again = sb.Run("Start-DataOpsSandbox -Name $name -Root $root -NoDefault -Verbose");
        Assert.Equal("Reused", Prop(again.Output.Single(), "Action")!.ToString());
        Assert.Empty(again.Warnings);
        Assert.Contains(again.Verbose, v => v.Contains("started earlier by this process"));

        // Another session of the same process (a second runspace) reuses it without a warning too.
        using var other = new PsSession();
        var fromOther = other.Run("Start-DataOpsSandbox -Name $name -Root $root -NoDefault", sb.Vars);
        Assert.Equal("Reused", Prop(fromOther.Output.Single(), "Action")!.ToString());
        Assert.Empty(fromOther.Warnings);

        // Started by another process that has ended: that is a cluster left behind, and it is reported.
        Assert.False(sb.Run("Stop-DataOpsSandbox -Name $name -Root $root").HadErrors);
        var elsewhere = NonInteractivePwsh($"Start-DataOpsSandbox -Name {sb.Name} -Root '{TestCluster.Root}' -NoDefault | Out-Null");
        Assert.True(elsewhere.ExitCode == 0, elsewhere.Err);
        var left = sb.Run("Start-DataOpsSandbox -Name $name -Root $root -NoDefault");
        Assert.Equal("Reused", Prop(left.Output.Single(), "Action")!.ToString());
        Assert.Contains(left.Warnings, w => w.Contains("probably left by an earlier session"));
    }

    [Fact]
    public void Replicas_show_a_progress_bar_while_the_base_backup_runs_and_index_from_PowerShell()
    {
        using var sb = new OwnSandbox("rep");
        var name = sb.Name;

        var started = sb.Run("$sb = Start-DataOpsSandbox -Name $name -Root $root -Replicas 1 -NoDefault -Verbose; $sb");

        Assert.False(started.HadErrors, string.Join("\n", started.Errors));
        var activity = $"Sandbox '{name}': replicas";
        Assert.Contains(started.Progress, p => p.Activity == activity && p.StatusDescription.StartsWith($"Base backup for {name}-r1 (1 of 1)", StringComparison.Ordinal));
        Assert.Contains(started.Progress, p => p.Activity == activity && p.RecordType == ProgressRecordType.Completed);
        Assert.Contains(started.Verbose, v => v.Contains("pg_basebackup -R -X stream", StringComparison.Ordinal));
        Assert.Contains(started.Verbose, v => v.Contains($"Replica '{name}-r1' is streaming", StringComparison.Ordinal));
        Assert.Equal(1, sb.Run("$sb.Replicas.Count").Single<int>());
        Assert.Equal($"{name}-r1", sb.Run("$sb.Replicas[0].Name").Single<string>());
        Assert.Equal("Running", sb.Run("$sb.Replicas[-1].Status").Single<string>());
        Assert.True(sb.Run("Invoke-DataOpsQuery 'SELECT pg_is_in_recovery()' -Connection $sb.Replicas[0].Connection -As Scalar -ReadOnly").Single<bool>());
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

/// <summary>
/// A session with a sandbox name of its own under the test root (the shared template exists, so a
/// start is a copy); the sandbox is removed at the end, whatever the test left.
/// </summary>
internal sealed class OwnSandbox : IDisposable
{
    public OwnSandbox(string prefix)
    {
        _ = TestCluster.Port;
        Name = prefix + "-" + Guid.NewGuid().ToString("N")[..6];
        Vars = new Hashtable { ["name"] = Name, ["root"] = TestCluster.Root };
    }

    public string Name { get; }

    public string Folder => Path.Combine(TestCluster.Root, Name);

    public PsSession Session { get; } = new();

    /// <summary>$name and $root for the scripts.</summary>
    public Hashtable Vars { get; }

    public PsResult Run(string script) => Session.Run(script, Vars);

    public void Dispose()
    {
        Session.Run("Stop-DataOpsSandbox -Name $name -Root $root -Remove -Confirm:$false", Vars);
        Session.Dispose();
    }
}
