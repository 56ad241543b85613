using DataOps.Engine.Jobs;

namespace DataOps.Engine.Soak;

/// <summary>A soak's verdict (SoakReport.Verdict): names, not an enum, so that ConvertTo-Json and Export-Csv write the name (an enum property is written as a number).</summary>
public static class SoakVerdict
{
    public const string Go = nameof(Go);
    public const string NoGo = nameof(NoGo);
    public const string Inconclusive = nameof(Inconclusive);

    /// <summary>Every name, in order.</summary>
    public static readonly string[] All = [Go, NoGo, Inconclusive];
}

/// <summary>
/// One check's value at one moment of the soak. The properties are CheckSample's (Test-ProdHealth
/// reports the same shape); this type keeps the name Watch-StagingSoak's output is matched and
/// formatted by.
/// </summary>
public sealed class SoakSample : CheckSample;

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
