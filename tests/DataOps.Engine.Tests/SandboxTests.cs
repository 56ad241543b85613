using System.Diagnostics;
using DataOps.Engine.Connections;
using DataOps.Engine.Sandbox;

namespace DataOps.Engine.Tests;

public sealed class SandboxTests
{
    [Fact]
    public void Explicit_bin_directory_without_binaries_says_how_to_install()
    {
        var empty = Directory.CreateTempSubdirectory("dataops-nobin-").FullName;
        try
        {
            var ex = Assert.Throws<DataOpsException>(() => PgBinaryLocator.Locate(new PgSearchOptions { ExplicitDirectory = empty }));

            Assert.Equal("PostgresBinariesNotFound", ex.ErrorId);
            Assert.Equal(DataOpsErrorKind.NotInstalled, ex.Kind);
            Assert.Contains(empty, ex.Message);
            Assert.Contains("apt-get install postgresql", ex.Message);
            Assert.NotNull(ex.RecommendedAction);
        }
        finally
        {
            Directory.Delete(empty);
        }
    }

    [Fact]
    public void Nothing_to_search_is_not_found()
    {
        var options = new PgSearchOptions { ExplicitDirectory = null, PathVariable = string.Empty, UsePgConfig = false, InstallRoots = [] };

        var ex = Assert.Throws<DataOpsException>(() => PgBinaryLocator.Locate(options));

        Assert.Equal("PostgresBinariesNotFound", ex.ErrorId);
    }

    [Fact]
    public void Install_roots_are_searched_newest_version_first()
    {
        var real = PgBinaryLocator.Locate();
        var root = Directory.CreateTempSubdirectory("dataops-roots-").FullName;
        try
        {
            // An older "version" folder with no binaries must not win over the real one linked as a newer version.
            Directory.CreateDirectory(Path.Combine(root, "9.6", "bin"));
            Directory.CreateDirectory(Path.Combine(root, "99"));
            Directory.CreateSymbolicLink(Path.Combine(root, "99", "bin"), real.Directory);

            var found = PgBinaryLocator.Locate(new PgSearchOptions { ExplicitDirectory = null, PathVariable = string.Empty, UsePgConfig = false, InstallRoots = [root] });

            Assert.Equal(real.Version, found.Version);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void Invalid_sandbox_name_is_rejected()
    {
        var ex = Assert.Throws<DataOpsException>(() => TestCluster.Manager.Start("../escape"));
        Assert.Equal("SandboxNameInvalid", ex.ErrorId);
    }

    [Fact]
    public void Stop_of_unknown_sandbox_is_not_found()
    {
        var ex = Assert.Throws<DataOpsException>(() => TestCluster.Manager.Stop("never-started"));
        Assert.Equal("SandboxNotFound", ex.ErrorId);
        Assert.Equal(DataOpsErrorKind.ObjectNotFound, ex.Kind);
    }

    [Fact]
    public async Task Lifecycle_create_reuse_stop_resume_and_remove()
    {
        var name = "life-" + Guid.NewGuid().ToString("N")[..6];
        var observer = new RecordingObserver();
        var manager = new SandboxManager(TestCluster.Root, observer);

        var created = manager.Start(name);
        try
        {
            Assert.Equal(SandboxStatus.Running, created.Status);
            Assert.Equal(SandboxStartAction.Created, created.Action);
            Assert.Equal("127.0.0.1", created.Connection!.Host);
            Assert.Equal(created.Port, created.Connection.Port);
            Assert.Equal("dataops", (await ConnectionTester.ProbeAsync(created.Connection)).Database);
            Sql.Execute(created.Connection, "CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (42)");

            // A second session of this process asking for the same sandbox reuses the running server. This
            // process started it, so that is said in Verbose, not warned about as a cluster left behind
            // (SandboxCmdletTests starts one in another process for the warning).
            var other = new RecordingObserver();
            var again = new SandboxManager(TestCluster.Root, other).Start(name);
            Assert.Equal(SandboxStartAction.Reused, again.Action);
            Assert.Equal(created.Port, again.Port);
            Assert.Equal(created.ProcessId, again.ProcessId);
            Assert.Empty(other.Warnings);
            Assert.Contains(other.Verbose, v => v.Contains("already running") && v.Contains("started earlier by this process"));

            var stopped = manager.Stop(name);
            Assert.Equal(SandboxStatus.Stopped, stopped.Status);
            Assert.Null(stopped.Connection);
            Assert.Contains(manager.List(), s => s.Name == name && s.Status == SandboxStatus.Stopped);

            var resumed = manager.Start(name);
            Assert.Equal(SandboxStartAction.Resumed, resumed.Action);
            Assert.Equal(created.Port, resumed.Port); // the old connection string works again
            Assert.Equal(42, Sql.Scalar<int>(resumed.Connection!, "SELECT id FROM keep_me"));
        }
        finally
        {
            var removed = manager.Stop(name, remove: true);
            Assert.Equal(SandboxStatus.Removed, removed.Status);
        }

        Assert.False(Directory.Exists(Path.Combine(TestCluster.Root, name)));
        Assert.DoesNotContain(manager.List(), s => s.Name == name);
    }

    [Fact]
    public void Killed_server_is_detected_and_recovered_on_start()
    {
        var name = "crash-" + Guid.NewGuid().ToString("N")[..6];
        var observer = new RecordingObserver();
        var manager = new SandboxManager(TestCluster.Root, observer);
        var first = manager.Start(name);
        try
        {
            Sql.Execute(first.Connection!, "CREATE TABLE survived (v text); INSERT INTO survived VALUES ('yes')");
            using (var postmaster = Process.GetProcessById(first.ProcessId))
            {
                postmaster.Kill(); // SIGKILL on Unix: no shutdown, as in a crash
            }

            SpinWait.SpinUntil(() => !Directory.Exists($"/proc/{first.ProcessId}"), TimeSpan.FromSeconds(10));
            Assert.Equal(SandboxStatus.Stopped, Assert.Single(manager.List(name)).Status);

            var second = manager.Start(name);

            Assert.Equal(SandboxStartAction.Resumed, second.Action);
            Assert.Contains(observer.Warnings, w => w.Contains("did not shut down cleanly"));
            Assert.Equal("yes", Sql.Scalar<string>(second.Connection!, "SELECT v FROM survived"));
        }
        finally
        {
            manager.Stop(name, remove: true);
        }
    }

    [Fact]
    public void Reset_starts_from_a_fresh_copy()
    {
        var name = "reset-" + Guid.NewGuid().ToString("N")[..6];
        var manager = new SandboxManager(TestCluster.Root);
        var first = manager.Start(name);
        try
        {
            Sql.Execute(first.Connection!, "CREATE TABLE gone (id int)");

            var fresh = manager.Start(name, reset: true);

            Assert.Equal(SandboxStartAction.Created, fresh.Action);
            Assert.False(Sql.Scalar<bool>(fresh.Connection!, "SELECT to_regclass('gone') IS NOT NULL"));
        }
        finally
        {
            manager.Stop(name, remove: true);
        }
    }
}
