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
/// ships at the same or a newer version is left to the default context, so framework types such as
/// System.Diagnostics.DiagnosticSource exist once.
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
            var frameworkVersion = AssemblyName.GetAssemblyName(framework).Version;
            var wanted = assemblyName.Version ?? AssemblyName.GetAssemblyName(file).Version;
            if (frameworkVersion is not null && wanted is not null && frameworkVersion >= wanted)
            {
                return null;
            }
        }

        return LoadFromAssemblyPath(file);
    }
}
