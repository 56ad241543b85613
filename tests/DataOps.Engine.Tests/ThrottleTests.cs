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

    [Fact]
    public async Task A_gate_holds_the_run_until_it_lets_go_and_the_time_is_counted_under_its_reason_once_per_episode()
    {
        var gate = new CountdownGate(holds: 3, new ThrottleHold("replica lag", "r1 is 48 MB behind", TimeSpan.FromMilliseconds(50)));
        using var throttle = Throttle.Create(0, [gate]);
        var changes = new List<string?>();
        throttle.HoldChanged += h => changes.Add(h?.Reason);

        var watch = System.Diagnostics.Stopwatch.StartNew();
        await throttle.WaitAsync(CancellationToken.None);

        Assert.Equal(4, gate.Checks);
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(140), watch.Elapsed.ToString());
        Assert.InRange(throttle.HeldTime["replica lag"], TimeSpan.FromMilliseconds(140), watch.Elapsed);
        Assert.Equal(["replica lag", null], changes);
        Assert.Null(throttle.Current);
    }

    [Fact]
    public async Task A_held_run_stops_waiting_on_cancellation()
    {
        var gate = new CountdownGate(holds: int.MaxValue, new ThrottleHold("suspended", "suspended by alice", TimeSpan.FromSeconds(30)));
        using var throttle = Throttle.Create(0, [gate]);
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => throttle.WaitAsync(cts.Token));
        Assert.Equal("suspended", throttle.Current?.Reason);
    }

    [Fact]
    public async Task A_new_rate_applies_to_the_run_in_progress_and_releases_an_item_waiting_for_the_old_one()
    {
        using var throttle = Throttle.Create(1);
        await throttle.WaitAsync(CancellationToken.None); // the first token of a minute
        var waiting = throttle.WaitAsync(CancellationToken.None); // the next is a minute away

        throttle.SetRate(600_000);

        await waiting.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(600_000, throttle.PerMinute);
        throttle.SetRate(0);
        Assert.True(throttle.IsOff);
        await throttle.WaitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task A_gate_that_starts_holding_while_an_item_waits_for_the_rate_holds_it_before_it_starts()
    {
        var gate = new SwitchGate(new ThrottleHold("suspended", "suspended by alice", TimeSpan.FromMilliseconds(20)));
        using var throttle = Throttle.Create(60, [gate]);
        await throttle.WaitAsync(CancellationToken.None);

        // The second token comes a second later; the operator suspends meanwhile and resumes 3 s later (the
        // token then comes well inside the suspension even on a loaded machine, where timers fire late).
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var second = throttle.WaitAsync(CancellationToken.None);
        await Task.Delay(200);
        gate.Holding = true;
        await Task.Delay(3_000);
        Assert.False(second.IsCompleted, "the item started while the run was suspended");
        gate.Holding = false;
        await second;
        Assert.InRange(watch.Elapsed, TimeSpan.FromMilliseconds(3_200), TimeSpan.FromSeconds(15));
        Assert.True(throttle.HeldTime["suspended"] > TimeSpan.Zero);
    }

    [Fact]
    public async Task A_rate_changed_while_an_item_sleeps_until_a_shared_slot_asks_for_a_slot_of_the_new_rate()
    {
        using var throttle = Throttle.Create(1);
        var asked = new List<int>();
        Task<TimeSpan> Slot(int perMinute, CancellationToken ct)
        {
            asked.Add(perMinute);
            return Task.FromResult(perMinute == 1 ? TimeSpan.FromSeconds(60) : TimeSpan.Zero);
        }

        var watch = System.Diagnostics.Stopwatch.StartNew();
        var waiting = throttle.WaitAsync(CancellationToken.None, Slot);
        await Task.Delay(200);
        Assert.False(waiting.IsCompleted);
        throttle.SetRate(600);
        await waiting.WaitAsync(TimeSpan.FromSeconds(5));

        Assert.Equal([1, 600], asked);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), watch.Elapsed.ToString());
    }

    private sealed class SwitchGate(ThrottleHold hold) : IThrottleGate
    {
        public volatile bool Holding;

        public ValueTask<ThrottleHold?> CheckAsync(CancellationToken ct) => ValueTask.FromResult(Holding ? hold : null);
    }

    private sealed class CountdownGate(int holds, ThrottleHold hold) : IThrottleGate
    {
        public int Checks { get; private set; }

        public ValueTask<ThrottleHold?> CheckAsync(CancellationToken ct) => ValueTask.FromResult(Checks++ < holds ? hold : null);
    }

    [Theory]
    [InlineData(5_000, 3, 27)] // 4 x 5 s, then 1 + 2 + 4 s
    [InlineData(60_000, 20, 1_435)] // 21 x 60 s, then 1 + 2 + 4 + 8 s and 16 x 10 s: about 24 minutes
    [InlineData(1, 0, 1)]
    public void The_longest_an_item_waits_for_a_lock_is_its_attempts_and_their_backoffs(int lockTimeoutMs, int lockRetries, int seconds)
    {
        Assert.Equal(TimeSpan.FromSeconds(seconds), Retry.LockWorstCase(TimeSpan.FromMilliseconds(lockTimeoutMs), lockRetries));
    }
}
