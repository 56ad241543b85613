using Dapper;
using DataOps.Engine.Connections;
using DataOps.Engine.Logging;
using Npgsql;

namespace DataOps.Engine.Backfill;

/// <summary>What an operator asks a live run to do (Suspend-, Resume-, Stop-Backfill, Set-BackfillThrottle).</summary>
public enum BackfillControlAction
{
    Suspend,
    Resume,
    Stop,
    Abort,
    Throttle,
}

/// <summary>A run's control row after a request: what was asked, by whom and when, and what the run said it was doing.</summary>
public sealed record BackfillRunControl
{
    /// <summary>The database this came from; a cmdlet it is piped to acts there (binds to -Connection).</summary>
    public DataOpsConnection? Connection { get; init; }

    public Guid RunId { get; init; }

    public required string Job { get; init; }

    /// <summary>The request just recorded: suspend, resume, stop, abort or throttle.</summary>
    public required string Action { get; init; }

    /// <summary>What the run is asked to be: running, suspended, stopping or aborting.</summary>
    public required string RequestedState { get; init; }

    /// <summary>The rate asked for with Set-BackfillThrottle (0: unthrottled); null: the run's own.</summary>
    public int? ItemsPerMinute { get; init; }

    /// <summary>What the run last said it was doing (running, suspended, throttled, stopping, aborting); it acts on a request within about a second, after the item or group in flight.</summary>
    public required string State { get; init; }

    public string? StateReason { get; init; }

    /// <summary>Who asked: the database role, then the operating-system user and host the command ran as.</summary>
    public required string RequestedBy { get; init; }

    public DateTimeOffset RequestedAt { get; init; }

    public override string ToString() => $"{Job} {RunId} ({Action}: {RequestedState})";
}

/// <summary>
/// The operator's side of a live run's control row (Core/0009): each request checks that the run is
/// live (running and holding its job's lease) with its run row locked FOR SHARE, so the run cannot
/// record its end meanwhile, then records the request in the control row and the action history, in one transaction.
/// </summary>
public static class BackfillControl
{
    /// <summary>The fastest rate Set-BackfillThrottle accepts, as Invoke-Backfill -ItemsPerMinute.</summary>
    public const int MaxItemsPerMinute = 1_000_000;

