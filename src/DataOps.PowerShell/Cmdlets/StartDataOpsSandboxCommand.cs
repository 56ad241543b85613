using System.Management.Automation;
using DataOps.Engine.Logging;
using DataOps.Engine.Sandbox;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Starts a private PostgreSQL sandbox on 127.0.0.1 and makes it the session's default connection.</para>
/// <para type="description">Start-DataOpsSandbox runs a throwaway PostgreSQL cluster from the PostgreSQL binaries installed on
/// this machine: -BinDirectory or $env:DATAOPS_PG_BIN if given, else pg_config --bindir, PATH, then the usual install places of the
/// OS, newest server first (Linux: /usr/lib/postgresql/*/bin, /usr/pgsql-*, /usr/local/pgsql; Windows: the EDB installer's
/// registry entries and Program Files\PostgreSQL\*, Scoop, Chocolatey; macOS: Postgres.app, Homebrew postgresql@* under
/// /opt/homebrew and /usr/local, /Library/PostgreSQL). docs/platforms.md has the full list; if none is found the error names
/// every place searched. The first start
/// runs initdb once and caches the result; later starts copy it, so a new sandbox is up in about a second. The server
/// listens on a free loopback port only. As root it runs as the 'postgres' OS user. A sandbox that is already running
/// (for example left by a session that was killed) is reused and reported, never duplicated; a stopped one is resumed.</para>
/// <para type="description">-Reset deletes an existing sandbox's data, so it asks first, as a High-impact change (whenever
/// $ConfirmPreference is not None), unless -Force or -Confirm:$false is given; an explicit -Confirm always asks, and -WhatIf
/// deletes nothing. A session that cannot ask (pwsh -NonInteractive, CI) stops with a ConfirmationRequired error and deletes
/// nothing: pass -Force (or -Confirm:$false) there. -Reset of a sandbox that does not exist yet deletes nothing and does not ask;
/// a plain start never asks.</para>
/// <para type="description">-Replicas N (0 to 4) also runs N streaming physical standbys of the sandbox, for testing code that
/// reads from or waits for replicas: each is a pg_basebackup -R -X stream of the primary in the sandbox's folder (replicas/r1 ...),
/// a hot standby on its own free loopback port, started as the primary is, named '&lt;sandbox&gt;-r1' (its application_name in
/// pg_stat_replication). Start returns once each one streams; if one does not, what this start began is stopped (and what it
/// created deleted) and a SandboxReplicaFailed error carries the end of the tool's output or the replica's log. The sandbox's
/// Replicas property lists them ($sb.Replicas[0].Connection connects to the first), Get-DataOpsSandbox shows them in any
/// session, Stop-DataOpsSandbox stops them before the primary and -Remove deletes them with it. No replication slots are made
/// (the primary keeps wal_keep_size = 128MB instead), so a replica left down while the primary writes more than that cannot catch
/// up; -Reset starts over. Replicas are only ever added: without -Replicas a start restarts the ones the sandbox has, a larger
/// number adds the missing ones, and a smaller one is refused (SandboxReplicasFewer) rather than deleting a standby.</para>
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
///   <para>Starts a fresh sandbox named 'demo' and installs the schema into it. If 'demo' already exists, it first asks before
///   deleting its data.</para>
/// </example>
/// <example>
///   <code>$sb = Start-DataOpsSandbox -Name ci -Reset -Force -NoDefault</code>
///   <para>In a script or CI job: a fresh sandbox named 'ci', deleting any earlier data without asking.</para>
/// </example>
/// <example>
///   <code>$sb = Start-DataOpsSandbox -Name lagtest -Replicas 1
/// Invoke-DataOpsQuery 'SELECT pg_wal_replay_pause()' -Connection $sb.Replicas[0].Connection</code>
///   <para>Starts a sandbox named 'lagtest' with one streaming replica, then pauses replay on the replica so that it lags the
///   primary from now on (SELECT pg_wal_replay_resume() lets it catch up).</para>
/// </example>
[Cmdlet(VerbsLifecycle.Start, "DataOpsSandbox", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(DataOpsSandbox))]
public sealed class StartDataOpsSandboxCommand : SandboxCmdlet
{
    /// <summary>The sandbox's name: letters, digits, '-' and '_'. Default: 'default'.</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(SandboxNameCompleter))]
    public string Name { get; set; } = SandboxManager.DefaultName;

    /// <summary>Deletes the sandbox's existing data first, after asking for confirmation, and starts from a fresh copy of the template.</summary>
    [Parameter]
    public SwitchParameter Reset { get; set; }

    /// <summary>With -Reset: deletes the existing data without asking. It only skips the question: an explicit -Confirm still asks, and -WhatIf still deletes nothing.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Do not make the sandbox the session's default connection.</summary>
    [Parameter]
    public SwitchParameter NoDefault { get; set; }

    /// <summary>How many streaming replicas (hot standbys) the sandbox has, 0 to 4. Missing ones are made by pg_basebackup and
    /// started; a number below what the sandbox has is refused (SandboxReplicasFewer).</summary>
    /// <default>the replicas the sandbox has (none for a new sandbox)</default>
    [Parameter]
    [ValidateRange(0, SandboxManager.MaxReplicas)]
    public int? Replicas { get; set; }

    /// <summary>The folder with initdb, pg_ctl and postgres to use, instead of searching for them.</summary>
    /// <default>$env:DATAOPS_PG_BIN, pg_config --bindir, PATH, then the usual install folders</default>
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
        if (Replicas is > 0)
        {
            action += $" with {Replicas} streaming replica(s)";
        }

        var folder = Reset ? manager.ExistingFolder(Name) : null;
        var deletion = folder is null ? null : new HighImpact($"Resetting sandbox '{Name}' deletes its data for good ({folder})", "Confirm sandbox reset", Name);
        if (!ShouldWrite($"sandbox '{Name}' under {manager.Root}", action, Force, deletion))
        {
            return;
        }

        var search = Search();
        var status = Replicas is > 0
            ? $"Starting sandbox '{Name}' and {Replicas} replica(s) (pg_basebackup for new ones)"
            : $"Starting sandbox '{Name}' (initdb and pg_ctl on first use)";
        var sandbox = RunEngine((observer, ct) => Heartbeat.Track(Task.Run(() => new SandboxManager(manager.Root, observer, search).Start(Name, Reset, Replicas, ct), ct), observer,
            "Start-DataOpsSandbox", status));
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
