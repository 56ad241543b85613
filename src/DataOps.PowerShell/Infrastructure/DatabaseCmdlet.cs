using System.Management.Automation;
using DataOps.Engine;
using DataOps.Engine.Connections;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>
/// A cmdlet that talks to one database: -Connection, else the session default, else ConnectionMissing.
/// A piped object that carries its Connection is acted on in that database: the property binds to
/// -Connection, and a -Connection typed on the command line that names another database refuses
/// the object (ConnectionMismatch) instead of acting on its ids in the wrong place.
/// </summary>
public abstract class DatabaseCmdlet : ConnectedCmdlet
{
    /// <summary>The connection to use: a connection object, a sandbox (Start-DataOpsSandbox's object), the name of one Connect-DataOps -Name stored in the session, an environment name (DATAOPS_&lt;NAME&gt;_CONNECTION) or a connection string; defaults to the session's (Connect-DataOps or Start-DataOpsSandbox). Binds from pipeline objects' Connection property, so piped objects are acted on in the database they came from; a -Connection that names another database is refused (ConnectionMismatch).</summary>
    /// <default>the session's default (Connect-DataOps or Start-DataOpsSandbox)</default>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ConnectionTransformation]
    [ArgumentCompleter(typeof(ConnectionNameCompleter))]
    public DataOpsConnection? Connection { get; set; }

    private protected override DataOpsConnection? TypedConnection => Connection;
}

/// <summary>
/// What the cmdlets that take -Connection share: connection resolution against piped objects and
/// production-aware ShouldProcess. <see cref="DatabaseCmdlet"/> takes one connection,
/// <see cref="FleetCmdlet"/> one or several.
/// </summary>
public abstract class ConnectedCmdlet : DataOpsCmdlet
{
    /// <summary>The one connection -Connection bound (typed, or from the piped object); null when none.</summary>
    private protected abstract DataOpsConnection? TypedConnection { get; }

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
    protected static async IAsyncEnumerable<TOut> Stamped<T, TOut>(IAsyncEnumerable<T> source, Func<T, TOut> stamp, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct = default)
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
        var piped = PipelineInput.Property<DataOpsConnection>(InputObject, "Connection");
        if (piped is not null && TypedConnection is { } typed && !typed.IsSameDatabase(piped))
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

        var connection = TypedConnection ?? SessionDefaults.Connection;
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
    protected bool ShouldWrite(DataOpsConnection connection, string target, string action, bool force) =>
        ShouldWrite(target, action, force, connection.IsProduction
            ? new HighImpact($"{action} on {target} writes to the PRODUCTION connection {connection}", "Confirm production write", connection.ToString())
            : null);
}
