using System.Collections;
using System.Management.Automation;
using DataOps.Engine;
using DataOps.Engine.Connections;
using DataOps.Engine.Sandbox;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>
/// Lets -Connection take, besides a connection object: a sandbox (its connection), the name of a
/// connection Connect-DataOps -Name stored in the session (-Connection staging), an environment name
/// (DATAOPS_&lt;NAME&gt;_CONNECTION is set), or a connection string (key=value pairs or a postgresql://
/// URI). An array is transformed element by element (a fleet, for the cmdlets that take one). Any
/// other value goes on to PowerShell's own conversion.
/// </summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
public sealed class ConnectionTransformationAttribute : ArgumentTransformationAttribute
{
    public override object? Transform(EngineIntrinsics engineIntrinsics, object? inputData)
    {
        var value = inputData is PSObject ps ? ps.BaseObject : inputData;
        if (value is IEnumerable items and not string and not IDictionary)
        {
            var transformed = new List<object?>();
            foreach (var item in items)
            {
                transformed.Add(One(item));
            }

            return transformed.All(t => t is DataOpsConnection)
                ? transformed.Cast<DataOpsConnection>().ToArray()
                : transformed.ToArray();
        }

        return One(inputData);
    }

    private static object? One(object? inputData)
    {
        var value = inputData is PSObject ps ? ps.BaseObject : inputData;
        return value switch
        {
            DataOpsConnection => value,
            DataOpsSandbox sandbox => sandbox.Connection ?? throw new ArgumentTransformationMetadataException(
                $"The sandbox '{sandbox.Name}' is {sandbox.Status}, so it has no connection. Start it with Start-DataOpsSandbox -Name {sandbox.Name}, then pass it again."),
            string name => FromText(name),
            _ => inputData,
        };
    }

    private static DataOpsConnection FromText(string text)
    {
        if (SessionDefaults.Find(text) is { } connection)
        {
            return connection;
        }

        try
        {
            if (LooksLikeConnectionString(text))
            {
                return DataOpsConnection.FromConnectionString(text);
            }

            if (!string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(DataOpsConnection.EnvironmentVariableName(text))))
            {
                return DataOpsConnection.FromEnvironment(text);
            }
        }
        catch (DataOpsException ex)
        {
            // The engine's message is already redacted (a password in the text never shows).
            throw new ArgumentTransformationMetadataException(ex.Message, ex);
        }

        var known = SessionDefaults.Named.Select(c => c.Name).ToList();
        throw new ArgumentTransformationMetadataException(
            $"No connection named '{text}' in this session. " +
            (known.Count == 0 ? "No connection has a name yet: " : $"Named connections: {string.Join(", ", known)}. Or ") +
            $"connect one with Connect-DataOps -Name {text} -ConnectionString ..., set {DataOpsConnection.EnvironmentVariableName(text)}, or pass a connection object, a sandbox or a connection string.");
    }

    /// <summary>key=value pairs or a postgres:// URI; a plain word is a name.</summary>
    private static bool LooksLikeConnectionString(string text) =>
        text.Contains('=', StringComparison.Ordinal) ||
        text.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase) ||
        text.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase);
}
