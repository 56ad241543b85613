using System.Collections;
using System.Management.Automation;
using System.Runtime.Loader;

namespace DataOps.PowerShell.Tests;

public sealed class ModuleTests
{
    private static readonly string[] FoundationCmdlets =
        ["Start-DataOpsSandbox", "Stop-DataOpsSandbox", "Get-DataOpsSandbox", "Connect-DataOps", "Get-DataOpsConnection", "Install-DataOpsSchema"];

    [Fact]
    public void Manifest_is_valid_and_exports_explicit_lists()
    {
        using var s = new PsSession();
        var info = (PSModuleInfo)s.Invoke("Test-ModuleManifest", new Hashtable { ["Path"] = Repo.Manifest }).Single().BaseObject;

        Assert.Equal(new Version(7, 4), info.PowerShellVersion);
        Assert.Equal(["Core"], info.CompatiblePSEditions);
        Assert.Empty(info.ExportedFunctions);
        var manifestText = File.ReadAllText(Repo.Manifest);
        Assert.DoesNotContain("'*'", manifestText);
        Assert.Contains("DataOps.Format.ps1xml", manifestText);
    }

    [Fact]
    public void Get_Command_lists_the_foundation_cmdlets_with_help()
    {
        using var s = new PsSession();
        var names = s.Run("Get-Command -Module DataOps").Output.Select(o => ((CommandInfo)o.BaseObject).Name).ToList();

        foreach (var name in FoundationCmdlets)
        {
            Assert.Contains(name, names);
        }

        foreach (var name in names)
        {
            var help = Assert.Single(s.Run($"Get-Help {name} -Full").Output);
            var synopsis = help.Properties["Synopsis"].Value?.ToString()?.Trim() ?? string.Empty;
            Assert.False(synopsis.Length == 0 || synopsis.StartsWith(name, StringComparison.Ordinal), $"{name} has no help synopsis (got '{synopsis}')");
            Assert.True(s.Run($"(Get-Help {name}).examples.example.Count").Output.Single().BaseObject is int count && count >= 2, $"{name} needs two examples");
            var undocumented = s.Run($"@((Get-Help {name}).parameters.parameter) | Where-Object {{ $_ -and -not $_.description }} | ForEach-Object name").Output;
            Assert.True(undocumented.Count == 0, $"{name}: parameters without help: {string.Join(", ", undocumented)}");
        }
    }

    [Fact]
    public void Cmdlet_reference_covers_every_exported_cmdlet()
    {
        using var s = new PsSession();
        var reference = File.ReadAllText(Path.Combine(Repo.Root, "docs", "cmdlets.md"));

        foreach (var name in s.Run("Get-Command -Module DataOps").Output.Select(o => ((CommandInfo)o.BaseObject).Name))
        {
            Assert.True(reference.Contains($"## {name}", StringComparison.Ordinal),
                $"docs/cmdlets.md lacks {name}: run dotnet run --project tools/DataOps.HelpGen -- out/DataOps --markdown docs/cmdlets.md");
        }
    }

    [Fact]
    public void Every_output_type_has_a_view_and_components_complete()
    {
        using var s = new PsSession();
        var views = System.Xml.Linq.XDocument.Load(Path.Combine(Repo.ModuleDirectory, "DataOps.Format.ps1xml"))
            .Descendants("TypeName").Select(t => t.Value).ToHashSet(StringComparer.Ordinal);
        var outputs = s.Run("Get-Command -Module DataOps").Output.SelectMany(o => ((CommandInfo)o.BaseObject).OutputType)
            // Invoke-DataOpsQuery's rows are PSCustomObjects with the query's own columns: PowerShell's default view is theirs.
            .Select(t => t.Type).OfType<Type>().Where(t => t != typeof(bool) && t != typeof(PSCustomObject)).Select(t => t.FullName!).Distinct().ToList();

        Assert.NotEmpty(outputs);
        Assert.All(outputs, t => Assert.True(views.Contains(t), $"{t} has no view in DataOps.Format.ps1xml"));

        var line = "Install-DataOpsSchema -Component Work";
        var completions = s.Run("(TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches | ForEach-Object CompletionText", new Hashtable { ["line"] = line });
        Assert.Contains("WorkflowExecution", completions.Output.Select(o => o.ToString()));
    }

    [Fact]
    public void Every_cmdlet_gets_Ctrl_C_from_the_base_and_is_disposed_with_its_pipeline()
    {
        using var s = new PsSession();
        var r = s.Run("""
            $base = [DataOps.PowerShell.Infrastructure.DataOpsCmdlet]
            $stop = $base.GetMethod('StopProcessing', [Reflection.BindingFlags]'NonPublic,Instance')
            [pscustomobject]@{
                Sealed = $stop.IsFinal
                Disposable = [IDisposable].IsAssignableFrom($base)
                NotDerived = @(Get-Command -Module DataOps -CommandType Cmdlet | Where-Object { -not $base.IsAssignableFrom($_.ImplementingType) } | ForEach-Object Name)
                Overriding = @(Get-Command -Module DataOps -CommandType Cmdlet | Where-Object { $_.ImplementingType.GetMethod('StopProcessing', [Reflection.BindingFlags]'NonPublic,Instance').DeclaringType -ne $base } | ForEach-Object Name)
            }
            """);

        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        var o = r.Output.Single();
        Assert.True((bool)o.Properties["Sealed"].Value);
        Assert.True((bool)o.Properties["Disposable"].Value);
        Assert.Empty((object[])o.Properties["NotDerived"].Value);
        Assert.Empty((object[])o.Properties["Overriding"].Value);
    }

