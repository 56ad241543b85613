using DataOps.Engine.Backfill;

namespace DataOps.Engine.Tests;

public sealed class ThrottleTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(20)]
    [InlineData(600)]
    [InlineData(6_000)]
    [InlineData(59_999)]
    [InlineData(60_000)]
    [InlineData(60_001)]
    [InlineData(99_991)]
    [InlineData(1_000_000)]
    public void Every_accepted_rate_has_a_period_the_timer_can_keep_and_the_exact_rate(int perMinute)
    {
        var (tokens, period) = Throttle.Shape(perMinute);

        Assert.True(period >= Throttle.MinPeriod, $"{tokens} per {period}");
        Assert.InRange(tokens, 1, Math.Max(1, perMinute / 6_000 + 1));
        // Exact but for TimeSpan's 100 ns ticks.
        Assert.InRange(tokens / period.TotalMinutes, perMinute * (1 - 1e-4), perMinute * (1 + 1e-4));
    }

    [Fact]
    public async Task A_million_a_minute_hands_out_tokens_at_that_rate_instead_of_stalling()
    {
        using var limiter = Throttle.Create(1_000_000)!;
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var granted = 0;
        while (watch.Elapsed < TimeSpan.FromSeconds(1))
        {
            using var lease = await limiter.AcquireAsync(1);
            granted += lease.IsAcquired ? 1 : 0;
        }

        // 16,667 a second at most (plus the first bucket); a stalled bucket grants one or two.
        Assert.InRange(granted, 1_000, 16_667 + 200);
    }

    [Fact]
    public void Zero_is_unthrottled()
    {
        Assert.Null(Throttle.Create(0));
    }
}
