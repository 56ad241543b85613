using System.Net.Sockets;
using DataOps.Engine.Connections;
using DataOps.Engine.Logging;
using Npgsql;
using Polly;
using Polly.Retry;

namespace DataOps.Engine.Backfill;

/// <summary>When an item (or an undo's item) is run again after a failure, and how long the run waits first.</summary>
internal static class Retry
{
    /// <summary>How many times an item is run again after a transient failure.</summary>
    internal const int MaxRetries = 5;

    /// <summary>
    /// Transient connection failures retry the whole item on a new connection: up to
    /// <see cref="MaxRetries"/> times, waiting 0.25, 0.5, 1, 2 and 4 s (with jitter), which rides out a
    /// server restart of several seconds.
    /// </summary>
    internal static ResiliencePipeline Pipeline(RunLog log) => new ResiliencePipelineBuilder().AddRetry(TransientRetry(log)).Build();

    /// <summary>
    /// An item's pipeline: lock timeouts (outer) and transient failures (inner, <see cref="Pipeline"/>).
    /// A lock timeout (55P03) runs the item again up to <paramref name="lockRetries"/> times after a
    /// backoff with jitter that starts at the lock timeout (<see cref="LockBackoff"/>) and doubles, so a
    /// short transaction holding the rows is waited out without holding our own locks meanwhile; each
    /// attempt waits the short lock timeout again. Then the item fails as LockTimeout and the run goes on.
    /// </summary>
    internal static ResiliencePipeline ItemPipeline(RunLog log, int lockRetries, TimeSpan lockTimeout)
    {
        var builder = new ResiliencePipelineBuilder();
        if (lockRetries > 0)
        {
            builder.AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<PostgresException>(IsLockTimeout),
                MaxRetryAttempts = lockRetries,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = LockBackoff(lockTimeout),
                MaxDelay = MaxLockBackoff,
                OnRetry = args =>
                {
                    if (args.Context.Properties.TryGetValue(LockWaitKey, out var wait))
                    {
                        log.Information(
                            "Item {Key} waited {LockTimeout} for rows another session holds and gave up (attempt {Attempt} of {Attempts}): {Blocker}; trying again in {Delay}",
                            wait.Key, lockTimeout, wait.Attempts, wait.Attempts + lockRetries - args.AttemptNumber, (object?)wait.Blocker ?? "the session holding them was not found", args.RetryDelay);
                    }

                    return default;
                },
            });
        }

        return builder.AddRetry(TransientRetry(log)).Build();
    }

    /// <summary>The first wait before a lock-timed-out item runs again: its lock timeout, from 50 ms to 1 s (then doubling, with jitter).</summary>
    internal static TimeSpan LockBackoff(TimeSpan lockTimeout) =>
        lockTimeout < TimeSpan.FromMilliseconds(50) ? TimeSpan.FromMilliseconds(50) : lockTimeout > TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : lockTimeout;

    /// <summary>The longest wait between two lock attempts of an item.</summary>
    internal static readonly TimeSpan MaxLockBackoff = TimeSpan.FromSeconds(10);

    /// <summary>
    /// About how long an item whose rows stay locked takes before it fails as LockTimeout: every
    /// attempt waits the lock timeout, and the nominal backoffs (doubling from <see cref="LockBackoff"/>
    /// up to <see cref="MaxLockBackoff"/>; jitter moves each one a little) come between them. Whole seconds.
    /// </summary>
    internal static TimeSpan LockWorstCase(TimeSpan lockTimeout, int lockRetries)
    {
        var total = lockTimeout * (lockRetries + 1);
        var backoff = LockBackoff(lockTimeout);
        for (var i = 0; i < lockRetries; i++, backoff *= 2)
        {
            total += backoff < MaxLockBackoff ? backoff : MaxLockBackoff;
        }

        return TimeSpan.FromSeconds(Math.Ceiling(total.TotalSeconds));
    }

    /// <summary>What the item's attempts learned about its lock waits (the key, attempts so far, the blocker last seen).</summary>
    internal static readonly ResiliencePropertyKey<LockWait> LockWaitKey = new("dataops.lockWait");

    /// <summary>The server gave up waiting for a lock (lock_timeout).</summary>
    internal static bool IsLockTimeout(Exception ex) => ex is PostgresException { SqlState: LockNotAvailable };

    internal const string LockNotAvailable = "55P03";

    private static RetryStrategyOptions TransientRetry(RunLog log) => new()
    {
        ShouldHandle = new PredicateBuilder().Handle<Exception>(IsTransient),
        MaxRetryAttempts = MaxRetries,
        BackoffType = DelayBackoffType.Exponential,
        UseJitter = true,
        Delay = TimeSpan.FromMilliseconds(250),
        OnRetry = args =>
        {
            log.Warning("Transient failure ({Error}); retrying the item whole, attempt {Attempt}", args.Outcome.Exception?.Message, args.AttemptNumber + 2);
            return default;
        },
    };

    /// <summary>
    /// Whether running the item again on a new connection can succeed: the connection or the server
    /// went away (<see cref="Database.IsConnectionLevel"/>: pg_terminate_backend, a restart, a crash,
    /// idle_session_timeout, no free connection slot), or the transaction lost a deadlock or a
    /// serialization check (40P01, 40001). A lock timeout (55P03) is not: the other session may hold
    /// its rows for hours, so it gets a few retries of its own (<see cref="ItemPipeline"/>), then the
    /// item fails as LockTimeout and the run goes on.
    /// </summary>
    internal static bool IsTransient(Exception ex) => ex switch
    {
        PostgresException pg => Database.IsConnectionLevel(pg.SqlState) || pg.SqlState is "40P01" or "40001",
        NpgsqlException n => n.IsTransient,
        DataOpsException d => d.Kind == DataOpsErrorKind.ConnectionError,
        SocketException or IOException => true,
        _ => false,
    };
}

/// <summary>An item's lock waits, shared by its attempts and the lock retry's log line.</summary>
internal sealed class LockWait(string key)
{
    public string Key { get; } = key;

    /// <summary>Attempts so far (the grouped attempt included).</summary>
    public int Attempts { get; set; }

    /// <summary>The session the last attempt waited for, if it was found.</summary>
    public LockBlocker? Blocker { get; set; }
}
