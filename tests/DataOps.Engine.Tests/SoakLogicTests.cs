using DataOps.Engine.Jobs;
using DataOps.Engine.Soak;

namespace DataOps.Engine.Tests;

public sealed class SoakLogicTests
{
    private static Expectation E(string kind, double? v = null, double? low = null, double? high = null, double? ratio = null) => new(kind, v, low, high, ratio);

    [Theory]
    [InlineData("equals", 0.0, 0.0, SampleOutcome.Pass)]
    [InlineData("equals", 0.0, 1.0, SampleOutcome.Fail)]
    [InlineData("atMost", 5.0, 5.0, SampleOutcome.Pass)]
    [InlineData("atMost", 5.0, 5.1, SampleOutcome.Fail)]
    [InlineData("atLeast", 85.0, 85.0, SampleOutcome.Pass)]
    [InlineData("atLeast", 85.0, 84.9, SampleOutcome.Fail)]
    public void Simple_expectations_judge_values(string kind, double expected, double value, string outcome) =>
        Assert.Equal(outcome, CheckSampler.Judge(E(kind, expected), value, null));

    [Fact]
    public void Between_baseline_and_no_data()
    {
        Assert.Equal(SampleOutcome.Pass, CheckSampler.Judge(E("between", low: 1, high: 2), 1.5, null));
        Assert.Equal(SampleOutcome.Fail, CheckSampler.Judge(E("between", low: 1, high: 2), 2.5, null));
        Assert.Equal(SampleOutcome.Pass, CheckSampler.Judge(E("atLeastBaseline", ratio: 0.9), 0.77, 0.85));
        Assert.Equal(SampleOutcome.Fail, CheckSampler.Judge(E("atLeastBaseline", ratio: 1.0), 0.84, 0.85));
        Assert.Equal(SampleOutcome.Error, CheckSampler.Judge(E("atLeastBaseline", ratio: 1.0), 0.9, null));
        Assert.Equal(SampleOutcome.NoData, CheckSampler.Judge(E("equals", 0), null, null));
    }

    private static SoakRunner.CheckState State(string name, int failureLimit = 0, int? consecutive = null, bool dryRun = false, params string[] outcomes)
    {
        var s = new SoakRunner.CheckState(new CheckSpec(name, "SELECT 1", E("equals", 1), null, null, failureLimit, consecutive, dryRun, "$"));
        foreach (var o in outcomes)
        {
            s.Add(new SoakSample { Check = name, Expectation = "= 1", Outcome = o, Value = o == SampleOutcome.NoData ? null : 1 });
        }

        return s;
    }

    [Fact]
    public void Verdict_follows_failure_limits_and_ignores_dry_run_checks()
    {
        var pass = State("a", outcomes: [SampleOutcome.Pass, SampleOutcome.Pass]);
        Assert.Equal(SoakVerdict.Go, SoakRunner.Verdict([pass], 0, 3, final: true).Item1);

        var oneFailure = State("b", outcomes: [SampleOutcome.Pass, SampleOutcome.Fail]);
        var (verdict, reasons) = SoakRunner.Verdict([pass, oneFailure], 0, 3, final: true);
        Assert.Equal(SoakVerdict.NoGo, verdict);
        Assert.Contains(reasons, r => r.StartsWith("b:", StringComparison.Ordinal));

        var tolerated = State("c", failureLimit: 2, outcomes: [SampleOutcome.Fail, SampleOutcome.Pass, SampleOutcome.Fail]);
        Assert.Equal(SoakVerdict.Go, SoakRunner.Verdict([tolerated], 0, 3, final: true).Item1);

        var inARow = State("d", failureLimit: 10, consecutive: 2, outcomes: [SampleOutcome.Fail, SampleOutcome.Fail, SampleOutcome.Fail]);
        Assert.Equal(SoakVerdict.NoGo, SoakRunner.Verdict([inARow], 0, 3, final: true).Item1);

        var dryRun = State("e", dryRun: true, outcomes: [SampleOutcome.Fail, SampleOutcome.Fail]);
        Assert.Equal(SoakVerdict.Go, SoakRunner.Verdict([pass, dryRun], 0, 3, final: true).Item1);
    }

    [Fact]
    public void Errors_and_missing_data_make_it_inconclusive()
    {
        var pass = State("a", outcomes: [SampleOutcome.Pass]);
        Assert.Equal(SoakVerdict.Inconclusive, SoakRunner.Verdict([pass], 3, 3, final: true).Item1);

        var blind = State("b", outcomes: [SampleOutcome.NoData, SampleOutcome.NoData]);
        Assert.Equal(SoakVerdict.Inconclusive, SoakRunner.Verdict([pass, blind], 0, 3, final: true).Item1);
        Assert.Equal(SoakVerdict.Go, SoakRunner.Verdict([pass, blind], 0, 3, final: false).Item1);
    }

    [Theory]
    [InlineData("6h", 6 * 3600)]
    [InlineData("90m", 90 * 60)]
    [InlineData("30s", 30)]
    [InlineData("500ms", 0.5)]
    [InlineData("1h30m", 5400)]
    [InlineData("00:05:00", 300)]
    public void Durations_parse(string text, double seconds)
    {
        Assert.True(SoakSpecParser.TryParseDuration(text, out var t));
        Assert.Equal(seconds, t.TotalSeconds, 6);
    }

    [Theory]
    [InlineData("6 hours")]
    [InlineData("-5m")]
    [InlineData("")]
    [InlineData("0s")]
    public void Bad_durations_do_not_parse(string text) => Assert.False(SoakSpecParser.TryParseDuration(text, out _));
}
