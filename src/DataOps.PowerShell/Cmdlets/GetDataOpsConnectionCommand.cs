using System.Management.Automation;
using DataOps.Engine.Connections;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Gets the session's default DataOps connection.</para>
/// <para type="description">Get-DataOpsConnection returns the connection that DataOps cmdlets use when -Connection is not given:
/// the last one made by Connect-DataOps or Start-DataOpsSandbox in this session. It returns nothing when there is none.</para>
/// <para type="link">Connect-DataOps</para>
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
[Cmdlet(VerbsCommon.Get, "DataOpsConnection")]
[OutputType(typeof(DataOpsConnection))]
public sealed class GetDataOpsConnectionCommand : DataOpsCmdlet
{
    protected override void ProcessRecord()
    {
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
