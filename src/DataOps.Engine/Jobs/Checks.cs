using System.Text.Json;

namespace DataOps.Engine.Jobs;

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

/// <summary>
/// One metric watched by the soak or read once by the health check (after Argo Rollouts' analysis
/// metrics). FailureLimit and ConsecutiveFailureLimit matter to the soak's verdict only.
/// </summary>
public sealed record CheckSpec(
    string Name, string Query, Expectation Expect, double? BaselineValue, string? BaselineQuery,
    int FailureLimit, int? ConsecutiveFailureLimit, bool DryRun, string Path);

/// <summary>Reads a job's check list ($.soak.checks, $.health.checks), with JSON paths in every error.</summary>
public static class CheckParser
{
    /// <summary>Parameters every soak or health query may use besides the job's.</summary>
    public static readonly string[] BuiltInParameters = ["windowStart"];

    internal static IReadOnlyList<CheckSpec> ParseChecks(JsonElement section, string at, BackfillJob job, List<string> problems, bool requireDuration)
    {
        var list = new List<CheckSpec>();
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
                if (!job.Parameters.ContainsKey(used) && !BuiltInParameters.Contains(used))
                {
                    problems.Add($"{path}.query: uses @{used}, which is neither a job parameter nor one of: {string.Join(", ", BuiltInParameters.Select(p => "@" + p))}.");
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
                list.Add(new CheckSpec(name, query, expect, baselineValue, baselineQuery, failureLimit, consecutive, dryRun, path));
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

    /// <summary>A whole-number limit of at least <paramref name="minimum"/> (and at most 1,000,000), or the fallback when absent.</summary>
    internal static int? Limit(JsonElement e, string name, string at, int minimum, int? fallback, List<string> problems)
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

    private static string? Text(JsonElement e, string name, string at, List<string> problems)
    {
        if (e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String && !string.IsNullOrWhiteSpace(v.GetString()))
        {
            return v.GetString();
        }

        problems.Add($"{at}.{name}: required, a non-empty string.");
        return null;
    }
}
