using System.Globalization;

namespace DataOps.Engine.Sandbox;

/// <summary>What the sandbox asks of the PostgreSQL tools.</summary>
public enum SandboxStep
{
    /// <summary>initdb: make the template cluster.</summary>
    InitDb,

    /// <summary>pg_ctl start: run the server in the background (never as a Windows service).</summary>
    Start,

    /// <summary>pg_ctl stop, fast mode: sessions are ended, the server shuts down cleanly.</summary>
    Stop,
}

/// <summary>The paths and port one step needs; a step ignores what it does not use.</summary>
/// <param name="DataDirectory">The cluster's data folder.</param>
/// <param name="LogFile">The server log (Start).</param>
/// <param name="SocketDirectory">The private Unix-socket folder (Start, not on Windows; "" for no socket).</param>
/// <param name="PasswordFile">The superuser's password file (InitDb).</param>
/// <param name="Port">The loopback port (Start).</param>
public sealed record SandboxPaths(string DataDirectory, string? LogFile = null, string? SocketDirectory = null, string? PasswordFile = null, int Port = 0);

/// <summary>
/// Every command line and configuration text the sandbox gives PostgreSQL, per platform, in one
/// place so each can be checked as data for Linux, macOS and Windows on any machine.
/// <para>
/// Arguments are returned as a list for <see cref="System.Diagnostics.ProcessStartInfo.ArgumentList"/>:
/// each path is one argument whatever spaces it holds, and .NET quotes it for the platform. The one
/// string that is parsed again is pg_ctl's -o (pg_ctl pastes it into the command line it starts
/// the server with: through /bin/sh on Unix, through cmd.exe on Windows), so it holds no path on
/// Windows and the Unix socket folder single-quoted for sh.
/// </para>
/// <para>
/// Windows (PostgreSQL's documentation: unix_socket_directories is empty by default there, and
/// pg_ctl register is what makes a service; plain pg_ctl start runs the server as the calling
/// user, with administrator rights dropped): no socket folder, no "local" line in pg_hba.conf,
/// TCP on 127.0.0.1 only.
/// </para>
/// </summary>
public static class SandboxCommandLines
{
    public const int WaitSeconds = 60;

    /// <summary>The arguments of initdb (InitDb) or pg_ctl (Start, Stop) on <paramref name="os"/>.</summary>
    public static IReadOnlyList<string> Arguments(PgPlatformKind os, SandboxStep step, SandboxPaths paths)
    {
        var wait = WaitSeconds.ToString(CultureInfo.InvariantCulture);
        switch (step)
        {
            case SandboxStep.InitDb:
                return
                [
                    "-D", paths.DataDirectory, "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync",
                    "--auth-local=trust", "--auth-host=scram-sha-256",
                    $"--pwfile={paths.PasswordFile ?? throw new ArgumentException("InitDb needs the password file.", nameof(paths))}",
                ];

            case SandboxStep.Start:
                var port = paths.Port.ToString(CultureInfo.InvariantCulture);
                var options = os == PgPlatformKind.Windows
                    ? $"-p {port} -c listen_addresses=127.0.0.1"
                    : $"-p {port} -k {ShellQuote(paths.SocketDirectory ?? throw new ArgumentException("Start needs the socket folder on Unix.", nameof(paths)))} -c listen_addresses=127.0.0.1";
                return ["-D", paths.DataDirectory, "-l", paths.LogFile ?? throw new ArgumentException("Start needs the log file.", nameof(paths)), "-w", "-t", wait, "-o", options, "start"];

            case SandboxStep.Stop:
                return ["-D", paths.DataDirectory, "-m", "fast", "-w", "-t", wait, "stop"];

            default:
                throw new ArgumentOutOfRangeException(nameof(step), step, null);
        }
    }

    /// <summary>
    /// Appended to the template's postgresql.conf. Loopback only; fsync off loses data only if the
    /// machine itself crashes (commits still survive a killed server). Windows also turns the
    /// Unix socket off, so the server never tries a socket folder it was not given.
    /// </summary>
    public static string ServerSettings(PgPlatformKind os) =>
        "\n# DataOps sandbox\n" +
        "listen_addresses = '127.0.0.1'\n" +
        (os == PgPlatformKind.Windows ? "unix_socket_directories = ''\n" : string.Empty) +
        "fsync = off\nfull_page_writes = off\nmax_connections = 100\nshared_buffers = 128MB\nmax_wal_size = 4GB\ncheckpoint_timeout = 30min\n";

