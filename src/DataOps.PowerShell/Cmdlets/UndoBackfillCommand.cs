using System.Management.Automation;
using DataOps.Engine.Backfill;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Restores the before-images of a backfill run, refusing rows changed since the run.</para>
/// <para type="description">Undo-Backfill puts back what a run changed, newest item first, one transaction per item: rows the run
/// inserted are deleted, rows it deleted are inserted again, changed columns get their old values (json and jsonb columns exactly:
/// a jsonb null stays a JSON null, SQL NULL stays NULL, json text keeps its key order, duplicate keys and whitespace). A row is
/// restored only if it still equals the after-image the run captured (a jsonb column that changed between JSON null and SQL NULL
/// counts); otherwise the item is reported Drifted and nothing of it changes. Restored items
/// are recorded in the ledger, so Invoke-Backfill applies them again. The undo holds the job's lease while it restores: it is refused
/// (BackfillRunInProgress) while the run, or any run of the job, is still applying, and no run of the job starts until it is done.
/// An item whose rows another session holds waits 5 seconds, then is reported Failed (LockTimeout) and the undo goes on; a lost
/// connection or a server restart retries the item on a new connection. Run Undo-Backfill again to restore what is left: items
/// already restored are not touched again, and a run whose items are all restored is reported RunAlreadyUndone.
/// Only a backfill run can be undone: the id of a dry run (which changed nothing) is reported UndoOfDryRun, that of an undo run
/// UndoOfUndoRun (run the job again to apply its items again), and an unknown id RunNotFound; each is an error for that run only.
/// Find the run by -RunId, or by -Path to its folder or its
/// execution_results.json. It asks for confirmation (ConfirmImpact High) unless -Force or -Confirm:$false.</para>
/// <para type="link">Invoke-Backfill</para>
/// <para type="link">Get-BackfillRun</para>
/// </summary>
/// <example>
///   <code>Undo-Backfill -RunId 6f1c2a4e-0d7b-4c1e-9a55-3b2f4c6d7e8f</code>
///   <para>Restores that run's rows after confirmation and lists each item as Restored or Drifted.</para>
/// </example>
/// <example>
///   <code>Get-BackfillRun -JobName results-v1.2.1 | Where-Object Kind -eq backfill | Undo-Backfill -Confirm:$false</code>
///   <para>Undoes every backfill run of the job, newest first, without prompting.</para>
/// </example>
[Cmdlet(VerbsCommon.Undo, "Backfill", DefaultParameterSetName = ByRunId, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(BackfillItemResult))]
public sealed class UndoBackfillCommand : DatabaseCmdlet
{
    private const string ByRunId = "ByRunId";
    private const string ByPath = "ByPath";

    /// <summary>The run to undo. Binds from pipeline objects' RunId property.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ByRunId, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(RunIdCompleter))]
    public Guid RunId { get; set; }

    /// <summary>The run's folder, or its backfill_logs/execution_results.json.</summary>
    [Parameter(Mandatory = true, ParameterSetName = ByPath)]
    public string Path { get; set; } = string.Empty;

    /// <summary>Skips the confirmation prompt.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        if (!TryResolveConnection(out var connection))
        {
            return;
        }

        var runId = ParameterSetName == ByPath
            ? RunEngine((_, _) => UndoRunner.RunIdFromPath(GetUnresolvedProviderPathFromPSPath(Path)))
            : RunId;
        // An unknown or already undone run is an error for this run id only: the next piped one goes on.
        if (!TryRunEngine((_, ct) => UndoRunner.CheckAsync(connection, runId, ct), out var check))
        {
            return;
        }

        if (check.Applied == 0)
        {
            WriteWarning($"Run {runId} of job '{check.Job}' applied no items: there is nothing to undo.");
            return;
        }

        if (!ShouldWrite(connection, $"backfill run {runId} of job {check.Job} on {connection}", $"Restore the before-images of {check.Remaining} applied items", Force))
        {
            return;
        }

        StreamEngineLogged("Undo-Backfill", (log, observer, ct) => Stamped(UndoRunner.UndoAsync(connection, runId, log, observer, ct), r => r with { Connection = connection }, ct));
    }
}
