using System.Diagnostics;
using System.Threading.RateLimiting;

namespace DataOps.Engine.Backfill;

/// <summary>
/// A reason, other than the rate, for a run to wait before its next item: a database signal (replica
/// lag, retained WAL, a custom query) or an operator's hold (a suspended run). The throttle asks
/// every gate before each item or group; a gate decides from its own samples, taken no more often
/// than its check interval, so asking is cheap. A gate that must stop the run (a critical limit hit
/// too often) throws a <see cref="DataOpsException"/> from <see cref="CheckAsync"/>.
/// </summary>
internal interface IThrottleGate
{
    /// <summary>Null to go on, else why the run waits now and when to ask again.</summary>
    ValueTask<ThrottleHold?> CheckAsync(CancellationToken ct);
}

/// <summary>
/// Why a run is waiting: <paramref name="Reason"/> is the stable name throttled time is counted under
/// (for example "replica lag", "suspended"); <paramref name="Detail"/> is what progress and -Verbose
/// show (for example "replica sandbox-r1 is 48 MB behind (limit 16 MB)").
/// </summary>
internal sealed record ThrottleHold(string Reason, string Detail, TimeSpan RecheckAfter);

/// <summary>
/// The one place a run waits before an item starts, and how many items it lets go at once. The reasons
/// to wait: its gates (<see cref="IThrottleGate"/>), asked in order until none holds, then the rate
/// limit, a token bucket that hands out one token per item (or per group, which is one item while
/// throttled). Schedulers ask it; no other part of the run waits on a clock. The time spent held is
/// counted per reason; the rate can change while the run goes on (<see cref="SetRate"/>).
/// </summary>
internal sealed class Throttle : IDisposable
{
    /// <summary>
    /// The shortest replenishment period. System.Threading.RateLimiting's timer cannot refill faster
    /// than about a millisecond: at one token per period, any rate above 60,000/min stalled after the
    /// first item (the period fell below 1 ms). Fast rates refill several tokens every 10 ms instead.
    /// </summary>
    internal static readonly TimeSpan MinPeriod = TimeSpan.FromMilliseconds(10);

    private readonly object _gate = new();
    private readonly List<IThrottleGate> _gates;
    private readonly Dictionary<string, TimeSpan> _held = new(StringComparer.Ordinal);
    private TokenBucketRateLimiter? _bucket;
    private ThrottleHold? _current;

    private Throttle(int perMinute, IEnumerable<IThrottleGate>? gates)
    {
        _gates = [.. gates ?? []];
        (PerMinute, _bucket) = (Math.Max(perMinute, 0), Bucket(perMinute));
    }

    /// <summary>Cancelled (and replaced) when the rate changes: a worker sleeping until a slot of the old rate asks again.</summary>
    private CancellationTokenSource _rateChanged = new();

    /// <summary>Raised when the run starts waiting for a reason (once per episode: not again while the same reason holds) and with null when it goes on.</summary>
    public event Action<ThrottleHold?>? HoldChanged;

    /// <summary>Items a minute; 0 is unthrottled.</summary>
    public int PerMinute { get; private set; }

    /// <summary>Whether the run waits only for its gates (no rate limit).</summary>
    public bool IsOff => Volatile.Read(ref _bucket) is null;

    /// <summary>What holds the run now, or null while it goes on (or waits only for the rate).</summary>
    public ThrottleHold? Current
    {
        get
        {
            lock (_gate)
            {
                return _current;
            }
        }
    }

    /// <summary>The time the run has waited so far, per reason (the rate's own spacing is not counted).</summary>
    public IReadOnlyDictionary<string, TimeSpan> HeldTime
    {
        get
        {
            lock (_gate)
            {
                return new Dictionary<string, TimeSpan>(_held, StringComparer.Ordinal);
            }
        }
    }

    /// <summary>The throttle for <paramref name="perMinute"/> items a minute (0: off) and the run's <paramref name="gates"/>.</summary>
    public static Throttle Create(int perMinute, IEnumerable<IThrottleGate>? gates = null) => new(perMinute, gates);

    /// <summary>Items per round trip: <paramref name="unthrottled"/>, or one item per token while throttled.</summary>
    public int GroupSize(int unthrottled) => IsOff ? unthrottled : 1;

    /// <summary>
    /// Changes the rate of a run in progress (0: off). Items already waiting for a token of the old
    /// rate are released and ask the new one.
    /// </summary>
    public void SetRate(int perMinute)
    {
        TokenBucketRateLimiter? old;
        CancellationTokenSource changed;
        lock (_gate)
        {
            PerMinute = Math.Max(perMinute, 0);
            old = Interlocked.Exchange(ref _bucket, Bucket(perMinute));
            changed = Interlocked.Exchange(ref _rateChanged, new CancellationTokenSource());
        }

        old?.Dispose();

        // Not disposed: a worker may be reading its token right now (it holds no timer, so nothing leaks).
        changed.Cancel();
    }