    public static async Task<BackfillRunControl> RequestAsync(
        DataOpsConnection connection, Guid runId, BackfillControlAction action, int? itemsPerMinute, string osUser, string host, CancellationToken ct)
    {
        if (action == BackfillControlAction.Throttle && itemsPerMinute is not (>= 0 and <= MaxItemsPerMinute))
        {
            throw new DataOpsException("BadItemsPerMinute", DataOpsErrorKind.InvalidArgument,
                $"-ItemsPerMinute {itemsPerMinute} is out of range: give 0 (unthrottled) to {MaxItemsPerMinute}.", itemsPerMinute);
        }

        await BackfillRunner.RequireCoreAsync(connection, ct).ConfigureAwait(false);
        await using var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
        var run = await conn.QuerySingleOrDefaultAsync<LiveRow>(new CommandDefinition(
            """
            SELECT r.kind AS Kind, r.job_name AS Job, r.status AS Status, jl.run_id IS NOT NULL AS HasLease,
                   coalesce(jl.expires_at < clock_timestamp(), false) AS LeaseExpired, jl.host_name AS LeaseHost, jl.process_id AS LeaseProcess,
                   jl.process_started_at AS LeaseProcessStartedAt, rc.requested_state AS RequestedState
            FROM dataops.run r
                 LEFT JOIN dataops.job_lease jl ON jl.job_name = r.job_name AND jl.run_id = r.run_id
                 LEFT JOIN dataops.run_control rc ON rc.run_id = r.run_id
            WHERE r.run_id = @runId
            FOR SHARE OF r
            """, new { runId }, tx, cancellationToken: ct)).ConfigureAwait(false);
        var verb = Verb(action);
        if (run is null)
        {
            throw new DataOpsException("RunNotFound", DataOpsErrorKind.ObjectNotFound,
                $"No run {runId} is recorded in {connection}. Get-BackfillRun lists the runs there; a live one shows Status running.", runId);
        }

        if (run.Kind is not ("backfill" or "dryrun"))
        {
            throw new DataOpsException("BackfillRunNotControllable", DataOpsErrorKind.InvalidOperation,
                $"Run {runId} of job '{run.Job}' is an {run.Kind} run: only backfill and dry runs can be suspended, resumed, stopped or throttled.", runId);
        }

        var status = run.Status != "running" ? run.Status
            : !run.HasLease || run.LeaseExpired || JobLease.HolderGone(runId, run.LeaseHost!, run.LeaseProcess ?? 0, run.LeaseProcessStartedAt) is not null ? "abandoned"
            : "running";
        if (status != "running")
        {
            throw new DataOpsException("BackfillRunNotRunning", DataOpsErrorKind.InvalidOperation,
                $"Run {runId} of job '{run.Job}' is {status}, not running: there is nothing to {verb}. Get-BackfillRun -RunId {runId} says how it ended.", runId)
            { RecommendedAction = $"Get-BackfillRun -RunId {runId}" };
        }

        var ending = run.RequestedState is "stopping" or "aborting";
        if (ending && action is not (BackfillControlAction.Stop or BackfillControlAction.Abort))
        {
            throw new DataOpsException("BackfillRunStopping", DataOpsErrorKind.InvalidOperation,
                $"Run {runId} of job '{run.Job}' is already {run.RequestedState} (Stop-Backfill): it cannot be asked to {verb} any more.", runId);
        }

        // An abort asked for after a stop goes through; a stop after an abort leaves the abort.
        var requested = action switch
        {
            BackfillControlAction.Suspend => "suspended",
            BackfillControlAction.Resume => "running",
            BackfillControlAction.Stop => run.RequestedState == "aborting" ? "aborting" : "stopping",
            BackfillControlAction.Abort => "aborting",
            _ => null,
        };
        var row = await conn.QuerySingleAsync<ControlRow>(new CommandDefinition(
            """
            WITH asked AS (
                INSERT INTO dataops.run_control_action (run_id, action, value, os_user, host_name)
                VALUES (@runId, @action, @value, @osUser, @host)
                RETURNING at, db_user || ' (' || coalesce(os_user, '?') || '@' || coalesce(host_name, '?') || ')' AS who)
            INSERT INTO dataops.run_control AS c (run_id, requested_state, items_per_minute, requested_by, requested_at)
            SELECT @runId, coalesce(@requested::text, 'running'), @perMinute::integer, asked.who, asked.at FROM asked
            ON CONFLICT (run_id) DO UPDATE SET requested_state = coalesce(@requested::text, c.requested_state),
                items_per_minute = coalesce(@perMinute::integer, c.items_per_minute), requested_by = EXCLUDED.requested_by, requested_at = EXCLUDED.requested_at
            RETURNING requested_state AS RequestedState, items_per_minute AS ItemsPerMinute, state AS State, state_reason AS StateReason,
                      requested_by AS RequestedBy, requested_at AS RequestedAt
            """,
            new
            {
                runId, action = action.ToString().ToLowerInvariant(), value = itemsPerMinute?.ToString(System.Globalization.CultureInfo.InvariantCulture),
                osUser, host, requested, perMinute = action == BackfillControlAction.Throttle ? itemsPerMinute : null,
            }, tx, cancellationToken: ct)).ConfigureAwait(false);
        await tx.CommitAsync(ct).ConfigureAwait(false);
        return new BackfillRunControl
        {
            Connection = connection, RunId = runId, Job = run.Job, Action = action.ToString().ToLowerInvariant(), RequestedState = row.RequestedState,
            ItemsPerMinute = row.ItemsPerMinute, State = row.State, StateReason = row.StateReason, RequestedBy = row.RequestedBy,
            RequestedAt = new DateTimeOffset(DateTime.SpecifyKind(row.RequestedAt, DateTimeKind.Utc)),
        };
    }

