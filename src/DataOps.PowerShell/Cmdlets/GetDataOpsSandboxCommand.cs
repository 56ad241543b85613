using System.Management.Automation;
using DataOps.Engine.Sandbox;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Lists PostgreSQL sandboxes on this machine, running or stopped.</para>
/// <para type="description">Get-DataOpsSandbox reads the sandbox root folder and reports each sandbox's status, port and data
/// directory, including clusters left running by sessions that ended without stopping them.</para>
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
[Cmdlet(VerbsCommon.Get, "DataOpsSandbox")]
[OutputType(typeof(DataOpsSandbox))]
public sealed class GetDataOpsSandboxCommand : SandboxCmdlet
{
    /// <summary>Only the sandbox with this name.</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(SandboxNameCompleter))]
    public string? Name { get; set; }

    protected override void ProcessRecord()
    {
        if (!TryResolveRoot(out var root))
        {
            return;
        }

        var list = RunEngine((observer, _) => new SandboxManager(root, observer).List(Name));
        if (Name is not null && list.Count == 0)
        {
            WriteError(ToErrorRecord(new Engine.DataOpsException("SandboxNotFound", Engine.DataOpsErrorKind.ObjectNotFound,
                $"There is no sandbox named '{Name}' under {new SandboxManager(root).Root}.", Name)));
            return;
        }

        WriteObject(list, enumerateCollection: true);
    }
}
