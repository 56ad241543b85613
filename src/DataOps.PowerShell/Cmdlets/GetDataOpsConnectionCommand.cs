using System.Management.Automation;
using DataOps.Engine.Connections;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Gets the session's default DataOps connection, or its named connections.</para>
/// <para type="description">Get-DataOpsConnection returns the connection that DataOps cmdlets use when -Connection is not given:
/// the last one made by Connect-DataOps or Start-DataOpsSandbox in this session. It returns nothing when there is none.</para>
/// <para type="description">With -Name it returns the connections Connect-DataOps -Name stored in the session, by name; wildcards
/// match several (-Name * lists them all), a pattern that matches nothing returns nothing, and a plain name that is not stored is an
/// error (ConnectionNotFound).</para>
/// <para type="link">Connect-DataOps</para>
/// <para type="link">Disconnect-DataOps</para>
/// <para type="link">Start-DataOpsSandbox</para>
/// </summary>
/// <example>
///   <code>Get-DataOpsConnection</code>
///   <para>Shows the default connection (host, port, database, user, production flag), never its password.</para>
/// </example>
/// <example>
///   <code>if (-not (Get-DataOpsConnection)) { Start-DataOpsSandbox }</code>
///   <para>Starts the sandbox only when the session has no connection yet.</para>
/// </example>
/// <example>
///   <code>Get-DataOpsConnection -Name *</code>
///   <para>Lists every named connection of the session (Connect-DataOps -Name).</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "DataOpsConnection", DefaultParameterSetName = Default)]
[OutputType(typeof(DataOpsConnection))]
public sealed class GetDataOpsConnectionCommand : DataOpsCmdlet
{
    private const string Default = "Default";
    private const string ByName = "Name";

    /// <summary>Names of connections stored with Connect-DataOps -Name; wildcards allowed (* lists them all).</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ByName, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(ConnectionNameCompleter))]
    public string[] Name { get; set; } = [];

    protected override void ProcessRecord()
    {
        if (ParameterSetName == ByName)
        {
            foreach (var name in Name)
            {
                WriteObject(NamedConnections.Resolve(this, name), enumerateCollection: true);
            }

            return;
        }

        if (SessionDefaults.Connection is { } connection)
        {
            WriteObject(connection);
        }
        else
        {
            WriteVerbose("The session has no default connection; use Connect-DataOps or Start-DataOpsSandbox.");
        }
    }
}
