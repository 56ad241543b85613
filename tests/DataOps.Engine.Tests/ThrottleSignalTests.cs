using System.Diagnostics;
using System.Text.Json;
using DataOps.Engine.Backfill;
using DataOps.Engine.Connections;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using DataOps.Engine.Sandbox;
using DataOps.Engine.Schema;
using Xunit.Abstractions;

namespace DataOps.Engine.Tests;

/// <summary>A sandbox with one streaming standby for the replica-lag and slot tests (they pause its replay and create slots, so it is theirs alone).</summary>
public sealed class ReplicaSandboxFixture : IDisposable
{
    private readonly SandboxManager _manager = new(TestCluster.Root);

    public ReplicaSandboxFixture()
    {
        _ = TestCluster.Sandbox; // the template exists: this is a copy, a start, a base backup and a standby start
        Name = "sig-" + Guid.NewGuid().ToString("N")[..6];
        var sandbox = _manager.Start(Name, replicas: 1);
        Primary = sandbox.Connection!;
        Replica = sandbox.Replicas[0];
        Standby = Replica.Connection!;
        using var log = RunLog.Open("signal-tests", NullObserver.Instance, directory: Path.Combine(TestCluster.Root, "logs"));
        SchemaInstaller.InstallAsync(Primary, [SchemaComponent.Core], log).GetAwaiter().GetResult();
    }

    public string Name { get; }

    public DataOpsConnection Primary { get; }

    public DataOpsSandboxReplica Replica { get; }

    public DataOpsConnection Standby { get; }

    public void Dispose()
    {
        try
        {
            _manager.Stop(Name, remove: true);
        }
        catch (DataOpsException)
        {
            // Best effort; the test root goes at exit.
        }
    }
}

