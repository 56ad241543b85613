using System.Management.Automation;
using DataOps.Engine.Backfill;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>
/// What Suspend-, Resume-, Stop-Backfill and Set-BackfillThrottle share: the run by -RunId (bound
/// from a piped BackfillRun, with its Connection), ShouldProcess (raised on a production
/// connection), one request to the engine and the run's control state as output. A run that is not
/// found or not running is a non-terminating error, so a pipeline of runs goes on with the next.
/// </summary>
public abstract class BackfillControlCmdlet : DatabaseCmdlet
{
    /// <summary>The run to steer (a backfill or dry run in progress). Binds from pipeline objects' RunId property (Get-BackfillRun, Invoke-Backfill results).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(RunIdCompleter))]
    public Guid RunId { get; set; }

    /// <summary>Skips the confirmation a production connection asks for. It changes nothing else.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Records <paramref name="action"/> in the run's control row after ShouldProcess, and writes the control state.</summary>
    protected void Request(BackfillControlAction action, int? itemsPerMinute, string description)
    {
        if (!TryResolveConnection(out var connection))
        {
            return;
        }

        if (!ShouldWrite(connection, $"backfill run {RunId}", description, Force))
        {
            return;
        }

        var (user, host) = (Environment.UserName, Environment.MachineName);
        if (TryRunEngine((_, ct) => BackfillControl.RequestAsync(connection, RunId, action, itemsPerMinute, user, host, ct), out var control))
        {
            WriteObject(control with { Connection = connection });
        }
    }
}
