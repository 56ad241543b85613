using System.Globalization;
using System.Management.Automation;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>
/// Lets a time parameter (DateTimeOffset) take what a user has at hand: a DateTimeOffset (the type
/// of every time on the module's own objects, e.g. -Since $e.StartedAt), a DateTime (Get-Date; an
/// unspecified kind is local time, as PowerShell's own cmdlets read it) or a string PowerShell or
/// .NET can read ('2024-05-01', '2024-05-01T08:00:00Z', '2024-05-01 10:00 +02:00').
/// </summary>
/// <remarks>
/// A DateTime parameter refused DateTimeOffset values (PowerShell has no conversion between them),
/// so the module's own StartedAt could not be passed back to -Since.
/// </remarks>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
public sealed class PointInTimeTransformationAttribute : ArgumentTransformationAttribute
{
    public override object? Transform(EngineIntrinsics engineIntrinsics, object? inputData)
    {
        var value = inputData is PSObject ps ? ps.BaseObject : inputData;
        return value switch
        {
            null => null,
            DateTimeOffset t => t,
            DateTime d => new DateTimeOffset(d),
            string s when DateTimeOffset.TryParse(s, CultureInfo.InvariantCulture, DateTimeStyles.AllowWhiteSpaces | DateTimeStyles.AssumeLocal, out var parsed) => parsed,
            string s when DateTimeOffset.TryParse(s, CultureInfo.CurrentCulture, DateTimeStyles.AllowWhiteSpaces | DateTimeStyles.AssumeLocal, out var parsed) => parsed,
            _ => throw new ArgumentTransformationMetadataException(
                $"'{value}' is not a point in time. Pass a DateTimeOffset or DateTime (for example (Get-Date).AddHours(-6) or an execution's StartedAt) or a date string such as '2024-05-01' or '2024-05-01T08:00:00Z'."),
        };
    }
}
