using System.Collections;
using System.Collections.ObjectModel;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using Npgsql;

namespace DataOps.PowerShell.Tests;

/// <summary>Paths of the repository and of the assembled module.</summary>
internal static class Repo
{
    public static string Root { get; } = FindRoot();

    public static string ModuleDirectory => Path.Combine(Root, "out", "DataOps");

    public static string Manifest => Path.Combine(ModuleDirectory, "DataOps.psd1");

    /// <summary>The build configuration this test assembly was built with (Debug or Release).</summary>
    public static string Configuration { get; } = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name;

    /// <summary>
    /// A real pwsh process running a command: 'dotnet pwsh', the PowerShell tool pinned in
    /// .config/dotnet-tools.json (restored by 'dotnet tool restore'), started in the repository.
    /// </summary>
    public static System.Diagnostics.ProcessStartInfo Pwsh(string command)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet")
        {
            WorkingDirectory = Root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        foreach (var a in new[] { "pwsh", "-NoProfile", "-NonInteractive", "-Command", command })
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["NO_COLOR"] = "1";
        return psi;
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "DataOps.PowerShell.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("DataOps.PowerShell.sln not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>What one invocation produced, stream by stream.</summary>
internal sealed record PsResult(
    Collection<PSObject> Output,
    IReadOnlyList<ErrorRecord> Errors,
    IReadOnlyList<string> Verbose,
    IReadOnlyList<string> Warnings,
    IReadOnlyList<ProgressRecord> Progress,
    bool HadErrors,
    IReadOnlyList<InformationRecord> Information,
    IReadOnlyList<string> Debug)
{
    public T Single<T>() => (T)Assert.Single(Output).BaseObject;
}

/// <summary>A runspace with the module imported through its manifest, as a user would.</summary>
internal sealed class PsSession : IDisposable
{
    private readonly Runspace _runspace;

    public PsSession()
    {
        var state = InitialSessionState.CreateDefault2();
        state.ImportPSModule(Repo.Manifest);
        _runspace = RunspaceFactory.CreateRunspace(state);
        _runspace.Open();
    }

    public Runspace Runspace => _runspace;

    /// <summary>Runs a script; variables are set first. Statement-terminating errors land in Errors.</summary>
    public PsResult Run(string script, IDictionary? variables = null)
    {
        using var ps = System.Management.Automation.PowerShell.Create(_runspace);
        if (variables is not null)
        {
            foreach (DictionaryEntry v in variables)
            {
                _runspace.SessionStateProxy.SetVariable((string)v.Key, v.Value);
            }
        }

        ps.AddScript(script);
        var output = ps.Invoke();
        return new PsResult(output, [.. ps.Streams.Error], [.. ps.Streams.Verbose.Select(v => v.Message)],
            [.. ps.Streams.Warning.Select(w => w.Message)], [.. ps.Streams.Progress], ps.HadErrors, [.. ps.Streams.Information], [.. ps.Streams.Debug.Select(d => d.Message)]);
    }

    /// <summary>Runs one command directly, so a terminating error surfaces as an exception from Invoke().</summary>
    public Collection<PSObject> Invoke(string command, IDictionary? parameters = null)
    {
        using var ps = System.Management.Automation.PowerShell.Create(_runspace);
        ps.AddCommand(command);
        if (parameters is not null)
        {
            ps.AddParameters(parameters);
        }

        return ps.Invoke();
    }

    /// <summary>Runs one command that must fail terminating, and returns its ErrorRecord.</summary>
    public ErrorRecord Terminating(string command, IDictionary? parameters = null)
    {
        var ex = Assert.ThrowsAny<RuntimeException>(() => Invoke(command, parameters));
        return ex.ErrorRecord;
    }

    public void Dispose() => _runspace.Dispose();
}

/// <summary>
/// One sandbox cluster for the test run, started through the module itself in a private root.
/// Tests reach it with the test host's own (older) Npgsql to arrange and check data independently.
/// </summary>
internal static class TestCluster
{
    private const string Name = "pstests";
    private static readonly Lazy<(int Port, string Password)> Cluster = new(Start);

    public static string Root { get; } = Path.Combine(Path.GetTempPath(), $"dataops-ps-tests-{Environment.ProcessId}");

    public static int Port => Cluster.Value.Port;

    public static string AdminConnectionString(string database = "dataops") =>
        $"Host=127.0.0.1;Port={Port};Username=postgres;Password={Cluster.Value.Password};Database={database};Pooling=false";

    /// <summary>The sandbox's password (read from its folder) for tests that check it never leaks.</summary>
    public static string Password => Cluster.Value.Password;

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<string>> Templates = new();

    /// <summary>A new empty database; returns its connection string.</summary>
    public static string CreateDatabase() => CreateDatabaseFrom("template0");

    /// <summary>
    /// A new database with these schema components installed (through the module, once per set:
    /// later databases are copies of that template).
    /// </summary>
    public static string CreateDatabaseWith(params string[] components)
    {
        var key = string.Join(",", components.OrderBy(c => c, StringComparer.Ordinal));
        var template = Templates.GetOrAdd(key, k => new Lazy<string>(() =>
        {
            var name = "tpl_" + Guid.NewGuid().ToString("N")[..12];
            Sql.Execute(AdminConnectionString(), $"CREATE DATABASE {name} TEMPLATE template0");
            using var s = new PsSession();
            var r = s.Run("Install-DataOpsSchema -Connection (Connect-DataOps -ConnectionString $cs -NoDefault) -Component $c", new Hashtable { ["cs"] = AdminConnectionString(name), ["c"] = components });
            Assert.False(r.HadErrors, string.Join("\n", r.Errors));
            return name;
        })).Value;
        lock (Templates)
        {
            // CREATE DATABASE ... TEMPLATE needs the template to have no other sessions; one copy at a time.
            return CreateDatabaseFrom(template);
        }
    }

    private static string CreateDatabaseFrom(string template)
    {
        var name = "ps_" + Guid.NewGuid().ToString("N")[..12];
        Sql.Execute(AdminConnectionString(), $"CREATE DATABASE {name} TEMPLATE {template}");
        return AdminConnectionString(name);
    }

    private static (int, string) Start()
    {
        using var session = new PsSession();
        RemoveStaleRoots(session);
        var sandbox = session.Invoke("Start-DataOpsSandbox", new Hashtable { ["Name"] = Name, ["Root"] = Root, ["NoDefault"] = true }).Single();
        var port = (int)sandbox.Properties["Port"].Value;
        var password = File.ReadAllText(Path.Combine(Root, Name, "password")).Trim();
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                using var s = new PsSession();
                s.Invoke("Stop-DataOpsSandbox", new Hashtable { ["Name"] = Name, ["Root"] = Root, ["Remove"] = true, ["Confirm"] = false });
                Directory.Delete(Root, recursive: true);
            }
            catch (Exception)
            {
                // Best effort at exit.
            }
        };
        return (port, password);
    }

