using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using DataOps.Engine.Jobs;

namespace DataOps.Engine.Soak;

/// <summary>The soak section of a job file.</summary>
public sealed record SoakSpec(TimeSpan Duration, TimeSpan Interval, IReadOnlyList<CheckSpec> Checks, int ConsecutiveErrorLimit)
{
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

/// <summary>Reads the job's soak section (its checks through <see cref="CheckParser"/>), with JSON paths in every error.</summary>
public static partial class SoakSpecParser
{
    public static SoakSpec Parse(BackfillJob job)
    {
        if (job.Soak is not { } soak)
        {
            throw JobFile.Invalid(job.SourcePath, ["$.soak: required by Watch-StagingSoak: { \"duration\": \"6h\", \"interval\": \"5m\", \"checks\": [ ... ] }."]);
        }

        ReadOnlyGuard.EnsureJob(job);
        var problems = new List<string>();
        JobFile.Unknown(soak, "$.soak", ["duration", "interval", "checks", "consecutiveErrorLimit"], problems);
        var duration = Time(soak, "duration", "$.soak", TimeSpan.FromHours(6), problems);
        var interval = Time(soak, "interval", "$.soak", TimeSpan.FromMinutes(5), problems);
        var errors = CheckParser.Limit(soak, "consecutiveErrorLimit", "$.soak", minimum: 1, fallback: 3, problems) ?? 3;
        var checks = CheckParser.ParseChecks(soak, "$.soak", job, problems, requireDuration: false);
        if (problems.Count > 0)
        {
            throw JobFile.Invalid(job.SourcePath, problems);
        }

        return new SoakSpec(duration, interval, checks, errors);
    }

    /// <summary>Parses 6h, 90m, 30s, 500ms, 1h30m, or a TimeSpan such as 00:05:00 (see <see cref="JobDuration"/>).</summary>
    public static bool TryParseDuration(string text, out TimeSpan value) => JobDuration.TryParse(text, out value);

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
}
