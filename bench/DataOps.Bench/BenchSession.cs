using System.Collections;
using System.Diagnostics;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using Npgsql;

namespace DataOps.Bench;

/// <summary>A runspace with the assembled module, a sandbox, and helpers to time things in it.</summary>
internal sealed class BenchSession : IBenchCluster, IDisposable
{
    /// <summary>
    /// The benchmarks' job: one UPDATE per item (val = val + 1 on its row of <paramref name="table"/>),
    /// captured and verified, items discovered in id order. Written to NAME.job.json in <paramref name="dir"/>.
    /// </summary>
    public static string IncrementJob(string dir, string name, string table, int itemsPerMinute, int maxConcurrency = 1)
    {
        var path = Path.Combine(dir, name + ".job.json");
        File.WriteAllText(path, $$"""
            {
              "version": 1, "name": "{{name}}",
              "items": { "discover": "SELECT id::text AS key FROM {{table}} ORDER BY id" },
              "throttle": { "itemsPerMinute": {{itemsPerMinute}}, "batchSize": 500, "maxConcurrency": {{maxConcurrency}} },
              "capture": [ { "table": "{{table}}", "where": "id = @key::bigint" } ],
              "steps": [ { "name": "increment", "sql": "UPDATE {{table}} SET val = val + 1 WHERE id = @key::bigint" } ],
              "verify": "SELECT val > 0 FROM {{table}} WHERE id = @key::bigint",
              "health": { "discover": "SELECT id::text AS key FROM {{table}} WHERE val = 0 ORDER BY id", "checks": [ { "name": "rows", "query": "SELECT count(*) FROM {{table}}", "expect": { "atLeast": 0 } } ] }
            }
            """);
        return path;
    }

    private readonly Runspace _runspace;

    public BenchSession(string sandboxName)
    {
        var state = InitialSessionState.CreateDefault2();
        state.ImportPSModule(FindManifest());
        _runspace = RunspaceFactory.CreateRunspace(state);
        _runspace.Open();
        var sandbox = Invoke($"Start-DataOpsSandbox -Name {sandboxName} -Reset -Force").Single();
        Port = (int)sandbox.Properties["Port"].Value;
        BinDirectory = (string)sandbox.Properties["BinDirectory"].Value;
        var root = Path.GetDirectoryName((string)sandbox.Properties["DataDirectory"].Value)!;
        Password = File.ReadAllText(Path.Combine(root, "password")).Trim();
        SandboxName = sandboxName;
    }

    public int Port { get; }

    public string Password { get; }

    public string BinDirectory { get; }

    public string SandboxName { get; }

    public string Label => "sandbox";

    public string ConnectionString(string database) =>
        $"Host=127.0.0.1;Port={Port};Username=postgres;Password={Password};Database={database};Command Timeout=0";

    public List<PSObject> Invoke(string script, IDictionary? variables = null)
    {
        using var ps = PowerShell.Create(_runspace);
        if (variables is not null)
        {
            foreach (DictionaryEntry v in variables)
            {
                _runspace.SessionStateProxy.SetVariable((string)v.Key, v.Value);
            }
        }

        var output = ps.AddScript(script).Invoke().ToList();
        if (ps.HadErrors)
        {
            throw new InvalidOperationException(string.Join(Environment.NewLine, ps.Streams.Error));
        }

        return output;
    }

    public PowerShell NewPowerShell() => PowerShell.Create(_runspace);

    public void Sql(string database, string sql)
    {
        using var conn = new NpgsqlConnection(ConnectionString(database));
        conn.Open();
        using var cmd = new NpgsqlCommand(sql, conn);
        cmd.ExecuteNonQuery();
    }

    public object? Scalar(string database, string sql)
    {
        using var conn = new NpgsqlConnection(ConnectionString(database));
        conn.Open();
        using var cmd = new NpgsqlCommand(sql, conn);
        return cmd.ExecuteScalar();
    }

    /// <summary>A fresh database, optionally a copy of a template.</summary>
    public string CreateDatabase(string prefix, string template = "template0")
    {
        var name = $"{prefix}_{Guid.NewGuid():N}"[..Math.Min(prefix.Length + 9, 60)];
        Sql("dataops", $"CREATE DATABASE {name} TEMPLATE {template}");
        return name;
    }

    /// <summary>Runs one of the sandbox's PostgreSQL tools against a database and returns the wall time.</summary>
    public TimeSpan RunTool(string tool, string database, params string[] args)
    {
        var psi = new ProcessStartInfo(Path.Combine(BinDirectory, tool)) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-h", "127.0.0.1", "-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-U", "postgres" }.Concat(args).Append(database))
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["PGPASSWORD"] = Password;
        return TimedRun(psi, tool);
    }

    /// <summary>Runs a process to its end and returns its wall time; a non-zero exit is an error with its output.</summary>
    public static TimeSpan TimedRun(ProcessStartInfo psi, string what)
    {
        var watch = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        watch.Stop();
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"{what} exited {p.ExitCode}: {stderr.Result}{stdout.Result}");
        }

        return watch.Elapsed;
    }

    public void Dispose()
    {
        try
        {
            Invoke($"Stop-DataOpsSandbox -Name {SandboxName} -Remove -Confirm:$false");
        }
        finally
        {
            _runspace.Dispose();
        }
    }

    internal static string FindManifest()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var manifest = Path.Combine(dir.FullName, "out", "DataOps", "DataOps.psd1");
            if (File.Exists(manifest))
            {
                return manifest;
            }
        }

        throw new FileNotFoundException("out/DataOps/DataOps.psd1 not found; build the solution first.");
    }
}

internal static class Stats
{
    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }

    public static long PeakWorkingSetMb()
    {
        using var self = Process.GetCurrentProcess();
        self.Refresh();
        return self.PeakWorkingSet64 / (1024 * 1024);
    }
}
