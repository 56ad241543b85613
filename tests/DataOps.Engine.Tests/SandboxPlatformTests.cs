using System.Diagnostics;
using DataOps.Engine.Connections;
using DataOps.Engine.Sandbox;

namespace DataOps.Engine.Tests;

/// <summary>
/// What the sandbox hands initdb and pg_ctl on each platform, checked as data (the exact lists), and
/// the parts of it that can be run here, run for real: a root whose path has spaces and a quote, and
/// a tool that leaves a process holding its output pipes, as pg_ctl start does on Windows.
/// </summary>
public sealed class SandboxPlatformTests
{
    private const string MacData = "/Users/ada/Library/Application Support/DataOps/sandboxes/default/data";
    private const string MacLog = "/Users/ada/Library/Application Support/DataOps/sandboxes/default/postgres.log";
    private const string MacRun = "/Users/ada/Library/Application Support/DataOps/sandboxes/default/run";
    private const string WinData = @"C:\Users\Ada Admin\AppData\Local\DataOps\sandboxes\default\data";
    private const string WinLog = @"C:\Users\Ada Admin\AppData\Local\DataOps\sandboxes\default\postgres.log";

    [Fact]
    public void Linux_command_lines()
    {
        var paths = new SandboxPaths("/tmp/dataops-sandboxes/default/data", "/tmp/dataops-sandboxes/default/postgres.log", "/tmp/dataops-sandboxes/default/run", "/tmp/dataops-sandboxes/templates/pg15-t2.tmp-1/initdb.pw", 54321);

        Assert.Equal(
            ["-D", "/tmp/dataops-sandboxes/default/data", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile=/tmp/dataops-sandboxes/templates/pg15-t2.tmp-1/initdb.pw"],
            SandboxCommandLines.Arguments(PgPlatformKind.Linux, SandboxStep.InitDb, paths));
        Assert.Equal(
            ["-D", "/tmp/dataops-sandboxes/default/data", "-l", "/tmp/dataops-sandboxes/default/postgres.log", "-w", "-t", "60", "-o", "-p 54321 -k '/tmp/dataops-sandboxes/default/run' -c listen_addresses=127.0.0.1", "start"],
            SandboxCommandLines.Arguments(PgPlatformKind.Linux, SandboxStep.Start, paths));
        Assert.Equal(
            ["-D", "/tmp/dataops-sandboxes/default/data", "-m", "fast", "-w", "-t", "60", "stop"],
            SandboxCommandLines.Arguments(PgPlatformKind.Linux, SandboxStep.Stop, paths));
        Assert.Equal("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 scram-sha-256\n", SandboxCommandLines.HostBasedAuth(PgPlatformKind.Linux));
        Assert.DoesNotContain("unix_socket_directories", SandboxCommandLines.ServerSettings(PgPlatformKind.Linux));
    }

    [Fact]
    public void MacOS_command_lines_keep_a_path_with_spaces_whole()
    {
        // .NET 8 puts LocalApplicationData under "Library/Application Support" on macOS: the default root has a space.
        var paths = new SandboxPaths(MacData, MacLog, MacRun, Port: 5433);

        Assert.Equal(
            ["-D", MacData, "-l", MacLog, "-w", "-t", "60", "-o", $"-p 5433 -k '{MacRun}' -c listen_addresses=127.0.0.1", "start"],
            SandboxCommandLines.Arguments(PgPlatformKind.MacOS, SandboxStep.Start, paths));
        Assert.Equal(
            ["-D", MacData, "-m", "fast", "-w", "-t", "60", "stop"],
            SandboxCommandLines.Arguments(PgPlatformKind.MacOS, SandboxStep.Stop, paths));
        Assert.Equal(SandboxCommandLines.HostBasedAuth(PgPlatformKind.Linux), SandboxCommandLines.HostBasedAuth(PgPlatformKind.MacOS));
    }

    [Fact]
    public void Windows_command_lines_have_no_socket_and_no_service()
    {
        var pw = @"C:\Users\Ada Admin\AppData\Local\DataOps\sandboxes\templates\pg17-t2.tmp-9\initdb.pw";
        var paths = new SandboxPaths(WinData, WinLog, SocketDirectory: null, PasswordFile: pw, Port: 61000);

        Assert.Equal(
            ["-D", WinData, "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile=" + pw],
            SandboxCommandLines.Arguments(PgPlatformKind.Windows, SandboxStep.InitDb, paths));
        Assert.Equal(
            ["-D", WinData, "-l", WinLog, "-w", "-t", "60", "-o", "-p 61000 -c listen_addresses=127.0.0.1", "start"],
            SandboxCommandLines.Arguments(PgPlatformKind.Windows, SandboxStep.Start, paths));
        Assert.Equal(
            ["-D", WinData, "-m", "fast", "-w", "-t", "60", "stop"],
            SandboxCommandLines.Arguments(PgPlatformKind.Windows, SandboxStep.Stop, paths));

        var settings = SandboxCommandLines.ServerSettings(PgPlatformKind.Windows);
        Assert.Contains("\nunix_socket_directories = ''\n", settings);
        Assert.Contains("\nlisten_addresses = '127.0.0.1'\n", settings);
        Assert.Equal("host all all 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 scram-sha-256\n", SandboxCommandLines.HostBasedAuth(PgPlatformKind.Windows));
        foreach (var args in new[] { SandboxStep.InitDb, SandboxStep.Start, SandboxStep.Stop }.Select(s => SandboxCommandLines.Arguments(PgPlatformKind.Windows, s, paths)))
        {
            Assert.DoesNotContain(args, a => a.Contains("-k", StringComparison.Ordinal) || a.Contains("register", StringComparison.Ordinal) || a.Contains("unix_socket", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void Replica_base_backup_and_standby_settings_keep_paths_whole_and_the_password_out()
    {
        var passFile = @"C:\Users\Ada O'Brien\AppData\Local\DataOps\sandboxes\lag\replicas\pgpass";
        var info = SandboxCommandLines.ReplicationConnectionInfo(54321, passFile, "lag-r1");

        Assert.Equal(@"host=127.0.0.1 port=54321 user=postgres passfile='C:\\Users\\Ada O\'Brien\\AppData\\Local\\DataOps\\sandboxes\\lag\\replicas\\pgpass' application_name='lag-r1'", info);
        Assert.Equal(
            ["-D", "/tmp/dataops-sandboxes/lag/replicas/r1/data", "-d", info, "-R", "-X", "stream", "-c", "fast", "--no-sync", "-w"],
            SandboxCommandLines.BaseBackupArguments("/tmp/dataops-sandboxes/lag/replicas/r1/data", info));
        // postgresql.conf reads backslash escapes and doubled quotes: each level of quoting survives the other.
        Assert.Equal(
            "# DataOps sandbox replica\nprimary_conninfo = 'host=127.0.0.1 port=5432 user=postgres passfile=''/tmp/a b/pgpass'' application_name=''x-r2'''\nhot_standby = on\n",
            SandboxCommandLines.StandbySettings(SandboxCommandLines.ReplicationConnectionInfo(5432, "/tmp/a b/pgpass", "x-r2")));
        Assert.DoesNotContain("password=", info);
    }

    [Fact]
    public void Socket_folder_is_the_run_folder_unless_windows_or_too_long()
    {
        var longRun = "/Users/ada/Library/Application Support/DataOps/sandboxes/a-sandbox-name-of-forty-characters-abcd/run";

        Assert.Null(SandboxCommandLines.SocketDirectory(PgPlatformKind.Windows, @"C:\sandboxes\default\run", 5432));
        Assert.Equal(MacRun, SandboxCommandLines.SocketDirectory(PgPlatformKind.MacOS, MacRun, 65535));
        Assert.Equal(string.Empty, SandboxCommandLines.SocketDirectory(PgPlatformKind.MacOS, longRun, 5432));
        Assert.Equal(
            ["-D", MacData, "-l", MacLog, "-w", "-t", "60", "-o", "-p 5432 -k '' -c listen_addresses=127.0.0.1", "start"],
            SandboxCommandLines.Arguments(PgPlatformKind.MacOS, SandboxStep.Start, new SandboxPaths(MacData, MacLog, string.Empty, Port: 5432)));
    }

    [Fact]
    public async Task Sandbox_whose_socket_path_would_be_too_long_starts_on_TCP_alone()
    {
        var root = Path.Combine(Path.GetTempPath(), "dataops-" + new string('x', 60) + Guid.NewGuid().ToString("N")[..6]);
        var manager = new SandboxManager(root);
        const string name = "a-long-sandbox-name-for-the-socket-limit";
        try
        {
            var started = manager.Start(name);

            Assert.True(Path.Combine(root, name, "run", ".s.PGSQL.65535").Length > SandboxCommandLines.MaxSocketPathBytes);
            Assert.Equal(SandboxStatus.Running, started.Status);
            Assert.Equal("dataops", (await ConnectionTester.ProbeAsync(started.Connection!)).Database);
        }
        finally
        {
            manager.Stop(name, remove: true);
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void Socket_folder_is_quoted_for_sh()
    {
        Assert.Equal("'/tmp/it'\\''s here'", SandboxCommandLines.ShellQuote("/tmp/it's here"));
        Assert.Equal("'/a b/$HOME/`x`'", SandboxCommandLines.ShellQuote("/a b/$HOME/`x`"));
    }

    [Fact]
    public async Task Sandbox_under_a_root_with_spaces_and_a_quote_starts_and_stops()
    {
        var root = Path.Combine(Path.GetTempPath(), $"dataops sandbox's root {Guid.NewGuid().ToString("N")[..6]}");
        var manager = new SandboxManager(root);
        try
        {
            var started = manager.Start("spaced");

            Assert.Equal(SandboxStatus.Running, started.Status);
            Assert.StartsWith(root, started.DataDirectory, StringComparison.Ordinal);
            Assert.Equal("dataops", (await ConnectionTester.ProbeAsync(started.Connection!)).Database);
            Assert.True(File.Exists(Path.Combine(root, "spaced", "run", $".s.PGSQL.{started.Port}")), "the socket is in the sandbox's own folder");

            var stopped = manager.Stop("spaced", remove: true);
            Assert.Equal(SandboxStatus.Removed, stopped.Status);
            Assert.True(SpinWait.SpinUntil(() => !ProcessRunner.IsProcessAlive(started.ProcessId), TimeSpan.FromSeconds(10)), "the postmaster from postmaster.pid has exited");
        }
        finally
        {
            if (Directory.Exists(Path.Combine(root, "spaced")))
            {
                try
                {
                    manager.Stop("spaced", remove: true);
                }
                catch (DataOpsException)
                {
                }
            }

            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void A_tool_that_leaves_a_process_holding_its_pipes_does_not_hang_the_caller()
    {
        // pg_ctl start on Windows hands our stdout/stderr to the server it starts; the same shape here:
        // the tool exits at once, a child it left behind keeps the pipes open for 30 s.
        var clock = Stopwatch.StartNew();

        var result = ProcessRunner.Run("/bin/sh", ["-c", "echo server started; echo note >&2; sleep 30 & exit 0"], asServiceUser: false, TimeSpan.FromSeconds(20));

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}");
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("server started", result.StandardOutput.Trim());
        Assert.Equal("note", result.StandardError.Trim());
    }
}
