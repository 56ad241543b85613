using System.Globalization;
using System.Management.Automation;
using System.Text.Json;
using DataOps.Engine.Executions;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>
/// JSON columns as PowerShell objects: a JSON object becomes a PSCustomObject, an array an object[],
/// numbers Int64 (or Double, or Decimal when neither holds them exactly), as ConvertFrom-Json gives them,
/// except that date-like strings stay strings (the stored text, unchanged).
/// </summary>
internal static class JsonObjects
{
    public static object? FromJson(string? json)
    {
        if (string.IsNullOrWhiteSpace(json))
        {
            return null;
        }

        using var document = JsonDocument.Parse(json);
        return ToObject(document.RootElement);
    }

    private static object? ToObject(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var result = new PSObject();
                foreach (var property in element.EnumerateObject())
                {
                    // A repeated key: the last one wins, as in ConvertFrom-Json -AsHashtable.
                    result.Properties.Remove(property.Name);
                    result.Properties.Add(new PSNoteProperty(property.Name, ToObject(property.Value)));
                }

                return result;
            case JsonValueKind.Array:
                return element.EnumerateArray().Select(ToObject).ToArray();
            case JsonValueKind.String:
                return element.GetString();
            case JsonValueKind.Number:
                if (element.TryGetInt64(out var whole))
                {
                    return whole;
                }

                var raw = element.GetRawText();
                return raw.Contains('.', StringComparison.Ordinal) || raw.Contains('e', StringComparison.OrdinalIgnoreCase)
                    ? element.GetDouble()
                    : decimal.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out var big) ? big : element.GetDouble();
            case JsonValueKind.True:
                return true;
            case JsonValueKind.False:
                return false;
            default:
                return null;
        }
    }
}

/// <summary>What the execution cmdlets write: the execution with Input and Output as objects next to InputJson and OutputJson.</summary>
internal static class ExecutionOutput
{
    public static PSObject ToPSObject(WorkflowExecution execution)
    {
        var result = new PSObject(execution);
        result.Properties.Add(new PSNoteProperty("Input", JsonObjects.FromJson(execution.InputJson)));
        result.Properties.Add(new PSNoteProperty("Output", JsonObjects.FromJson(execution.OutputJson)));
        return result;
    }
}
