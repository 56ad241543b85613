using System.Management.Automation;
using DataOps.Engine.Connections;
using DataOps.Engine.Sandbox;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Stops a PostgreSQL sandbox, and with -Remove deletes its data.</para>
/// <para type="description">Stop-DataOpsSandbox shuts the sandbox's server down cleanly (pg_ctl stop -m fast), its replicas
/// (Start-DataOpsSandbox -Replicas) first. The data stays for the next Start-DataOpsSandbox, which starts the replicas again,
/// unless -Remove is given, which deletes the replicas with it. If the session's default connection points at the sandbox,
/// the default is cleared.</para>
/// <para type="description">A plain stop does not ask. -Remove deletes data, so it asks first, as a High-impact change (whenever
/// $ConfirmPreference is not None), unless -Force or -Confirm:$false is given; an explicit -Confirm always asks, and -WhatIf
/// deletes nothing. A session that cannot ask (pwsh -NonInteractive, CI) stops with a ConfirmationRequired error and
/// deletes nothing: pass -Confirm:$false (or -Force) there.</para>
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

    /// <summary>Also deletes the sandbox's folder (data, log, password, replicas), after asking for confirmation.</summary>
    [Parameter]
    public SwitchParameter Remove { get; set; }

    /// <summary>With -Remove: deletes without asking. It only skips the question: an explicit -Confirm still asks, and -WhatIf still deletes nothing.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Returns the stopped sandbox.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        if (!TryResolveRoot(out var root))
        {
            return;
        }

        // Only deleting asks; a sandbox that does not exist fails below with SandboxNotFound, unasked.
        var folder = Remove ? new SandboxManager(root).ExistingFolder(Name) : null;
        var deletion = folder is null ? null : new HighImpact($"Removing sandbox '{Name}' deletes its data for good ({folder})", "Confirm sandbox deletion", Name);
        if (!ShouldWrite($"sandbox '{Name}'", Remove ? "Stop and delete its data" : "Stop", Force, deletion))
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
