using System.Management.Automation;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>
/// Registers the private load context when the module is imported and removes the hook when it is
/// removed. Only DataOps.Engine is resolved from the default context; everything the engine needs
/// then comes from Dependencies/ through <see cref="DependencyLoadContext"/>.
/// </summary>
public sealed class ModuleInitializer : IModuleAssemblyInitializer, IModuleAssemblyCleanup
{
    public void OnImport() => DependencyLoader.Register();

    public void OnRemove(PSModuleInfo psModuleInfo) => DependencyLoader.Unregister();
}

internal static class DependencyLoader
{
    private const string EngineAssembly = "DataOps.Engine";
    private static readonly object Gate = new();
    private static DependencyLoadContext? _context;
    private static bool _registered;

    /// <summary>Dependencies/ beside the cmdlet assembly.</summary>
    public static string DependencyDirectory =>
        Path.Combine(Path.GetDirectoryName(typeof(DependencyLoader).Assembly.Location)!, "Dependencies");

    /// <summary>
    /// Hooks the default context's Resolving event; nothing else happens at import. The load context is
    /// made on the first request for the engine (the first cmdlet that runs), so Import-Module does not pay
    /// for it (docs/benchmarks.md, startup).
    /// </summary>
    public static void Register()
    {
        lock (Gate)
        {
            if (_registered)
            {
                return;
            }

            AssemblyLoadContext.Default.Resolving += ResolveEngine;
            _registered = true;
        }
    }

    public static void Unregister()
    {
        lock (Gate)
        {
            if (_registered)
            {
                AssemblyLoadContext.Default.Resolving -= ResolveEngine;
                _registered = false;
            }
        }
    }

    private static Assembly? ResolveEngine(AssemblyLoadContext defaultContext, AssemblyName name) =>
        string.Equals(name.Name, EngineAssembly, StringComparison.Ordinal) ? Context().LoadFromAssemblyName(name) : null;

    private static DependencyLoadContext Context()
    {
        lock (Gate)
        {
            return _context ??= new DependencyLoadContext(DependencyDirectory);
        }
    }
}

/// <summary>
/// Loads the engine and its packages from Dependencies/. An assembly the shared framework already
/// ships is left to the default context (so framework types such as
/// System.Diagnostics.DiagnosticSource exist once) only when the framework's copy satisfies the
/// request the way PowerShellEditorServices checks it: the same name, culture and public key
/// token, at the same or a newer version. A same-named assembly from another publisher, or for
/// another culture, never stands in for ours.
/// </summary>
internal sealed class DependencyLoadContext(string directory) : AssemblyLoadContext("DataOps.Dependencies", isCollectible: false)
{
    private static readonly string FrameworkDirectory = RuntimeEnvironment.GetRuntimeDirectory();

    protected override Assembly? Load(AssemblyName assemblyName)
    {
        var file = Path.Combine(directory, assemblyName.Name + ".dll");
        if (!File.Exists(file))
        {
            return null;
        }

        var framework = Path.Combine(FrameworkDirectory, assemblyName.Name + ".dll");
        if (File.Exists(framework))
        {
            var ours = AssemblyName.GetAssemblyName(file);
            var required = assemblyName.Version is null ? ours : assemblyName;
            if (Satisfies(required, ours, AssemblyName.GetAssemblyName(framework)))
            {
                return null;
            }
        }

        return LoadFromAssemblyPath(file);
    }

    /// <summary>
    /// Whether <paramref name="candidate"/> can serve a request for <paramref name="required"/>
    /// (whose own copy is <paramref name="ours"/>): same name, same culture, same public key token
    /// (the request's, else our copy's), and a version at least the one asked for.
    /// </summary>
    internal static bool Satisfies(AssemblyName required, AssemblyName ours, AssemblyName candidate)
    {
        if (!string.Equals(required.Name, candidate.Name, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        if (!string.Equals(Culture(required.CultureName), Culture(candidate.CultureName), StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        var token = required.GetPublicKeyToken() is { Length: > 0 } asked ? asked : ours.GetPublicKeyToken() ?? [];
        if (!token.AsSpan().SequenceEqual(candidate.GetPublicKeyToken() ?? []))
        {
            return false;
        }

        var version = required.Version ?? ours.Version;
        return version is null || (candidate.Version is { } v && v >= version);
    }

    private static string Culture(string? name) => string.IsNullOrEmpty(name) ? "neutral" : name;
}
