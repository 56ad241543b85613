using DataOps.Engine.Connections;

namespace DataOps.Engine.Backfill;

/// <summary>What happened to an item (BackfillItemResult.Status): names, not an enum, so that ConvertTo-Json and Export-Csv write the name (an enum property is written as a number).</summary>
public static class BackfillItemStatus
{
    public const string Applied = nameof(Applied);
    public const string Skipped = nameof(Skipped);
    public const string Failed = nameof(Failed);

    /// <summary>-DryRun: the steps ran and were rolled back.</summary>
    public const string WouldApply = nameof(WouldApply);

    /// <summary>Undo-Backfill put the before-image back.</summary>
    public const string Restored = nameof(Restored);

    /// <summary>Undo-Backfill found a row changed since the run and restored nothing of the item.</summary>
    public const string Drifted = nameof(Drifted);

    /// <summary>A fingerprinted plan's rows changed since the plan was made; the item was not applied.</summary>
    public const string Stale = nameof(Stale);

    /// <summary>Every name, in order.</summary>
    public static readonly string[] All = [Applied, Skipped, Failed, WouldApply, Restored, Drifted, Stale];
}

/// <summary>Why an item failed (BackfillItemResult.ErrorCategory): names, not an enum, so that ConvertTo-Json and Export-Csv write the name (an enum property is written as a number).</summary>
public static class BackfillErrorCategory
{
    public const string None = nameof(None);
    public const string Constraint = nameof(Constraint);
    public const string Timeout = nameof(Timeout);

    /// <summary>The item waited -LockTimeout for rows another session holds (55P03) on each of its 1 + -LockRetries attempts, or lost a deadlock (40P01) on every attempt.</summary>
    public const string LockTimeout = nameof(LockTimeout);
    public const string VerifyFailed = nameof(VerifyFailed);
    public const string ConnectionLost = nameof(ConnectionLost);
    public const string Drift = nameof(Drift);
    public const string Other = nameof(Other);

    /// <summary>Every name, in order.</summary>
    public static readonly string[] All = [None, Constraint, Timeout, LockTimeout, VerifyFailed, ConnectionLost, Drift, Other];
}

/// <summary>What happened to one item.</summary>
public sealed record BackfillItemResult
{
    /// <summary>The database this came from; a cmdlet it is piped to acts there (binds to -Connection).</summary>
    public DataOpsConnection? Connection { get; init; }

    public Guid RunId { get; init; }

    public required string Job { get; init; }

    public required string Key { get; init; }

    public required string Status { get; init; }

    /// <summary>Rows the steps reported as changed (for Undo: rows restored).</summary>
    public int RowsChanged { get; init; }

    public TimeSpan Duration { get; init; }

    public int Attempts { get; init; }

    public string ErrorCategory { get; init; } = BackfillErrorCategory.None;

    public string? Error { get; init; }

    /// <summary>
    /// For an item that failed as LockTimeout: the session that held its rows (pid, query text, state,
    /// transaction age), when it was found; the Error text names it too.
    /// </summary>
    public LockBlocker? Blocker { get; init; }

    /// <summary>
    /// The item failed because the database stayed unreachable through every retry (not an HTTP
    /// endpoint): the run stops, since the next items would fail the same way.
    /// </summary>
    internal bool DatabaseUnreachable { get; init; }

    public override string ToString() => $"{Key}: {Status}{(Error is null ? string.Empty : " - " + Error)}";
}

/// <summary>Options of one Invoke-Backfill run.</summary>
public sealed record BackfillOptions
{
    /// <summary>Overrides the job's throttle; 0 runs unthrottled.</summary>
    public int? ItemsPerMinute { get; init; }

    public required string OutputDirectory { get; init; }

    public int MaxFailures { get; init; } = 5;

    /// <summary>
    /// How long an item waits for a row lock another session holds before the attempt fails (55P03);
    /// null: the job file's $.lockTimeout, else <see cref="DefaultLockTimeout"/>. Between
    /// <see cref="MinLockTimeout"/> and <see cref="MaxLockTimeout"/>.
    /// </summary>
    public TimeSpan? LockTimeout { get; init; }

    /// <summary>
    /// How often an item whose lock wait timed out runs again (after a backoff with jitter) before it
    /// fails as LockTimeout; null: the job file's $.lockRetries, else <see cref="DefaultLockRetries"/>.
    /// </summary>
    public int? LockRetries { get; init; }

    public static readonly TimeSpan DefaultLockTimeout = Jobs.BackfillJob.DefaultLockTimeout;

    public static readonly TimeSpan MinLockTimeout = Jobs.BackfillJob.MinLockTimeout;

    /// <summary>An item's statement timeout: a longer lock wait would end as a statement timeout anyway.</summary>
    public static readonly TimeSpan MaxLockTimeout = Jobs.BackfillJob.MaxLockTimeout;

    public const int DefaultLockRetries = Jobs.BackfillJob.DefaultLockRetries;

    public const int MinLockRetries = Jobs.BackfillJob.MinLockRetries;

    public const int MaxLockRetries = Jobs.BackfillJob.MaxLockRetries;

    /// <summary>The lock timeout a run of <paramref name="job"/> uses: the option, else the job file's, else the default.</summary>
    internal TimeSpan LockTimeoutFor(Jobs.BackfillJob job) => LockTimeout ?? job.LockTimeout ?? DefaultLockTimeout;

