using System.Management.Automation;
using DataOps.Engine;
using DataOps.Engine.Connections;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>A cmdlet that talks to a database: -Connection, else the session default, else ConnectionMissing.</summary>
public abstract class DatabaseCmdlet : DataOpsCmdlet
{
    /// <summary>The connection to use; defaults to the session's (Connect-DataOps or Start-DataOpsSandbox).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public DataOpsConnection? Connection { get; set; }

    protected DataOpsConnection ResolveConnection()
    {
        var connection = Connection ?? SessionDefaults.Connection;
        if (connection is null)
        {
            ThrowTerminating("ConnectionMissing", DataOpsErrorKind.InvalidOperation,
                "No database connection: pass -Connection, or set a session default with Connect-DataOps or Start-DataOpsSandbox.",
                null);
        }

        return connection!;
    }

    /// <summary>
    /// ShouldProcess, and for a production connection a confirmation on top that only -Force or an
    /// explicit -Confirm:$false skips: every write to production has ConfirmImpact High in effect.
    /// </summary>
    protected bool ShouldWrite(DataOpsConnection connection, string target, string action, bool force)
    {
        if (!ShouldProcess(target, action))
        {
            return false;
        }

        if (!connection.IsProduction || force || ConfirmExplicitlyOff())
        {
            return true;
        }

        return ShouldContinue(
            $"{action} on {target} writes to the PRODUCTION connection {connection}. Continue?",
            "Confirm production write");
    }

    private bool ConfirmExplicitlyOff() =>
        MyInvocation.BoundParameters.TryGetValue("Confirm", out var value) && value is SwitchParameter { IsPresent: false };
}
