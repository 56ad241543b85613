using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using DataOps.Engine.Connections;
using DataOps.Engine.Logging;

namespace DataOps.Engine.Sandbox;

/// <summary>
/// Starts, finds and stops sandbox clusters. Layout under the root folder:
/// templates/pg&lt;major&gt;/ (an initdb'd cluster and its password, copied for each new sandbox),
/// &lt;name&gt;/data, &lt;name&gt;/run (socket), &lt;name&gt;/postgres.log, &lt;name&gt;/sandbox.json, &lt;name&gt;.lock,
/// and the replicas' &lt;name&gt;/replicas/r&lt;n&gt;/{data,run,postgres.log} (SandboxManager.Replicas.cs).
/// </summary>
public sealed partial class SandboxManager
{
    public const string DefaultName = "default";
    public const string DatabaseName = "dataops";

    /// <summary>Bumped whenever the template's settings change, so an old cached template is not reused.</summary>
    private const int TemplateVersion = 3;
    private static readonly TimeSpan ToolTimeout = TimeSpan.FromSeconds(60);

    /// <summary>The OS the tools run on (the locator may be describing another, in tests; the server never is).</summary>
    private static readonly PgPlatformKind Host = PgPlatform.CurrentKind;
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>
    /// The servers this process started (or resumed), by data folder, with their postmaster's pid.
    /// Finding one of them running again is this process's own sandbox, not one left behind by an
    /// earlier session, so only the others are warned about.
    /// </summary>
    private static readonly ConcurrentDictionary<string, int> StartedHere = new(StringComparer.Ordinal);

    private readonly IOperationObserver _observer;
    private readonly PgSearchOptions _search;

    public SandboxManager(string? root = null, IOperationObserver? observer = null, PgSearchOptions? search = null)
    {
        Root = root ?? DefaultRoot();
        _observer = observer ?? NullObserver.Instance;
        _search = search ?? new PgSearchOptions();
    }

    public string Root { get; }

