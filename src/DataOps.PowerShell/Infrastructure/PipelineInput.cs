using System.Collections.Concurrent;
using System.Management.Automation;
using System.Reflection;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>
/// What a cmdlet needs to know about the object piped to it, beyond the parameters it bound.
/// </summary>
/// <remarks>
/// A parameter typed on the command line is bound once and never re-bound from the pipeline, so
/// PowerShell itself silently drops a piped object's Connection (or Root) when the user also typed
/// -Connection. Objects that a later cmdlet consumes carry where they came from, and acting on their
/// ids in another database is the mistake this guards against (issue 14: seed run 1 of the default
/// database removed instead of the piped one). The cmdlets therefore also take the piped object
/// itself (a hidden ValueFromPipeline parameter) and compare its property with what was bound.
/// Binding the whole object would also accept input that binds nothing else, which PowerShell used
/// to refuse (InputObjectNotBound); <see cref="BindsSomething"/> keeps that refusal, so
/// '<c>'x' | Remove-ScriptExecutionSeed</c>' never means "every seed run".
/// </remarks>
internal static class PipelineInput
{
    public const string ParameterName = "InputObject";

    private static readonly ConcurrentDictionary<Type, (string[] ByPropertyName, bool OtherByValue)> Bindings = new();

    /// <summary>The value of the piped object's property, unwrapped from its PSObject; null when it has none.</summary>
    public static T? Property<T>(PSObject? input, string name)
        where T : class
    {
        var value = input?.Properties[name]?.Value;
        return (value is PSObject wrapped ? wrapped.BaseObject : value) as T;
    }

    /// <summary>The value of the piped object's property when it is a T (such as a report's Healthy flag); null otherwise.</summary>
    public static T? Value<T>(PSObject? input, string name)
        where T : struct
    {
        var value = input?.Properties[name]?.Value;
        return (value is PSObject wrapped ? wrapped.BaseObject : value) is T typed ? typed : null;
    }

    /// <summary>
    /// Whether any other parameter of the cmdlet takes a value from this piped object: by value, or
    /// by one of its property names (or aliases).
    /// </summary>
    public static bool BindsSomething(Cmdlet cmdlet, PSObject input)
    {
        var (names, byValue) = Bindings.GetOrAdd(cmdlet.GetType(), Describe);
        return byValue || names.Any(n => input.Properties[n] is not null);
    }

    /// <summary>The error for a piped object that binds nothing: nothing is done with it.</summary>
    public static ErrorRecord NotBound(Cmdlet cmdlet, PSObject input)
    {
        var (names, _) = Bindings.GetOrAdd(cmdlet.GetType(), Describe);
        var type = input.BaseObject.GetType().Name;
        var ex = new Engine.DataOpsException("InputObjectNotBound", Engine.DataOpsErrorKind.InvalidArgument,
            $"The piped object ({type}) has none of the properties this command takes from the pipeline ({string.Join(", ", names)}); nothing was done with it. " +
            "Pipe the objects of a DataOps command, or pass the values as parameters.",
            type);
        return new ErrorRecord(ex, ex.ErrorId, ErrorCategory.InvalidArgument, type);
    }

    private static (string[], bool) Describe(Type type)
    {
        var names = new List<string>();
        var byValue = false;
        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (property.Name == ParameterName)
            {
                continue;
            }

            foreach (var parameter in property.GetCustomAttributes<ParameterAttribute>())
            {
                byValue |= parameter.ValueFromPipeline;
                if (parameter.ValueFromPipelineByPropertyName)
                {
                    names.Add(property.Name);
                    names.AddRange(property.GetCustomAttributes<AliasAttribute>().SelectMany(a => a.AliasNames));
                }
            }
        }

        return ([.. names.Distinct(StringComparer.OrdinalIgnoreCase)], byValue);
    }
}
