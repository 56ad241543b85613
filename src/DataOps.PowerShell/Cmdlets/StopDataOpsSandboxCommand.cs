using System.Management.Automation;
using DataOps.Engine.Connections;
using DataOps.Engine.Sandbox;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Stops a PostgreSQL sandbox, and with -Remove deletes its data.</para>
/// <para type="description">Stop-DataOpsSandbox shuts the sandbox's server down cleanly (pg_ctl stop -m fast). The data stays
/// for the next Start-DataOpsSandbox unless -Remove is given. If the session's default connection points at the sandbox,
/// the default is cleared.</para>
/// <para type="link">Start-DataOpsSandbox</para>
/// <para type="link">Get-DataOpsSandbox</para>
/// </summary>
/// <example>
///   <code>Stop-DataOpsSandbox</code>
///   <para>Stops the sandbox named 'default' and keeps its data.</para>
/// </example>
/// <example>
///   <code>Get-DataOpsSandbox | Stop-DataOpsSandbox -Remove -Confirm:$false</code>
///   <para>Stops and deletes every sandbox without prompting.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Stop, "DataOpsSandbox", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(DataOpsSandbox))]
public sealed class StopDataOpsSandboxCommand : SandboxCmdlet
{
    /// <summary>The sandbox to stop. Default: 'default'. Binds from piped names and from pipeline objects' Name property.</summary>
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(SandboxNameCompleter))]
    public string Name { get; set; } = SandboxManager.DefaultName;

    /// <summary>Also deletes the sandbox's folder (data, log, password).</summary>
    [Parameter]
    public SwitchParameter Remove { get; set; }

    /// <summary>Returns the stopped sandbox.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        if (!TryResolveRoot(out var root))
        {
            return;
        }

        if (!ShouldProcess($"sandbox '{Name}'", Remove ? "Stop and delete its data" : "Stop"))
        {
            return;
        }

        // One sandbox of several (pipeline input): a failure, such as an unknown name, is non-terminating.
        if (!TryRunEngine((observer, ct) => Task.FromResult(new SandboxManager(root, observer).Stop(Name, Remove, ct)), out var sandbox))
        {
            return;
        }

        if (SessionDefaults.Connection is { Source: ConnectionSource.Sandbox } current && current.Name == Name)
        {
            SessionDefaults.Connection = null;
            WriteVerbose("The session's default connection was this sandbox; it is cleared.");
        }

        if (PassThru)
        {
            WriteObject(sandbox);
        }
    }
}
