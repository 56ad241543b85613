using System.Diagnostics;
using DataOps.Engine.Connections;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using Npgsql;

namespace DataOps.Engine.Backfill;

/// <summary>The largest value a run saw of one signal, for its summary and Get-BackfillRun.</summary>
public sealed record BackfillSignalPeak
{
    public required string Reason { get; init; }

    public required string Kind { get; init; }

    /// <summary>The limit as people read it (16.0 MB, 2 s, 3).</summary>
    public required string Limit { get; init; }

    /// <summary>The largest value sampled, as people read it; null when no sample succeeded.</summary>
    public string? Max { get; init; }

    /// <summary>The largest value sampled in the signal's unit (bytes, seconds or a count).</summary>
    public double? MaxValue { get; init; }

    /// <summary>Samples taken during the run.</summary>
    public int Samples { get; init; }

    public override string ToString() => $"{Reason}: max {Max ?? "(none)"} (limit {Limit})";
}

/// <summary>
/// The run's signals as one throttle gate, shared by all its workers: each signal is sampled on the
/// gate's own read-only connection at most every check interval (asking in between costs no statement),
/// and the first signal above its limit holds the run, its detail saying by how much. A sample that
/// fails holds the run too ("signal unavailable") and the connection is opened again for the next; a
/// signal that cannot work at all was refused before the run began (<see cref="StartAsync"/>). Samples
/// above a critical limit too many times in a row stop the run with BackfillThrottleCritical.
/// </summary>
internal sealed class SignalGate : IThrottleGate, IAsyncDisposable
{
    internal const string UnavailableReason = "signal unavailable";

    private readonly DataOpsConnection _connection;
    private readonly Slot[] _slots;
    private readonly IReadOnlyList<string> _tables;
    private readonly IReadOnlyDictionary<string, object?> _parameters;
    private readonly RunLog? _log;
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private NpgsqlConnection? _conn;

    private SignalGate(DataOpsConnection connection, IEnumerable<ThrottleSignal> signals, IReadOnlyList<string> tables, IReadOnlyDictionary<string, object?> parameters, RunLog? log)
    {
        (_connection, _tables, _parameters, _log) = (connection, tables, parameters, log);
        _slots = [.. signals.Select(s => new Slot(s))];
    }

    /// <summary>The largest value seen per signal so far.</summary>
    public IReadOnlyList<BackfillSignalPeak> Peaks => [.. _slots.Select(s => s.Peak())];

