using System.Management.Automation;
using DataOps.Engine.Connections;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Removes a connection from the session: the default, or named ones.</para>
/// <para type="description">Disconnect-DataOps takes a connection out of the session and closes the idle server sessions the driver
/// keeps pooled for it. Without parameters it removes the default connection (cmdlets then need -Connection, or fail with
/// ConnectionMissing); with -Name it removes connections stored with Connect-DataOps -Name (wildcards allowed; a plain name that is not
/// stored is an error, ConnectionNotFound); piped connection objects are removed wherever the session holds them. A connection that is
/// both named and the default leaves both places. Nothing in any database changes; -WhatIf shows what would be removed.</para>
/// <para type="link">Connect-DataOps</para>
/// <para type="link">Get-DataOpsConnection</para>
/// </summary>
/// <example>
///   <code>Disconnect-DataOps -Name reports</code>
///   <para>Removes the connection stored as 'reports'.</para>
/// </example>
/// <example>
///   <code>Get-DataOpsConnection -Name * | Disconnect-DataOps -WhatIf</code>
///   <para>Shows which named connections would be removed, and removes none.</para>
/// </example>
/// <example>
///   <code>Disconnect-DataOps; Get-DataOpsConnection</code>
///   <para>Removes the default connection; Get-DataOpsConnection then returns nothing.</para>
/// </example>
[Cmdlet(VerbsCommunications.Disconnect, "DataOps", DefaultParameterSetName = Default, SupportsShouldProcess = true)]
[OutputType(typeof(DataOpsConnection))]
public sealed class DisconnectDataOpsCommand : DataOpsCmdlet
{
    private const string Default = "Default";
    private const string ByName = "Name";
    private const string ByConnection = "Connection";

    /// <summary>Names of connections stored with Connect-DataOps -Name; wildcards allowed.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ByName)]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(ConnectionNameCompleter))]
    public string[] Name { get; set; } = [];

    /// <summary>Connection objects to remove (from Get-DataOpsConnection or Connect-DataOps).</summary>
    [Parameter(Mandatory = true, ParameterSetName = ByConnection, ValueFromPipeline = true)]
    public DataOpsConnection[] Connection { get; set; } = [];

    /// <summary>Returns each connection removed.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        switch (ParameterSetName)
        {
            case ByName:
                foreach (var name in Name)
                {
                    foreach (var connection in NamedConnections.Resolve(this, name))
                    {
                        Disconnect(connection, $"connection '{connection.Name}' ({connection})");
                    }
                }

                break;
            case ByConnection:
                foreach (var connection in Connection)
                {
                    if (SessionDefaults.Connection == connection || SessionDefaults.Named.Contains(connection))
                    {
                        Disconnect(connection, $"connection '{connection.Name}' ({connection})");
                    }
                    else
                    {
                        WriteError(NamedConnections.NotFound($"{connection} named '{connection.Name}' (it was disconnected before, or never stored)", connection.ToString()));
                    }
                }

                break;
            default:
                if (SessionDefaults.Connection is { } current)
                {
                    Disconnect(current, $"the default connection {current}");
                }
                else
                {
                    WriteVerbose("The session has no default connection: nothing to disconnect.");
                }

                break;
        }
    }

    private void Disconnect(DataOpsConnection connection, string target)
    {
        if (!ShouldProcess(target, "Disconnect"))
        {
            return;
        }

        SessionDefaults.Remove(connection);
        connection.ClearPools();
        WriteVerbose($"Disconnected {target}.");
        if (PassThru)
        {
            WriteObject(connection);
        }
    }
}
