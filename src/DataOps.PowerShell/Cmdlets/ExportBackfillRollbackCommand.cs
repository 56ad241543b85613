using System.Management.Automation;
using DataOps.Engine.Logging;
using DataOps.Engine.Backfill;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Writes a backfill run's psql rollback script again, complete, from the ledger.</para>
/// <para type="description">Export-BackfillRollback reads the before- and after-images the ledger holds for every item the run applied
/// (and that is not undone yet) and writes the same psql-runnable script Invoke-Backfill writes as its items commit: one transaction,
/// items undone newest first, each row restored only if it still equals its after-image, the undo recorded in the ledger, a verified
/// line at the end. Use it when a run's own script is missing or was left incomplete (the process was killed: such a script refuses
/// to run and names this command), or to get a script for a run whose folder is elsewhere. Without -Path the script goes into the
/// run's own backfill_logs folder as rollback_YYYY-MM-DD.sql. It changes nothing in the database. Run the script with
/// psql -v ON_ERROR_STOP=1 -f FILE, or use Undo-Backfill instead.</para>
/// <para type="link">Invoke-Backfill</para>
/// <para type="link">Undo-Backfill</para>
/// <para type="link">Get-BackfillRun</para>
/// </summary>
/// <example>
///   <code>Export-BackfillRollback -RunId 6f1c2a4e-0d7b-4c1e-9a55-3b2f4c6d7e8f -Path ./rollback.sql</code>
///   <para>Writes the run's rollback script to ./rollback.sql and returns its path and the number of items it undoes.</para>
/// </example>
/// <example>
///   <code>Get-BackfillRun -JobName results-v1.2.1 | Where-Object Status -eq abandoned | Export-BackfillRollback</code>
///   <para>Writes a complete rollback script into the folder of each abandoned run of the job.</para>
/// </example>
[Cmdlet(VerbsData.Export, "BackfillRollback", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(BackfillRollbackScript))]
public sealed class ExportBackfillRollbackCommand : DatabaseCmdlet
{
    /// <summary>The backfill run. Binds from pipeline objects' RunId property.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(RunIdCompleter))]
    public Guid RunId { get; set; }

    /// <summary>The file to write, or a folder for rollback_YYYY-MM-DD.sql; default: the run's backfill_logs folder.</summary>
    /// <default>the run's backfill_logs folder</default>
    [Parameter(Position = 1)]
    public string? Path { get; set; }

    protected override void ProcessRecord()
    {
        var connection = ResolveConnection();
        var path = Path is null ? null : GetUnresolvedProviderPathFromPSPath(Path);
        if (!ShouldProcess(path ?? $"the folder of run {RunId}", $"Write the rollback script of backfill run {RunId} from the ledger of {connection}"))
        {
            return;
        }

        WriteObject(RunEngine((observer, ct) => Heartbeat.Track(BackfillRunFiles.ExportRollbackAsync(connection, RunId, path, ct), observer,
            "Export-BackfillRollback", $"Writing the rollback script of run {RunId} from the ledger")));
    }
}
