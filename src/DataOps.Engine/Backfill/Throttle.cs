using System.Threading.RateLimiting;

namespace DataOps.Engine.Backfill;

/// <summary>The rate limit of a run: a token bucket that hands out one token per item.</summary>
internal static class Throttle
{
    /// <summary>
    /// The shortest replenishment period. System.Threading.RateLimiting's timer cannot refill faster
    /// than about a millisecond: at one token per period, any rate above 60,000/min stalled after the
    /// first item (the period fell below 1 ms). Fast rates refill several tokens every 10 ms instead.
    /// </summary>
    internal static readonly TimeSpan MinPeriod = TimeSpan.FromMilliseconds(10);

    /// <summary>The bucket for <paramref name="perMinute"/> items a minute, or null when unthrottled (0).</summary>
    public static TokenBucketRateLimiter? Create(int perMinute)
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