    [Theory]
    [InlineData("Sample, Version=8.0.0.0, Culture=neutral, PublicKeyToken=cc7b13ffcd2ddd51", "Sample, Version=8.0.0.0, Culture=neutral, PublicKeyToken=cc7b13ffcd2ddd51", true)]
    [InlineData("Sample, Version=8.0.0.0, Culture=neutral, PublicKeyToken=cc7b13ffcd2ddd51", "Sample, Version=9.0.0.0, Culture=neutral, PublicKeyToken=cc7b13ffcd2ddd51", true)]
    [InlineData("Sample, Version=8.0.0.0, Culture=neutral, PublicKeyToken=cc7b13ffcd2ddd51", "Sample, Version=7.0.0.0, Culture=neutral, PublicKeyToken=cc7b13ffcd2ddd51", false)]
    [InlineData("Sample, Version=8.0.0.0, Culture=neutral, PublicKeyToken=cc7b13ffcd2ddd51", "Sample, Version=9.0.0.0, Culture=neutral, PublicKeyToken=b03f5f7f11d50a3a", false)]
    [InlineData("Sample, Version=8.0.0.0, Culture=neutral, PublicKeyToken=cc7b13ffcd2ddd51", "Sample, Version=9.0.0.0, Culture=neutral, PublicKeyToken=null", false)]
    [InlineData("Sample, Version=8.0.0.0, Culture=neutral, PublicKeyToken=cc7b13ffcd2ddd51", "Sample, Version=9.0.0.0, Culture=fr-FR, PublicKeyToken=cc7b13ffcd2ddd51", false)]
    [InlineData("Sample, Version=8.0.0.0, Culture=neutral, PublicKeyToken=cc7b13ffcd2ddd51", "Other, Version=9.0.0.0, Culture=neutral, PublicKeyToken=cc7b13ffcd2ddd51", false)]
    public void The_framework_stands_in_for_a_dependency_only_with_the_same_name_culture_and_key_at_a_version_as_new(string ours, string framework, bool defers)
    {
        using var s = new PsSession();
        var r = s.Run("""
            $type = (Get-Module DataOps).ImplementingAssembly.GetType('DataOps.PowerShell.Infrastructure.DependencyLoadContext', $true)
            $type.GetMethod('Satisfies', [Reflection.BindingFlags]'NonPublic,Static').Invoke($null, @([Reflection.AssemblyName]::new($ours), [Reflection.AssemblyName]::new($ours), [Reflection.AssemblyName]::new($framework)))
            """, new Hashtable { ["ours"] = ours, ["framework"] = framework });

        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        Assert.Equal(defers, (bool)r.Output.Single().BaseObject);
    }

    [Fact]
    public void About_topic_is_shipped()
    {
        using var s = new PsSession();
        var text = string.Join('\n', s.Run("Get-Help about_DataOps").Output.Select(o => o.ToString()));

        Assert.Contains("Start-DataOpsSandbox", text);
        Assert.Contains("ConnectionMissing", text);
    }

    [Fact]
    public void Module_assemblies_are_not_in_the_test_host_folder()
    {
        Assert.False(File.Exists(Path.Combine(AppContext.BaseDirectory, "DataOps.Engine.dll")));
        Assert.False(File.Exists(Path.Combine(AppContext.BaseDirectory, "DataOps.PowerShell.dll")));
        Assert.True(File.Exists(Path.Combine(Repo.ModuleDirectory, "Dependencies", "DataOps.Engine.dll")));
        Assert.False(File.Exists(Path.Combine(Repo.ModuleDirectory, "Dependencies", "System.Management.Automation.dll")));
    }

    [Fact]
    public void Module_uses_its_own_Npgsql_and_Serilog_when_the_host_has_older_ones()
    {
        // Load the host's older versions into the default context first.
        var hostNpgsql = typeof(Npgsql.NpgsqlConnection).Assembly;
        Assert.Equal(8, Sql.Scalar(TestCluster.AdminConnectionString(), "SELECT 8") is int eight ? eight : 0);
        var hostSerilog = typeof(Serilog.Log).Assembly;
        Serilog.Log.Logger = new Serilog.LoggerConfiguration().CreateLogger();
        Assert.Equal(8, hostNpgsql.GetName().Version!.Major);
        Assert.Equal(2, hostSerilog.GetName().Version!.Major);

        using var s = new PsSession();
        var db = TestCluster.CreateDatabase();
        var result = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null; Install-DataOpsSchema -Component Core", new Hashtable { ["cs"] = db });

        Assert.False(result.HadErrors, string.Join("\n", result.Errors));
        Assert.NotEmpty(result.Output);
        var engine = result.Output[0].BaseObject.GetType().Assembly;
        var context = AssemblyLoadContext.GetLoadContext(engine)!;
        Assert.Equal("DataOps.Dependencies", context.Name);
        var npgsql = context.Assemblies.Single(a => a.GetName().Name == "Npgsql");
        var serilog = context.Assemblies.Single(a => a.GetName().Name == "Serilog");
        Assert.Equal(10, npgsql.GetName().Version!.Major);
        Assert.Equal(4, serilog.GetName().Version!.Major);
        Assert.Same(AssemblyLoadContext.Default, AssemblyLoadContext.GetLoadContext(hostNpgsql));
        Assert.Equal((long)result.Output.Count, Sql.Scalar(db, "SELECT count(*) FROM dataops.schema_versions"));
    }
}
