using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using DataOps.Engine.Connections;
using DataOps.Engine.Sandbox;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>Completes -Environment with the names that have a DATAOPS_&lt;NAME&gt;_CONNECTION variable.</summary>
public sealed class EnvironmentNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters) =>
        DataOpsConnection.AvailableEnvironments()
            .Where(n => n.StartsWith(wordToComplete ?? string.Empty, StringComparison.OrdinalIgnoreCase))
            .Select(n => new CompletionResult(n, n, CompletionResultType.ParameterValue, DataOpsConnection.EnvironmentVariableName(n)));
}

/// <summary>Completes -Name with the sandboxes under the sandbox root.</summary>
public sealed class SandboxNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var root = fakeBoundParameters["Root"] as string;
        return new SandboxManager(root).List()
            .Where(s => s.Name.StartsWith(wordToComplete ?? string.Empty, StringComparison.OrdinalIgnoreCase))
            .Select(s => new CompletionResult(s.Name, s.Name, CompletionResultType.ParameterValue, $"{s.Name} ({s.Status})"));
    }
}

/// <summary>Completes -Job with the job files (JSON with a "version" and "steps") under the current folder.</summary>
public sealed class JobFileCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        // The session's location, not the process's: they differ as soon as the user runs Set-Location.
        var root = SessionLocation() ?? Directory.GetCurrentDirectory();
        var word = (wordToComplete ?? string.Empty).Trim('\'', '"');
        var files = new List<string>();
        try
        {
            files.AddRange(Directory.EnumerateFiles(root, "*.json", new EnumerationOptions { RecurseSubdirectories = true, MaxRecursionDepth = 4, IgnoreInaccessible = true })
                .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal) &&
                            !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
                .Take(500));
        }
        catch (IOException)
        {
        }

        foreach (var file in files)
        {
            var relative = "./" + Path.GetRelativePath(root, file).Replace(Path.DirectorySeparatorChar, '/');
            if (!relative.Contains(word, StringComparison.OrdinalIgnoreCase) || !LooksLikeJob(file))
            {
                continue;
            }

            var text = relative.Contains(' ', StringComparison.Ordinal) ? $"'{relative}'" : relative;
            yield return new CompletionResult(text, relative, CompletionResultType.ParameterValue, file);
        }
    }

    private static string? SessionLocation()
    {
        try
        {
            using var ps = System.Management.Automation.PowerShell.Create(RunspaceMode.CurrentRunspace);
            return ps.AddScript("$ExecutionContext.SessionState.Path.CurrentFileSystemLocation.ProviderPath").Invoke<string>().FirstOrDefault();
        }
        catch (PSInvalidOperationException)
        {
            return null;
        }
    }

    private static bool LooksLikeJob(string file)
    {
        try
        {
            using var reader = new StreamReader(file);
            var head = new char[4096];
            var n = reader.Read(head, 0, head.Length);
            var text = new string(head, 0, n);
            return text.Contains("\"version\"", StringComparison.Ordinal) && text.Contains("\"steps\"", StringComparison.Ordinal);
        }
        catch (IOException)
        {
            return false;
        }
    }
}

/// <summary>Completes -Connection and -Name with the names of the session's named connections (Connect-DataOps -Name).</summary>
public sealed class ConnectionNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters) =>
        SessionDefaults.Named
            .Where(c => c.Name.StartsWith((wordToComplete ?? string.Empty).Trim('\'', '"'), StringComparison.OrdinalIgnoreCase))
            .Select(c => new CompletionResult(Quoted(c.Name), c.Name, CompletionResultType.ParameterValue, c.ToString()));

    private static string Quoted(string name) =>
        name.All(ch => char.IsLetterOrDigit(ch) || ch is '-' or '_' or '.') ? name : $"'{CodeGeneration.EscapeSingleQuotedStringContent(name)}'";
}
