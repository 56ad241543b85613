using System.Management.Automation;
using DataOps.Engine.Sandbox;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Lists PostgreSQL sandboxes on this machine, running or stopped.</para>
/// <para type="description">Get-DataOpsSandbox reads the sandbox root folder and reports each sandbox's status, port and data
/// directory, including clusters left running by sessions that ended without stopping them. -Name takes wildcards (demo-*); a
/// name without wildcards (or a piped name) with no sandbox is a non-terminating SandboxNotFound error (ObjectNotFound), and the
/// other names are still listed. A pattern that matches nothing lists nothing, as Get-Process does.</para>
/// <para type="link">Start-DataOpsSandbox</para>
/// <para type="link">Stop-DataOpsSandbox</para>
/// </summary>
/// <example>
///   <code>Get-DataOpsSandbox</code>
///   <para>Lists every sandbox.</para>
/// </example>
/// <example>
///   <code>Get-DataOpsSandbox | Where-Object Status -eq Running</code>
///   <para>Lists the sandboxes whose server is up.</para>
/// </example>
/// <example>
///   <code>Get-DataOpsSandbox -Name demo-* | Stop-DataOpsSandbox -Remove -Force</code>
///   <para>Stops and deletes every sandbox whose name starts with demo-, without prompting.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "DataOpsSandbox")]
[OutputType(typeof(DataOpsSandbox))]
public sealed class GetDataOpsSandboxCommand : SandboxCmdlet
{
    /// <summary>Only the sandboxes with these names; wildcards allowed. Binds from piped names and from pipeline objects' Name property.</summary>
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(SandboxNameCompleter))]
    public string[]? Name { get; set; }

    protected override void ProcessRecord()
    {
        if (!TryResolveRoot(out var root))
        {
            return;
        }

        if (Name is null)
        {
            WriteObject(RunEngine((observer, _) => new SandboxManager(root, observer).List()), enumerateCollection: true);
            return;
        }

        // One name of several: an unknown one is reported and the rest are still listed.
        foreach (var name in Name)
        {
            if (WildcardPattern.ContainsWildcardCharacters(name))
            {
                var pattern = new WildcardPattern(name, WildcardOptions.IgnoreCase);
                WriteObject(RunEngine((observer, _) => new SandboxManager(root, observer).List()).Where(s => pattern.IsMatch(s.Name)), enumerateCollection: true);
                continue;
            }

            var list = RunEngine((observer, _) => new SandboxManager(root, observer).List(name));
            if (list.Count == 0)
            {
                WriteError(ToErrorRecord(new Engine.DataOpsException("SandboxNotFound", Engine.DataOpsErrorKind.ObjectNotFound,
                    $"There is no sandbox named '{name}' under {new SandboxManager(root).Root}.", name)));
                continue;
            }

            WriteObject(list, enumerateCollection: true);
        }
    }
}
