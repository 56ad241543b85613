namespace DataOps.Engine.Soak;

/// <summary>A sample's outcome (SoakSample.Outcome): names, not an enum, so that ConvertTo-Json and Export-Csv write the name (an enum property is written as a number).</summary>
public static class SampleOutcome
{
    public const string Pass = nameof(Pass);
    public const string Fail = nameof(Fail);
    public const string NoData = nameof(NoData);
    public const string Error = nameof(Error);

    /// <summary>Every name, in order.</summary>
    public static readonly string[] All = [Pass, Fail, NoData, Error];
}

/// <summary>A soak's verdict (SoakReport.Verdict): names, not an enum, so that ConvertTo-Json and Export-Csv write the name (an enum property is written as a number).</summary>
public static class SoakVerdict
{
    public const string Go = nameof(Go);
    public const string NoGo = nameof(NoGo);
    public const string Inconclusive = nameof(Inconclusive);

    /// <summary>Every name, in order.</summary>
    public static readonly string[] All = [Go, NoGo, Inconclusive];
}

/// <summary>One check's value at one moment.</summary>
public sealed class SoakSample
{
    public DateTimeOffset Time { get; init; }

    public int Round { get; init; }

    public required string Check { get; init; }

    public double? Value { get; init; }

    public required string Expectation { get; init; }

    public required string Outcome { get; init; }

    public bool DryRun { get; init; }

    public string? Error { get; init; }

    public override string ToString() => $"{Check} = {Value?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "(none)"}: {Outcome}";
}

/// <summary>A check's samples summed up.</summary>
public sealed class SoakCheckSummary
{
    public required string Check { get; init; }

    public required string Expectation { get; init; }

    public double? Baseline { get; init; }

    public bool DryRun { get; init; }

    public int Samples { get; init; }

    public int Passes { get; init; }

    public int Failures { get; init; }

    public int NoData { get; init; }

    public int Errors { get; init; }

    public double? Min { get; init; }

    public double? Max { get; init; }

    public double? Last { get; init; }

    public required double?[] Values { get; init; }
}

/// <summary>The end of a soak: the verdict, why, and every check's summary.</summary>
public sealed class SoakReport
{
    public required string Job { get; init; }

    public required string Verdict { get; init; }

    public required string[] Reasons { get; init; }

    public DateTimeOffset Started { get; init; }

    public DateTimeOffset Ended { get; init; }

    public int Rounds { get; init; }

    public bool EndedEarly { get; init; }

    public required SoakCheckSummary[] Checks { get; init; }

    public string? ReportPath { get; init; }

    public override string ToString() => $"{Job}: {Verdict} ({string.Join("; ", Reasons)})";
}
