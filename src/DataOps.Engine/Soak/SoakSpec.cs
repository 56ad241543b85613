using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using DataOps.Engine.Backfill;

namespace DataOps.Engine.Soak;

/// <summary>What a check's value must satisfy; exactly one kind is set.</summary>
public sealed record Expectation(string Kind, double? Value, double? Low, double? High, double? Ratio)
{
    public override string ToString() => Kind switch
    {
        "equals" => $"= {Value}",
        "atMost" => $"<= {Value}",
        "atLeast" => $">= {Value}",
        "between" => $"between {Low} and {High}",
        _ => $">= {Ratio} x baseline",
    };
}

/// <summary>One metric watched during the soak (after Argo Rollouts' analysis metrics).</summary>
public sealed record SoakCheck(
    string Name, string Query, Expectation Expect, double? BaselineValue, string? BaselineQuery,
    int FailureLimit, int? ConsecutiveFailureLimit, bool DryRun, string Path);

/// <summary>The soak section of a job file.</summary>
public sealed record SoakSpec(TimeSpan Duration, TimeSpan Interval, IReadOnlyList<SoakCheck> Checks, int ConsecutiveErrorLimit)
{
    /// <summary>Parameters every soak or health query may use besides the job's.</summary>
    public static readonly string[] BuiltInParameters = ["windowStart"];

    /// <summary>Rounds closer than this would hammer the database (and 0 would busy-loop).</summary>
    public static readonly TimeSpan MinInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>A soak watches for hours; more than a month is a mistake in units.</summary>
    public static readonly TimeSpan MaxDuration = TimeSpan.FromDays(31);

    /// <summary>Checks the window, whether it came from the job file or from -Duration/-Interval.</summary>
    public void EnsureUsable()
    {
        if (Duration <= TimeSpan.Zero || Duration > MaxDuration)
        {
            throw new DataOpsException("SoakWindowInvalid", DataOpsErrorKind.InvalidArgument,
                $"The soak duration must be more than 0 and at most {MaxDuration.TotalDays:0} days; got {Duration}.", Duration);
        }

        if (Interval < MinInterval || Interval > Duration)
        {
            throw new DataOpsException("SoakWindowInvalid", DataOpsErrorKind.InvalidArgument,
                $"The soak interval must be at least {MinInterval.TotalMilliseconds:0} ms and at most the duration ({Duration}); got {Interval}.", Interval);
        }
    }
}

/// <summary>Reads the job's soak and health check lists, with JSON paths in every error.</summary>
public static partial class SoakSpecParser
{
    public static SoakSpec Parse(BackfillJob job)
    {
        if (job.Soak is not { } soak)
        {
            throw JobFile.Invalid(job.SourcePath, ["$.soak: required by Watch-StagingSoak: { \"duration\": \"6h\", \"interval\": \"5m\", \"checks\": [ ... ] }."]);
        }

        var problems = new List<string>();
        JobFile.Unknown(soak, "$.soak", ["duration", "interval", "checks", "consecutiveErrorLimit"], problems);
        var duration = Time(soak, "duration", "$.soak", TimeSpan.FromHours(6), problems);
        var interval = Time(soak, "interval", "$.soak", TimeSpan.FromMinutes(5), problems);
        var errors = Limit(soak, "consecutiveErrorLimit", "$.soak", minimum: 1, fallback: 3, problems) ?? 3;
        var checks = ParseChecks(soak, "$.soak", job, problems, requireDuration: false);
        if (problems.Count > 0)
        {
            throw JobFile.Invalid(job.SourcePath, problems);
        }

        return new SoakSpec(duration, interval, checks, errors);
    }

    internal static IReadOnlyList<SoakCheck> ParseChecks(JsonElement section, string at, BackfillJob job, List<string> problems, bool requireDuration)
    {
        var list = new List<SoakCheck>();
        if (!section.TryGetProperty("checks", out var checks) || checks.ValueKind != JsonValueKind.Array || checks.GetArrayLength() == 0)
        {
            problems.Add($"{at}.checks: required: a non-empty list of checks.");
            return list;
        }

        var i = 0;
        foreach (var c in checks.EnumerateArray())
        {
            var path = $"{at}.checks[{i++}]";
            JobFile.Unknown(c, path, ["name", "query", "expect", "baseline", "failureLimit", "consecutiveFailureLimit", "dryRun"], problems);
            var name = Text(c, "name", path, problems);
            var query = Text(c, "query", path, problems);
            if (SqlText.MoreThanOneStatement(path + ".query", query) is { } several)
            {
                problems.Add(several);
            }

            foreach (var used in query is null ? [] : BackfillJob.ParameterNames(query))
            {
                if (!job.Parameters.ContainsKey(used) && !SoakSpec.BuiltInParameters.Contains(used))
                {
                    problems.Add($"{path}.query: uses @{used}, which is neither a job parameter nor one of: {string.Join(", ", SoakSpec.BuiltInParameters.Select(p => "@" + p))}.");
                }
            }

            var expect = ParseExpectation(c, path, problems);
            double? baselineValue = null;
            string? baselineQuery = null;
            if (c.TryGetProperty("baseline", out var b))
            {
                if (b.ValueKind == JsonValueKind.Number)
                {
                    baselineValue = b.GetDouble();
                }
                else if (b.ValueKind == JsonValueKind.Object && b.TryGetProperty("query", out var bq) && bq.ValueKind == JsonValueKind.String)
                {
                    baselineQuery = bq.GetString();
                    if (SqlText.MoreThanOneStatement(path + ".baseline.query", baselineQuery) is { } severalInBaseline)
                    {
                        problems.Add(severalInBaseline);
                    }

                }
                else
                {
                    problems.Add($"{path}.baseline: must be a number or {{ \"query\": \"SELECT ...\" }}.");
                }
            }

            if (expect?.Kind == "atLeastBaseline" && baselineValue is null && baselineQuery is null)
            {
                problems.Add($"{path}.baseline: required by atLeastBaseline.");
            }

            var failureLimit = Limit(c, "failureLimit", path, minimum: 0, fallback: 0, problems) ?? 0;
            var consecutive = Limit(c, "consecutiveFailureLimit", path, minimum: 1, fallback: null, problems);
            var dryRun = c.TryGetProperty("dryRun", out var dr) && dr.ValueKind == JsonValueKind.True;
            if (name is not null && query is not null && expect is not null)
            {
                list.Add(new SoakCheck(name, query, expect, baselineValue, baselineQuery, failureLimit, consecutive, dryRun, path));
            }
        }

        if (list.Select(x => x.Name).Distinct(StringComparer.OrdinalIgnoreCase).Count() != list.Count)
        {
            problems.Add($"{at}.checks: check names must be unique.");
        }

        return list;
    }

