using System.Collections;
using System.Management.Automation;
using System.Text.Json;
using DataOps.Engine;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>
/// Turns a parameter value into JSON text: a string is taken as JSON and checked; a hashtable,
/// PSCustomObject, array or scalar is serialized.
/// </summary>
internal static class JsonArgument
{
    public static string? ToJson(object? value, string parameter)
    {
        value = Unwrap(value);
        if (value is null)
        {
            return null;
        }

        if (value is string text)
        {
            try
            {
                using var _ = JsonDocument.Parse(text);
                return text;
            }
            catch (JsonException ex)
            {
                throw new DataOpsException("JsonInvalid", DataOpsErrorKind.InvalidArgument,
                    $"-{parameter} is a string but not valid JSON ({ex.Message}). Pass JSON text, or a hashtable to serialize.", text);
            }
        }

        return JsonSerializer.Serialize(ToPlain(value, parameter, 0));
    }

    /// <summary>Deeper than JSON documents are in practice; a hashtable that contains itself would otherwise recurse until the process dies.</summary>
    private const int MaxDepth = 64;

    private static object? Unwrap(object? value) => value is PSObject ps && ps.BaseObject is not PSCustomObject ? ps.BaseObject : value;

    private static object? ToPlain(object? value, string parameter, int depth)
    {
        value = Unwrap(value);
        if (depth > MaxDepth)
        {
            throw new DataOpsException("JsonArgumentTooDeep", DataOpsErrorKind.InvalidArgument,
                $"-{parameter} nests more than {MaxDepth} levels deep (does a hashtable or object contain itself?). Pass a value without cycles, or JSON text.", parameter);
        }

        switch (value)
        {
            case null:
                return null;
            case string or bool or char or DateTime or DateTimeOffset or Guid:
                return value;
            case IDictionary dictionary:
                {
                    var result = new Dictionary<string, object?>(StringComparer.Ordinal);
                    foreach (DictionaryEntry e in dictionary)
                    {
                        result[e.Key.ToString()!] = ToPlain(e.Value, parameter, depth + 1);
                    }

                    return result;
                }

            case PSObject custom:
                return custom.Properties.ToDictionary(p => p.Name, p => ToPlain(p.Value, parameter, depth + 1), StringComparer.Ordinal);
            case IEnumerable list:
                return list.Cast<object?>().Select(item => ToPlain(item, parameter, depth + 1)).ToList();
            default:
                return value.GetType().IsPrimitive || value is decimal ? value : value.ToString();
        }
    }
}
