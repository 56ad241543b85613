using System.Management.Automation;
using DataOps.Engine.Backfill;
using DataOps.Engine.Jobs;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Gets backfill, dry-run and undo runs with their ledger counts.</para>
/// <para type="description">Get-BackfillRun reads dataops.run and the ledger: each run's kind, status, times, how many items it applied,
/// failed, skipped and undid, and its output folder. Newest first.</para>
/// <para type="description">-Job is a job file (or mini plan), as on Invoke-Backfill: the runs of the job it names. -JobName takes job
/// names, with wildcards, and binds from piped objects' JobName (a Test-ProdHealth report). Before version 1.1 -Job took the name: a
/// -Job value that is no file and does not look like a path (no folder, no .json) is still read as a name, with a warning to use
/// -JobName.</para>
/// <para type="link">Invoke-Backfill</para>
/// <para type="link">Undo-Backfill</para>
/// </summary>
/// <example>
///   <code>Get-BackfillRun -Job ./examples/jobs/results-v1.2.1.job.json</code>
///   <para>Every run of the job that file describes.</para>
/// </example>
/// <example>
///   <code>Get-BackfillRun -JobName results-*</code>
///   <para>Every run of the jobs whose names start with results-.</para>
/// </example>
/// <example>
///   <code>(Get-BackfillRun -RunId $id).OutputDirectory</code>
///   <para>Where a run wrote its summary and rollback script.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "BackfillRun", DefaultParameterSetName = ByName)]
[OutputType(typeof(BackfillRun))]
public sealed class GetBackfillRunCommand : DatabaseCmdlet
{
    private const string ByName = "ByName";
    private const string ByJobFile = "ByJobFile";

    /// <summary>Only runs of the job this job file (or mini plan) describes; its name is read from the file.</summary>
    /// <remarks>
    /// Not bound from the pipeline: a BackfillRun's Job property is the job's name, and piping runs
    /// (Get-BackfillRun | Get-BackfillRun) binds them by RunId.
    /// </remarks>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ByJobFile)]
    [ArgumentCompleter(typeof(JobFileCompleter))]
    [Alias("LiteralPath")]
    [ValidateNotNullOrEmpty]
    public string Job { get; set; } = string.Empty;

    /// <summary>Only runs of these jobs (their names); wildcards allowed. Binds from pipeline objects' JobName property.</summary>
    [Parameter(ParameterSetName = ByName, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(JobNameCompleter))]
    [ValidateNotNullOrEmpty]
    public string[]? JobName { get; set; }

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

        var names = ParameterSetName == ByJobFile ? [JobNameFromFile()] : JobName;
        var lookups = names is null ? new string?[] { null } : names;
        var runs = new List<BackfillRun>();
        foreach (var name in lookups)
        {
            var pattern = name is not null && WildcardPattern.ContainsWildcardCharacters(name) ? new WildcardPattern(name, WildcardOptions.IgnoreCase) : null;

            // One run id of several (pipeline input): a failure or an unknown id is non-terminating.
            if (!TryRunEngine((_, ct) => pattern is null
                    ? UndoRunner.ListRunsAsync(connection, name, RunId, ct)
                    : UndoRunner.ListRunsAsync(connection, null, RunId, ct, WildcardLike.ToLike(name!)), out var found))
            {
                return;
            }

            runs.AddRange(pattern is null ? found : found.Where(r => r.Job is { } job && pattern.IsMatch(job)));
        }

        if (RunId is { } id && runs.Count == 0)
        {
            var of = names is null ? string.Empty : $" of job {string.Join(" or ", names.Select(n => $"'{n}'"))}";
            WriteError(ToErrorRecord(new Engine.DataOpsException("RunNotFound", Engine.DataOpsErrorKind.ObjectNotFound,
                $"No backfill, dry run or undo run {id}{of} is recorded in {connection}. Get-BackfillRun lists the runs there.", id)));
            return;
        }

        var distinct = runs.DistinctBy(r => r.RunId).OrderByDescending(r => r.StartedAt);
        WriteObject(distinct.Select(r => r with { Connection = connection }), enumerateCollection: true);
    }

    /// <summary>The job's name from its file; a value that names no file and looks like no path is a name (the old -Job).</summary>
    private string JobNameFromFile()
    {
        var path = GetUnresolvedProviderPathFromPSPath(Job);
        if (!File.Exists(path) && Job.IndexOfAny(['/', '\\']) < 0 && !Job.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            WriteWarning($"-Job takes a job file; '{Job}' is no file, so it is read as a job name. Use -JobName {Job} for names.");
            return Job;
        }

        return RunEngine((_, _) => JobFile.Load(path)).Name;
    }
}
