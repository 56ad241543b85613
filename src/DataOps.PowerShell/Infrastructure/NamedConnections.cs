using System.Management.Automation;
using DataOps.Engine;
using DataOps.Engine.Connections;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>Finds the session's named connections for -Name, the way PowerShell's Get-Variable does.</summary>
internal static class NamedConnections
{
    /// <summary>
    /// The connections a name or pattern means. A pattern that matches nothing means none; a plain name
    /// that is not stored writes ConnectionNotFound (non-terminating) and means none.
    /// </summary>
    public static IReadOnlyList<DataOpsConnection> Resolve(Cmdlet cmdlet, string name)
    {
        if (WildcardPattern.ContainsWildcardCharacters(name))
        {
            return SessionDefaults.Matching(name);
        }

        if (SessionDefaults.Find(name) is { } connection)
        {
            return [connection];
        }

        cmdlet.WriteError(NotFound($"named '{name}'", name));
        return [];
    }

    /// <summary>ConnectionNotFound for <paramref name="what"/>, naming the connections the session has.</summary>
    public static ErrorRecord NotFound(string what, object target)
    {
        var known = SessionDefaults.Named.Select(c => c.Name).ToList();
        var ex = new DataOpsException("ConnectionNotFound", DataOpsErrorKind.ObjectNotFound,
            $"The session has no connection {what}. " +
            (known.Count == 0 ? "No connection is stored by name (Connect-DataOps -Name stores one)." : $"Named connections: {string.Join(", ", known)} (Get-DataOpsConnection -Name * lists them)."),
            target);
        return new ErrorRecord(ex, ex.ErrorId, ErrorCategory.ObjectNotFound, target);
    }
}
