using System.Globalization;
using Npgsql;

namespace DataOps.Engine.Sandbox;

/// <summary>
/// A sandbox's replicas: streaming physical standbys, each a pg_basebackup -R -X stream of the
/// primary in &lt;name&gt;/replicas/r&lt;n&gt;, started with pg_ctl as the primary is, on its own free
/// loopback port. They live in the sandbox's folder, so Stop -Remove and Start -Reset delete them with it.
/// <para>
/// No replication slots: a slot keeps WAL on the primary for as long as its standby is away, and
/// the tests that throttle on replica lag create slots on purpose and must see only theirs. Instead
/// the primary keeps wal_keep_size = 128MB (set when the first replica is asked for), enough for a
/// replica stopped with the sandbox (Stop stops replicas first) to catch up on resume. A replica that
/// stays down while the primary writes more than that cannot catch up; -Reset starts over.
/// </para>
/// <para>
/// Replicas are added, never dropped: -Replicas 2 on a sandbox with 1 makes one more; -Replicas 1 on
/// one with 2 is refused (SandboxReplicasFewer) rather than deleting a standby someone may be reading,
/// and -Reset -Replicas 1 starts over with one. Leaving -Replicas out keeps (and restarts) the ones it has.
/// </para>
/// </summary>
public sealed partial class SandboxManager
{
    /// <summary>The most replicas a sandbox may have: each is a full copy of the primary, on a machine shared with tests.</summary>
    public const int MaxReplicas = 4;

    private const string ReplicaFailedId = "SandboxReplicaFailed";
    private const string WalKeepSize = "128MB";

    /// <summary>A base backup copies the whole cluster: a seeded sandbox holds gigabytes, so this is far longer than <see cref="ToolTimeout"/>.</summary>
    private static readonly TimeSpan BaseBackupTimeout = TimeSpan.FromMinutes(15);

    /// <summary>How long a started replica may take to show as streaming in pg_stat_replication (usually well under a second).</summary>
    private static readonly TimeSpan StreamingTimeout = TimeSpan.FromSeconds(60);

    /// <summary>'&lt;sandbox&gt;-r&lt;index&gt;': the replica's name, and its application_name on the primary.</summary>
    public static string ReplicaName(string sandbox, int index) => $"{sandbox}-r{index.ToString(CultureInfo.InvariantCulture)}";

    private string ReplicasDir(string name) => Path.Combine(SandboxDir(name), "replicas");

    private string ReplicaDir(string name, int index) => Path.Combine(ReplicasDir(name), $"r{index.ToString(CultureInfo.InvariantCulture)}");

    /// <summary>The replicas on disk (those with a data folder), first to last.</summary>
    private List<int> ReplicaIndexes(string name) =>
        Enumerable.Range(1, MaxReplicas).Where(i => Directory.Exists(Path.Combine(ReplicaDir(name, i), "data"))).ToList();

    private static void ValidateReplicaCount(int? replicas)
    {
        if (replicas is < 0 or > MaxReplicas)
        {
            throw new DataOpsException("SandboxReplicasInvalid", DataOpsErrorKind.InvalidArgument,
                $"A sandbox can have 0 to {MaxReplicas} replicas, not {replicas}.", replicas);
        }
    }

    private static void RefuseFewerReplicas(string name, int? replicas, int existing)
    {
        if (replicas is { } wanted && wanted < existing)
        {
            throw new DataOpsException("SandboxReplicasFewer", DataOpsErrorKind.InvalidOperation,
                $"Sandbox '{name}' has {existing} replica(s); -Replicas {wanted} would drop some, and replicas are only ever added. Nothing was started.",
                name)
            {
                RecommendedAction = $"Leave out -Replicas (or pass -Replicas {existing}) to start it with its replicas, or start over with -Reset -Replicas {wanted}.",
            };
        }
    }