    /// <summary>
    /// pg_hba.conf: password auth over TCP from 127.0.0.1; trust only on the private socket folder, which Windows has not;
    /// replication connections (the sandbox's replicas) from 127.0.0.1 with the same password.
    /// </summary>
    public static string HostBasedAuth(PgPlatformKind os) =>
        (os == PgPlatformKind.Windows ? string.Empty : "local all all trust\n") +
        "host all all 127.0.0.1/32 scram-sha-256\n" +
        ReplicationHostBasedAuth;

    /// <summary>The pg_hba.conf line replicas connect by (a sandbox made from an older template gets it appended on first use).</summary>
    public const string ReplicationHostBasedAuth = "host replication all 127.0.0.1/32 scram-sha-256\n";

    /// <summary>
    /// pg_basebackup for a replica: -R writes standby.signal (and a primary_conninfo that
    /// <see cref="StandbySettings"/> then replaces), -X stream copies the WAL the backup needs over a
    /// second connection, -c fast checkpoints at once (a spread checkpoint under checkpoint_timeout
    /// 30min would wait minutes), --no-sync as fsync is off anyway, -w never prompts for a password.
    /// </summary>
    public static IReadOnlyList<string> BaseBackupArguments(string dataDirectory, string connectionInfo) =>
        ["-D", dataDirectory, "-d", connectionInfo, "-R", "-X", "stream", "-c", "fast", "--no-sync", "-w"];

    /// <summary>
    /// The libpq connection a replica uses to reach its primary: loopback, the password from a
    /// passfile (so neither a command line nor the standby's configuration holds it), and the
    /// replica's name as application_name, which is how pg_stat_replication on the primary names it.
    /// </summary>
    public static string ReplicationConnectionInfo(int primaryPort, string passFile, string applicationName) =>
        $"host=127.0.0.1 port={primaryPort.ToString(CultureInfo.InvariantCulture)} user=postgres passfile={ConnInfoQuote(passFile)} application_name={ConnInfoQuote(applicationName)}";

    /// <summary>
    /// Appended to a replica's postgresql.auto.conf, after the primary_conninfo lines pg_basebackup -R wrote
    /// are taken out: that one holds the password libpq read from the passfile, and the primary's port
    /// as it was at the base backup (a resumed primary may get another).
    /// </summary>
    public static string StandbySettings(string primaryConnectionInfo) =>
        "# DataOps sandbox replica\n" +
        $"primary_conninfo = {ConfQuote(primaryConnectionInfo)}\n" +
        "hot_standby = on\n";

    /// <summary>A libpq connection-string value: single-quoted, backslash and quote escaped with a backslash.</summary>
    internal static string ConnInfoQuote(string value) =>
        "'" + value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "\\'", StringComparison.Ordinal) + "'";

    /// <summary>A postgresql.conf string: single-quoted, a backslash doubled (the file reads escapes), a quote doubled.</summary>
    internal static string ConfQuote(string value) =>
        "'" + value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "''", StringComparison.Ordinal) + "'";

    /// <summary>
    /// The longest socket file path PostgreSQL can bind: sockaddr_un.sun_path holds 104 bytes on
    /// macOS (108 on Linux) with the terminating NUL; the server refuses a longer one and does not start.
    /// </summary>
    public const int MaxSocketPathBytes = 103;

    /// <summary>
    /// The socket folder to give the server: none on Windows (null), the sandbox's own run folder on
    /// Unix, or "" (no socket; clients use TCP, as they do anyway) when the socket's path would be
    /// too long, as a long sandbox name under macOS's "~/Library/Application Support" makes it.
    /// </summary>
    public static string? SocketDirectory(PgPlatformKind os, string runDirectory, int port)
    {
        if (os == PgPlatformKind.Windows)
        {
            return null;
        }

        var socket = Path.Combine(runDirectory, $".s.PGSQL.{port.ToString(CultureInfo.InvariantCulture)}");
        return System.Text.Encoding.UTF8.GetByteCount(socket) <= MaxSocketPathBytes ? runDirectory : string.Empty;
    }

    /// <summary>A word for /bin/sh: single-quoted, a single quote inside as '\''.</summary>
    internal static string ShellQuote(string value) => "'" + value.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