    /// <summary>The lock retries a run of <paramref name="job"/> uses: the option, else the job file's, else the default.</summary>
    internal int LockRetriesFor(Jobs.BackfillJob job) => LockRetries ?? job.LockRetries ?? DefaultLockRetries;

    /// <summary>
    /// The database signals the run waits for; null: the job file's $.throttle.signals. Invoke-Backfill builds them from the job's
    /// and -MaxReplicaLag, -MaxRetainedWal, -SignalCheckInterval (<see cref="Jobs.ThrottleSignals.WithParameters"/>).
    /// </summary>
    public IReadOnlyList<Jobs.ThrottleSignal>? Signals { get; init; }

    /// <summary>The signals a run of <paramref name="job"/> waits for: the option, else the job file's.</summary>
    internal IReadOnlyList<Jobs.ThrottleSignal> SignalsFor(Jobs.BackfillJob job) => Signals ?? job.Signals;

    /// <summary>Re-apply items the ledger shows as applied (Invoke-Backfill -Reapply).</summary>
    public bool Reapply { get; init; }

    public bool DryRun { get; init; }

    /// <summary>The keys to run, when the caller has already resolved them (-WhatIf listing, plans).</summary>
    public IReadOnlyList<string>? Keys { get; init; }

    /// <summary>Values of {credential:NAME} secrets (from -Secret).</summary>
    public IReadOnlyDictionary<string, string>? Credentials { get; init; }

    /// <summary>Secrets already resolved by the caller (it checked them before anything ran).</summary>
    public IReadOnlyDictionary<string, string>? ResolvedSecrets { get; init; }

    /// <summary>
    /// The Prometheus text file (node_exporter textfile collector) the run rewrites about once a second and at its end;
    /// null: the job file's $.metrics.path, else none.
    /// </summary>
    public string? MetricsPath { get; init; }

    /// <summary>
    /// Workers that claim the run's items from the database (Invoke-Backfill -Workers): the run publishes its items
    /// as a queue that other processes can join (<see cref="JoinRunId"/>), and its rate is the run's across all of
    /// them. Null: the in-process scheduler (one worker, or the job's maxConcurrency).
    /// </summary>
    public int? Workers { get; init; }

    /// <summary>The most workers one process runs (-Workers).</summary>
    public const int MaxWorkers = 64;

    /// <summary>Join this run's workers (Invoke-Backfill -RunId -Join) instead of starting a run: set by <see cref="BackfillRunner.PrepareJoinAsync"/>.</summary>
    public Guid? JoinRunId { get; init; }

    /// <summary>The joined run's item count (from its queue).</summary>
    internal int JoinItems { get; init; }

    /// <summary>Reasons to wait the run asks before each item, besides the rate (tests hold a run with one).</summary>
    internal IReadOnlyList<IThrottleGate>? Gates { get; init; }

    /// <summary>Hides secret values from every message; shared with the run log.</summary>
    public Logging.SecretRedactor? Redactor { get; init; }
}

/// <summary>A recorded run (backfill, dry run or undo) with its ledger counts.</summary>
public sealed record BackfillRun
{
    /// <summary>The database this came from; a cmdlet it is piped to acts there (binds to -Connection).</summary>
    public DataOpsConnection? Connection { get; init; }

    public Guid RunId { get; init; }

    public required string Kind { get; init; }

    public required string Job { get; init; }

    public required string Status { get; init; }

    public DateTimeOffset StartedAt { get; init; }

    public DateTimeOffset? FinishedAt { get; init; }

    public long Applied { get; init; }

    public long Failed { get; init; }

    public long Undone { get; init; }

    public long Skipped { get; init; }

    public string? OutputDirectory { get; init; }

    /// <summary>Why the run ended as it did (failed, stopped, abandoned), when it says.</summary>
    public string? Reason { get; init; }

    /// <summary>
    /// What a live run is doing now, as it last said (Core/0009): running, suspended (Suspend-Backfill),
    /// throttled (a reason to wait besides the rate, in StateReason), stopping or aborting (Stop-Backfill).
    /// For a run that ended: its Status.
    /// </summary>
    public string State { get; init; } = "running";

    /// <summary>Why a live run is suspended, throttled or stopping, and who asked.</summary>
    public string? StateReason { get; init; }

    /// <summary>When a live run entered its State.</summary>
    public DateTimeOffset? StateAt { get; init; }
    /// <summary>A run started with -Workers: the items it published for its workers to claim; null for other runs.</summary>
    public int? QueuedItems { get; init; }

    /// <summary>A live run started with -Workers: the workers of every process working on it now (the starting one and those that joined); 0 otherwise.</summary>
    public int Workers { get; init; }

    /// <summary>A live run started with -Workers: the processes working on it now.</summary>
    public int WorkerProcesses { get; init; }

    /// <summary>The time the run waited, per reason (replica lag, retained WAL, a query's name, signal unavailable ...); empty when it never waited.</summary>
    public IReadOnlyDictionary<string, TimeSpan> ThrottledTime { get; init; } = new Dictionary<string, TimeSpan>();

    /// <summary>The time the run waited for any reason but its rate.</summary>
    public TimeSpan Throttled => ThrottledTime.Values.Aggregate(TimeSpan.Zero, (a, b) => a + b);

    /// <summary>Each throttle signal of the run: its limit and the largest value seen.</summary>
    public IReadOnlyList<BackfillSignalPeak> Signals { get; init; } = [];

    public override string ToString() => $"{Job} {Kind} {RunId} ({Status})";
}
