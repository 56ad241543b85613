using DataOps.Engine.Connections;
using DataOps.Engine.Sandbox;
using Npgsql;

namespace DataOps.Engine.Tests;

/// <summary>
/// One throwaway PostgreSQL cluster for the whole test run, started with the product's own
/// sandbox code in a private root, stopped and deleted when the process exits.
/// </summary>
internal static class TestCluster
{
    private static readonly Lazy<(SandboxManager Manager, DataOpsSandbox Sandbox)> Cluster = new(StartCluster);

    public static SandboxManager Manager => Cluster.Value.Manager;

    public static DataOpsSandbox Sandbox => Cluster.Value.Sandbox;

    /// <summary>The maintenance connection (database 'dataops' of the sandbox).</summary>
    public static DataOpsConnection Admin => Sandbox.Connection!;

    public static string Root { get; } = Path.Combine(Path.GetTempPath(), $"dataops-engine-tests-{Environment.ProcessId}");

    private static (SandboxManager, DataOpsSandbox) StartCluster()
    {
        RemoveStaleRoots();
        var manager = new SandboxManager(Root);
        var sandbox = manager.Start("engine-tests");
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                manager.Stop("engine-tests", remove: true);
                Directory.Delete(Root, recursive: true);
            }
            catch (Exception)
            {
                // Best effort at exit; a leftover is reported by the next Get-DataOpsSandbox.
            }
        };
        return (manager, sandbox);
    }

    /// <summary>Roots left by earlier test runs whose process is gone: stop their servers, delete them.</summary>
    private static void RemoveStaleRoots()
    {
        foreach (var dir in Directory.GetDirectories(Path.GetTempPath(), "dataops-engine-tests-*"))
        {
            if (!int.TryParse(dir[(dir.LastIndexOf('-') + 1)..], out var pid) || Directory.Exists($"/proc/{pid}"))
            {
                continue;
            }

            try
            {
                var stale = new SandboxManager(dir);
                foreach (var sandbox in stale.List().Where(s => s.Status == SandboxStatus.Running))
                {
                    stale.Stop(sandbox.Name);
                }

                Directory.Delete(dir, recursive: true);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or DataOpsException)
            {
                // Another run may be cleaning it up at the same moment.
            }
        }
    }

    /// <summary>A new empty database in the shared cluster (CREATE DATABASE from template0 takes tens of ms).</summary>
    public static DataOpsConnection CreateDatabase(string prefix)
    {
        var name = $"{prefix}_{Guid.NewGuid():N}"[..Math.Min(prefix.Length + 13, 63)].ToLowerInvariant();
        Sql.Execute(Admin, $"CREATE DATABASE \"{name}\" TEMPLATE template0");

        // Each test database keeps its pools' idle connections for minutes; hundreds of databases in one run
        // (tests in parallel) came near the cluster's max_connections (100) and failed with 53300. Idle ones
        // are closed here; busy ones close when they are returned.
        Npgsql.NpgsqlConnection.ClearAllPools();
        return Admin.WithDatabase(name);
    }
}

/// <summary>A fresh database for one test class.</summary>
public sealed class DatabaseFixture
{
    public DatabaseFixture()
    {
        Connection = TestCluster.CreateDatabase("t");
    }

    public DataOpsConnection Connection { get; }

    public T Scalar<T>(string sql) => Sql.Scalar<T>(Connection, sql);

    public void Execute(string sql) => Sql.Execute(Connection, sql);
}

/// <summary>Direct SQL for arranging and checking test data, independent of the code under test.</summary>
internal static class Sql
{
    public static T Scalar<T>(DataOpsConnection connection, string sql)
    {
        using var conn = new NpgsqlConnection(connection.ConnectionString);
        conn.Open();
        using var cmd = new NpgsqlCommand(sql, conn);
        return (T)cmd.ExecuteScalar()!;
    }

    public static void Execute(DataOpsConnection connection, string sql)
    {
        using var conn = new NpgsqlConnection(connection.ConnectionString);
        conn.Open();
        using var cmd = new NpgsqlCommand(sql, conn);
        cmd.ExecuteNonQuery();
    }
}

/// <summary>Collects what an operation reports, for assertions.</summary>
internal sealed class RecordingObserver : Logging.IOperationObserver
{
    public List<string> Verbose { get; } = [];

    public List<string> Warnings { get; } = [];

    public List<string> Information { get; } = [];

    public List<Logging.OperationProgress> Progress { get; } = [];

    void Logging.IOperationObserver.Verbose(string message)
    {
        lock (Verbose)
        {
            Verbose.Add(message);
        }
    }

    void Logging.IOperationObserver.Warning(string message)
    {
        lock (Warnings)
        {
            Warnings.Add(message);
        }
    }

    void Logging.IOperationObserver.Information(string message)
    {
        lock (Information)
        {
            Information.Add(message);
        }
    }

    void Logging.IOperationObserver.Progress(Logging.OperationProgress progress)
    {
        lock (Progress)
        {
            Progress.Add(progress);
        }
    }
}
