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
