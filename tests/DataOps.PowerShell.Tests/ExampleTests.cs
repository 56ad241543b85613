using System.Management.Automation;
using System.Management.Automation.Language;

namespace DataOps.PowerShell.Tests;

public sealed class ExampleTests
{
    /// <summary>
    /// A fast static guard next to the real run (build.ps1 runs the usage file under Pester 5 and 6):
    /// parse it with the PowerShell parser and check that every DataOps command and parameter it uses
    /// exists in the module.
    /// </summary>
    [Fact]
    public void Pester_usage_file_parses_and_uses_only_real_commands_and_parameters()
    {
        var file = Path.Combine(Repo.Root, "examples", "pester", "DataOps.Usage.Tests.ps1");
        var ast = Parser.ParseFile(file, out _, out var errors);
        Assert.Empty(errors);

        var commands = ModuleCommands();
        var used = CheckParameters(ast, commands, "DataOps.Usage.Tests.ps1");
        Assert.True(used >= 8, $"the usage file uses only {used} DataOps commands");

        // Commands that look like ours must exist.
        var ours = ast.FindAll(n => n is CommandAst, true).Cast<CommandAst>().Select(c => c.GetCommandName()).OfType<string>()
            .Where(n => n.Contains("DataOps", StringComparison.OrdinalIgnoreCase) || n.EndsWith("Backfill", StringComparison.OrdinalIgnoreCase) || n.Contains("Seed", StringComparison.OrdinalIgnoreCase));
        Assert.All(ours, n => Assert.True(commands.ContainsKey(n), $"{n} is not a DataOps command"));
    }

    [Theory]
    [InlineData("quickstart.ps1")]
    [InlineData("runbook.ps1")]
    [InlineData("backfill-pipeline.ps1")]
    public void Example_scripts_parse_and_use_only_real_parameters(string name)
    {
        var ast = Parser.ParseFile(Path.Combine(Repo.Root, "examples", name), out _, out var errors);
        Assert.Empty(errors);
        Assert.True(CheckParameters(ast, ModuleCommands(), name) > 0);
    }

    private static Dictionary<string, CmdletInfo> ModuleCommands()
    {
        using var s = new PsSession();
        return s.Run("Get-Command -Module DataOps").Output.Select(o => (CmdletInfo)o.BaseObject).ToDictionary(c => c.Name, StringComparer.OrdinalIgnoreCase);
    }

    /// <summary>Every parameter of every DataOps command in the script must exist (by name or alias); returns how many calls were checked.</summary>
    private static int CheckParameters(Ast ast, Dictionary<string, CmdletInfo> commands, string file)
    {
        var calls = ast.FindAll(n => n is CommandAst, searchNestedScriptBlocks: true).Cast<CommandAst>()
            .Where(c => c.GetCommandName() is { } name && commands.ContainsKey(name)).ToList();
        foreach (var call in calls)
        {
            var info = commands[call.GetCommandName()];
            foreach (var p in call.CommandElements.OfType<CommandParameterAst>())
            {
                Assert.True(info.Parameters.Values.Any(m => m.Name.Equals(p.ParameterName, StringComparison.OrdinalIgnoreCase) || m.Aliases.Contains(p.ParameterName, StringComparer.OrdinalIgnoreCase)),
                    $"{file}: {info.Name} has no parameter -{p.ParameterName} (line {p.Extent.StartLineNumber})");
            }
        }

        return calls.Count;
    }
}
