using System.Management.Automation;
using DataOps.Engine;
using DataOps.Engine.Backfill;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Gets the items of a backfill or undo run as its ledger recorded them (a dry run records none: its items are in its execution_results.json).</para>
/// <para type="description">Get-BackfillItem reads the ledger rows of one run, in the order they were committed: each item's key,
/// status (Applied, Failed or Stale for a backfill; Restored or Drifted for an undo), rows changed, attempts, duration, error category
/// and error, and whether an undo restored it since (UndoneBy) or a later run applied it again (SupersededBy). -IncludeImages adds the
/// rows before and after the item ran: BeforeImage and AfterImage as objects ({table: [rows]}), BeforeImageJson and AfterImageJson as
/// the ledger's text. Without it the images are not read. A row of a table with json or jsonb columns also holds their exact text
/// under "dataops:json" (and "dataops:holds-json" for arrays and composite types that contain json), SQL NULL as null: to_jsonb alone
/// shows a jsonb null and SQL NULL alike and rewrites json.</para>
/// <para type="description">-RunId binds from the pipeline, so Get-BackfillRun output lists each run's items; an Invoke-Backfill result
/// also binds its Key, so its items come back one for one (an item skipped as already applied is recorded under the run that applied
/// it, and is reported ItemNotFound). -Key takes wildcards; a plain key that the run did not record is an error (ItemNotFound), as is an
/// unknown run (RunNotFound).</para>
/// <para type="link">Get-BackfillRun</para>
/// <para type="link">Invoke-Backfill</para>
/// <para type="link">Undo-Backfill</para>
/// </summary>
/// <example>
///   <code>Get-BackfillRun -JobName results-v1.2.1 | Where-Object Kind -eq backfill | Select-Object -First 1 | Get-BackfillItem</code>
///   <para>Every item of the job's latest backfill run: key, status, rows, duration, attempts and error.</para>
/// </example>
/// <example>
///   <code>Get-BackfillItem -RunId $id -Status Failed | Group-Object ErrorCategory</code>
///   <para>The run's failed items, by why they failed.</para>
/// </example>
/// <example>
///   <code>(Get-BackfillItem -RunId $id -Status Applied -IncludeImages | Select-Object -First 1).AfterImage</code>
///   <para>The rows one applied item left behind, table by table.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "BackfillItem")]
[OutputType(typeof(BackfillItem))]
public sealed class GetBackfillItemCommand : DatabaseCmdlet
{
    /// <summary>The run (backfill or undo; a dry run writes no ledger rows, so it has no items here). Binds from pipeline objects' RunId property (Get-BackfillRun, Invoke-Backfill, Undo-Backfill).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(RunIdCompleter))]
    public Guid RunId { get; set; }

    /// <summary>Only items whose key matches; wildcards allowed. Binds from pipeline objects' Key property (Invoke-Backfill results).</summary>
    [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    public string[] Key { get; set; } = [];

    /// <summary>Only items with this status: Applied, Failed, Stale (a backfill run), Restored, Drifted (an undo run).</summary>
    [Parameter]
    [ValidateSet(BackfillItemStatus.Applied, BackfillItemStatus.Failed, BackfillItemStatus.Stale, BackfillItemStatus.Restored, BackfillItemStatus.Drifted)]
    public string[] Status { get; set; } = [];

    /// <summary>Reads the before and after images too (BeforeImage, AfterImage as objects; BeforeImageJson, AfterImageJson as text).</summary>
    [Parameter]
    public SwitchParameter IncludeImages { get; set; }

    protected override void ProcessRecord()
    {
        if (!TryResolveConnection(out var connection))
        {
            return;
        }

        var patterns = Key.Select(k => (Key: k, Wildcard: WildcardPattern.Get(k, WildcardOptions.IgnoreCase))).ToList();
        var found = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var filter = new BackfillItemFilter
        {
            Statuses = Status,
            KeysLike = [.. Key.Select(WildcardLike.ToLike)],
            IncludeImages = IncludeImages,
            // A key also matches itself: a piped key may hold wildcard characters ([1]).
            KeyMatches = patterns.Count == 0 ? null : key =>
            {
                var match = patterns.Any(p => string.Equals(p.Key, key, StringComparison.OrdinalIgnoreCase) || WildcardMatches(p.Wildcard, key));
                if (match)
                {
                    found.Add(key);
                }

                return match;
            },
        };

        // One run id of several (pipeline input): an unknown run is an error for that run only.
        // (A keyset chunk's key, ["lo","hi"], is not a valid wildcard pattern: it matches itself only.)
        var listed = TryStreamEngine((_, ct) => Stamped(BackfillItems.ListAsync(connection, RunId, filter, ct), ToPSObject, ct));
        foreach (var key in listed ? Key.Where(k => !WildcardPattern.ContainsWildcardCharacters(k) && !found.Contains(k)) : [])
        {
            WriteError(ToErrorRecord(new DataOpsException("ItemNotFound", DataOpsErrorKind.ObjectNotFound,
                $"Run {RunId} recorded no item '{key}'{(Status.Length == 0 ? string.Empty : $" with status {string.Join(" or ", Status)}")} in {connection}. " +
                "An item skipped because an earlier run had applied it is recorded under that run; Get-BackfillItem -RunId <run> lists what a run recorded.",
                key)));
        }
    }

    private static PSObject ToPSObject(BackfillItem item)
    {
        var result = new PSObject(item);
        result.Properties.Add(new PSNoteProperty("BeforeImage", JsonObjects.FromJson(item.BeforeImageJson)));
        result.Properties.Add(new PSNoteProperty("AfterImage", JsonObjects.FromJson(item.AfterImageJson)));
        return result;
    }

    /// <summary>A key given as a pattern that is not a valid wildcard (a keyset chunk's ["lo","hi"]) matches only itself, compared above.</summary>
    private static bool WildcardMatches(WildcardPattern pattern, string key)
    {
        try
        {
            return pattern.IsMatch(key);
        }
        catch (WildcardPatternException)
        {
            return false;
        }
    }
}
