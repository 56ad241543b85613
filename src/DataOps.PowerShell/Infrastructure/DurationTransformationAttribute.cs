using System.Management.Automation;
using DataOps.Engine.Soak;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>
/// Lets TimeSpan parameters take 6h, 90m, 30s, 500ms or 1h30m as well as a TimeSpan or '00:05:00'
/// (after Pester's TimeSpanOrStringWithTimeUnit). A bare number is seconds.
/// </summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
public sealed class DurationTransformationAttribute : ArgumentTransformationAttribute
{
    public override object Transform(EngineIntrinsics engineIntrinsics, object inputData)
    {
        var value = inputData is PSObject ps ? ps.BaseObject : inputData;
        return value switch
        {
            TimeSpan t => t,
            string s when SoakSpecParser.TryParseDuration(s, out var parsed) => parsed,
            // PowerShell reads 30s as a short and 2d as a decimal (numeric literal suffixes): take them as the units they look like.
            short seconds => TimeSpan.FromSeconds(seconds),
            decimal days => TimeSpan.FromDays((double)days),
            int or long or double => TimeSpan.FromSeconds(Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture)),
            _ => throw new ArgumentTransformationMetadataException(
                $"'{value}' is not a duration. Use a number with a unit (6h, 90m, 30s, 500ms, 1h30m) or a TimeSpan such as 00:05:00."),
        };
    }
}