    private static string Verb(BackfillControlAction action) => action switch
    {
        BackfillControlAction.Suspend => "suspend",
        BackfillControlAction.Resume => "resume",
        BackfillControlAction.Stop => "stop",
        BackfillControlAction.Abort => "abort",
        _ => "throttle",
    };

    private sealed record LiveRow(string Kind, string Job, string Status, bool HasLease, bool LeaseExpired, string? LeaseHost, int? LeaseProcess, DateTime? LeaseProcessStartedAt, string? RequestedState);

    private sealed record ControlRow(string RequestedState, int? ItemsPerMinute, string State, string? StateReason, string RequestedBy, DateTime RequestedAt);
}

/// <summary>
/// The run's side of its control row (Core/0009). A poller on a connection of its own reads the row
/// every <see cref="PollEvery"/> (one primary-key lookup; nothing per item, so the grouped fast path
/// costs what it did) and writes back what the run is doing when that changes. As a throttle gate it
/// holds the run while suspended (reason "suspended", counted as held time) and lets a stopping run go
/// so its workers see the stop; a stop ends the run after the items in flight, an abort also cancels
/// them (the in-flight statement is cancelled on the server and its transaction rolls back).
/// </summary>
internal sealed class RunControl : IThrottleGate, IAsyncDisposable
{
    /// <summary>How often the run reads its control row: a request takes effect within this plus the item or group in flight.</summary>
    internal static readonly TimeSpan PollEvery = TimeSpan.FromMilliseconds(250);

    /// <summary>The reason throttled time is counted under while an operator holds the run.</summary>
    internal const string SuspendedReason = "suspended";

    private readonly string _connectionString;
    private readonly BackfillRunState _run;
    private readonly CancellationTokenSource _abort;
    private readonly RunLog _log;
    private readonly CancellationTokenSource _stopPolling = new();
    private Throttle? _throttle;
    private Task? _poller;
    private volatile string? _suspended;
    private string? _seenRequest;
    private int? _appliedRate;
    private (string State, string? Reason)? _published;
    private bool _failing;

    public RunControl(DataOpsConnection connection, BackfillRunState run, CancellationTokenSource abort, RunLog log)
    {
        // A pool of its own (the application name keys it): a poll never waits for a connection the items use.
        _connectionString = new NpgsqlConnectionStringBuilder(connection.ConnectionString) { ApplicationName = "DataOps run control", Timeout = 10, CommandTimeout = 15 }.ConnectionString;
        (_run, _abort, _log) = (run, abort, log);
    }

    /// <summary>Whether the run writes what it is doing into the control row (a process that joined another's run only reads it).</summary>
    public bool Publishes { get; init; } = true;

    /// <summary>Held while suspended; a stopping run is let go at once (its workers then see the stop).</summary>
    public ValueTask<ThrottleHold?> CheckAsync(CancellationToken ct) =>
        new(_suspended is { } detail && !_run.Stopped ? new ThrottleHold(SuspendedReason, detail, PollEvery) : null);

    /// <summary>Starts polling for the run throttled by <paramref name="throttle"/> (whose gates include this one).</summary>
    public void Start(Throttle throttle)
    {
        _throttle = throttle;
        _poller = Task.Run(PollLoopAsync, CancellationToken.None);
    }

    public async ValueTask DisposeAsync()
    {
        await _stopPolling.CancelAsync().ConfigureAwait(false);
        if (_poller is not null)
        {
            await _poller.ConfigureAwait(false);
        }

        _stopPolling.Dispose();

        // The poller's pool is this run's alone in practice: its idle connection would otherwise stay
        // open on the server for the pool's idle lifetime (5 minutes) after the run ended.
        await using var pooled = new NpgsqlConnection(_connectionString);
        NpgsqlConnection.ClearPool(pooled);
    }

    private async Task PollLoopAsync()
    {
        var stop = _stopPolling.Token;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await PollAsync(stop).ConfigureAwait(false);
                _failing = false;
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is NpgsqlException or IOException or TimeoutException or InvalidOperationException or OperationCanceledException or DataOpsException)
            {
                // The database away for a moment: the run goes on as last asked, and reads again at the next tick.
                if (!_failing)
                {
                    _log.Warning("Run {RunId} could not read its control row; trying again every {Interval}: {Error}", _run.RunId, PollEvery, ex.Message);
                    _failing = true;
                }
            }