    /// <summary>
    /// Waits until the next item (or group) may start: until no gate holds, then for a token. Concurrent
    /// workers queue; tokens are granted in order, one per period. With <paramref name="sharedSlot"/> (a run
    /// worked by several workers, <see cref="RunQueue.SlotAsync"/>) the token is the run's: the database
    /// spaces every worker's items of every process. A gate that started to hold while the item waited for its
    /// token (Suspend-Backfill, a signal) holds it again before it starts; a rate changed meanwhile is asked anew.
    /// </summary>
    public async Task WaitAsync(CancellationToken ct, Func<int, CancellationToken, Task<TimeSpan>>? sharedSlot = null)
    {
        while (true)
        {
            await WaitForGatesAsync(ct).ConfigureAwait(false);
            var waited = Stopwatch.StartNew();
            if (!await TakeTokenAsync(ct, sharedSlot).ConfigureAwait(false))
            {
                // The rate changed while this item slept until its slot: a slot of the new rate.
                continue;
            }

            // Asked again only after a real wait for the rate (a gate decides from its own samples: no statement).
            if (_gates.Count == 0 || waited.Elapsed < MinPeriod || await HoldAsync(ct).ConfigureAwait(false) is null)
            {
                return;
            }
        }
    }

    /// <summary>The rate's token (or slot); false when the rate changed during a shared slot's wait.</summary>
    private async Task<bool> TakeTokenAsync(CancellationToken ct, Func<int, CancellationToken, Task<TimeSpan>>? sharedSlot)
    {
        if (sharedSlot is not null)
        {
            CancellationToken changed;
            lock (_gate)
            {
                changed = _rateChanged.Token;
            }

            var wait = PerMinute <= 0 ? TimeSpan.Zero : await sharedSlot(PerMinute, ct).ConfigureAwait(false);
            if (wait <= TimeSpan.Zero)
            {
                return true;
            }

            using var either = CancellationTokenSource.CreateLinkedTokenSource(ct, changed);
            try
            {
                await Task.Delay(wait, either.Token).ConfigureAwait(false);
                return true;
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                return false;
            }
        }

        while (Volatile.Read(ref _bucket) is { } bucket)
        {
            RateLimitLease lease;
            try
            {
                lease = await bucket.AcquireAsync(1, ct).ConfigureAwait(false);
            }
            catch (ObjectDisposedException) when (!ct.IsCancellationRequested)
            {
                // SetRate replaced the bucket while this item waited: ask the new one.
                continue;
            }

            using (lease)
            {
                if (lease.IsAcquired)
                {
                    return true;
                }
            }
        }

        return true;
    }

    /// <summary>The first gate that holds now (each decides from its own samples: no statement), or null.</summary>
    private async Task<ThrottleHold?> HoldAsync(CancellationToken ct)
    {
        foreach (var gate in _gates)
        {
            if (await gate.CheckAsync(ct).ConfigureAwait(false) is { } hold)
            {
                return hold;
            }
        }

        return null;
    }

    /// <summary>Waits until no gate holds (not for the rate): a worker of a run with a queue asks this before it claims.</summary>
    internal async Task WaitForGatesAsync(CancellationToken ct)
    {
        if (_gates.Count == 0)
        {
            return;
        }

        while (true)
        {
            var hold = await HoldAsync(ct).ConfigureAwait(false);
            Report(hold);
            if (hold is null)
            {
                return;
            }

            var waited = Stopwatch.StartNew();
            try
            {
                await Task.Delay(hold.RecheckAfter > TimeSpan.Zero ? hold.RecheckAfter : MinPeriod, ct).ConfigureAwait(false);
            }
            finally
            {
                lock (_gate)
                {
                    _held[hold.Reason] = _held.GetValueOrDefault(hold.Reason) + waited.Elapsed;
                }
            }
        }
    }

    /// <summary>Tells <see cref="HoldChanged"/> when the reason changes (a new episode) or the run goes on.</summary>
    private void Report(ThrottleHold? hold)
    {
        lock (_gate)
        {
            if (_current?.Reason == hold?.Reason)
            {
                _current = hold;
                return;
            }

            _current = hold;
        }

        HoldChanged?.Invoke(hold);
    }

    public void Dispose()
    {
        Interlocked.Exchange(ref _bucket, null)?.Dispose();
        _rateChanged.Dispose();
    }

    private static TokenBucketRateLimiter? Bucket(int perMinute)
    {
        if (perMinute <= 0)
        {
            return null;
        }

        var (tokens, period) = Shape(perMinute);
        return new TokenBucketRateLimiter(new TokenBucketRateLimiterOptions
        {
            TokenLimit = tokens, TokensPerPeriod = tokens, ReplenishmentPeriod = period,
            QueueLimit = 1_000_000, QueueProcessingOrder = QueueProcessingOrder.OldestFirst, AutoReplenishment = true,
        });
    }

    /// <summary>
    /// Tokens per period and the period: one token every 60/rate seconds while that is at least
    /// <see cref="MinPeriod"/>; above that, the fewest whole tokens whose period is at least
    /// MinPeriod, and the period that makes the rate exact (a burst is at most that many items).
    /// </summary>
    internal static (int Tokens, TimeSpan Period) Shape(int perMinute)
    {
        var oneEach = TimeSpan.FromMinutes(1.0 / perMinute);
        if (oneEach >= MinPeriod)
        {
            return (1, oneEach);
        }

        var tokens = (int)Math.Ceiling(perMinute * MinPeriod.TotalMinutes);
        return (tokens, TimeSpan.FromMinutes((double)tokens / perMinute));
    }
}