    /// <summary>Roots left by earlier test runs whose process is gone: stop their servers, delete them.</summary>
    private static void RemoveStaleRoots(PsSession session)
    {
        foreach (var dir in Directory.GetDirectories(Path.GetTempPath(), "dataops-ps-tests-*"))
        {
            if (!int.TryParse(dir[(dir.LastIndexOf('-') + 1)..], out var pid) || Directory.Exists($"/proc/{pid}"))
            {
                continue;
            }

            session.Run("Get-DataOpsSandbox -Root $r | Where-Object Status -eq Running | Stop-DataOpsSandbox -Root $r -Confirm:$false", new Hashtable { ["r"] = dir });
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (IOException)
            {
                // Another run may be cleaning it up at the same moment.
            }
        }
    }
}

/// <summary>Direct SQL through the test host's Npgsql, independent of the module.</summary>
internal static class Sql
{
    public static object? Scalar(string connectionString, string sql)
    {
        using var conn = new NpgsqlConnection(connectionString);
        conn.Open();
        using var cmd = new NpgsqlCommand(sql, conn);
        return cmd.ExecuteScalar();
    }

    public static void Execute(string connectionString, string sql)
    {
        using var conn = new NpgsqlConnection(connectionString);
        conn.Open();
        using var cmd = new NpgsqlCommand(sql, conn);
        cmd.ExecuteNonQuery();
    }
}
