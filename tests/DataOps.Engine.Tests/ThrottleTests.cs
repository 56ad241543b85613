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
    public void Zero_is_unthrottled()
    {
        using var throttle = Throttle.Create(0);
        Assert.True(throttle.IsOff);
        Assert.Equal(128, throttle.GroupSize(128));
    }
}