    private static Expectation? ParseExpectation(JsonElement c, string path, List<string> problems)
    {
        if (!c.TryGetProperty("expect", out var e) || e.ValueKind != JsonValueKind.Object)
        {
            problems.Add($"{path}.expect: required: one of equals, atMost, atLeast, between [low, high], atLeastBaseline (a ratio).");
            return null;
        }

        var kinds = e.EnumerateObject().ToList();
        if (kinds.Count != 1)
        {
            problems.Add($"{path}.expect: give exactly one of equals, atMost, atLeast, between, atLeastBaseline.");
            return null;
        }

        var k = kinds[0];
        switch (k.Name)
        {
            case "equals" or "atMost" or "atLeast" when k.Value.ValueKind == JsonValueKind.Number:
                return new Expectation(k.Name, k.Value.GetDouble(), null, null, null);
            case "between" when k.Value.ValueKind == JsonValueKind.Array && k.Value.GetArrayLength() == 2 && k.Value.EnumerateArray().All(x => x.ValueKind == JsonValueKind.Number):
                var low = k.Value[0].GetDouble();
                var high = k.Value[1].GetDouble();
                if (low > high)
                {
                    problems.Add($"{path}.expect.between: the low bound {low} is above the high bound {high}.");
                }

                return new Expectation("between", null, low, high, null);
            case "atLeastBaseline" when k.Value.ValueKind == JsonValueKind.Number && k.Value.GetDouble() > 0:
                return new Expectation("atLeastBaseline", null, null, null, k.Value.GetDouble());
            default:
                problems.Add($"{path}.expect.{k.Name}: not a known expectation with a valid value (equals, atMost, atLeast: a number; between: [low, high]; atLeastBaseline: a ratio above 0).");
                return null;
        }
    }

    /// <summary>Parses 6h, 90m, 30s, 500ms, 1h30m, or a TimeSpan such as 00:05:00.</summary>
    public static bool TryParseDuration(string text, out TimeSpan value)
    {
        value = TimeSpan.Zero;
        text = text.Trim();
        var m = DurationPattern().Match(text);
        if (m.Success && m.Length > 0)
        {
            foreach (Capture part in m.Groups["part"].Captures)
            {
                var pm = PartPattern().Match(part.Value);
                var n = double.Parse(pm.Groups[1].Value, CultureInfo.InvariantCulture);
                value += pm.Groups[2].Value switch
                {
                    "ms" => TimeSpan.FromMilliseconds(n),
                    "s" => TimeSpan.FromSeconds(n),
                    "m" => TimeSpan.FromMinutes(n),
                    "h" => TimeSpan.FromHours(n),
                    _ => TimeSpan.FromDays(n),
                };
            }

            return value > TimeSpan.Zero;
        }

        return TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out value) && value > TimeSpan.Zero;
    }

    /// <summary>A whole-number limit of at least <paramref name="minimum"/> (and at most 1,000,000), or the fallback when absent.</summary>
    private static int? Limit(JsonElement e, string name, string at, int minimum, int? fallback, List<string> problems)
    {
        if (!e.TryGetProperty(name, out var v))
        {
            return fallback;
        }

        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var n) && n >= minimum && n <= 1_000_000)
        {
            return n;
        }

        problems.Add($"{at}.{name}: '{v}' must be a whole number from {minimum} to 1000000.");
        return fallback;
    }

    private static TimeSpan Time(JsonElement e, string name, string at, TimeSpan fallback, List<string> problems)
    {
        if (!e.TryGetProperty(name, out var v))
        {
            return fallback;
        }

        if (v.ValueKind == JsonValueKind.String && TryParseDuration(v.GetString()!, out var t))
        {
            return t;
        }

        problems.Add($"{at}.{name}: '{v}' is not a duration (for example 6h, 90m, 30s, 500ms).");
        return fallback;
    }

    private static string? Text(JsonElement e, string name, string at, List<string> problems)
    {
        if (e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String && !string.IsNullOrWhiteSpace(v.GetString()))
        {
            return v.GetString();
        }

        problems.Add($"{at}.{name}: required, a non-empty string.");
        return null;
    }

    [GeneratedRegex(@"^(?<part>\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")]
    private static partial Regex DurationPattern();

    [GeneratedRegex(@"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")]
    private static partial Regex PartPattern();
}