    /// <summary>
    /// $DATAOPS_SANDBOX_ROOT, else a folder the postgres OS user can reach: under /tmp for root
    /// (root's home is closed to other users), the per-user data folder otherwise.
    /// </summary>
    public static string DefaultRoot()
    {
        var fromEnv = Environment.GetEnvironmentVariable("DATAOPS_SANDBOX_ROOT");
        if (!string.IsNullOrWhiteSpace(fromEnv))
        {
            return Path.GetFullPath(fromEnv);
        }

        if (ProcessRunner.IsRoot)
        {
            return Path.Combine(Path.GetTempPath(), "dataops-sandboxes");
        }

        var data = Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create);
        return Path.Combine(string.IsNullOrEmpty(data) ? Path.GetTempPath() : data, "DataOps", "sandboxes");
    }

    public static void ValidateName(string name)
    {
        if (!NamePattern().IsMatch(name))
        {
            throw new DataOpsException("SandboxNameInvalid", DataOpsErrorKind.InvalidArgument,
                $"The sandbox name '{name}' is not valid: use 1-40 letters, digits, '-' or '_', starting with a letter or digit.", name);
        }
    }

    /// <summary>
    /// The named sandbox's folder (its data, log and password: what Stop -Remove and Start -Reset
    /// delete) when it exists; null when it does not, or when the name is not valid.
    /// </summary>
    public string? ExistingFolder(string name) => NamePattern().IsMatch(name) && Directory.Exists(SandboxDir(name)) ? SandboxDir(name) : null;

    /// <summary>
    /// Starts the named sandbox: reuses a running one, resumes a stopped one, or creates it from the template.
    /// <paramref name="replicas"/>: how many streaming standbys it has (0..<see cref="MaxReplicas"/>); null keeps
    /// the ones it has (none for a new sandbox). Replicas are added, never dropped: fewer than it has is refused.
    /// </summary>
    public DataOpsSandbox Start(string name = DefaultName, bool reset = false, int? replicas = null, CancellationToken ct = default)
    {
        ValidateName(name);
        ValidateReplicaCount(replicas);
        var bins = PgBinaryLocator.Locate(_search);
        _observer.Verbose($"Using PostgreSQL {bins.Version} from {bins.Directory}.");
        if (ProcessRunner.IsRoot && !ProcessRunner.ServiceUserExists())
        {
            throw new DataOpsException("SandboxPermission", DataOpsErrorKind.PermissionDenied,
                $"Running as root, the sandbox runs PostgreSQL as the '{ProcessRunner.ServiceUser}' OS user, which does not exist. Install the postgresql package (it creates the user) or run as a normal user.",
                ProcessRunner.ServiceUser);
        }

        EnsureRoot();
        using var _ = AcquireLock(name, ct);
        var dir = SandboxDir(name);
        var data = Path.Combine(dir, "data");

        if (reset && Directory.Exists(dir))
        {
            _observer.Verbose($"Resetting sandbox '{name}': stopping it and deleting {dir}.");
            StopReplicas(bins, name);
            StopServer(bins, data);
            Directory.Delete(dir, recursive: true);
        }

        var existingReplicas = ReplicaIndexes(name);
        RefuseFewerReplicas(name, replicas, existingReplicas.Count);
        var primary = StartPrimary(name, bins, ct);
        if (replicas is not > 0 && existingReplicas.Count == 0)
        {
            return Describe(name, bins, primary.Action);
        }

        IReadOnlyDictionary<int, string> replicaActions;
        try
        {
            replicaActions = StartReplicas(name, bins, primary.Port, replicas ?? existingReplicas.Count, existingReplicas, ct);
        }
        catch (Exception ex) when (ex is DataOpsException or OperationCanceledException)
        {
            var undone = UndoPrimary(name, bins, primary.Action);
            if (ex is DataOpsException { ErrorId: ReplicaFailedId } failed && undone is not null)
            {
                throw new DataOpsException(failed.ErrorId, failed.Kind, $"{failed.Message} {undone}", failed.Target, failed.InnerException)
                {
                    RecommendedAction = failed.RecommendedAction,
                };
            }

            throw;
        }

        return Describe(name, bins, primary.Action, replicaActions);
    }

    private readonly record struct PrimaryStart(string Action, int Port);

    /// <summary>The primary's part of Start: reuse it when running, else resume or create it and start it.</summary>
    private PrimaryStart StartPrimary(string name, PgBinaries bins, CancellationToken ct)
    {
        var dir = SandboxDir(name);
        var data = Path.Combine(dir, "data");
        var running = ReadPostmasterPid(data);
        if (running is { } live && ProcessRunner.IsProcessAlive(live.Pid))
        {
            if (StartedHere.TryGetValue(Path.GetFullPath(data), out var pid) && pid == live.Pid)
            {
                _observer.Verbose($"Sandbox '{name}' is already running (pid {live.Pid}, port {live.Port}), started earlier by this process; reusing it.");
            }
            else
            {
                _observer.Warning($"Sandbox '{name}' was already running (pid {live.Pid}, port {live.Port}), probably left by an earlier session; reusing it. Stop it with Stop-DataOpsSandbox -Name {name}.");
            }

            return new PrimaryStart(SandboxStartAction.Reused, live.Port);
        }

        string action;
        if (Directory.Exists(data))
        {
            if (running is not null)
            {
                _observer.Warning($"Sandbox '{name}' did not shut down cleanly (a stale postmaster.pid for pid {running.Value.Pid} was left); PostgreSQL will recover it on start.");
            }

            action = SandboxStartAction.Resumed;
        }
        else
        {
            var template = EnsureTemplate(bins, ct);
            _observer.Verbose($"Creating sandbox '{name}' from template {template}.");
            Directory.CreateDirectory(dir);
            CopyDirectory(Path.Combine(template, "data"), data);
            File.Copy(Path.Combine(template, "password"), PasswordFile(name), overwrite: true);
            RestrictToOwner(PasswordFile(name));
            action = SandboxStartAction.Created;
        }

        var runDir = Path.Combine(dir, "run");
        Directory.CreateDirectory(runDir);
        ProcessRunner.GiveToServiceUser(dir);
        // A resumed sandbox keeps its port when it can, so connections made before the restart work again.
        var earlier = action == SandboxStartAction.Resumed ? ReadRecord(name) : null;
        var port = StartServer(bins, data, runDir, Path.Combine(dir, "postgres.log"), ct, earlier?.Port);
        WriteRecord(new SandboxRecord(name, port, bins.Directory, bins.Version, DateTimeOffset.UtcNow, earlier?.Replicas));
        if (ReadPostmasterPid(data) is { } started)
        {
            StartedHere[Path.GetFullPath(data)] = started.Pid;
        }

        // Pooled connections to this port may point at a server that stopped or crashed; they must not be reused.
        Npgsql.NpgsqlConnection.ClearAllPools();
        _observer.Verbose($"Sandbox '{name}' is listening on 127.0.0.1:{port}.");
        return new PrimaryStart(action, port);
    }

    /// <summary>Stops the named sandbox's server; with <paramref name="remove"/> also deletes its files.</summary>
    public DataOpsSandbox Stop(string name = DefaultName, bool remove = false, CancellationToken ct = default)
    {
        ValidateName(name);
        var dir = SandboxDir(name);
        if (!Directory.Exists(dir))
        {
            throw new DataOpsException("SandboxNotFound", DataOpsErrorKind.ObjectNotFound,
                $"There is no sandbox named '{name}' under {Root}. Get-DataOpsSandbox lists the sandboxes.", name);
        }

        using var _ = AcquireLock(name, ct);
        var data = Path.Combine(dir, "data");
        var record = ReadRecord(name);
        var bins = record?.BinDirectory is { } bin && File.Exists(Path.Combine(bin, PgBinaries.Exe("pg_ctl")))
            ? new PgBinaries(bin, record.PostgresVersion ?? "?", 0)
            : PgBinaryLocator.Locate(_search);
        StopReplicas(bins, name);
        StopServer(bins, data);
        StartedHere.TryRemove(Path.GetFullPath(data), out var _);
        Npgsql.NpgsqlConnection.ClearAllPools();
        if (remove)
        {
            var replicas = DescribeReplicaList(name, record, null, record?.PostgresVersion, null)
                .Select(r => new DataOpsSandboxReplica
                {
                    Name = r.Name, Sandbox = name, Index = r.Index, Status = SandboxStatus.Removed, Port = r.Port, DataDirectory = r.DataDirectory, LogPath = r.LogPath,
                })
                .ToList();
            Directory.Delete(dir, recursive: true);
            _observer.Verbose($"Removed sandbox '{name}' ({dir}).");
            return new DataOpsSandbox
            {
                Name = name, Root = Root, Status = SandboxStatus.Removed, DataDirectory = data, LogPath = Path.Combine(dir, "postgres.log"),
                PostgresVersion = record?.PostgresVersion, BinDirectory = bins.Directory,
                Replicas = replicas.Count == 0 ? Array.Empty<DataOpsSandboxReplica>() : replicas.AsReadOnly(),
            };
        }

        return Describe(name, bins, SandboxStartAction.None);
    }

    /// <summary>All sandboxes under the root, running or not.</summary>
    public IReadOnlyList<DataOpsSandbox> List(string? name = null)
    {
        if (!Directory.Exists(Root))
        {
            return [];
        }

        var result = new List<DataOpsSandbox>();
        foreach (var dir in Directory.GetDirectories(Root).OrderBy(d => d, StringComparer.Ordinal))
        {
            var n = Path.GetFileName(dir);
            if (n == "templates" || !File.Exists(Path.Combine(dir, "sandbox.json")) && !Directory.Exists(Path.Combine(dir, "data")))
            {
                continue;
            }

            if (name is not null && !string.Equals(n, name, StringComparison.Ordinal))
            {
                continue;
            }

            var record = ReadRecord(n);
            result.Add(Describe(n, record is null ? null : new PgBinaries(record.BinDirectory, record.PostgresVersion, 0), SandboxStartAction.None));
        }

        return result;
    }

    private DataOpsSandbox Describe(string name, PgBinaries? bins, string action, IReadOnlyDictionary<int, string>? replicaActions = null)
    {
        var dir = SandboxDir(name);
        var data = Path.Combine(dir, "data");
        var pid = ReadPostmasterPid(data);
        var alive = pid is { } p && ProcessRunner.IsProcessAlive(p.Pid);
        var record = ReadRecord(name);
        var version = bins?.Version ?? record?.PostgresVersion;
        var password = File.Exists(PasswordFile(name)) ? File.ReadAllText(PasswordFile(name)).Trim() : null;
        var connection = alive ? ConnectionTo(pid!.Value.Port, password, name, version) : null;

        return new DataOpsSandbox
        {
            Name = name,
            Root = Root,
            Status = alive ? SandboxStatus.Running : SandboxStatus.Stopped,
            Action = action,
            Port = alive ? pid!.Value.Port : record?.Port ?? 0,
            ProcessId = alive ? pid!.Value.Pid : 0,
            DataDirectory = data,
            LogPath = Path.Combine(dir, "postgres.log"),
            PostgresVersion = bins?.Version ?? record?.PostgresVersion,
            BinDirectory = bins?.Directory ?? record?.BinDirectory,
            StartedAt = alive ? pid!.Value.Started : null,
            Connection = connection,
            Replicas = DescribeReplicas(name, record, password, version, replicaActions),
        };
    }

    /// <summary>The connection to a sandbox server's 'dataops' database (primary or replica); null without the password.</summary>
    private static DataOpsConnection? ConnectionTo(int port, string? password, string connectionName, string? version)
    {
        if (password is null)
        {
            return null;
        }

        var connection = DataOpsConnection.ForSandbox(
            $"Host=127.0.0.1;Port={port};Username=postgres;Password={password};Database={DatabaseName};Application Name=DataOps.PowerShell",
            connectionName);
        connection.ServerVersion = version;
        return connection;
    }

    private void WriteRecord(SandboxRecord record) =>
        ArtifactFile.WriteText(Path.Combine(SandboxDir(record.Name), "sandbox.json"), JsonSerializer.Serialize(record, Json));

    private string EnsureTemplate(PgBinaries bins, CancellationToken ct)
    {
        var templates = Path.Combine(Root, "templates");
        var template = Path.Combine(templates, $"pg{bins.MajorVersion}-t{TemplateVersion}");
        if (File.Exists(Path.Combine(template, "password")) && File.Exists(Path.Combine(template, "data", "PG_VERSION")))
        {
            return template;
        }

        using var _ = AcquireLock("templates", ct);
        if (File.Exists(Path.Combine(template, "password")))
        {
            return template;
        }

        _observer.Verbose($"No cached template for PostgreSQL {bins.MajorVersion}; running initdb once (later sandboxes copy it).");
        Directory.CreateDirectory(templates);
        MakeTraversable(templates);
        var staging = template + $".tmp-{Environment.ProcessId}";
        if (Directory.Exists(staging))
        {
            Directory.Delete(staging, recursive: true);
        }

        Directory.CreateDirectory(staging);
        var password = Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(24)).ToLowerInvariant();
        var pwfile = Path.Combine(staging, "initdb.pw");
        File.WriteAllText(pwfile, password + "\n");
        RestrictToOwner(pwfile);
        ProcessRunner.GiveToServiceUser(staging);

        var data = Path.Combine(staging, "data");
        var init = ProcessRunner.Run(bins.InitDb, SandboxCommandLines.Arguments(Host, SandboxStep.InitDb, new SandboxPaths(data, PasswordFile: pwfile)),
            asServiceUser: true, ToolTimeout, ct);
        File.Delete(pwfile);
        if (init.ExitCode != 0)
        {
            throw new DataOpsException("SandboxInitFailed", DataOpsErrorKind.ResourceUnavailable,
                $"initdb failed (exit {init.ExitCode}): {init.Combined}", bins.InitDb);
        }

        // Loopback only, password auth over TCP, trust only on the private socket folder (none on Windows).
        File.AppendAllText(Path.Combine(data, "postgresql.conf"), SandboxCommandLines.ServerSettings(Host));
        File.WriteAllText(Path.Combine(data, "pg_hba.conf"), SandboxCommandLines.HostBasedAuth(Host));

        // Create the working database once, in the template, so each start is only a copy.
        var runDir = Path.Combine(staging, "run");
        Directory.CreateDirectory(runDir);
        ProcessRunner.GiveToServiceUser(staging);
        var log = Path.Combine(staging, "template.log");
        var port = StartServer(bins, data, runDir, log, ct);
        try
        {
            // Over TCP with the password, as every client connects: Windows has no socket folder, and
            // not every install has psql beside the server.
            using var connection = new Npgsql.NpgsqlConnection(
                $"Host=127.0.0.1;Port={port};Username=postgres;Password={password};Database=postgres;Pooling=false;Timeout=30;Application Name=DataOps.PowerShell");
            try
            {
                connection.Open();
                using var create = new Npgsql.NpgsqlCommand($"CREATE DATABASE {DatabaseName}", connection);
                create.ExecuteNonQuery();
            }
            catch (Exception ex) when (ex is Npgsql.NpgsqlException or InvalidOperationException)
            {
                throw new DataOpsException("SandboxInitFailed", DataOpsErrorKind.ResourceUnavailable,
                    $"Creating the '{DatabaseName}' database in the template failed: {ex.Message}", data, ex);
            }
        }
        finally
        {
            StopServer(bins, data);
        }

        File.Delete(log);
        Directory.Delete(runDir, recursive: true);
        File.WriteAllText(Path.Combine(staging, "password"), password);
        RestrictToOwner(Path.Combine(staging, "password"));
        if (Directory.Exists(template))
        {
            Directory.Delete(template, recursive: true);
        }

        Directory.Move(staging, template);
        return template;
    }

    /// <summary>Starts the server on a free loopback port, retrying with another port if one is taken meanwhile.</summary>
    private int StartServer(PgBinaries bins, string data, string runDir, string logPath, CancellationToken ct, int? preferredPort = null)
    {
        ProcessResult? last = null;
        for (var attempt = 0; attempt < 3; attempt++)
        {
            ct.ThrowIfCancellationRequested();
            var port = attempt == 0 && preferredPort is { } p && IsFree(p) ? p : FreePort();
            var paths = new SandboxPaths(data, logPath, SandboxCommandLines.SocketDirectory(Host, runDir, port), Port: port);
            last = ProcessRunner.Run(bins.PgCtl, SandboxCommandLines.Arguments(Host, SandboxStep.Start, paths), asServiceUser: true, ToolTimeout, ct);
            if (last.ExitCode == 0)
            {
                return port;
            }
        }

        var tail = File.Exists(logPath) ? string.Join(Environment.NewLine, File.ReadLines(logPath).TakeLast(8)) : string.Empty;
        throw new DataOpsException("SandboxStartFailed", DataOpsErrorKind.ResourceUnavailable,
            $"PostgreSQL did not start from {data}: {last?.Combined} {tail}".Trim(), data);
    }

    private static void StopServer(PgBinaries bins, string data)
    {
        if (!File.Exists(Path.Combine(data, "postmaster.pid")))
        {
            return;
        }

        var r = ProcessRunner.Run(bins.PgCtl, SandboxCommandLines.Arguments(Host, SandboxStep.Stop, new SandboxPaths(data)), asServiceUser: true, ToolTimeout);
        if (r.ExitCode != 0 && File.Exists(Path.Combine(data, "postmaster.pid")) && ReadPostmasterPid(data) is { } pid && ProcessRunner.IsProcessAlive(pid.Pid))
        {
            throw new DataOpsException("SandboxStopFailed", DataOpsErrorKind.ResourceUnavailable,
                $"PostgreSQL in {data} did not stop: {r.Combined}", data);
        }
    }

    private readonly record struct PostmasterInfo(int Pid, int Port, DateTimeOffset? Started);

    /// <summary>postmaster.pid lines: pid, data dir, start epoch, port, socket dir, listen address, ...</summary>
    private static PostmasterInfo? ReadPostmasterPid(string data)
    {
        var file = Path.Combine(data, "postmaster.pid");
        try
        {
            if (!File.Exists(file))
            {
                return null;
            }

            using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var reader = new StreamReader(stream);
            var lines = reader.ReadToEnd().Split('\n');
            var pid = lines.Length > 0 && int.TryParse(lines[0].Trim(), out var p) ? p : 0;
            var port = lines.Length > 3 && int.TryParse(lines[3].Trim(), out var q) ? q : 0;
            DateTimeOffset? started = lines.Length > 2 && long.TryParse(lines[2].Trim(), out var s) ? DateTimeOffset.FromUnixTimeSeconds(s) : null;
            return new PostmasterInfo(pid, port, started);
        }
        catch (IOException)
        {
            return null;
        }
    }

    private static bool IsFree(int port)
    {
        try
        {
            using var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private string SandboxDir(string name) => Path.Combine(Root, name);

    private string PasswordFile(string name) => Path.Combine(SandboxDir(name), "password");

    private SandboxRecord? ReadRecord(string name)
    {
        var file = Path.Combine(SandboxDir(name), "sandbox.json");
        try
        {
            return File.Exists(file) ? JsonSerializer.Deserialize<SandboxRecord>(File.ReadAllText(file)) : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private void EnsureRoot()
    {
        try
        {
            Directory.CreateDirectory(Root);
            MakeTraversable(Root);
            // Creating a folder that exists succeeds even where nothing can be written: find out now, not halfway through a copy.
            var probe = Path.Combine(Root, $".write-test-{Environment.ProcessId}");
            File.WriteAllText(probe, string.Empty);
            File.Delete(probe);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new DataOpsException("SandboxRootUnusable", DataOpsErrorKind.WriteError,
                $"The sandbox root '{Root}' cannot be used: {ex.Message}. Pass -Root (or set $env:DATAOPS_SANDBOX_ROOT) to a folder you can write to.", Root);
        }
    }

    /// <summary>The postgres OS user must be able to walk into our folders when we run it as root.</summary>
    private static void MakeTraversable(string dir)
    {
        if (ProcessRunner.IsRoot && !OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(dir, File.GetUnixFileMode(dir) | UnixFileMode.OtherExecute | UnixFileMode.GroupExecute);
        }
    }

    private static void RestrictToOwner(string file)
    {
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
    }

    private static void CopyDirectory(string source, string destination)
    {
        Directory.CreateDirectory(destination);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(destination, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        foreach (var file in Directory.GetFiles(source))
        {
            File.Copy(file, Path.Combine(destination, Path.GetFileName(file)));
        }

        foreach (var dir in Directory.GetDirectories(source))
        {
            CopyDirectory(dir, Path.Combine(destination, Path.GetFileName(dir)));
        }
    }

    /// <summary>One process at a time per sandbox name, so two sessions never start duplicates.</summary>
    private IDisposable AcquireLock(string name, CancellationToken ct)
    {
        var path = Path.Combine(Root, $"{name}.lock");
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                ct.WaitHandle.WaitOne(100);
                ct.ThrowIfCancellationRequested();
            }
            catch (IOException ex)
            {
                throw new DataOpsException("SandboxBusy", DataOpsErrorKind.ResourceUnavailable,
                    $"Sandbox '{name}' is being started or stopped by another process (lock {path} held for 2 minutes).", name, ex);
            }
        }
    }

    /// <summary>sandbox.json. <see cref="Replicas"/> is absent in files written before replicas existed.</summary>
    private sealed record SandboxRecord(string Name, int Port, string BinDirectory, string PostgresVersion, DateTimeOffset StartedAt, IReadOnlyList<ReplicaRecord>? Replicas = null);

    /// <summary>A replica in sandbox.json: its last port, kept on resume as the primary's is.</summary>
    private sealed record ReplicaRecord(string Name, int Index, int Port);

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")]
    private static partial Regex NamePattern();
}