    /// <summary>
    /// Starts the replicas on disk, creates the missing ones up to <paramref name="target"/>, and waits
    /// until each streams from the primary. On failure, what this call started is stopped (and what it
    /// created deleted) before the SandboxReplicaFailed error is thrown.
    /// </summary>
    private IReadOnlyDictionary<int, string> StartReplicas(string name, PgBinaries bins, int primaryPort, int target, List<int> existing, CancellationToken ct)
    {
        var create = Enumerable.Range(1, MaxReplicas).Where(i => !existing.Contains(i)).Take(Math.Max(0, target - existing.Count)).ToList();
        var all = existing.Concat(create).Order().ToList();
        var actions = new Dictionary<int, string>();
        var startedHere = new List<(int Index, bool Created)>();
        var activity = $"Sandbox '{name}': replicas";
        var current = name;
        try
        {
            var password = File.ReadAllText(PasswordFile(name)).Trim();
            _observer.Verbose($"Checking that sandbox '{name}' (127.0.0.1:{primaryPort}) accepts replication connections for {all.Count} replica(s).");
            AllowReplication(name, primaryPort, password, all.Count, ct);
            var passFile = WritePassFile(name, password);

            for (var k = 0; k < all.Count; k++)
            {
                ct.ThrowIfCancellationRequested();
                var index = all[k];
                current = ReplicaName(name, index);
                var rdir = ReplicaDir(name, index);
                var data = Path.Combine(rdir, "data");
                if (ReadPostmasterPid(data) is { } live && ProcessRunner.IsProcessAlive(live.Pid))
                {
                    _observer.Verbose($"Replica '{current}' is already running (pid {live.Pid}, port {live.Port}); reusing it.");
                    actions[index] = SandboxStartAction.Reused;
                    continue;
                }

                var percent = k * 100 / all.Count;
                var connectionInfo = SandboxCommandLines.ReplicationConnectionInfo(primaryPort, passFile, current);
                if (create.Contains(index))
                {
                    _observer.Progress(new Logging.OperationProgress(activity, $"Base backup for {current} ({k + 1} of {all.Count})", percent));
                    _observer.Verbose($"Taking a base backup of sandbox '{name}' for replica '{current}' into {data} (pg_basebackup -R -X stream, no replication slot).");
                    Directory.CreateDirectory(rdir);
                    startedHere.Add((index, true));
                    ProcessRunner.GiveToServiceUser(ReplicasDir(name));
                    BaseBackup(bins, data, connectionInfo, current, ct);
                    actions[index] = SandboxStartAction.Created;
                }
                else
                {
                    startedHere.Add((index, false));
                    actions[index] = SandboxStartAction.Resumed;
                }

                _observer.Progress(new Logging.OperationProgress(activity, $"Starting {current} ({k + 1} of {all.Count})", percent));
                // Written on every start: the primary may have come back on another port than the one the replica knew.
                WriteStandbySettings(data, connectionInfo);
                var runDir = Path.Combine(rdir, "run");
                Directory.CreateDirectory(runDir);
                ProcessRunner.GiveToServiceUser(rdir);
                var port = StartServer(bins, data, runDir, Path.Combine(rdir, "postgres.log"), ct, ReadRecord(name)?.Replicas?.FirstOrDefault(r => r.Index == index)?.Port);
                _observer.Verbose($"Replica '{current}' ({(actions[index] == SandboxStartAction.Created ? "new" : "resumed")}) is listening on 127.0.0.1:{port}, a hot standby of 127.0.0.1:{primaryPort}.");
            }

            foreach (var index in all)
            {
                current = ReplicaName(name, index);
                _observer.Progress(new Logging.OperationProgress(activity, $"Waiting for {current} to stream", 99));
                var lsn = WaitUntilStreaming(primaryPort, password, current, ReplicaDir(name, index), ct);
                _observer.Verbose($"Replica '{current}' is streaming from the primary (replayed up to {lsn}).");
            }

            current = name;
            var record = ReadRecord(name);
            if (record is not null)
            {
                var replicas = all.Select(i => new ReplicaRecord(ReplicaName(name, i), i, ReadPostmasterPid(Path.Combine(ReplicaDir(name, i), "data"))?.Port ?? 0)).ToList();
                WriteRecord(record with { Replicas = replicas });
            }

            return actions;
        }
        catch (Exception ex) when (ex is DataOpsException or OperationCanceledException or IOException or UnauthorizedAccessException or NpgsqlException)
        {
            var undone = UndoReplicas(name, bins, startedHere);
            if (ex is OperationCanceledException)
            {
                throw;
            }

            throw new DataOpsException(ReplicaFailedId, DataOpsErrorKind.ResourceUnavailable,
                $"{(current == name ? $"The replicas of sandbox '{name}'" : $"Replica '{current}' of sandbox '{name}'")} could not be started: {ex.Message}{undone}",
                current, ex)
            {
                RecommendedAction = $"Read the replica's postgres.log under {ReplicasDir(name)} if it exists, fix the cause, and run Start-DataOpsSandbox -Name {name} again.",
            };
        }
        finally
        {
            _observer.Progress(new Logging.OperationProgress(activity, "Done", Completed: true));
        }
    }

