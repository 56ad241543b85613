using System.Runtime.CompilerServices;
using DataOps.Engine.Connections;

namespace DataOps.Engine.Backfill;

/// <summary>One ledger row of a run (Get-BackfillItem): what happened to one item, as recorded.</summary>
public sealed record BackfillItem
{
    /// <summary>The database this came from; a cmdlet it is piped to acts there (binds to -Connection).</summary>
    public DataOpsConnection? Connection { get; init; }

    public Guid RunId { get; init; }

    public required string Job { get; init; }

    public required string Key { get; init; }

    /// <summary>Applied, Failed or Stale (a backfill run), Restored or Drifted (an undo run).</summary>
    public required string Status { get; init; }

    /// <summary>Rows the item changed (for an undo: rows restored); null where the ledger has none (a failed item).</summary>
    public int? RowsChanged { get; init; }

    public int? Attempts { get; init; }

    public TimeSpan? Duration { get; init; }

    public DateTimeOffset StartedAt { get; init; }

    public DateTimeOffset? FinishedAt { get; init; }

    public string ErrorCategory { get; init; } = BackfillErrorCategory.None;

    public string? Error { get; init; }

    /// <summary>The undo run that restored this applied item since, if any.</summary>
    public Guid? UndoneBy { get; init; }

    /// <summary>The run that applied this item again (Invoke-Backfill -Reapply) since, if any.</summary>
    public Guid? SupersededBy { get; init; }

    /// <summary>The rows before the item ran, as the ledger's JSON ({"table": [rows]}); only with -IncludeImages.</summary>
    public string? BeforeImageJson { get; init; }

    /// <summary>The rows after the item ran, as the ledger's JSON; only with -IncludeImages.</summary>
    public string? AfterImageJson { get; init; }

    /// <summary>The ledger row's id (commit order).</summary>
    public long LedgerId { get; init; }

    public override string ToString() => $"{Key}: {Status}{(Error is null ? string.Empty : " - " + Error)}";
}

/// <summary>Which of a run's ledger rows to read (Get-BackfillItem's filters).</summary>
public sealed record BackfillItemFilter
{
    /// <summary>Only these statuses (Applied, Failed, Stale, Restored, Drifted); empty: all.</summary>
    public IReadOnlyList<string> Statuses { get; init; } = [];

    /// <summary>Only keys that match one of these ILIKE patterns; empty: all.</summary>
    public IReadOnlyList<string> KeysLike { get; init; } = [];

    /// <summary>The exact test of a key, after <see cref="KeysLike"/> narrowed the rows in the database (PowerShell's wildcards have character classes, LIKE has not).</summary>
    public Func<string, bool>? KeyMatches { get; init; }

    /// <summary>Read the before and after images too.</summary>
    public bool IncludeImages { get; init; }
}

/// <summary>A run's items as the ledger recorded them.</summary>
public static class BackfillItems
{
    /// <summary>The ledger's status for each item status name a run reports.</summary>
    private static readonly (string Ledger, string Status)[] Statuses =
    [
        ("applied", BackfillItemStatus.Applied), ("failed", BackfillItemStatus.Failed), ("stale", BackfillItemStatus.Stale),
        ("undone", BackfillItemStatus.Restored), ("drifted", BackfillItemStatus.Drifted),
    ];

    /// <summary>The status names an item of the ledger can have, in order.</summary>
    public static IReadOnlyList<string> StatusNames { get; } = [.. Statuses.Select(s => s.Status)];

    /// <summary>The run's items in commit order; RunNotFound when the database records no such run.</summary>
    public static async IAsyncEnumerable<BackfillItem> ListAsync(DataOpsConnection connection, Guid runId, BackfillItemFilter filter, [EnumeratorCancellation] CancellationToken ct = default)
    {
        await BackfillRunner.RequireCoreAsync(connection, ct).ConfigureAwait(false);
        await using var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        if (await Read(() => LedgerStore.RunAsync(conn, runId, ct)).ConfigureAwait(false) is null)
        {
            throw new DataOpsException("RunNotFound", DataOpsErrorKind.ObjectNotFound,
                $"No backfill, dry run or undo run {runId} is recorded in {connection}. Get-BackfillRun lists the runs there.", runId);
        }

        var statuses = filter.Statuses.Count == 0 ? null
            : Statuses.Where(s => filter.Statuses.Contains(s.Status, StringComparer.OrdinalIgnoreCase)).Select(s => s.Ledger).ToArray();
        var keys = filter.KeysLike.Count == 0 ? null : filter.KeysLike.ToArray();
        var rows = LedgerStore.ItemRowsAsync(conn, runId, statuses, keys, filter.IncludeImages).WithCancellation(ct).ConfigureAwait(false).GetAsyncEnumerator();
        try
        {
            while (await Read(async () => await rows.MoveNextAsync()).ConfigureAwait(false))
            {
                var r = rows.Current;
                if (filter.KeyMatches is { } matches && !matches(r.Key))
                {
                    continue;
                }

                yield return new BackfillItem
                {
                    Connection = connection, LedgerId = r.LedgerId, RunId = runId, Job = r.Job, Key = r.Key,
                    Status = Statuses.FirstOrDefault(s => s.Ledger == r.Status).Status ?? r.Status,
                    RowsChanged = r.RowsChanged, Attempts = r.Attempts, Duration = r.DurationMs is { } ms ? TimeSpan.FromMilliseconds(ms) : null,
                    StartedAt = Utc(r.StartedAt), FinishedAt = r.FinishedAt is { } f ? Utc(f) : null,
                    ErrorCategory = BackfillErrorCategory.All.FirstOrDefault(n => n == r.ErrorCategory) ?? BackfillErrorCategory.None, Error = r.Error,
                    UndoneBy = r.UndoneBy, SupersededBy = r.SupersededBy, BeforeImageJson = r.BeforeImage, AfterImageJson = r.AfterImage,
                };
            }
        }
        finally
        {
            await rows.DisposeAsync();
        }

        async Task<T> Read<T>(Func<Task<T>> read)
        {
            try
            {
                return await read().ConfigureAwait(false);
            }
            catch (Exception ex) when (!(ex is OperationCanceledException && ct.IsCancellationRequested))
            {
                throw Database.Translate(ex, connection);
            }
        }
    }

    private static DateTimeOffset Utc(DateTime t) => new(DateTime.SpecifyKind(t, DateTimeKind.Utc));
}
