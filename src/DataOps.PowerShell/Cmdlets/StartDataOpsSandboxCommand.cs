using System.Management.Automation;
using DataOps.Engine.Sandbox;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Starts a private PostgreSQL sandbox on 127.0.0.1 and makes it the session's default connection.</para>
/// <para type="description">Start-DataOpsSandbox runs a throwaway PostgreSQL cluster from the PostgreSQL binaries installed on
/// this machine ($env:DATAOPS_PG_BIN, pg_config --bindir, PATH, /usr/lib/postgresql/*/bin, newest first). The first start
/// runs initdb once and caches the result; later starts copy it, so a new sandbox is up in about a second. The server
/// listens on a free loopback port only. As root it runs as the 'postgres' OS user. A sandbox that is already running
/// (for example left by a session that was killed) is reused and reported, never duplicated; a stopped one is resumed.</para>
/// <para type="link">Stop-DataOpsSandbox</para>
/// <para type="link">Get-DataOpsSandbox</para>
/// <para type="link">Install-DataOpsSchema</para>
/// <para type="link">about_DataOps</para>
/// </summary>
/// <example>
///   <code>Start-DataOpsSandbox</code>
///   <para>Starts (or reuses) the sandbox named 'default' and connects the session to its 'dataops' database.</para>
/// </example>
/// <example>
///   <code>$sb = Start-DataOpsSandbox -Name demo -Reset; Install-DataOpsSchema -Connection $sb.Connection</code>
///   <para>Starts a fresh sandbox named 'demo', discarding any earlier data, and installs the schema into it.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Start, "DataOpsSandbox", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(DataOpsSandbox))]
public sealed class StartDataOpsSandboxCommand : SandboxCmdlet
{
    /// <summary>The sandbox's name: letters, digits, '-' and '_'. Default: 'default'.</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(SandboxNameCompleter))]
    public string Name { get; set; } = SandboxManager.DefaultName;

    /// <summary>Deletes the sandbox's existing data first and starts from a fresh copy of the template.</summary>
    [Parameter]
    public SwitchParameter Reset { get; set; }

    /// <summary>Do not make the sandbox the session's default connection.</summary>
    [Parameter]
    public SwitchParameter NoDefault { get; set; }

    /// <summary>The folder with initdb, pg_ctl and postgres to use, instead of searching for them.</summary>
    [Parameter]
    public string? BinDirectory { get; set; }

    protected override void ProcessRecord()
    {
        if (!TryResolveRoot(out var root))
        {
            return;
        }

        var manager = new SandboxManager(root);
        var action = Reset ? "Start with fresh data (existing data is deleted)" : "Start PostgreSQL sandbox";
        if (!ShouldProcess($"sandbox '{Name}' under {manager.Root}", action))
        {
            return;
        }

        var search = Search();
        var sandbox = RunEngine((observer, ct) => new SandboxManager(manager.Root, observer, search).Start(Name, Reset, ct));
        if (!NoDefault && sandbox.Connection is not null)
        {
            SessionDefaults.Connection = sandbox.Connection;
            WriteVerbose($"The session's default connection is now {sandbox.Connection}.");
        }

        WriteObject(sandbox);
    }

    private PgSearchOptions? Search() =>
        BinDirectory is null ? null : new PgSearchOptions { ExplicitDirectory = GetUnresolvedProviderPathFromPSPath(BinDirectory) };
}