    /// <summary>
    /// The primary's side: wal_level at least replica, enough WAL senders, a replication line in
    /// pg_hba.conf (templates before version 3 lack it: appended here), wal_keep_size; reloaded when changed.
    /// </summary>
    private void AllowReplication(string name, int port, string password, int replicas, CancellationToken ct)
    {
        var data = Path.Combine(SandboxDir(name), "data");
        using var connection = Admin(port, password);
        connection.Open();
        string walLevel, walKeep;
        int senders;
        bool hba;
        DateTime loaded;
        using (var check = new NpgsqlCommand(
            "SELECT current_setting('wal_level'), current_setting('max_wal_senders')::int, coalesce(current_setting('wal_keep_size', true), ''), " +
            "EXISTS (SELECT 1 FROM pg_hba_file_rules WHERE 'replication' = ANY (database) AND error IS NULL), pg_conf_load_time()", connection))
        using (var reader = check.ExecuteReader())
        {
            reader.Read();
            (walLevel, senders, walKeep, hba, loaded) = (reader.GetString(0), reader.GetInt32(1), reader.GetString(2), reader.GetBoolean(3), reader.GetDateTime(4));
        }

        if (walLevel == "minimal" || senders < replicas + 1)
        {
            throw new DataOpsException(ReplicaFailedId, DataOpsErrorKind.InvalidOperation,
                $"Sandbox '{name}' cannot serve {replicas} replica(s): wal_level is {walLevel} (replica needed) and max_wal_senders {senders} ({replicas + 1} needed, one spare for a base backup). Its postgresql.conf in {data} was changed by hand.",
                name);
        }

        var reload = false;
        if (!hba)
        {
            _observer.Verbose($"Allowing replication connections from 127.0.0.1 in {Path.Combine(data, "pg_hba.conf")} (the sandbox was made from an older template).");
            File.AppendAllText(Path.Combine(data, "pg_hba.conf"), SandboxCommandLines.ReplicationHostBasedAuth);
            reload = true;
        }

        if (walKeep is "0" or "0kB")
        {
            _observer.Verbose($"Setting wal_keep_size = {WalKeepSize} on sandbox '{name}', so a replica stopped with it can catch up on resume (no replication slots are used).");
            using var alter = new NpgsqlCommand($"ALTER SYSTEM SET wal_keep_size = '{WalKeepSize}'", connection);
            alter.ExecuteNonQuery();
            reload = true;
        }

        if (!reload)
        {
            return;
        }

        using (var signal = new NpgsqlCommand("SELECT pg_reload_conf()", connection))
        {
            signal.ExecuteNonQuery();
        }

        // pg_reload_conf only signals the postmaster; a new session forked after it has re-read the files carries the new load time.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            using var probe = Admin(port, password);
            probe.Open();
            using var when = new NpgsqlCommand("SELECT pg_conf_load_time()", probe);
            if ((DateTime)when.ExecuteScalar()! > loaded)
            {
                return;
            }

            ct.WaitHandle.WaitOne(50);
            ct.ThrowIfCancellationRequested();
        }
    }

    /// <summary>The replicas' passfile (libpq's format), readable by the server's OS user only: the password stays out of command lines and configuration.</summary>
    private string WritePassFile(string name, string password)
    {
        Directory.CreateDirectory(ReplicasDir(name));
        var file = Path.Combine(ReplicasDir(name), "pgpass");
        File.WriteAllText(file, $"127.0.0.1:*:*:postgres:{password}\n");
        RestrictToOwner(file);
        ProcessRunner.GiveToServiceUser(ReplicasDir(name));
        return file;
    }

    private static void BaseBackup(PgBinaries bins, string data, string connectionInfo, string replica, CancellationToken ct)
    {
        if (!File.Exists(bins.PgBaseBackup))
        {
            throw new DataOpsException("PostgresBinariesNotFound", DataOpsErrorKind.NotInstalled,
                $"pg_basebackup is not in {bins.Directory}, beside pg_ctl; replicas need it. Install the PostgreSQL client tools of the same version (Debian/Ubuntu: postgresql-client-{bins.MajorVersion}).",
                bins.PgBaseBackup);
        }

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var r = ProcessRunner.Run(bins.PgBaseBackup, SandboxCommandLines.BaseBackupArguments(data, connectionInfo), asServiceUser: true, BaseBackupTimeout, ct);
        if (r.ExitCode != 0)
        {
            throw new DataOpsException(ReplicaFailedId, DataOpsErrorKind.ResourceUnavailable,
                $"pg_basebackup failed (exit {r.ExitCode}) after {clock.Elapsed.TotalSeconds:0.0} s: {Tail(r.Combined)}", replica);
        }
    }

    /// <summary>Takes out the primary_conninfo lines pg_basebackup -R (or an earlier start) wrote and appends the current ones.</summary>
    private static void WriteStandbySettings(string data, string connectionInfo)
    {
        var auto = Path.Combine(data, "postgresql.auto.conf");
        var kept = File.Exists(auto)
            ? File.ReadAllLines(auto).Where(l => !l.TrimStart().StartsWith("primary_conninfo", StringComparison.Ordinal)
                && !l.TrimStart().StartsWith("hot_standby", StringComparison.Ordinal)
                && l.Trim() != "# DataOps sandbox replica").ToList()
            : [];
        File.WriteAllText(auto, string.Join('\n', kept).TrimEnd('\n') + "\n" + SandboxCommandLines.StandbySettings(connectionInfo));
        var signal = Path.Combine(data, "standby.signal");
        if (!File.Exists(signal))
        {
            File.WriteAllText(signal, string.Empty);
        }
    }

    /// <summary>Polls the primary's pg_stat_replication until the replica's walreceiver reports 'streaming'; returns its replay LSN.</summary>
    private string WaitUntilStreaming(int primaryPort, string password, string replica, string replicaDir, CancellationToken ct)
    {
        var data = Path.Combine(replicaDir, "data");
        var deadline = DateTime.UtcNow + StreamingTimeout;
        var state = "absent";
        using var connection = Admin(primaryPort, password);
        connection.Open();
        while (true)
        {
            using (var query = new NpgsqlCommand("SELECT state, coalesce(replay_lsn::text, '') FROM pg_stat_replication WHERE application_name = @name", connection))
            {
                query.Parameters.AddWithValue("name", replica);
                using var reader = query.ExecuteReader();
                if (reader.Read())
                {
                    state = reader.GetString(0);
                    if (state == "streaming")
                    {
                        return reader.GetString(1);
                    }
                }
            }

            var alive = ReadPostmasterPid(data) is { } pid && ProcessRunner.IsProcessAlive(pid.Pid);
            if (!alive || DateTime.UtcNow > deadline)
            {
                var why = alive ? $"it was not streaming after {StreamingTimeout.TotalSeconds:0} s (pg_stat_replication: {state})" : "its server stopped";
                throw new DataOpsException(ReplicaFailedId, DataOpsErrorKind.OperationTimeout,
                    $"{why}. Its log ends: {Tail(ReadLog(Path.Combine(replicaDir, "postgres.log")))}", replica);
            }

            ct.WaitHandle.WaitOne(100);
            ct.ThrowIfCancellationRequested();
        }
    }

    /// <summary>Stops what a failed start of replicas started, last first, and deletes the ones it created; says what was done.</summary>
    private string UndoReplicas(string name, PgBinaries bins, List<(int Index, bool Created)> started)
    {
        if (started.Count == 0)
        {
            return string.Empty;
        }

        var done = new List<string>();
        foreach (var (index, created) in Enumerable.Reverse(started))
        {
            var dir = ReplicaDir(name, index);
            try
            {
                StopServer(bins, Path.Combine(dir, "data"));
                if (created && Directory.Exists(dir))
                {
                    Directory.Delete(dir, recursive: true);
                }

                done.Add($"{ReplicaName(name, index)} {(created ? "stopped and deleted" : "stopped")}");
            }
            catch (Exception ex) when (ex is DataOpsException or IOException or UnauthorizedAccessException)
            {
                done.Add($"{ReplicaName(name, index)} could not be cleaned up ({ex.Message})");
            }
        }

        _observer.Verbose($"Undoing the replicas this start began: {string.Join("; ", done)}.");
        return $" Undone: {string.Join("; ", done)}.";
    }

    /// <summary>After a failed replica start: the primary goes back to how it was before this Start (null when it was already running).</summary>
    private string? UndoPrimary(string name, PgBinaries bins, string action)
    {
        if (action == SandboxStartAction.Reused)
        {
            return null;
        }

        var dir = SandboxDir(name);
        var data = Path.Combine(dir, "data");
        try
        {
            StopServer(bins, data);
            StartedHere.TryRemove(Path.GetFullPath(data), out _);
            NpgsqlConnection.ClearAllPools();
            if (action == SandboxStartAction.Created)
            {
                Directory.Delete(dir, recursive: true);
                return $"Sandbox '{name}', new with this start, was stopped and deleted.";
            }

            return $"Sandbox '{name}' was stopped again.";
        }
        catch (Exception ex) when (ex is DataOpsException or IOException or UnauthorizedAccessException)
        {
            return $"Sandbox '{name}' could not be stopped again ({ex.Message}).";
        }
    }

    /// <summary>Stops the replicas, last first: before the primary, so none of them loses its primary while it runs.</summary>
    private void StopReplicas(PgBinaries bins, string name)
    {
        foreach (var index in Enumerable.Reverse(ReplicaIndexes(name)))
        {
            var data = Path.Combine(ReplicaDir(name, index), "data");
            if (ReadPostmasterPid(data) is { } pid && ProcessRunner.IsProcessAlive(pid.Pid))
            {
                _observer.Verbose($"Stopping replica '{ReplicaName(name, index)}' (pid {pid.Pid}, port {pid.Port}).");
            }

            StopServer(bins, data);
        }
    }

    private List<DataOpsSandboxReplica> DescribeReplicaList(string name, SandboxRecord? record, string? password, string? version, IReadOnlyDictionary<int, string>? actions)
    {
        var list = new List<DataOpsSandboxReplica>();
        foreach (var index in ReplicaIndexes(name))
        {
            var dir = ReplicaDir(name, index);
            var data = Path.Combine(dir, "data");
            var pid = ReadPostmasterPid(data);
            var alive = pid is { } p && ProcessRunner.IsProcessAlive(p.Pid);
            var replica = ReplicaName(name, index);
            list.Add(new DataOpsSandboxReplica
            {
                Name = replica,
                Sandbox = name,
                Index = index,
                Status = alive ? SandboxStatus.Running : SandboxStatus.Stopped,
                Action = actions is not null && actions.TryGetValue(index, out var a) ? a : SandboxStartAction.None,
                Port = alive ? pid!.Value.Port : record?.Replicas?.FirstOrDefault(r => r.Index == index)?.Port ?? 0,
                ProcessId = alive ? pid!.Value.Pid : 0,
                DataDirectory = data,
                LogPath = Path.Combine(dir, "postgres.log"),
                Connection = alive ? ConnectionTo(pid!.Value.Port, password, replica, version) : null,
            });
        }

        return list;
    }

    private IReadOnlyList<DataOpsSandboxReplica> DescribeReplicas(string name, SandboxRecord? record, string? password, string? version, IReadOnlyDictionary<int, string>? actions)
    {
        var list = DescribeReplicaList(name, record, password, version, actions);
        return list.Count == 0 ? Array.Empty<DataOpsSandboxReplica>() : list.AsReadOnly();
    }

    private static NpgsqlConnection Admin(int port, string password) =>
        new($"Host=127.0.0.1;Port={port};Username=postgres;Password={password};Database=postgres;Pooling=false;Timeout=15;Command Timeout=30;Application Name=DataOps.PowerShell");

    private static string ReadLog(string path)
    {
        try
        {
            if (!File.Exists(path))
            {
                return "(no log)";
            }

            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var reader = new StreamReader(stream);
            return reader.ReadToEnd();
        }
        catch (IOException ex)
        {
            return $"(log unreadable: {ex.Message})";
        }
    }

    /// <summary>The last lines of a tool's output or a log: where PostgreSQL says why.</summary>
    private static string Tail(string text, int lines = 8) =>
        string.Join(Environment.NewLine, text.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Length > 0).TakeLast(lines));
}
