using System.Management.Automation;
using DataOps.Engine;
using DataOps.Engine.Connections;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>
/// A cmdlet that talks to a database: -Connection, else the session default, else ConnectionMissing.
/// A piped object that carries its Connection is acted on in that database: the property binds to
/// -Connection, and a -Connection typed on the command line that names another database refuses
/// the object (ConnectionMismatch) instead of acting on its ids in the wrong place.
/// </summary>
public abstract class DatabaseCmdlet : DataOpsCmdlet
{
    /// <summary>The connection to use; defaults to the session's (Connect-DataOps or Start-DataOpsSandbox). Binds from pipeline objects' Connection property, so piped objects are acted on in the database they came from; a -Connection that names another database is refused (ConnectionMismatch).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public DataOpsConnection? Connection { get; set; }

    /// <summary>The piped object itself, read only to check that it comes from the database this command acts on. Not for the command line.</summary>
    [Parameter(ValueFromPipeline = true, DontShow = true)]
    public PSObject? InputObject { get; set; }

    /// <summary>The connection for a whole command: a piped object from another database than -Connection ends it (ConnectionMismatch).</summary>
    protected DataOpsConnection ResolveConnection()
    {
        var (connection, refusal) = Resolve();
        if (refusal is not null)
        {
            ThrowTerminatingError(refusal);
        }

        return connection!;
    }

    /// <summary>
    /// The connection for the piped object at hand. An object that comes from another database than
    /// -Connection, or that binds nothing, is refused with a non-terminating error and false: the
    /// cmdlet skips it and goes on with the next.
    /// </summary>
    protected bool TryResolveConnection(out DataOpsConnection connection)
    {
        var (resolved, refusal) = Resolve();
        if (refusal is not null)
        {
            WriteError(refusal);
            connection = null!;
            return false;
        }

        connection = resolved!;
        return true;
    }

    /// <summary>Stamps each streamed object with the connection it came from.</summary>
    protected static async IAsyncEnumerable<T> Stamped<T>(IAsyncEnumerable<T> source, Func<T, T> stamp, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct = default)
    {
        await foreach (var item in source.WithCancellation(ct).ConfigureAwait(false))
        {
            yield return stamp(item);
        }
    }

    private (DataOpsConnection? Connection, ErrorRecord? Refusal) Resolve()
    {
        if (InputObject is { } input && !PipelineInput.BindsSomething(this, input))
        {
            return (null, PipelineInput.NotBound(this, input));
        }

        // Bound from the pipeline, Connection is the piped object's own; typed on the command line,
        // PowerShell keeps it for every object and ignores theirs, so it is compared here.
        var piped = PipelineInput.Property<DataOpsConnection>(InputObject, nameof(Connection));
        if (piped is not null && Connection is { } typed && !typed.IsSameDatabase(piped))
        {
            var what = InputObject!.BaseObject.GetType().Name;
            var ex = new DataOpsException("ConnectionMismatch", DataOpsErrorKind.InvalidArgument,
                $"The piped {what} ({InputObject.BaseObject}) comes from {piped}, but -Connection is {typed}, another database; nothing was done with it. " +
                "Leave out -Connection to act on each object in its own database, or pipe objects from the database you name.",
                piped.ToString())
            {
                RecommendedAction = $"Leave out -Connection, or pass -Connection for {piped}.",
            };
            return (null, ToErrorRecord(ex));
        }

        var connection = Connection ?? SessionDefaults.Connection;
        if (connection is null)
        {
            ThrowTerminating("ConnectionMissing", DataOpsErrorKind.InvalidOperation,
                "No database connection: pass -Connection, or set a session default with Connect-DataOps or Start-DataOpsSandbox.",
                null);
        }

        return (connection, null);
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