            try
            {
                await Task.Delay(PollEvery, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task PollAsync(CancellationToken ct)
    {
        await using var conn = new NpgsqlConnection(_connectionString);
        await conn.OpenAsync(ct).ConfigureAwait(false);
        var now = Publishable();
        if (Publishes && now != _published)
        {
            // Only when it changed: a run that goes on writes nothing here.
            await conn.ExecuteAsync(new CommandDefinition(
                """
                INSERT INTO dataops.run_control AS c (run_id, state, state_reason, state_at) VALUES (@runId, @state, @reason, clock_timestamp())
                ON CONFLICT (run_id) DO UPDATE SET state = EXCLUDED.state, state_reason = EXCLUDED.state_reason, state_at = EXCLUDED.state_at
                WHERE c.state IS DISTINCT FROM EXCLUDED.state OR c.state_reason IS DISTINCT FROM EXCLUDED.state_reason
                """, new { runId = _run.RunId, state = now.State, reason = now.Reason }, cancellationToken: ct)).ConfigureAwait(false);
            _published = now;
        }

        var row = await conn.QuerySingleOrDefaultAsync<Request>(new CommandDefinition(
            "SELECT requested_state AS State, items_per_minute AS ItemsPerMinute, requested_by AS RequestedBy, requested_at AS RequestedAt FROM dataops.run_control WHERE run_id = @runId",
            new { runId = _run.RunId }, cancellationToken: ct)).ConfigureAwait(false);
        if (row is not null)
        {
            Apply(row);
        }
    }

    /// <summary>What the run is doing now, as the control row says it: its own stop first, then the throttle's hold.</summary>
    private (string State, string? Reason) Publishable()
    {
        if (_run.StopReason is { } stopping)
        {
            return (_abort.IsCancellationRequested ? "aborting" : "stopping", stopping);
        }

        return _throttle?.Current switch
        {
            { Reason: SuspendedReason } hold => ("suspended", hold.Detail),
            { } hold => ("throttled", $"{hold.Reason}: {hold.Detail}"),
            null => ("running", null),
        };
    }

    private void Apply(Request row)
    {
        var by = $"{row.RequestedBy} at {DateTime.SpecifyKind(row.RequestedAt ?? DateTime.UtcNow, DateTimeKind.Utc):u}";
        var request = $"{row.State} {by}";
        if (request != _seenRequest)
        {
            _seenRequest = request;
            switch (row.State)
            {
                case "suspended" when _suspended is null:
                    _suspended = $"suspended by {by}; Resume-Backfill -RunId {_run.RunId} goes on";
                    _log.Information("Run {RunId} is suspended by {By}: it finishes the items in flight, then waits for Resume-Backfill", _run.RunId, by);
                    break;
                case "running" when _suspended is not null:
                    _suspended = null;
                    _log.Information("Run {RunId} is resumed by {By}", _run.RunId, by);
                    break;
                case "stopping":
                    _run.RequestStop($"stopped by Stop-Backfill: {by}; the items in flight finished, no new item started", abort: false);
                    break;
                case "aborting":
                    _run.RequestStop($"aborted by Stop-Backfill -Abort: {by}; the items in flight were cancelled and rolled back, no new item started", abort: true);
                    _abort.Cancel();
                    break;
            }
        }

        if (row.ItemsPerMinute is { } rate && rate != _appliedRate)
        {
            _appliedRate = rate;
            if (_throttle is { } throttle && throttle.PerMinute != rate)
            {
                throttle.SetRate(rate);
                _log.Information("Run {RunId} now runs at {PerMinute} items/minute (0: unthrottled), set by {By}", _run.RunId, rate, by);
            }
        }
    }

    private sealed record Request(string State, int? ItemsPerMinute, string? RequestedBy, DateTime? RequestedAt);
}
