using System.Management.Automation;
using DataOps.Engine.Connections;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>
/// Lets -Connection take the name of a connection Connect-DataOps -Name stored in the session, as well
/// as a connection object: -Connection staging. Any other value goes on to PowerShell's own conversion.
/// </summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
public sealed class ConnectionTransformationAttribute : ArgumentTransformationAttribute
{
    public override object? Transform(EngineIntrinsics engineIntrinsics, object? inputData)
    {
        var value = inputData is PSObject ps ? ps.BaseObject : inputData;
        if (value is not string name)
        {
            return inputData;
        }

        if (SessionDefaults.Find(name) is { } connection)
        {
            return connection;
        }

        var known = SessionDefaults.Named.Select(c => c.Name).ToList();
        throw new ArgumentTransformationMetadataException(
            $"No connection named '{name}' in this session. " +
            (known.Count == 0 ? "No connection has a name yet: " : $"Named connections: {string.Join(", ", known)}. Or ") +
            $"connect one with Connect-DataOps -Name {name} -ConnectionString ..., or pass a connection object.");
    }
}
