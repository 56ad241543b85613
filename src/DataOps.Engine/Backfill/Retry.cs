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
    internal static ResiliencePipeline Pipeline(RunLog log) => new ResiliencePipelineBuilder()
        .AddRetry(new RetryStrategyOptions
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
        })
        .Build();

    /// <summary>
    /// Whether running the item again on a new connection can succeed: the connection or the server
    /// went away (<see cref="Database.IsConnectionLevel"/>: pg_terminate_backend, a restart, a crash,
    /// idle_session_timeout, no free connection slot), or the transaction lost a deadlock or a
    /// serialization check (40P01, 40001). A lock timeout (55P03) is not: the other session may hold
    /// its rows for hours, so the item fails as LockTimeout and the run goes on.
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
