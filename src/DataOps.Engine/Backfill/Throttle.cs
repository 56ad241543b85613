using System.Threading.RateLimiting;

namespace DataOps.Engine.Backfill;

/// <summary>
/// The one place a run waits before an item starts, and how many items it lets go at once. Today the
/// reason to wait is the rate limit: a token bucket that hands out one token per item (or per group,
/// which is one item while throttled). Schedulers ask it; no other part of the run waits on a clock.
/// </summary>
internal sealed class Throttle : IDisposable
{
    /// <summary>
    /// The shortest replenishment period. System.Threading.RateLimiting's timer cannot refill faster
    /// than about a millisecond: at one token per period, any rate above 60,000/min stalled after the
    /// first item (the period fell below 1 ms). Fast rates refill several tokens every 10 ms instead.
    /// </summary>
    internal static readonly TimeSpan MinPeriod = TimeSpan.FromMilliseconds(10);

    private readonly TokenBucketRateLimiter? _bucket;

    private Throttle(int perMinute)
    {
        PerMinute = Math.Max(perMinute, 0);
        if (perMinute > 0)
        {
            var (tokens, period) = Shape(perMinute);
            _bucket = new TokenBucketRateLimiter(new TokenBucketRateLimiterOptions
            {
                TokenLimit = tokens, TokensPerPeriod = tokens, ReplenishmentPeriod = period,
                QueueLimit = 1_000_000, QueueProcessingOrder = QueueProcessingOrder.OldestFirst, AutoReplenishment = true,
            });
        }
    }

    /// <summary>Items a minute; 0 is unthrottled.</summary>
    public int PerMinute { get; }

    public bool IsOff => _bucket is null;

    /// <summary>The throttle for <paramref name="perMinute"/> items a minute (0: off).</summary>
    public static Throttle Create(int perMinute) => new(perMinute);

    /// <summary>Items per round trip: <paramref name="unthrottled"/>, or one item per token while throttled.</summary>
    public int GroupSize(int unthrottled) => IsOff ? unthrottled : 1;

    /// <summary>Waits until the next item (or group) may start. Concurrent workers queue; tokens are granted in order, one per period.</summary>
    public async Task WaitAsync(CancellationToken ct)
    {
        while (_bucket is not null)
        {
            using var lease = await _bucket.AcquireAsync(1, ct).ConfigureAwait(false);
            if (lease.IsAcquired)
            {
                return;
            }
        }
    }

    public void Dispose() => _bucket?.Dispose();

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