    /// <summary>
    /// Samples each signal once before the run takes its lease: a signal that cannot work here (no
    /// permission, no function, a replicaLag signal with no standby to watch) throws ThrottleSignalUnavailable,
    /// naming it; nothing has run then. A replicaLag signal that names no standbys watches those streaming now.
    /// </summary>
    public static async Task<SignalGate?> StartAsync(
        DataOpsConnection connection, IReadOnlyList<ThrottleSignal> signals, ValidatedJob job, RunLog? log, CancellationToken ct)
    {
        if (signals.Count == 0)
        {
            return null;
        }

        var gate = new SignalGate(connection, signals, [.. job.Capture.Select(c => c.QualifiedName)], job.Job.Parameters, log);
        try
        {
            foreach (var slot in gate._slots)
            {
                SignalReading reading;
                try
                {
                    reading = await gate.SampleAsync(slot, ct).ConfigureAwait(false);
                }
                catch (Exception ex) when (SignalSampler.IsUnusable(ex))
                {
                    throw Unavailable(slot.Signal, SignalSampler.Describe(ex), connection);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    // Unreachable now, perhaps not later: the first check holds the run (signal unavailable).
                    slot.Failed(SignalSampler.Describe(ex));
                    continue;
                }

                if (slot.Signal.Kind == SignalKind.ReplicaLag && slot.Signal.Standbys.Count == 0)
                {
                    if (reading.Present.Count == 0)
                    {
                        throw Unavailable(slot.Signal, "no standby streams from this server now (pg_stat_replication is empty), so there is no lag to watch; name the standbys the run must wait for in standbys (a missing one holds the run), or drop the signal", connection);
                    }

                    slot.Watched = reading.Present;
                }

                slot.Took(reading, gate._clock.Elapsed);
            }

            foreach (var slot in gate._slots)
            {
                log?.Information("Throttle signal {Signal} ({Source}): holds above {Limit}, sampled every {Interval}{Watched}",
                    slot.Signal.Reason, slot.Signal.Source, slot.Signal.Format(slot.Signal.Limit), slot.Signal.CheckInterval,
                    slot.Watched is { Count: > 0 } w ? "; watching " + string.Join(", ", w) : string.Empty);
            }

            return gate;
        }
        catch
        {
            await gate.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public async ValueTask<ThrottleHold?> CheckAsync(CancellationToken ct)
    {
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            ThrottleHold? hold = null;
            foreach (var slot in _slots)
            {
                var now = _clock.Elapsed;
                if (slot.DueAt(now))
                {
                    SignalReading? reading = null;
                    try
                    {
                        reading = await SampleAsync(slot, ct).ConfigureAwait(false);
                    }
                    catch (Exception ex) when (!ct.IsCancellationRequested)
                    {
                        // A lost connection, a statement timeout, a server error: hold and open a new connection for the next sample.
                        slot.Failed(SignalSampler.Describe(ex));
                        slot.TakenAt = _clock.Elapsed;
                        await ResetAsync().ConfigureAwait(false);
                    }

                    if (reading is not null)
                    {
                        slot.Took(reading, _clock.Elapsed);
                        if (slot.CriticalExceeded() is { } critical)
                        {
                            throw critical;
                        }
                    }
                }

                hold ??= slot.Hold(_clock.Elapsed);
            }

            return hold;
        }
        finally
        {
            _lock.Release();
        }
    }

    private async Task<SignalReading> SampleAsync(Slot slot, CancellationToken ct)
    {
        _conn ??= await Database.OpenAsync(_connection, ct, readOnly: true).ConfigureAwait(false);
        return await SignalSampler.SampleAsync(_conn, slot.Signal, _tables, _parameters, slot.Watched, ct).ConfigureAwait(false);
    }

    private async Task ResetAsync()
    {
        if (_conn is not null)
        {
            await _conn.DisposeAsync().ConfigureAwait(false);
            _conn = null;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await ResetAsync().ConfigureAwait(false);
        _lock.Dispose();
    }

    private static DataOpsException Unavailable(ThrottleSignal signal, string why, DataOpsConnection connection) =>
        new("ThrottleSignalUnavailable", DataOpsErrorKind.InvalidOperation,
            $"The throttle signal {signal.Kind} ({signal.Source}) cannot be sampled on {connection}: {why}. Nothing was run.", signal.Source)
        {
            RecommendedAction = "Grant the role what the signal reads (pg_monitor covers pg_stat_replication, pg_ls_archive_statusdir and pg_stat_activity), fix the signal, or remove it from the job file.",
        };

    /// <summary>One signal's latest reading, its run of critical samples and its peak.</summary>
    private sealed class Slot(ThrottleSignal signal)
    {
        private SignalReading? _reading;
        private string? _error;
        private int _criticalRun;
        private double? _max;
        private int _samples;

        public ThrottleSignal Signal { get; } = signal;

        public IReadOnlyList<string>? Watched { get; set; }

        public TimeSpan? TakenAt { get; set; }

        public bool DueAt(TimeSpan now) => TakenAt is not { } t || now - t >= Signal.CheckInterval;

        public void Took(SignalReading reading, TimeSpan at)
        {
            (_reading, _error, TakenAt) = (reading, null, at);
            _samples++;
            if (reading.Subject is not null || reading.Missing.Count == 0)
            {
                _max = Math.Max(_max ?? 0, reading.Value);
            }

            // A missing standby holds the run but is no measured lag: only a value above the critical limit counts.
            _criticalRun = Signal.Critical is { } c && reading.Value > c ? _criticalRun + 1 : 0;
        }

        public void Failed(string error) => (_reading, _error) = (null, error);

        public DataOpsException? CriticalExceeded() =>
            Signal.Critical is { } c && _criticalRun >= Signal.CriticalHits
                ? new DataOpsException("BackfillThrottleCritical", DataOpsErrorKind.OperationStopped,
                    $"The run stopped: {Signal.Reason} was above its critical limit {Signal.Format(c)} in {_criticalRun} samples in a row ({Describe(_reading!)}; {Signal.Source}, criticalHits {Signal.CriticalHits}). " +
                    "Items applied so far are in the ledger; run the job again when the server has caught up (applied items are skipped).",
                    Signal.Source)
                {
                    RecommendedAction = "Find why the signal is so high (a stalled standby, an abandoned replication slot, a stuck archiver) before running the job again.",
                }
                : null;

        /// <summary>Why this signal holds the run now, or null; asked again when its next sample is due.</summary>
        public ThrottleHold? Hold(TimeSpan now)
        {
            var recheck = TakenAt is { } t ? Signal.CheckInterval - (now - t) : TimeSpan.Zero;
            recheck = recheck < ThrottleSignal.MinCheckInterval ? ThrottleSignal.MinCheckInterval : recheck;
            if (_error is not null)
            {
                return new ThrottleHold(UnavailableReason, $"{Signal.Reason} ({Signal.Kind}) could not be sampled: {_error}", recheck);
            }

            if (_reading is not { } r)
            {
                return null;
            }

            if (r.Missing.Count > 0 && Signal.MissingHolds)
            {
                return new ThrottleHold(Signal.Reason, $"standby {string.Join(", ", r.Missing)} is not streaming (missing from pg_stat_replication: a disconnected standby is the worst lag)", recheck);
            }

            return r.Value > Signal.Limit ? new ThrottleHold(Signal.Reason, Describe(r), recheck) : null;
        }

        private string Describe(SignalReading r)
        {
            var limit = $"limit {Signal.Format(Signal.Limit)}";
            return Signal.Kind switch
            {
                SignalKind.ReplicaLag => $"standby {r.Subject} is {Signal.Format(r.Value)} behind ({limit})",
                SignalKind.RetainedWal => $"replication slot {r.Subject} retains {Signal.Format(r.Value)} of WAL ({limit})",
                SignalKind.ArchiveBacklog => $"{Signal.Format(r.Value)} WAL segments wait for the archiver ({limit})",
                SignalKind.Autovacuum => $"autovacuum runs on {r.Subject ?? "a captured table"} ({Signal.Format(r.Value)} workers, {limit})",
                SignalKind.ActiveSessions => $"{Signal.Format(r.Value)} active sessions ({limit})",
                SignalKind.LockWaiters => $"{Signal.Format(r.Value)} sessions wait for a lock ({limit})",
                _ => Signal.Unit == SignalUnit.Count && Signal.Limit == 0 && r.Value == 1
                    ? $"the query ({Signal.Source}) returned true"
                    : $"the query ({Signal.Source}) returned {Signal.Format(r.Value)} ({limit})",
            };
        }

        public BackfillSignalPeak Peak() => new()
        {
            Reason = Signal.Reason, Kind = Signal.Kind, Limit = Signal.Format(Signal.Limit), Max = _max is { } m ? Signal.Format(m) : null, MaxValue = _max, Samples = _samples,
        };
    }
}