/// <summary>
/// Throttle signals against real clusters and a real standby (issue 17's "done when"): replay paused on
/// the standby holds the run within two check intervals and it resumes when replay does, every item
/// applied once; an idle primary with a healthy standby reads lag 0 and never waits; an unused slot
/// retaining WAL past the limit holds the run until it is dropped; a custom query holds while its row
/// says so; a failing sample holds as "signal unavailable"; a critical limit stops the run.
/// </summary>
public sealed class ThrottleSignalTests(ReplicaSandboxFixture sandbox, ITestOutputHelper output) : IClassFixture<ReplicaSandboxFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task Replay_paused_on_the_standby_holds_the_run_within_two_check_intervals_and_resume_applies_every_item_once()
    {
        var db = sandbox.Primary;
        var table = Table(db, "lagged", 60);
        var interval = TimeSpan.FromMilliseconds(250);
        var job = await JobAsync(db, "lag-" + Suffix(), table, 60, itemsPerMinute: 600,
            signals: [new { kind = "replicaLag", limit = "256kB", checkInterval = "250ms" }]);
        var observer = new RecordingObserver();
        var run = Task.Run(() => RunAsync(job, db, observer));
        try
        {
            await EventuallyAsync(() => Applied(db, job) >= 5, "the run applies its first items");

            Sql.Execute(sandbox.Standby, "SELECT pg_wal_replay_pause()");
            await EventuallyAsync(() => Sql.Scalar<bool>(sandbox.Standby, "SELECT pg_get_wal_replay_pause_state() = 'paused'"), "replay pauses");
            // A few MB of WAL the standby receives and does not replay: the primary's LSN distance passes the limit at once.
            Sql.Execute(db, "CREATE TABLE IF NOT EXISTS filler (v text); INSERT INTO filler SELECT repeat('x', 500) FROM generate_series(1, 8000)");
            var lagged = Sql.Scalar<DateTime>(db, "SELECT clock_timestamp()::timestamp");

            await EventuallyAsync(() => Waiting(observer, "replica lag"), "the run says it waits for replica lag");
            var held = Applied(db, job);
            await Task.Delay(TimeSpan.FromSeconds(3));
            Assert.Equal(held, Applied(db, job));
            Assert.False(run.IsCompleted);
            // Ledger facts, not wall-clock bounds: nothing committed later than two check intervals (and a second of slack for a loaded machine) after the lag began.
            var late = Sql.Scalar<long>(db, $"SELECT count(*) FROM dataops.ledger WHERE job_name = '{job.Job.Name}' AND finished_at > '{lagged:O}'::timestamp + interval '{(2 * interval + TimeSpan.FromSeconds(1)).TotalMilliseconds} milliseconds'");
            Assert.Equal(0L, late);
            var detail = Progress(observer).First(p => p.Contains("waiting (replica lag)", StringComparison.Ordinal));
            output.WriteLine(detail);
            Assert.Contains($"standby {sandbox.Replica.Name} is ", detail);
            // The first hold is reported as soon as the lag passes the limit (in kB or MB by then, depending on the machine's speed).
            Assert.Matches(@"is [0-9.]+ (kB|MB) behind \(limit 256\.0 kB\)", detail);
        }
        finally
        {
            Sql.Execute(sandbox.Standby, "SELECT pg_wal_replay_resume()");
        }

        var (results, runId) = await run.WaitAsync(Patience);

        Assert.Equal(60, results.Count(r => r.Status == BackfillItemStatus.Applied));
        Assert.Equal(60L, Sql.Scalar<long>(db, $"SELECT count(DISTINCT item_key) FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'applied'"));
        Assert.Equal(60L, Sql.Scalar<long>(db, $"SELECT count(*) FROM dataops.ledger WHERE run_id = '{runId}'"));
        Assert.Equal(60L, Sql.Scalar<long>(db, $"SELECT count(*) FROM {table} WHERE v = 1"));
        var recorded = Assert.Single(await UndoRunner.ListRunsAsync(db, job.Job.Name, runId, CancellationToken.None));
        output.WriteLine($"held {recorded.ThrottledTime.GetValueOrDefault("replica lag")}; {string.Join("; ", recorded.Signals)}");
        Assert.Equal("completed", recorded.Status);
        Assert.True(recorded.ThrottledTime["replica lag"] > TimeSpan.FromSeconds(2), recorded.ThrottledTime["replica lag"].ToString());
        var peak = Assert.Single(recorded.Signals);
        Assert.Equal(("replica lag", "replicaLag", "256.0 kB"), (peak.Reason, peak.Kind, peak.Limit));
        Assert.True(peak.MaxValue > 1024 * 1024, peak.ToString());
        var summary = File.ReadAllText(Path.Combine(recorded.OutputDirectory!, job.Job.Name, runId.ToString(), "backfill_summary.md"));
        Assert.Contains("| Throttled | ", summary);
        Assert.Contains("replica lag: ", summary);
        Assert.Contains("## Throttle signals", summary);
    }

    [Fact]
    public async Task An_idle_primary_with_a_healthy_standby_reads_lag_zero_and_a_run_with_the_signal_never_waits()
    {
        var db = sandbox.Primary;
        var signal = new ThrottleSignal { Kind = SignalKind.ReplicaLag, Source = "test", Unit = SignalUnit.Bytes, Limit = 1024 * 1024 };
        await using (var conn = await Database.OpenAsync(db, CancellationToken.None, readOnly: true))
        {
            SignalReading? reading = null;
            await EventuallyAsync(async () => (reading = await SignalSampler.SampleAsync(conn, signal, [], new Dictionary<string, object?>(), null, CancellationToken.None)).Value == 0, "an idle primary's standby is 0 bytes behind");
            Assert.Equal(sandbox.Replica.Name, reading!.Subject);
            Assert.Empty(reading.Missing);
            // Idle for a while longer: LSN distance stays 0 (a replay-timestamp age would grow).
            await Task.Delay(TimeSpan.FromSeconds(1.5));
            Assert.Equal(0, (await SignalSampler.SampleAsync(conn, signal, [], new Dictionary<string, object?>(), null, CancellationToken.None)).Value);
        }

        var table = Table(db, "healthy", 300);
        var job = await JobAsync(db, "healthy-" + Suffix(), table, 300, itemsPerMinute: 0,
            signals: [new { kind = "replicaLag", limit = "1MB", checkInterval = "100ms" }, new { kind = "replicaLag", limit = "30s", name = "replay lag" }]);

        var (results, runId) = await RunAsync(job, db, new RecordingObserver());

        Assert.All(results, r => Assert.Equal(BackfillItemStatus.Applied, r.Status));
        var recorded = Assert.Single(await UndoRunner.ListRunsAsync(db, job.Job.Name, runId, CancellationToken.None));
        output.WriteLine(string.Join("; ", recorded.Signals));
        Assert.Empty(recorded.ThrottledTime);
        Assert.Equal(TimeSpan.Zero, recorded.Throttled);
        Assert.Equal(["replica lag", "replay lag"], recorded.Signals.Select(s => s.Reason));
        Assert.All(recorded.Signals, s => Assert.True(s.Samples >= 1));
    }

    [Fact]
    public async Task An_unused_slot_retaining_WAL_past_the_limit_holds_the_run_until_it_is_dropped()
    {
        var db = sandbox.Primary;
        var slot = "held_" + Suffix();
        var table = Table(db, "slotted", 20);
        var job = await JobAsync(db, "slot-" + Suffix(), table, 20, itemsPerMinute: 0,
            signals: [new { kind = "retainedWal", limit = "1MB", checkInterval = "200ms" }]);
        Sql.Execute(db, $"SELECT pg_create_physical_replication_slot('{slot}', true)");
        try
        {
            Sql.Execute(db, "CREATE TABLE IF NOT EXISTS filler (v text); INSERT INTO filler SELECT repeat('y', 500) FROM generate_series(1, 8000)");
            var observer = new RecordingObserver();
            var run = Task.Run(() => RunAsync(job, db, observer));
            await EventuallyAsync(() => Waiting(observer, "retained WAL"), "the run waits for the slot's WAL");
            await Task.Delay(TimeSpan.FromSeconds(1));
            Assert.Equal(0L, Applied(db, job));
            Assert.Contains(Progress(observer), p => p.Contains($"replication slot {slot} retains ", StringComparison.Ordinal) && p.Contains("(limit 1.0 MB)", StringComparison.Ordinal));

            Sql.Execute(db, $"SELECT pg_drop_replication_slot('{slot}')");
            slot = null;
            var (results, runId) = await run.WaitAsync(Patience);

            Assert.Equal(20, results.Count(r => r.Status == BackfillItemStatus.Applied));
            var recorded = Assert.Single(await UndoRunner.ListRunsAsync(db, job.Job.Name, runId, CancellationToken.None));
            Assert.True(recorded.ThrottledTime["retained WAL"] > TimeSpan.FromSeconds(0.5), recorded.ThrottledTime["retained WAL"].ToString());
            Assert.True(Assert.Single(recorded.Signals).MaxValue > 1024 * 1024);
        }
        finally
        {
            if (slot is not null)
            {
                Sql.Execute(db, $"SELECT pg_drop_replication_slot('{slot}')");
            }
        }
    }

    [Fact]
    public async Task A_query_signal_holds_while_its_row_says_so_and_a_failing_sample_holds_as_signal_unavailable()
    {
        var db = TestDatabase();
        Sql.Execute(db, "CREATE TABLE knob (hold boolean NOT NULL, d int NOT NULL); INSERT INTO knob VALUES (true, 1)");
        var table = Table(db, "knobbed", 10);
        var job = await JobAsync(db, "knob-" + Suffix(), table, 10, itemsPerMinute: 0,
            signals: [new { kind = "query", name = "maintenance window", query = "SELECT hold AND 1 / d = 1 FROM knob", checkInterval = "100ms" }]);
        var observer = new RecordingObserver();
        var run = Task.Run(() => RunAsync(job, db, observer));

        await EventuallyAsync(() => Waiting(observer, "maintenance window"), "the query holds the run");
        Assert.Contains(Progress(observer), p => p.Contains("waiting (maintenance window): the query ($.throttle.signals[0]) returned true", StringComparison.Ordinal));
        Sql.Execute(db, "UPDATE knob SET d = 0");
        await EventuallyAsync(() => Waiting(observer, SignalGate.UnavailableReason), "a failing sample holds the run as signal unavailable");
        Assert.Contains(Progress(observer), p => p.Contains("could not be sampled: 22012: division by zero", StringComparison.Ordinal));
        Assert.Equal(0L, Applied(db, job));
        Sql.Execute(db, "UPDATE knob SET d = 1, hold = false");
        var (results, runId) = await run.WaitAsync(Patience);

        Assert.Equal(10, results.Count(r => r.Status == BackfillItemStatus.Applied));
        var recorded = Assert.Single(await UndoRunner.ListRunsAsync(db, job.Job.Name, runId, CancellationToken.None));
        Assert.True(recorded.ThrottledTime["maintenance window"] > TimeSpan.Zero);
        Assert.True(recorded.ThrottledTime[SignalGate.UnavailableReason] > TimeSpan.Zero);
    }

    [Fact]
    public async Task A_signal_above_its_critical_limit_in_criticalHits_samples_in_a_row_stops_the_run_with_BackfillThrottleCritical()
    {
        var db = TestDatabase();
        Sql.Execute(db, "CREATE TABLE gauge (v int NOT NULL); INSERT INTO gauge VALUES (5)");
        var table = Table(db, "critical", 10);
        var job = await JobAsync(db, "critical-" + Suffix(), table, 10, itemsPerMinute: 0,
            signals: [new { kind = "query", query = "SELECT v FROM gauge", limit = 1, critical = 3, criticalHits = 3, checkInterval = "100ms" }]);

        var ex = await Assert.ThrowsAsync<DataOpsException>(() => RunAsync(job, db, new RecordingObserver()));

        Assert.Equal(("BackfillThrottleCritical", DataOpsErrorKind.OperationStopped, (object)"$.throttle.signals[0]"), (ex.ErrorId, ex.Kind, ex.Target));
        Assert.Contains("above its critical limit 3 in 3 samples in a row", ex.Message);
        Assert.Equal(0L, Applied(db, job));
        var recorded = Assert.Single(await UndoRunner.ListRunsAsync(db, job.Job.Name, null, CancellationToken.None));
        Assert.Equal("failed", recorded.Status);
        Assert.Contains("critical limit", recorded.Reason);
        Assert.True(recorded.ThrottledTime["query"] > TimeSpan.Zero);
    }

    [Fact]
    public async Task A_replicaLag_signal_with_no_standby_to_watch_fails_before_the_run_is_recorded()
    {
        var db = TestDatabase();
        var table = Table(db, "alone", 3);
        var job = await JobAsync(db, "alone-" + Suffix(), table, 3, itemsPerMinute: 0, signals: [new { kind = "replicaLag", limit = "16MB" }]);

        var ex = await Assert.ThrowsAsync<DataOpsException>(() => RunAsync(job, db, new RecordingObserver()));

        Assert.Equal(("ThrottleSignalUnavailable", "$.throttle.signals[0]"), (ex.ErrorId, ex.Target));
        Assert.Contains("no standby streams from this server", ex.Message);
        Assert.Equal(0L, Sql.Scalar<long>(db, "SELECT count(*) FROM dataops.run"));
    }

    [Fact]
    public async Task A_named_standby_that_is_not_streaming_holds_the_run_unless_missing_is_ignore()
    {
        var db = TestDatabase();
        var table = Table(db, "ghost", 3);
        var holding = await JobAsync(db, "ghost-" + Suffix(), table, 3, itemsPerMinute: 0,
            signals: [new { kind = "replicaLag", limit = "16MB", standbys = new[] { "ghost" }, checkInterval = "100ms" }]);
        var observer = new RecordingObserver();
        using var cts = new CancellationTokenSource();
        var run = Task.Run(() => RunAsync(holding, db, observer, cts.Token));
        await EventuallyAsync(() => Waiting(observer, "replica lag"), "a missing standby holds the run");
        Assert.Contains(Progress(observer), p => p.Contains("standby ghost is not streaming", StringComparison.Ordinal));
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run.WaitAsync(Patience));

        var ignoring = await JobAsync(db, "ghost-ignored-" + Suffix(), table, 3, itemsPerMinute: 0,
            signals: [new { kind = "replicaLag", limit = "16MB", standbys = new[] { "ghost" }, missing = "ignore" }]);
        var (results, _) = await RunAsync(ignoring, db, new RecordingObserver()).WaitAsync(Patience);
        Assert.All(results, r => Assert.Equal(BackfillItemStatus.Applied, r.Status));
    }

    [Fact]
    public async Task Every_kind_samples_on_a_real_server_and_counts_what_it_names()
    {
        var db = sandbox.Primary;
        var table = Table(db, "sampled", 3);
        var none = new Dictionary<string, object?>();
        await using var conn = await Database.OpenAsync(db, CancellationToken.None, readOnly: true);
        foreach (var kind in new[] { SignalKind.RetainedWal, SignalKind.ArchiveBacklog, SignalKind.Autovacuum, SignalKind.ActiveSessions, SignalKind.LockWaiters })
        {
            var reading = await SignalSampler.SampleAsync(conn, new ThrottleSignal { Kind = kind, Source = "test" }, [table], none, null, CancellationToken.None);
            output.WriteLine($"{kind}: {reading.Value} {reading.Subject}");
            Assert.True(reading.Value >= 0, kind);
        }

        // A session holding a table lock and one waiting for it: one lock waiter, and an active session running a statement.
        await using var holder = new Npgsql.NpgsqlConnection(db.ConnectionString);
        await holder.OpenAsync();
        await using var tx = await holder.BeginTransactionAsync();
        await new Npgsql.NpgsqlCommand($"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE", holder, tx).ExecuteNonQueryAsync();
        var waiter = Task.Run(() => Sql.Scalar<long>(db, $"SELECT count(*) FROM {table}"));
        var waiters = new ThrottleSignal { Kind = SignalKind.LockWaiters, Source = "test" };
        var active = new ThrottleSignal { Kind = SignalKind.ActiveSessions, Source = "test" };
        await EventuallyAsync(async () => waiter.IsFaulted || (await SignalSampler.SampleAsync(conn, waiters, [table], none, null, CancellationToken.None)).Value >= 1, "the waiting session counts as a lock waiter");
        Assert.False(waiter.IsCompleted);
        Assert.True((await SignalSampler.SampleAsync(conn, active, [table], none, null, CancellationToken.None)).Value >= 1);
        await tx.CommitAsync();
        Assert.Equal(3L, await waiter.WaitAsync(Patience));
    }

    [Fact]
    public async Task A_role_without_pg_monitor_cannot_use_replicaLag_or_archiveBacklog_and_the_run_does_not_start()
    {
        var db = sandbox.Primary;
        var table = Table(db, "unprivileged", 3);
        var job = await JobAsync(db, "unprivileged-" + Suffix(), table, 3, itemsPerMinute: 0, signals: []);
        var role = "sig_" + Suffix();
        const string password = "s1gnal-pw";
        Sql.Execute(db, $"CREATE ROLE {role} LOGIN PASSWORD '{password}'");
        try
        {
            var weak = DataOpsConnection.FromConnectionString($"Host=127.0.0.1;Port={db.Port};Database={db.Database};Username={role};Password={password}");
            var lag = await Assert.ThrowsAsync<DataOpsException>(() => SignalGate.StartAsync(weak, [new ThrottleSignal { Kind = SignalKind.ReplicaLag, Source = "-MaxReplicaLag", Unit = SignalUnit.Bytes, Limit = 1 }], job, null, CancellationToken.None));
            output.WriteLine(lag.Message);
            Assert.Equal(("ThrottleSignalUnavailable", DataOpsErrorKind.InvalidOperation, (object)"-MaxReplicaLag"), (lag.ErrorId, lag.Kind, lag.Target));
            Assert.Contains("grant it pg_monitor", lag.Message);
            Assert.DoesNotContain(password, lag.Message);

            var archive = await Assert.ThrowsAsync<DataOpsException>(() => SignalGate.StartAsync(weak, [new ThrottleSignal { Kind = SignalKind.ArchiveBacklog, Source = "$.throttle.signals[0]", Limit = 10 }], job, null, CancellationToken.None));
            output.WriteLine(archive.Message);
            Assert.Equal("ThrottleSignalUnavailable", archive.ErrorId);
            Assert.Contains("42501: permission denied for function pg_ls_archive_statusdir", archive.Message);
        }
        finally
        {
            Sql.Execute(db, $"DROP ROLE {role}");
        }
    }

    [Fact]
    public async Task A_soak_reads_the_same_signals_as_checks_Go_while_the_standby_keeps_up_and_NoGo_while_its_replay_is_paused()
    {
        var db = sandbox.Primary;
        var table = Table(db, "soaked", 3);
        var path = Path.Combine(Output(), "soak.job.json");
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            version = 1,
            name = "soak-" + Suffix(),
            items = new { keys = new[] { "1" } },
            capture = new[] { new { table, where = "id = @key::int" } },
            steps = new[] { new { sql = $"UPDATE {table} SET v = 1 WHERE id = @key::int" } },
            verify = $"SELECT v = 1 FROM {table} WHERE id = @key::int",
            soak = new
            {
                duration = "1500ms", interval = "250ms",
                checks = new object[]
                {
                    new { name = "replica lag", signal = "replicaLag", expect = new { atMost = "1MB" } },
                    new { name = "replay lag", signal = "replicaLag", expect = new { atMost = "30s" } },
                    new { name = "slots", signal = "retainedWal", expect = new { atMost = "64MB" } },
                    new { name = "lock waiters", signal = "lockWaiters", expect = new { atMost = 5 } },
                },
            },
        }));
        var job = JobFile.Load(path);
        var spec = Soak.SoakSpecParser.Parse(job);
        Assert.Equal(SignalUnit.Seconds, spec.Checks[1].Signal!.Unit);

        var healthy = await SoakAsync(job, spec, db);
        output.WriteLine(healthy.ToString());
        Assert.Equal(Soak.SoakVerdict.Go, healthy.Verdict);
        Assert.All(healthy.Checks, c => Assert.Equal(c.Samples, c.Passes));

        Sql.Execute(sandbox.Standby, "SELECT pg_wal_replay_pause()");
        try
        {
            await EventuallyAsync(() => Sql.Scalar<bool>(sandbox.Standby, "SELECT pg_get_wal_replay_pause_state() = 'paused'"), "replay pauses");
            Sql.Execute(db, "CREATE TABLE IF NOT EXISTS filler (v text); INSERT INTO filler SELECT repeat('z', 500) FROM generate_series(1, 8000)");
            var lagging = await SoakAsync(job, spec, db);
            output.WriteLine(lagging.ToString());
            Assert.Equal(Soak.SoakVerdict.NoGo, lagging.Verdict);
            var lag = lagging.Checks.Single(c => c.Check == "replica lag");
            Assert.True(lag.Failures > 0 && lag.Max > 1024 * 1024, $"{lag.Failures} failures, max {lag.Max}");
        }
        finally
        {
            Sql.Execute(sandbox.Standby, "SELECT pg_wal_replay_resume()");
        }
    }

    private static async Task<Soak.SoakReport> SoakAsync(BackfillJob job, Soak.SoakSpec spec, DataOpsConnection db)
    {
        using var log = RunLog.Open("signal-soak", NullObserver.Instance, directory: Path.Combine(TestCluster.Root, "logs"));
        Soak.SoakReport? report = null;
        await foreach (var o in Soak.SoakRunner.WatchAsync(job, spec, db, Output(), failFast: false, log, NullObserver.Instance, CancellationToken.None))
        {
            report = o as Soak.SoakReport ?? report;
        }

        return report!;
    }

    [Theory]
    [InlineData("16MB", 16d * 1024 * 1024)]
    [InlineData("512kB", 512d * 1024)]
    [InlineData("1.5GB", 1.5 * 1024 * 1024 * 1024)]
    [InlineData("1048576", 1048576d)]
    [InlineData(" 100 B ", 100d)]
    public void Sizes_read_as_PostgreSQL_writes_them(string text, double bytes)
    {
        Assert.True(SignalValue.TryParseSize(text, out var parsed));
        Assert.Equal(bytes, parsed);
    }

    [Theory]
    [InlineData("-1MB")]
    [InlineData("16 parsecs")]
    [InlineData("")]
    public void Not_sizes(string text) => Assert.False(SignalValue.TryParseSize(text, out _));

    [Fact]
    public void Parameters_replace_the_job_files_signal_of_their_kind_and_unit_or_add_one()
    {
        IReadOnlyList<ThrottleSignal> job =
        [
            new() { Kind = SignalKind.ReplicaLag, Source = "$.throttle.signals[0]", Unit = SignalUnit.Bytes, Limit = 100, Critical = 200, CriticalHits = 5 },
            new() { Kind = SignalKind.ReplicaLag, Source = "$.throttle.signals[1]", Unit = SignalUnit.Seconds, Limit = 10 },
        ];

        var signals = ThrottleSignals.WithParameters(job, "1MB", "2GB", TimeSpan.FromMilliseconds(500));

        Assert.Equal(3, signals.Count);
        Assert.Equal(("-MaxReplicaLag", 1024d * 1024, 1024d * 1024, 5), (signals[0].Source, signals[0].Limit, signals[0].Critical!.Value, signals[0].CriticalHits));
        Assert.Equal(("$.throttle.signals[1]", 10d), (signals[1].Source, signals[1].Limit));
        Assert.Equal((SignalKind.RetainedWal, 2d * 1024 * 1024 * 1024), (signals[2].Kind, signals[2].Limit));
        Assert.All(signals, s => Assert.Equal(TimeSpan.FromMilliseconds(500), s.CheckInterval));
        Assert.Equal(SignalUnit.Seconds, Assert.Single(ThrottleSignals.WithParameters([], "10s", null, null)).Unit);

        var bad = Assert.Throws<DataOpsException>(() => ThrottleSignals.WithParameters([], "lots", null, null));
        Assert.Equal(("SignalLimitInvalid", DataOpsErrorKind.InvalidArgument, (object)"lots"), (bad.ErrorId, bad.Kind, bad.Target));
        Assert.Equal("SignalCheckIntervalOutOfRange", Assert.Throws<DataOpsException>(() => ThrottleSignals.WithParameters([], null, null, TimeSpan.FromMilliseconds(50))).ErrorId);
    }

    private static DataOpsConnection TestDatabase()
    {
        var db = TestCluster.CreateDatabase("sig");
        using var log = RunLog.Open("signal-tests", NullObserver.Instance, directory: Path.Combine(TestCluster.Root, "logs"));
        SchemaInstaller.InstallAsync(db, [SchemaComponent.Core], log).GetAwaiter().GetResult();
        return db;
    }

    private static string Suffix() => Guid.NewGuid().ToString("N")[..8];

    private static string Table(DataOpsConnection db, string prefix, int rows)
    {
        var table = $"{prefix}_{Suffix()}";
        Sql.Execute(db, $"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL DEFAULT 0); INSERT INTO {table} (id) SELECT generate_series(1, {rows})");
        return "public." + table;
    }

    private static long Applied(DataOpsConnection db, ValidatedJob job) =>
        Sql.Scalar<long>(db, $"SELECT count(*) FROM dataops.ledger WHERE job_name = '{job.Job.Name}' AND status = 'applied'");

    private static List<string> Progress(RecordingObserver observer)
    {
        lock (observer.Progress)
        {
            return [.. observer.Progress.Select(p => p.Status)];
        }
    }

    private static bool Waiting(RecordingObserver observer, string reason) => Progress(observer).Any(p => p.Contains($"waiting ({reason})", StringComparison.Ordinal));

    private static async Task<ValidatedJob> JobAsync(DataOpsConnection db, string name, string table, int items, int itemsPerMinute, object[] signals)
    {
        var path = Path.Combine(Output(), name + ".job.json");
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            version = 1,
            name,
            items = new { keys = Enumerable.Range(1, items).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)) },
            throttle = new { itemsPerMinute, signals },
            capture = new[] { new { table, where = "id = @key::int" } },
            steps = new[] { new { name = "set", sql = $"UPDATE {table} SET v = v + 1 WHERE id = @key::int" } },
            verify = $"SELECT v = 1 FROM {table} WHERE id = @key::int",
        }));
        return await BackfillRunner.PrepareAsync(JobFile.Load(path), db, CancellationToken.None);
    }

    private static async Task<(List<BackfillItemResult> Results, Guid RunId)> RunAsync(ValidatedJob job, DataOpsConnection db, RecordingObserver observer, CancellationToken ct = default)
    {
        using var log = RunLog.Open("signal-test", observer, directory: Path.Combine(TestCluster.Root, "logs"));
        var results = new List<BackfillItemResult>();
        await foreach (var result in BackfillRunner.RunAsync(job, db, new BackfillOptions { OutputDirectory = Output() }, log, observer, ct))
        {
            results.Add(result);
        }

        return (results, results.Count > 0 ? results[0].RunId : Guid.Empty);
    }

    private static string Output() => Directory.CreateDirectory(Path.Combine(TestCluster.Root, "out", Guid.NewGuid().ToString("N"))).FullName;

    private static Task EventuallyAsync(Func<bool> condition, string what) => EventuallyAsync(() => Task.FromResult(condition()), what);

    private static async Task EventuallyAsync(Func<Task<bool>> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(clock.Elapsed < Patience, $"timed out after {Patience}: {what}");
            await Task.Delay(100);
        }
    }
}
