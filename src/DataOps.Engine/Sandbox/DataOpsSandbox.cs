using DataOps.Engine.Connections;

namespace DataOps.Engine.Sandbox;

/// <summary>Whether a sandbox's server is up: names (the property is a string, so ConvertTo-Json and Export-Csv write the name).</summary>
public static class SandboxStatus
{
    public const string Running = nameof(Running);
    public const string Stopped = nameof(Stopped);
    public const string Removed = nameof(Removed);
}

/// <summary>What Start did to get the sandbox running (names, like <see cref="SandboxStatus"/>).</summary>
public static class SandboxStartAction
{
    /// <summary>A new cluster was made from the cached template.</summary>
    public const string Created = nameof(Created);

    /// <summary>An existing, stopped cluster was started again (after Stop or a crash).</summary>
    public const string Resumed = nameof(Resumed);

    /// <summary>The cluster was already running, left by another or an earlier session, and is reused.</summary>
    public const string Reused = nameof(Reused);

    public const string None = nameof(None);
}

/// <summary>A private PostgreSQL cluster on 127.0.0.1, made from local binaries.</summary>
public sealed class DataOpsSandbox
{
    public required string Name { get; init; }

    /// <summary>The folder that holds this sandbox (and its siblings); piped to a sandbox cmdlet, it binds to -Root.</summary>
    public required string Root { get; init; }

    public required string Status { get; init; }

    public string Action { get; init; } = SandboxStartAction.None;

    public int Port { get; init; }

    public int ProcessId { get; init; }

    public required string DataDirectory { get; init; }

    public required string LogPath { get; init; }

    public string? PostgresVersion { get; init; }

    public string? BinDirectory { get; init; }

    public DateTimeOffset? StartedAt { get; init; }

    /// <summary>The connection to the sandbox's 'dataops' database; null when it is not running.</summary>
    public DataOpsConnection? Connection { get; init; }

    /// <summary>
    /// The sandbox's streaming standbys (Start-DataOpsSandbox -Replicas), first to last; empty when it has none.
    /// A list PowerShell indexes ($sb.Replicas[0]) and counts.
    /// </summary>
    public IReadOnlyList<DataOpsSandboxReplica> Replicas { get; init; } = NoReplicas;

    private static readonly IReadOnlyList<DataOpsSandboxReplica> NoReplicas = Array.Empty<DataOpsSandboxReplica>();

    public override string ToString() => Status == SandboxStatus.Running ? $"{Name} (127.0.0.1:{Port})" : $"{Name} ({Status})";
}

/// <summary>
/// A streaming physical standby of a sandbox (pg_basebackup -R -X stream of the primary), read-only,
/// on its own loopback port, in the sandbox's folder (replicas/r&lt;n&gt;).
/// </summary>
public sealed class DataOpsSandboxReplica
{
    /// <summary>'&lt;sandbox&gt;-r&lt;n&gt;': also its application_name in the primary's pg_stat_replication.</summary>
    public required string Name { get; init; }

    /// <summary>The name of the sandbox (the primary) it replicates.</summary>
    public required string Sandbox { get; init; }

    /// <summary>1 for the first replica.</summary>
    public int Index { get; init; }

    /// <summary>Running or Stopped: whether its server is up (a <see cref="SandboxStatus"/> name).</summary>
    public required string Status { get; init; }

    /// <summary>What this Start did to it: Created, Resumed, Reused, or None (a <see cref="SandboxStartAction"/> name).</summary>
    public string Action { get; init; } = SandboxStartAction.None;

    public int Port { get; init; }

    public int ProcessId { get; init; }

    public required string DataDirectory { get; init; }

    public required string LogPath { get; init; }

    /// <summary>The connection to the standby's 'dataops' database (read-only: it is in recovery); null when it is not running.</summary>
    public DataOpsConnection? Connection { get; init; }

    public override string ToString() => Status == SandboxStatus.Running ? $"{Name} (127.0.0.1:{Port})" : $"{Name} ({Status})";
}
