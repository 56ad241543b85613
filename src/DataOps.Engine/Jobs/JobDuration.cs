using System.Globalization;
using System.Text.RegularExpressions;

namespace DataOps.Engine.Jobs;

/// <summary>The durations of a job file ($.lockTimeout, $.soak.duration, ...) and of -Duration style parameters.</summary>
public static partial class JobDuration
{
    /// <summary>Parses 6h, 90m, 30s, 500ms, 1h30m, or a TimeSpan such as 00:05:00.</summary>
    public static bool TryParse(string text, out TimeSpan value)
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

    [GeneratedRegex(@"^(?<part>\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")]
    private static partial Regex DurationPattern();

    [GeneratedRegex(@"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")]
    private static partial Regex PartPattern();
}
