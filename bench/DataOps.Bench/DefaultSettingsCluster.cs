using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Npgsql;

namespace DataOps.Bench;

/// <summary>A PostgreSQL cluster the benchmarks load databases into and time tools against.</summary>
internal interface IBenchCluster
{
    /// <summary>What the tables call it: "sandbox" or "default settings".</summary>
    string Label { get; }

    string ConnectionString(string database);

    void Sql(string database, string sql);

    /// <summary>A fresh database, optionally a copy of a template.</summary>
    string CreateDatabase(string prefix, string template = "template0");

    /// <summary>Runs one of the cluster's PostgreSQL tools against a database and returns the wall time.</summary>
    TimeSpan RunTool(string tool, string database, params string[] args);
}

/// <summary>
/// A second throwaway cluster with PostgreSQL's own defaults (fsync, full_page_writes and
/// synchronous_commit on, max_wal_size 1GB, shared_buffers 128MB): initdb'd and nothing appended to
/// postgresql.conf, unlike the sandbox (fsync and full_page_writes off, max_wal_size 4GB). Loopback
/// only; as root the server runs as the postgres OS user (initdb refuses root), like the sandbox.
/// Stopped and deleted on Dispose.
/// </summary>
internal sealed class DefaultSettingsCluster : IBenchCluster, IDisposable
{
    private readonly string _root;
    private readonly string _bin;
    private readonly string _password;
    private readonly int _port;

    public DefaultSettingsCluster(string binDirectory)
    {
        _bin = binDirectory;
        _root = Path.Combine(Path.GetTempPath(), $"dataops-bench-default-{Environment.ProcessId}");
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }

        Directory.CreateDirectory(_root);
        _password = Convert.ToHexString(RandomNumberGenerator.GetBytes(16));
        var pwfile = Path.Combine(_root, "pw");
        File.WriteAllText(pwfile, _password + "\n");
        if (IsRoot)
        {
            Run("chown", ["-R", "postgres:", _root], asPostgres: false);
        }

        _port = FreePort();
        Run(Path.Combine(_bin, "initdb"), ["-D", DataDirectory, "-U", "postgres", "-E", "UTF8", "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", $"--pwfile={pwfile}"], asPostgres: true);
        File.Delete(pwfile);
        Run(Path.Combine(_bin, "pg_ctl"), ["-D", DataDirectory, "-l", Path.Combine(_root, "server.log"), "-w", "-t", "60",
            "-o", $"-p {_port.ToString(CultureInfo.InvariantCulture)} -k {_root} -c listen_addresses=127.0.0.1", "start"], asPostgres: true);
        Settings = string.Join(", ", new[] { "fsync", "full_page_writes", "synchronous_commit", "wal_level", "max_wal_size", "shared_buffers", "max_parallel_maintenance_workers" }
            .Select(n => $"{n}={Scalar("postgres", $"SELECT current_setting('{n}')")}"));
    }

    public string Label => "default settings";

    /// <summary>The settings that make the difference, as the server reports them.</summary>
    public string Settings { get; }

    private string DataDirectory => Path.Combine(_root, "data");

    private static bool IsRoot => Environment.UserName == "root";

    public string ConnectionString(string database) =>
        $"Host=127.0.0.1;Port={_port};Username=postgres;Password={_password};Database={database};Command Timeout=0";

    public void Sql(string database, string sql)
    {
        using var conn = new NpgsqlConnection(ConnectionString(database));
        conn.Open();
        using var cmd = new NpgsqlCommand(sql, conn);
        cmd.ExecuteNonQuery();
    }

    private object? Scalar(string database, string sql)
    {
        using var conn = new NpgsqlConnection(ConnectionString(database));
        conn.Open();
        using var cmd = new NpgsqlCommand(sql, conn);
        return cmd.ExecuteScalar();
    }

    public string CreateDatabase(string prefix, string template = "template0")
    {
        var name = $"{prefix}_{Guid.NewGuid():N}"[..Math.Min(prefix.Length + 9, 60)];
        Sql("postgres", $"CREATE DATABASE {name} TEMPLATE {template}");
        return name;
    }

    public TimeSpan RunTool(string tool, string database, params string[] args)
    {
        var psi = new ProcessStartInfo(Path.Combine(_bin, tool)) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-h", "127.0.0.1", "-p", _port.ToString(CultureInfo.InvariantCulture), "-U", "postgres" }.Concat(args).Append(database))
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["PGPASSWORD"] = _password;
        return BenchSession.TimedRun(psi, tool);
    }

    public void Dispose()
    {
        NpgsqlConnection.ClearAllPools();
        try
        {
            Run(Path.Combine(_bin, "pg_ctl"), ["-D", DataDirectory, "-m", "fast", "-w", "-t", "60", "stop"], asPostgres: true);
        }
        finally
        {
            Directory.Delete(_root, recursive: true);
        }
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    private static void Run(string file, IEnumerable<string> args, bool asPostgres)
    {
        var psi = new ProcessStartInfo { RedirectStandardOutput = true, RedirectStandardError = true };
        if (asPostgres && IsRoot)
        {
            psi.FileName = "runuser";
            foreach (var a in new[] { "-u", "postgres", "--", file })
            {
                psi.ArgumentList.Add(a);
            }
        }
        else
        {
            psi.FileName = file;
        }

        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["LC_ALL"] = "C";
        BenchSession.TimedRun(psi, Path.GetFileName(file));
    }
}
