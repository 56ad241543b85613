using System.Management.Automation;
using DataOps.Engine;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>
/// A cmdlet that works on sandboxes under a root folder. A piped sandbox is acted on under its own
/// root: its Root property binds to -Root, and a -Root typed on the command line that names another
/// folder refuses the object (SandboxRootMismatch) instead of acting on a namesake elsewhere.
/// </summary>
public abstract class SandboxCmdlet : DataOpsCmdlet
{
    /// <summary>The folder that holds sandboxes. Default: $env:DATAOPS_SANDBOX_ROOT, else a per-user folder. Binds from pipeline objects' Root property; a -Root that names another folder than a piped sandbox's is refused (SandboxRootMismatch).</summary>
    /// <default>$env:DATAOPS_SANDBOX_ROOT, else a per-user folder</default>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public string? Root { get; set; }

    /// <summary>The piped object itself, read only to check that it lives under the root this command acts on. Not for the command line.</summary>
    [Parameter(ValueFromPipeline = true, DontShow = true)]
    public PSObject? InputObject { get; set; }

    /// <summary>
    /// The root for the object at hand (null: the default root). A piped object under another root
    /// than -Root, or one that binds nothing, is refused with a non-terminating error and false.
    /// </summary>
    protected bool TryResolveRoot(out string? root)
    {
        root = Root is null ? null : GetUnresolvedProviderPathFromPSPath(Root);
        if (InputObject is not { } input)
        {
            return true;
        }

        if (!PipelineInput.BindsSomething(this, input))
        {
            WriteError(PipelineInput.NotBound(this, input));
            return false;
        }

        var piped = PipelineInput.Property<string>(input, nameof(Root));
        var acting = root ?? Engine.Sandbox.SandboxManager.DefaultRoot();
        if (piped is null || SameFolder(piped, acting))
        {
            return true;
        }

        var ex = new DataOpsException("SandboxRootMismatch", DataOpsErrorKind.InvalidArgument,
            $"The piped sandbox ({input.BaseObject}) lives under {piped}, but this command acts under {acting}; nothing was done with it. " +
            "Leave out -Root to act on each sandbox under its own root, or pipe sandboxes from the root you name.",
            piped)
        {
            RecommendedAction = $"Leave out -Root, or pass -Root {piped}.",
        };
        WriteError(ToErrorRecord(ex));
        return false;
    }

    private static bool SameFolder(string a, string b) =>
        string.Equals(Normal(a), Normal(b), OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);

    private static string Normal(string path) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
}
