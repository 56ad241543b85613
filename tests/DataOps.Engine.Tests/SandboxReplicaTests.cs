using System.Diagnostics;
using DataOps.Engine.Connections;
using DataOps.Engine.Sandbox;
using Npgsql;
using Xunit.Abstractions;

namespace DataOps.Engine.Tests;

/// <summary>
/// Sandboxes with streaming replicas, on real clusters: a row written on the primary shows on the
/// standby, replay paused on the standby makes it lag on demand (what the replica-lag throttle tests
/// build on) and catches up when resumed; stop, resume, adding replicas, refusing fewer, and a failed
/// base backup that leaves nothing behind.
/// </summary>
public sealed class SandboxReplicaTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public void Replica_streams_lags_on_demand_catches_up_restarts_and_goes_with_the_sandbox()
    {
        var name = "repl-" + Guid.NewGuid().ToString("N")[..6];
        var observer = new RecordingObserver();
        var manager = new SandboxManager(TestCluster.Root, observer);
        _ = TestCluster.Sandbox; // the template exists: the time below is a copy, a start, a base backup and a standby start
        var clock = Stopwatch.StartNew();
        var sandbox = manager.Start(name, replicas: 1);
        output.WriteLine($"Start with 1 replica: {clock.Elapsed.TotalSeconds:0.00} s");
        var pids = new List<int> { sandbox.ProcessId };
        try
        {
            var primary = sandbox.Connection!;
            var replica = Assert.Single(sandbox.Replicas);
            pids.Add(replica.ProcessId);
            Assert.Equal($"{name}-r1", replica.Name);
            Assert.Equal(name, replica.Sandbox);
            Assert.Equal(SandboxStatus.Running, replica.Status);
            Assert.Equal(SandboxStartAction.Created, replica.Action);
            Assert.NotEqual(sandbox.Port, replica.Port);
            Assert.StartsWith(Path.Combine(TestCluster.Root, name, "replicas", "r1"), replica.DataDirectory);
            var standby = replica.Connection!;
            Assert.Equal(replica.Port, standby.Port);
            Assert.Equal("127.0.0.1", standby.Host);
            Assert.Equal(replica.Name, standby.Name);
            Assert.True(Sql.Scalar<bool>(standby, "SELECT pg_is_in_recovery()"));
            Assert.Equal("streaming", Sql.Scalar<string>(primary, $"SELECT state FROM pg_stat_replication WHERE application_name = '{replica.Name}'"));
            Assert.Contains(observer.Verbose, v => v.Contains("pg_basebackup -R -X stream"));
            Assert.Contains(observer.Verbose, v => v.Contains($"Replica '{replica.Name}' is streaming"));
            Assert.Contains(observer.Progress, p => p.Status.StartsWith($"Base backup for {replica.Name}", StringComparison.Ordinal));
            Assert.True(observer.Progress.Last().Completed);
            // No slot: one would keep WAL for as long as the replica is away, and later tests create theirs on purpose.
            Assert.Equal(0L, Sql.Scalar<long>(primary, "SELECT count(*) FROM pg_replication_slots"));
            // The password is in the passfile only, not in the standby's configuration.
            var password = File.ReadAllText(Path.Combine(TestCluster.Root, name, "password")).Trim();
            Assert.DoesNotContain(password, File.ReadAllText(Path.Combine(replica.DataDirectory, "postgresql.auto.conf")));

            // A row written on the primary is read on the standby.
            Sql.Execute(primary, "CREATE TABLE replicated (id int PRIMARY KEY); INSERT INTO replicated VALUES (1)");
            Eventually(() => Count(standby) == 1, "the first row reaches the standby");

            // Lag on demand: replay paused on the standby, the primary writes on, the standby's replay LSN stays behind.
            Sql.Execute(standby, "SELECT pg_wal_replay_pause()");
            Eventually(() => Sql.Scalar<bool>(standby, "SELECT pg_get_wal_replay_pause_state() = 'paused'"), "replay pauses");
            Sql.Execute(primary, "INSERT INTO replicated SELECT generate_series(2, 1000)");
            var written = Sql.Scalar<string>(primary, "SELECT pg_current_wal_lsn()::text");
            // The WAL arrives (received up to the primary's position) but is not replayed.
            Eventually(() => Sql.Scalar<bool>(standby, $"SELECT pg_last_wal_receive_lsn() >= '{written}'::pg_lsn"), "the standby receives the new WAL");
            var behind = Sql.Scalar<decimal>(standby, $"SELECT pg_wal_lsn_diff('{written}'::pg_lsn, pg_last_wal_replay_lsn())");
            output.WriteLine($"Replay lag while paused: {behind} bytes");
            Assert.True(behind > 0, $"replay LSN should lag the primary's {written}");
            Assert.Equal(1L, Count(standby));
            Eventually(
                () => Sql.Scalar<decimal>(primary, $"SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0) FROM pg_stat_replication WHERE application_name = '{replica.Name}'") > 0,
                "the primary sees the lag in pg_stat_replication");

            Sql.Execute(standby, "SELECT pg_wal_replay_resume()");
            Eventually(() => Sql.Scalar<bool>(standby, $"SELECT pg_last_wal_replay_lsn() >= '{written}'::pg_lsn"), "the standby catches up");
            Assert.Equal(1000L, Count(standby));

            // A new session sees the replica (sandbox.json); Stop stops it with the primary.
            var listed = Assert.Single(new SandboxManager(TestCluster.Root).List(name));
            Assert.Equal(replica.Port, Assert.Single(listed.Replicas).Port);
            var stopped = manager.Stop(name);
            Assert.Equal(SandboxStatus.Stopped, Assert.Single(stopped.Replicas).Status);
            Assert.Equal(replica.Port, stopped.Replicas[0].Port);
            Assert.Null(stopped.Replicas[0].Connection);
            Eventually(() => !pids.Any(ProcessAlive), "every server process has exited after Stop");

            // Start without -Replicas resumes it, on its old port, streaming again.
            clock.Restart();
            var resumed = manager.Start(name);
            output.WriteLine($"Resume with 1 replica: {clock.Elapsed.TotalSeconds:0.00} s");
            var again = Assert.Single(resumed.Replicas);
            pids.AddRange([resumed.ProcessId, again.ProcessId]);
            Assert.Equal(SandboxStartAction.Resumed, again.Action);
            Assert.Equal(replica.Port, again.Port);
            Sql.Execute(resumed.Connection!, "INSERT INTO replicated VALUES (1001)");
            Eventually(() => Count(again.Connection!) == 1001, "the resumed standby streams again");

            // Fewer replicas than it has is refused; more adds the missing ones and keeps the running one.
            var fewer = Assert.Throws<DataOpsException>(() => manager.Start(name, replicas: 0));
            Assert.Equal("SandboxReplicasFewer", fewer.ErrorId);
            Assert.Equal(DataOpsErrorKind.InvalidOperation, fewer.Kind);
            Assert.Contains("-Reset", fewer.RecommendedAction);
            clock.Restart();
            var grown = manager.Start(name, replicas: 2);
            output.WriteLine($"Adding a second replica to a running sandbox: {clock.Elapsed.TotalSeconds:0.00} s");
            Assert.Equal([SandboxStartAction.Reused, SandboxStartAction.Created], grown.Replicas.Select(r => r.Action));
            pids.Add(grown.Replicas[1].ProcessId);
            Assert.Equal(1001L, Count(grown.Replicas[1].Connection!));
            Assert.Equal(2L, Sql.Scalar<long>(grown.Connection!, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"));

            // -Reset stops the running replicas before deleting their folders, and starts over with the number asked for.
            var fresh = manager.Start(name, reset: true, replicas: 1);
            Eventually(() => !pids.Any(ProcessAlive), "the old servers have exited after the reset");
            Assert.Equal(SandboxStartAction.Created, fresh.Action);
            Assert.Equal(SandboxStartAction.Created, Assert.Single(fresh.Replicas).Action);
            Assert.Equal(-1L, Count(fresh.Replicas[0].Connection!));
            pids.AddRange([fresh.ProcessId, fresh.Replicas[0].ProcessId]);
        }
        finally
        {
            var removed = manager.Stop(name, remove: true);
            Assert.All(removed.Replicas, r => Assert.Equal(SandboxStatus.Removed, r.Status));
        }

        Assert.False(Directory.Exists(Path.Combine(TestCluster.Root, name)));
        Eventually(() => !pids.Any(ProcessAlive), "every server process has exited after Stop -Remove");
    }

    [Fact]
    public void Replica_count_out_of_range_is_refused_before_anything_starts()
    {
        foreach (var count in new[] { -1, SandboxManager.MaxReplicas + 1 })
        {
            var ex = Assert.Throws<DataOpsException>(() => TestCluster.Manager.Start("never-" + count.ToString().Replace("-", "m"), replicas: count));
            Assert.Equal("SandboxReplicasInvalid", ex.ErrorId);
            Assert.Equal(DataOpsErrorKind.InvalidArgument, ex.Kind);
        }

        Assert.DoesNotContain(TestCluster.Manager.List(), s => s.Name.StartsWith("never-", StringComparison.Ordinal));
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void Failed_base_backup_leaves_nothing_running_and_nothing_on_disk()
    {
        _ = TestCluster.Sandbox;
        var real = PgBinaryLocator.Locate();
        var bin = Directory.CreateTempSubdirectory("dataops-badbackup-").FullName;
        var name = "replfail-" + Guid.NewGuid().ToString("N")[..6];
        try
        {
            // The real server tools, and a pg_basebackup that fails the way a refused connection does.
            File.SetUnixFileMode(bin, (UnixFileMode)0b111_101_101);
            Script(Path.Combine(bin, "initdb"), $"exec '{real.InitDb}' \"$@\"");
            File.CreateSymbolicLink(Path.Combine(bin, "pg_ctl"), real.PgCtl);
            File.CreateSymbolicLink(Path.Combine(bin, "postgres"), real.Postgres);
            Script(Path.Combine(bin, "pg_basebackup"), "echo 'pg_basebackup: error: connection refused by the test' >&2; exit 1");
            var manager = new SandboxManager(TestCluster.Root, search: new PgSearchOptions { ExplicitDirectory = bin });

            var ex = Assert.Throws<DataOpsException>(() => manager.Start(name, replicas: 1));

            Assert.Equal("SandboxReplicaFailed", ex.ErrorId);
            Assert.Equal($"{name}-r1", ex.Target);
            Assert.Contains("pg_basebackup failed (exit 1)", ex.Message);
            Assert.Contains("connection refused by the test", ex.Message);
            Assert.Contains("stopped and deleted", ex.Message);
            Assert.False(Directory.Exists(Path.Combine(TestCluster.Root, name)), "the new sandbox should be gone");
            Assert.DoesNotContain(TestCluster.Manager.List(), s => s.Name == name);
            Assert.DoesNotContain(RunningPostgresDataDirectories(), d => d.Contains(name, StringComparison.Ordinal));
        }
        finally
        {
            if (Directory.Exists(Path.Combine(TestCluster.Root, name)))
            {
                TestCluster.Manager.Stop(name, remove: true);
            }

            Directory.Delete(bin, recursive: true);
        }
    }

    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    private static void Script(string path, string body)
    {
        File.WriteAllText(path, "#!/bin/sh\n" + body + "\n");
        File.SetUnixFileMode(path, (UnixFileMode)0b111_101_101);
    }

    private static long Count(DataOpsConnection connection)
    {
        try
        {
            return Sql.Scalar<long>(connection, "SELECT count(*) FROM replicated");
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.UndefinedTable)
        {
            return -1;
        }
    }

    private static void Eventually(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting until {what}");
            Thread.Sleep(50);
        }
    }

    /// <summary>
    /// Whether the process still runs. pg_ctl stop -w returns once postmaster.pid is gone, a moment
    /// before the postmaster exits and its parent (init) reaps it, so callers poll.
    /// </summary>
    private static bool ProcessAlive(int pid) => pid > 0 && Directory.Exists($"/proc/{pid}");

    /// <summary>The -D of every postgres process on the machine (its command line).</summary>
    private static IEnumerable<string> RunningPostgresDataDirectories() =>
        Directory.GetDirectories("/proc").Select(d => Path.Combine(d, "cmdline")).Select(f =>
        {
            try
            {
                return File.ReadAllText(f).Replace('\0', ' ');
            }
            catch (IOException)
            {
                return string.Empty;
            }
            catch (UnauthorizedAccessException)
            {
                return string.Empty;
            }
        }).Where(c => c.Contains("postgres", StringComparison.Ordinal) && c.Contains(" -D ", StringComparison.Ordinal));
}
