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
    /// ShouldProcess with production raised to ConfirmImpact High: on a production connection the
    /// user is asked whenever $ConfirmPreference would ask for a High-impact command, even if this
    /// cmdlet's own impact is lower. -Force skips the prompts (never -WhatIf, never an explicit -Confirm); -Confirm:$false skips them too.
    /// </summary>
    protected bool ShouldWrite(DataOpsConnection connection, string target, string action, bool force)
    {
        // -Force skips prompts, never a question the user asked for with an explicit -Confirm.
        var confirmRequested = MyInvocation.BoundParameters.TryGetValue("Confirm", out var confirm) && confirm is SwitchParameter { IsPresent: true };
        if (force && !WhatIfRequested && !confirmRequested)
        {
            WriteVerbose($"{action} on {target} (confirmation skipped by -Force).");
            return true;
        }

        if (!ShouldProcess(target, action))
        {
            return false;
        }

        if (!connection.IsProduction || MyInvocation.BoundParameters.ContainsKey("Confirm"))
        {
            return true;
        }

        var preference = SessionState.PSVariable.GetValue("ConfirmPreference") is ConfirmImpact p ? p : ConfirmImpact.High;
        var declared = ((CmdletAttribute)Attribute.GetCustomAttribute(GetType(), typeof(CmdletAttribute))!).ConfirmImpact;
        var alreadyAsked = declared >= preference && preference != ConfirmImpact.None;
        if (preference == ConfirmImpact.None || alreadyAsked)
        {
            return true;
        }

        // Yes to All / No to All hold for the rest of this invocation (every item of a pipeline).
        try
        {
            return ShouldContinue(
                $"{action} on {target} writes to the PRODUCTION connection {connection}. Continue?",
                "Confirm production write", ref _yesToAll, ref _noToAll);
        }
        catch (Exception ex) when (ex is PSInvalidOperationException or System.Management.Automation.Host.HostException or NotImplementedException)
        {
            // A non-interactive host (a runbook, CI, pwsh -NonInteractive) cannot ask.
            ThrowTerminating("ConfirmationRequired", DataOpsErrorKind.InvalidOperation,
                $"{action} on {target} writes to the PRODUCTION connection {connection}, and this session cannot ask for confirmation ({ex.Message}). " +
                "Confirm it on the command line: pass -Confirm:$false (or -Force).",
                connection.ToString());
            return false;
        }
    }

    private bool _yesToAll;
    private bool _noToAll;

    protected bool WhatIfRequested =>
        (MyInvocation.BoundParameters.TryGetValue("WhatIf", out var w) && w is SwitchParameter { IsPresent: true }) ||
        (SessionState.PSVariable.GetValue("WhatIfPreference") is bool b && b) ||
        (SessionState.PSVariable.GetValue("WhatIfPreference") is SwitchParameter { IsPresent: true });
}
