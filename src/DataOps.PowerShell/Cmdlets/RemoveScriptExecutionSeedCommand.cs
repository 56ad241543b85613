using System.Management.Automation;
using DataOps.Engine.Logging;
using DataOps.Engine;
using DataOps.Engine.Seeding;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Removes the script_execution rows that New-ScriptExecutionSeed loaded, and nothing else.</para>
/// <para type="description">Each seed run recorded the id range it loaded in dataops.seed_run; Remove-ScriptExecutionSeed deletes
/// exactly those rows, one run per transaction, marks the run removed and returns it with the number of rows removed. Rows
/// written by anything else are never touched. Without -SeedRunId every completed seed run is removed. The prerequisites
/// (dataops-seed-script-N references, their versions, schedules and triggers) are kept for the next seed.</para>
/// <para type="link">New-ScriptExecutionSeed</para>
/// </summary>
/// <example>
///   <code>Remove-ScriptExecutionSeed -WhatIf</code>
///   <para>Lists the seed runs that would be removed, with their row counts, without deleting anything.</para>
/// </example>
/// <example>
///   <code>New-ScriptExecutionSeed -Count 1000 | Remove-ScriptExecutionSeed -Confirm:$false</code>
///   <para>Seeds 1,000 rows and removes exactly those rows again, by the SeedRunId property of the result.</para>
/// </example>
[Cmdlet(VerbsCommon.Remove, "ScriptExecutionSeed", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(SeedRun))]
public sealed class RemoveScriptExecutionSeedCommand : DatabaseCmdlet
{
    /// <summary>The seed runs to remove. Default: every completed seed run. Binds from pipeline objects' SeedRunId property.</summary>
    /// <default>every completed seed run</default>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateRange(1, long.MaxValue)]
    [ArgumentCompleter(typeof(SeedRunIdCompleter))]
    public long[]? SeedRunId { get; set; }

    /// <summary>Skips confirmation prompts.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        if (!TryResolveConnection(out var connection))
        {
            return;
        }

        var runs = new List<SeedRun>();
        foreach (var id in SeedRunId?.Cast<long?>() ?? [null])
        {
            var found = RunEngine((_, ct) => ScriptExecutionSeeder.ListAsync(connection, id, all: id is not null, ct));
            if (id is not null && found.Count == 0)
            {
                WriteError(ToErrorRecord(new DataOpsException("SeedRunNotFound", DataOpsErrorKind.ObjectNotFound,
                    $"There is no seed run {id} in {connection}.", id)));
                continue;
            }

            runs.AddRange(found);
        }

        foreach (var run in runs)
        {
            if (run.Status != "completed")
            {
                WriteError(ToErrorRecord(new DataOpsException("SeedRunNotRemovable", DataOpsErrorKind.InvalidOperation,
                    $"Seed run {run.SeedRunId} is {run.Status}; only completed runs have rows to remove.", run.SeedRunId)));
                continue;
            }

            var action = $"Delete the {run.InsertedCount:N0} script_execution rows with ids {run.FirstId}..{run.LastId}";
            if (!ShouldWrite(connection, $"seed run {run.SeedRunId} in {connection}", action, Force))
            {
                continue;
            }

            var removed = RunEngineLogged("Remove-ScriptExecutionSeed", (log, observer, ct) =>
                Heartbeat.Track(ScriptExecutionSeeder.RemoveAsync(connection, run, log, ct), observer, "Remove-ScriptExecutionSeed", $"Deleting the rows of seed run {run.SeedRunId}"));
            WriteObject(removed with { Connection = connection });
        }
    }
}
