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
    [InlineData("rescore-sessions.ps1")]
    public void Example_scripts_parse_and_use_only_real_parameters(string name)
    {
        var ast = Parser.ParseFile(Path.Combine(Repo.Root, "examples", name), out _, out var errors);
        Assert.Empty(errors);
        Assert.True(CheckParameters(ast, ModuleCommands(), name) > 0);
    }

    /// <summary>
    /// examples/rescore-sessions.ps1 as CI runs it (pwsh -NonInteractive -File): it re-scores the
    /// sample sessions through its own loopback endpoint, checks, undoes and exits 0. The key the test hands it through
    /// the environment appears in none of its output and none of the files it wrote.
    /// </summary>
    [Fact]
    public async Task Rescore_sessions_example_calls_its_endpoint_for_every_session_undoes_it_and_never_shows_the_key()
    {
        // Not CreateTempSubdirectory: its folder is private to this user, and on a root machine the sandbox's server runs as postgres.
        var work = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), $"dataops-rescore-example-{Guid.NewGuid():N}")).FullName;
        var output = Path.Combine(work, "out");
        var key = "rescore-" + Guid.NewGuid().ToString("N");
        var psi = Repo.Pwsh(string.Empty);
        psi.ArgumentList.Clear();
        foreach (var a in new[] { "pwsh", "-NoProfile", "-NonInteractive", "-File", Path.Combine(Repo.Root, "examples", "rescore-sessions.ps1"), "-OutputDirectory", output, "-Sessions", "30" })
        {
            psi.ArgumentList.Add(a);
        }

        // The sandbox goes under this test's own root, not the user's.
        psi.Environment["DATAOPS_SANDBOX_ROOT"] = Path.Combine(work, "sandboxes");
        psi.Environment["DATAOPS_SCORING_KEY"] = key;
        try
        {
            using var process = System.Diagnostics.Process.Start(psi)!;
            process.StandardInput.Close();
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            using (var limit = new CancellationTokenSource(TimeSpan.FromMinutes(4)))
            {
                await process.WaitForExitAsync(limit.Token);
            }

            var (text, errors) = (await stdout, await stderr);
            Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}\n{text}\n{errors}");

            var done = System.Text.RegularExpressions.Regex.Match(text, @"rescore-sessions: (\d+) sessions re-scored and restored");
            Assert.True(done.Success, text);
            var rescored = int.Parse(done.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(rescored > 0);
            Assert.Contains($"each function scored each session once ({rescored} and {rescored} calls)", text, StringComparison.Ordinal);
            Assert.Contains($"Undo-Backfill restored all {rescored} profiles", text, StringComparison.Ordinal);

            // The run's own record agrees: every item applied, one per re-scored session.
            var results = Directory.GetFiles(output, "execution_results.json", SearchOption.AllDirectories);
            using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Assert.Single(results)));
            var items = json.RootElement.GetProperty("items").EnumerateArray().ToList();
            Assert.Equal(rescored, items.Count);
            Assert.All(items, i => Assert.Equal("Applied", i.GetProperty("Status").GetString()));

            var files = Directory.GetFiles(output, "*", SearchOption.AllDirectories);
            Assert.Contains(files, f => Path.GetFileName(f).StartsWith("Invoke-Backfill-", StringComparison.Ordinal));
            Assert.All(files, f => Assert.DoesNotContain(key, File.ReadAllText(f), StringComparison.Ordinal));
            Assert.DoesNotContain(key, text, StringComparison.Ordinal);
            Assert.DoesNotContain(key, errors, StringComparison.Ordinal);

            // The script removed its sandbox.
            Assert.False(Directory.Exists(Path.Combine(work, "sandboxes", "rescore")), "the sandbox 'rescore' was left behind");
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
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
