using System.Management.Automation;
using DataOps.Engine.Backfill;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Gets backfill, dry-run and undo runs with their ledger counts.</para>
/// <para type="description">Get-BackfillRun reads dataops.run and the ledger: each run's kind, status, times, how many items it applied,
/// failed, skipped and undid, and its output folder. Newest first.</para>
/// <para type="link">Invoke-Backfill</para>
/// <para type="link">Undo-Backfill</para>
/// </summary>
/// <example>
///   <code>Get-BackfillRun -Job results-v1.2.1</code>
///   <para>Every run of the job.</para>
/// </example>
/// <example>
///   <code>(Get-BackfillRun -RunId $id).OutputDirectory</code>
///   <para>Where a run wrote its summary and rollback script.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "BackfillRun")]
[OutputType(typeof(BackfillRun))]
public sealed class GetBackfillRunCommand : DatabaseCmdlet
{
    /// <summary>Only runs of this job (its name).</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    public string? Job { get; set; }

    /// <summary>Only this run.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(RunIdCompleter))]
    public Guid? RunId { get; set; }

    protected override void ProcessRecord()
    {
        if (!TryResolveConnection(out var connection))
        {
            return;
        }

        // One run id of several (pipeline input): a failure or an unknown id is non-terminating.
        if (!TryRunEngine((_, ct) => UndoRunner.ListRunsAsync(connection, Job, RunId, ct), out var runs))
        {
            return;
        }

        if (RunId is { } id && runs.Count == 0)
        {
            WriteError(ToErrorRecord(new Engine.DataOpsException("RunNotFound", Engine.DataOpsErrorKind.ObjectNotFound,
                $"No backfill, dry run or undo run {id}{(Job is null ? string.Empty : $" of job '{Job}'")} is recorded in {connection}. Get-BackfillRun lists the runs there.", id)));
            return;
        }

        WriteObject(runs.Select(r => r with { Connection = connection }), enumerateCollection: true);
    }
}
