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
/// <remarks>
/// A check reads either its <see cref="Query"/> or, when <see cref="Signal"/> is set, a throttle signal
/// (replica lag, retained WAL ...) sampled the way a backfill run's throttle samples it (<see cref="SignalSampler"/>).
/// </remarks>
public sealed record CheckSpec(
    string Name, string Query, Expectation Expect, double? BaselineValue, string? BaselineQuery,
    int FailureLimit, int? ConsecutiveFailureLimit, bool DryRun, string Path, ThrottleSignal? Signal = null);

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
            if (c.ValueKind == JsonValueKind.Object && c.TryGetProperty("signal", out var signalKind))
            {
                if (SignalCheck(c, signalKind, path, problems) is { } signalCheck)
                {
                    list.Add(signalCheck);
                }

                continue;
            }

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

    /// <summary>
    /// A check on a throttle signal: { "name", "signal": "replicaLag", "expect": { "atMost": "1s" } }. The
    /// expectation's sizes ("16MB") or durations ("1s", replicaLag: replay_lag) set what is measured; plain
    /// numbers are bytes for replicaLag and retainedWal, counts for the others.
    /// </summary>
    private static CheckSpec? SignalCheck(JsonElement c, JsonElement signalKind, string path, List<string> problems)
    {
        var before = problems.Count;
        JobFile.Unknown(c, path, ["name", "signal", "standbys", "missing", "expect", "failureLimit", "consecutiveFailureLimit", "dryRun"], problems);
        var name = Text(c, "name", path, problems);
        var kind = signalKind.ValueKind == JsonValueKind.String ? signalKind.GetString() : null;
        if (kind is null || kind == SignalKind.Query || !SignalKind.All.Contains(kind, StringComparer.Ordinal))
        {
            problems.Add($"{path}.signal: {signalKind.GetRawText()} is not a signal a check can read (one of {string.Join(", ", SignalKind.All.Where(k => k != SignalKind.Query))}; a query check has a query instead).");
            return null;
        }

        SignalUnit? unit = null;
        var expect = ParseExpectation(c, path, problems, kind, u => unit ??= u);
        if (unit is null && expect is not null)
        {
            unit = kind is SignalKind.ReplicaLag or SignalKind.RetainedWal ? SignalUnit.Bytes : SignalUnit.Count;
        }

        if (expect?.Kind == "atLeastBaseline")
        {
            problems.Add($"{path}.expect.atLeastBaseline: a signal check compares with fixed values (equals, atMost, atLeast, between).");
        }

        var standbys = new List<string>();
        if (c.TryGetProperty("standbys", out var sb))
        {
            if (kind != SignalKind.ReplicaLag || sb.ValueKind != JsonValueKind.Array || sb.GetArrayLength() == 0 || sb.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(e.GetString())))
            {
                problems.Add($"{path}.standbys: a replicaLag check's standbys are a non-empty list of names (application_name).");
            }
            else
            {
                standbys.AddRange(sb.EnumerateArray().Select(e => e.GetString()!));
            }
        }

        var missingHolds = true;
        if (c.TryGetProperty("missing", out var m))
        {
            if (kind != SignalKind.ReplicaLag || m.ValueKind != JsonValueKind.String || m.GetString() is not ("hold" or "ignore"))
            {
                problems.Add($"{path}.missing: a replicaLag check's missing is hold (a missing standby is an Error sample) or ignore.");
            }

            missingHolds = m.ValueKind != JsonValueKind.String || m.GetString() != "ignore";
        }

        var failureLimit = Limit(c, "failureLimit", path, minimum: 0, fallback: 0, problems) ?? 0;
        var consecutive = Limit(c, "consecutiveFailureLimit", path, minimum: 1, fallback: null, problems);
        var dryRun = c.TryGetProperty("dryRun", out var dr) && dr.ValueKind == JsonValueKind.True;
        if (problems.Count > before || name is null || expect is null)
        {
            return null;
        }

        var signal = new ThrottleSignal { Kind = kind, Source = path, Name = name, Unit = unit!.Value, Standbys = standbys, MissingHolds = missingHolds };
        return new CheckSpec(name, string.Empty, expect, null, null, failureLimit, consecutive, dryRun, path, signal);
    }

    private static Expectation? ParseExpectation(JsonElement c, string path, List<string> problems, string? signalKind = null, Action<SignalUnit>? unitOf = null)
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
        // A signal check's values may be sizes (16MB) or, for replica lag, durations (1s): read as bytes or seconds.
        bool IsNumber(JsonElement x) => x.ValueKind == JsonValueKind.Number || (signalKind is not null && Measured(x, signalKind, out _, out _));
        double Number(JsonElement x)
        {
            if (x.ValueKind == JsonValueKind.Number)
            {
                return x.GetDouble();
            }

            Measured(x, signalKind!, out var value, out var unit);
            unitOf?.Invoke(unit);
            return value;
        }

        switch (k.Name)
        {
            case "equals" or "atMost" or "atLeast" when IsNumber(k.Value):
                return new Expectation(k.Name, Number(k.Value), null, null, null);
            case "between" when k.Value.ValueKind == JsonValueKind.Array && k.Value.GetArrayLength() == 2 && k.Value.EnumerateArray().All(IsNumber):
                var low = Number(k.Value[0]);
                var high = Number(k.Value[1]);
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

    /// <summary>A size (bytes) or, for replicaLag, a duration (seconds) written as text.</summary>
    private static bool Measured(JsonElement x, string kind, out double value, out SignalUnit unit)
    {
        (value, unit) = (0, SignalUnit.Count);
        if (x.ValueKind != JsonValueKind.String || kind is not (SignalKind.ReplicaLag or SignalKind.RetainedWal))
        {
            return false;
        }

        if (SignalValue.TryParseSize(x.GetString()!, out value))
        {
            unit = SignalUnit.Bytes;
            return true;
        }

        if (kind == SignalKind.ReplicaLag && JobDuration.TryParse(x.GetString()!, out var duration))
        {
            (value, unit) = (duration.TotalSeconds, SignalUnit.Seconds);
            return true;
        }

        return false;
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
