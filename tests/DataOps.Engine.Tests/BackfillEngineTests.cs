using System.Text.Json;
using DataOps.Engine.Backfill;
using DataOps.Engine.Connections;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using DataOps.Engine.Schema;
using DataOps.Tests;
using Npgsql;

namespace DataOps.Engine.Tests;

/// <summary>
/// The backfill engine without PowerShell: the paths a run takes (groups on the server, the one-item
/// fallback, dry runs, several workers), driven through <see cref="BackfillRunner.RunAsync"/> against a
/// real database, with failures injected by the job's own SQL.
/// </summary>
public sealed class BackfillEngineTests
{
    private const int Items = 40;

    [Fact]
    public async Task A_group_whose_connection_dies_mid_way_falls_back_to_one_item_at_a_time_and_applies_every_item_once()
    {
        // Item 17 terminates its own session the first time it runs (a sequence is not transactional,
        // so the second run of the step sees 2): the group dies after 16 committed items.
        var db = await DatabaseAsync();
        var job = await JobAsync(db, "fallback", faultStep: "SELECT pg_terminate_backend(pg_backend_pid()) WHERE @key = '17' AND nextval('fault_once') = 1");

        var results = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0 });

        Assert.Equal(Items, results.Count);
        Assert.All(results, r => Assert.Equal(BackfillItemStatus.Applied, r.Status));
        Assert.Equal(2L, db.Scalar<long>("SELECT last_value FROM fault_once"));
        AssertEachItemAppliedOnce(db, results[0].RunId);
        Assert.Equal("completed", db.Scalar<string>($"SELECT status FROM dataops.run WHERE run_id = '{results[0].RunId}'"));
    }

    [Fact]
    public async Task An_item_the_server_fails_is_recorded_once_and_the_group_goes_on_after_it()
    {
        var db = await DatabaseAsync();
        var job = await JobAsync(db, "named", faultStep: "SELECT 1 / (CASE WHEN @key = '17' THEN 0 ELSE 1 END)");

        var results = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0 });

        var failed = Assert.Single(results, r => r.Status == BackfillItemStatus.Failed);
        Assert.Equal("17", failed.Key);
        Assert.Contains("22012", failed.Error);
        Assert.Equal(Items - 1, results.Count(r => r.Status == BackfillItemStatus.Applied));
        Assert.Equal(0, db.Scalar<int>("SELECT v FROM t WHERE id = 17"));
        Assert.Equal(Items - 1, db.Scalar<long>("SELECT count(*) FROM t WHERE v = 1"));
        Assert.Equal(1L, db.Scalar<long>($"SELECT count(*) FROM dataops.ledger WHERE run_id = '{failed.RunId}' AND item_key = '17' AND status = 'failed'"));
    }

    [Fact]
    public async Task A_dry_run_runs_grouped_changes_nothing_and_reports_a_failing_verify_for_that_item_only()
    {
        var db = await DatabaseAsync();
        var job = await JobAsync(db, "dry", verify: "SELECT v = 1 AND @key <> '17' FROM t WHERE id = @key::int");

        var results = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0, DryRun = true });

        Assert.Equal(Items - 1, results.Count(r => r.Status == BackfillItemStatus.WouldApply && r.RowsChanged == 1));
        var failed = Assert.Single(results, r => r.Status == BackfillItemStatus.Failed);
        Assert.Equal(("17", BackfillErrorCategory.VerifyFailed), (failed.Key, failed.ErrorCategory));
        Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM t WHERE v <> 0"));
        Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM dataops.ledger"));
    }

    [Fact]
    public async Task Undoing_a_dry_run_or_an_undo_run_is_refused_saying_what_that_run_was_and_changes_nothing()
    {
        var db = await DatabaseAsync(5);
        var job = await JobAsync(db, "undo-kinds", items: 5);
        var dry = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0, DryRun = true });
        var run = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0 });
        using (var log = Log())
        {
            await foreach (var _ in UndoRunner.UndoAsync(db.Connection, run[0].RunId, log, NullObserver.Instance, CancellationToken.None))
            {
            }
        }

        var undoRun = db.Scalar<Guid>("SELECT run_id FROM dataops.run WHERE kind = 'undo'");
        var ledger = db.Scalar<long>("SELECT count(*) FROM dataops.ledger");

        var ofDry = await Assert.ThrowsAsync<DataOpsException>(() => UndoRunner.CheckAsync(db.Connection, dry[0].RunId, CancellationToken.None));
        var ofUndo = await Assert.ThrowsAsync<DataOpsException>(() => UndoRunner.CheckAsync(db.Connection, undoRun, CancellationToken.None));
        var direct = await Assert.ThrowsAsync<DataOpsException>(async () =>
        {
            using var log = Log();
            await foreach (var _ in UndoRunner.UndoAsync(db.Connection, dry[0].RunId, log, NullObserver.Instance, CancellationToken.None))
            {
            }
        });

        Assert.Equal(("UndoOfDryRun", DataOpsErrorKind.InvalidOperation, (object)dry[0].RunId), (ofDry.ErrorId, ofDry.Kind, ofDry.Target));
        Assert.Contains($"Run {dry[0].RunId} of job 'undo-kinds'", ofDry.Message);
        Assert.Contains("was a dry run", ofDry.Message);
        Assert.Contains("changed nothing", ofDry.Message);
        Assert.Equal(("UndoOfUndoRun", DataOpsErrorKind.InvalidOperation, (object)undoRun), (ofUndo.ErrorId, ofUndo.Kind, ofUndo.Target));
        Assert.Contains($"is an undo run (it restored rows of run {run[0].RunId})", ofUndo.Message);
        Assert.Contains("run the job again", ofUndo.Message);
        Assert.Equal("UndoOfDryRun", direct.ErrorId);
        Assert.Equal(ledger, db.Scalar<long>("SELECT count(*) FROM dataops.ledger"));
        Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM t WHERE v <> 0"));
        Assert.Equal(1L, db.Scalar<long>("SELECT count(*) FROM dataops.run WHERE kind = 'undo'"));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1_000_000)]
    public async Task Several_workers_run_groups_side_by_side_and_apply_every_item_once(int perMinute)
    {
        var db = await DatabaseAsync();
        var job = await JobAsync(db, "workers", maxConcurrency: 4);

        var results = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = perMinute });

        Assert.Equal(Items, results.Count(r => r.Status == BackfillItemStatus.Applied));
        Assert.Equal(Enumerable.Range(1, Items).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).Order(), results.Select(r => r.Key).Order());
        AssertEachItemAppliedOnce(db, results[0].RunId);

        // A second run finds every item applied and skips it.
        var again = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = perMinute });
        Assert.All(again, r => Assert.Equal(BackfillItemStatus.Skipped, r.Status));
    }

    [Fact]
    public async Task Max_failures_stops_the_run_at_the_failure_that_reaches_it()
    {
        var db = await DatabaseAsync();
        var job = await JobAsync(db, "maxfail", faultStep: "SELECT 1 / (CASE WHEN @key IN ('5', '6') THEN 0 ELSE 1 END)");

        var results = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0, MaxFailures = 2 });

        Assert.Equal(["1", "2", "3", "4", "5", "6"], results.Select(r => r.Key));
        Assert.Equal(4L, db.Scalar<long>("SELECT count(*) FROM t WHERE v = 1"));
        Assert.Equal("failed", db.Scalar<string>($"SELECT status FROM dataops.run WHERE run_id = '{results[0].RunId}'"));
    }

    [Fact]
    public async Task The_servers_image_hash_is_the_plans_fingerprint_for_awkward_rows()
    {
        // The grouped path checks a plan's items on the server (dataops.image_hash); Test-ProdHealth
        // computes the fingerprint in the client (PlanFingerprint.Hash). They must agree to the byte.
        var db = await DatabaseAsync();
        db.Execute("""
            CREATE TABLE odd (id int PRIMARY KEY, txt text, num numeric, j jsonb, ts timestamptz, f float8);
            INSERT INTO odd VALUES
              (1, E'quote " backslash \\ tab \t newline \n', 1.50, '{"b": [1, 2.0], "a": null}', '2026-12-01 10:00:00.123456+00', 1e300),
              (2, 'ünïcødé ✓ 𝄞 日本', -0.0000001, '"x"', NULL, 'NaN'),
              (3, NULL, NULL, NULL, NULL, '-Infinity');
            """);
        var job = await JobAsync(db, "hash");
        var tables = new[] { "public.odd", "public.t" };
        var where = new[] { "true", "id <= 3" };
        var image = new ItemImage();
        var server = new List<string>();
        foreach (var (table, i) in tables.Select((t, i) => (t, i)))
        {
            var text = db.Scalar<string>($"SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.id), '[]'::jsonb)::text FROM (SELECT * FROM {table} WHERE {where[i]}) r");
            image.Tables[table] = RowImages.Rows(text);
            server.Add(text);
        }

        var captures = tables.Select(t => job.Capture[0] with { QualifiedName = t }).ToList();
        var expected = PlanFingerprint.Hash(image, captures);
        var actual = db.Scalar<string>($"SELECT dataops.image_hash(ARRAY['public.odd', 'public.t'], ARRAY['{server[0].Replace("'", "''", StringComparison.Ordinal)}'::jsonb, '{server[1]}'::jsonb])");

        Assert.Equal(expected, actual);
        Assert.NotEqual(expected, db.Scalar<string>("SELECT dataops.image_hash(ARRAY['public.odd'], ARRAY['[]'::jsonb])"));
    }

    [Fact]
    public async Task A_dry_run_skips_what_the_ledger_shows_applied_as_the_real_run_would()
    {
        var db = await DatabaseAsync();
        var job = await JobAsync(db, "dry-after");
        var first = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0, Keys = ["1", "2", "3"] });
        Assert.All(first, r => Assert.Equal(BackfillItemStatus.Applied, r.Status));

        var dry = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0, DryRun = true });
        var real = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0 });

        Assert.Equal(["1", "2", "3"], dry.Where(r => r.Status == BackfillItemStatus.Skipped).Select(r => r.Key));
        Assert.Equal(real.Select(r => (r.Key, r.Status == BackfillItemStatus.Applied ? BackfillItemStatus.WouldApply : r.Status)), dry.Select(r => (r.Key, r.Status)));
    }

    [Fact]
    public async Task With_several_workers_every_item_committed_after_max_failures_is_still_reported()
    {
        var db = await DatabaseAsync(400);
        var job = await JobAsync(db, "workers-maxfail", verify: "SELECT v = 1 AND @key::int % 7 <> 0 FROM t WHERE id = @key::int", maxConcurrency: 4, items: 400);

        var results = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0, MaxFailures = 3 });

        var runId = results[0].RunId;
        Assert.InRange(results.Count(r => r.Status == BackfillItemStatus.Failed), 3, 3 + 3);
        Assert.Equal(db.Scalar<long>($"SELECT count(*) FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'applied'"), results.Count(r => r.Status == BackfillItemStatus.Applied));
        Assert.Equal(db.Scalar<long>($"SELECT count(*) FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'failed'"), results.Count(r => r.Status == BackfillItemStatus.Failed));
        Assert.True(results.Count < 400, "the run stopped");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    public async Task A_reader_that_stops_early_leaves_at_most_two_groups_applied(int workers)
    {
        var db = await DatabaseAsync(2_000);
        var job = await JobAsync(db, "first-three", maxConcurrency: workers, items: 2_000);
        using var log = Log();
        Guid runId;
        var taken = 0;
        await using (var items = BackfillRunner.RunAsync(job, db.Connection, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0 }, log, NullObserver.Instance).GetAsyncEnumerator())
        {
            do
            {
                Assert.True(await items.MoveNextAsync());
                runId = items.Current.RunId;
            }
            while (++taken < 3);
        }

        // One group reported, at most one waiting and one per worker in flight; every worker together has a group's worth.
        var applied = db.Scalar<long>($"SELECT count(*) FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'applied'");
        Assert.InRange(applied, 3, 2 * GroupExecutor.GroupSize);
        Assert.Equal("stopped", db.Scalar<string>($"SELECT status FROM dataops.run WHERE run_id = '{runId}'"));
        Assert.Equal(applied, db.Scalar<long>("SELECT count(*) FROM t WHERE v = 1"));
    }

    [Fact]
    public async Task Hooks_get_one_throttled_event_per_episode_and_counts_that_match_the_ledger_and_the_metrics_file_shows_the_reason()
    {
        // A gate holds the run twice (before item 1 and before item 11), two checks each: two episodes, two throttled events.
        var db = await DatabaseAsync();
        using var hooks = new HookReceiver();
        var job = await JobAsync(db, "hooked", notify: [new { url = hooks.Url, on = new[] { "start", "throttled", "halt", "success", "failure" } }]);
        var metrics = Path.Combine(Output(), "dataops_backfill.prom");
        var gate = new TwoEpisodesGate(new ThrottleHold("replica lag", "replica r1 is 48 MB behind", TimeSpan.FromMilliseconds(200)));

        var results = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 1_000_000, Gates = [gate], MetricsPath = metrics });

        Assert.Equal(Items, results.Count(r => r.Status == BackfillItemStatus.Applied));
        var events = hooks.Payloads.Select(p => p.GetProperty("event").GetString()).ToList();
        Assert.Equal(["start", "throttled", "throttled", "halt", "success"], events);
        var throttled = hooks.Payloads.Where(p => p.GetProperty("event").GetString() == "throttled").ToList();
        Assert.All(throttled, p => Assert.Equal(("replica lag", "replica r1 is 48 MB behind"), (p.GetProperty("reason").GetString(), p.GetProperty("detail").GetString())));
        Assert.Equal(0, throttled[0].GetProperty("counts").GetProperty("applied").GetInt32());
        Assert.InRange(throttled[1].GetProperty("counts").GetProperty("applied").GetInt32(), 1, 10);

        var success = hooks.Payloads[^1];
        var ledger = db.Scalar<long>($"SELECT count(*) FROM dataops.ledger WHERE run_id = '{results[0].RunId}' AND status = 'applied'");
        Assert.Equal(ledger, success.GetProperty("counts").GetProperty("applied").GetInt64());
        Assert.Equal(Items, success.GetProperty("counts").GetProperty("total").GetInt32());
        Assert.Equal(0, success.GetProperty("counts").GetProperty("failed").GetInt32());
        Assert.Equal(results[0].RunId.ToString(), success.GetProperty("runId").GetString());
        Assert.Equal("completed", success.GetProperty("outcome").GetString());
        Assert.EndsWith("backfill_summary.md", success.GetProperty("summary").GetString(), StringComparison.Ordinal);
        Assert.True(success.GetProperty("throttledSeconds").GetProperty("replica lag").GetDouble() >= 0.7);

        var samples = PrometheusText.Parse(File.ReadAllText(metrics));
        Assert.Equal(0, samples.Single(x => x.Name == "dataops_backfill_running").Value);
        Assert.Equal(Items, samples.Single(x => x.Name == "dataops_backfill_items_total" && x.Labels["status"] == "applied").Value);
        Assert.Equal(Items, samples.Single(x => x.Name == "dataops_backfill_items_planned").Value);
        Assert.True(samples.Single(x => x.Name == "dataops_backfill_throttled_seconds_total" && x.Labels["reason"] == "replica lag").Value >= 0.7);
        Assert.All(samples, x => Assert.Equal(("hooked", results[0].RunId.ToString()), (x.Labels["job"], x.Labels["run_id"])));
        Assert.False(File.Exists(metrics + ".tmp"));
    }

    [Fact]
    public async Task A_required_throttled_hook_that_fails_ends_a_held_run_at_once_with_BackfillHookFailed()
    {
        // The gate would hold the run for minutes; the failing required hook must end the wait, not the gate.
        var db = await DatabaseAsync();
        using var failing = new HookReceiver(status: 500);
        var job = await JobAsync(db, "hook-stops", notify: [new { url = failing.Url, on = new[] { "throttled", "failure" }, required = true }]);
        var gate = new TwoEpisodesGate(new ThrottleHold("replica lag", "replica r1 is far behind", TimeSpan.FromSeconds(1)), checks: 600);
        var watch = System.Diagnostics.Stopwatch.StartNew();

        var error = await Assert.ThrowsAsync<DataOpsException>(() => RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 1_000_000, Gates = [gate] }));

        Assert.Equal("BackfillHookFailed", error.ErrorId);
        Assert.Contains("$.notify[0] (throttled)", error.Message, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(120), $"took {watch.Elapsed}");
        Assert.Equal(0L, db.Scalar<long>("SELECT count(*) FROM dataops.ledger"));
        Assert.Equal("failed", db.Scalar<string>("SELECT status FROM dataops.run WHERE job_name = 'hook-stops'"));
        Assert.Equal(["throttled", "failure"], failing.Payloads.Select(p => p.GetProperty("event").GetString()));
    }

    [Fact]
    public void The_metrics_text_escapes_label_values_and_parses()
    {
        var text = RunMetrics.Format(new MetricsSnapshot("j\\ob \"x\"\nnext", Guid.NewGuid(), 1, 2, 3, 6, 0.5,
            new Dictionary<string, TimeSpan> { ["custom \"lag\""] = TimeSpan.FromSeconds(1.5) }, Running: true)
        {
            Signals = [new BackfillSignalPeak { Reason = "replica lag", Kind = "replicaLag", Limit = "16.0 MB", Max = "48.0 MB", MaxValue = 48 * 1024 * 1024, Samples = 9 },
                       new BackfillSignalPeak { Reason = "retained WAL", Kind = "retainedWal", Limit = "1.0 GB", Samples = 0 }],
        });

        var samples = PrometheusText.Parse(text);
        Assert.All(samples, x => Assert.Equal("j\\ob \"x\"\nnext", x.Labels["job"]));
        Assert.Equal(1.5, samples.Single(x => x.Labels.GetValueOrDefault("reason") == "custom \"lag\"").Value);
        Assert.Contains("job=\"j\\\\ob \\\"x\\\"\\nnext\"", text, StringComparison.Ordinal);

        // The lag seen: one sample per signal that was sampled (a signal with no successful sample has none).
        var peak = Assert.Single(samples, x => x.Name == "dataops_backfill_signal_max");
        Assert.Equal(("replica lag", "replicaLag", 48.0 * 1024 * 1024), (peak.Labels["reason"], peak.Labels["kind"], peak.Value));
    }

    /// <summary>Holds before the first item and before the eleventh, <c>checks</c> checks each, then lets the run go on.</summary>
    private sealed class TwoEpisodesGate(ThrottleHold hold, int checks = 2) : IThrottleGate
    {
        private readonly int[] _held = new int[2];
        private int _passes;

        public ValueTask<ThrottleHold?> CheckAsync(CancellationToken ct)
        {
            var episode = _passes == 0 ? 0 : _passes == 10 ? 1 : -1;
            if (episode >= 0 && _held[episode] < checks)
            {
                _held[episode]++;
                return ValueTask.FromResult<ThrottleHold?>(hold);
            }

            _passes++;
            return ValueTask.FromResult<ThrottleHold?>(null);
        }
    }

    private static void AssertEachItemAppliedOnce(DatabaseFixture db, Guid runId)
    {
        Assert.Equal((long)Items, db.Scalar<long>("SELECT count(*) FROM t WHERE v = 1"));
        Assert.Equal((long)Items, db.Scalar<long>($"SELECT count(DISTINCT item_key) FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'applied'"));
        Assert.Equal((long)Items, db.Scalar<long>($"SELECT count(*) FROM dataops.ledger WHERE run_id = '{runId}' AND status = 'applied'"));
    }

    [Fact]
    public async Task A_finished_run_leaves_no_control_or_work_connection_open_on_the_server()
    {
        // Each run polls its control row on a pool of its own; left idle, those connections stayed for
        // the pool's 5-minute idle lifetime, and a test cluster of many databases ran out of them.
        var db = await DatabaseAsync();
        var job = await JobAsync(db, "no-idle");

        var results = await RunAsync(job, db, new BackfillOptions { OutputDirectory = Output(), ItemsPerMinute = 0 });

        Assert.Equal(Items, results.Count);
        // A closed connection's backend leaves pg_stat_activity a moment after the client let go (later on a
        // loaded machine): the counts are read until they settle, for at most 10 s.
        long Settled(string sql, long most)
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            long n;
            while ((n = db.Scalar<long>(sql)) > most && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(100);
            }

            return n;
        }

        Assert.Equal(0L, Settled("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'DataOps run control' AND datname = current_database()", 0));
        // The work connections' pool (keyed by the lock timeout) is cleared too: what stays is the session pool, idle, at most two.
        Assert.InRange(Settled("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()", 2), 0L, 2L);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_item_on_the_server_takes_its_after_image_once(bool dryRun)
    {
        // The item's images come from a subquery that must stay a subquery (OFFSET 0): flattened, the
        // after-image query ran once for the after_image column and again for changed_rows().
        var db = await DatabaseAsync();
        var job = await JobAsync(db, dryRun ? "once-dry" : "once");
        var sql = dryRun ? GroupExecutor.DryRunStatement(job) : GroupExecutor.LedgerStatement(job);
        await using var conn = new NpgsqlConnection(db.Connection.ConnectionString);
        await conn.OpenAsync();
        await using var tx = await conn.BeginTransactionAsync();
        var beforeSql = RowImages.BeforeImageSelect(job.Capture[0], 0);
        await using (var before = new NpgsqlCommand(beforeSql, conn, tx))
        {
            BackfillSql.Bind(before.Parameters, beforeSql, job.Job.Parameters, "1");
            await before.ExecuteNonQueryAsync();
        }

        await using var explain = new NpgsqlCommand("EXPLAIN (FORMAT JSON) " + sql, conn, tx);
        BackfillSql.Bind(explain.Parameters, sql, job.Job.Parameters, "1");
        if (!dryRun)
        {
            explain.Parameters.AddWithValue("dataops_run", Guid.NewGuid());
            explain.Parameters.AddWithValue("dataops_job", job.Job.Name);
        }

        explain.Parameters.AddWithValue("dataops_keys", NpgsqlTypes.NpgsqlDbType.Jsonb, "[[\"public.t\", [\"id\"]]]");
        explain.Parameters.AddWithValue("dataops_table_0", NpgsqlTypes.NpgsqlDbType.Text, "public.t");
        var plan = Convert.ToString(await explain.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture)!;

        // The after-image is the only part that reads the before-image back as rows.
        Assert.Equal(1, System.Text.RegularExpressions.Regex.Count(plan, "\"Function Name\": \"jsonb_populate_recordset\""));
    }

    private static async Task<DatabaseFixture> DatabaseAsync(int rows = Items)
    {
        var db = new DatabaseFixture();
        using var log = Log();
        await SchemaInstaller.InstallAsync(db.Connection, [SchemaComponent.Core], log);
        db.Execute($"CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0); INSERT INTO t (id) SELECT generate_series(1, {rows}); CREATE SEQUENCE fault_once;");
        return db;
    }

    private static async Task<ValidatedJob> JobAsync(DatabaseFixture db, string name, string? faultStep = null, string verify = "SELECT v = 1 FROM t WHERE id = @key::int", int maxConcurrency = 1, int items = Items, object[]? notify = null)
    {
        var steps = new List<object>();
        if (faultStep is not null)
        {
            steps.Add(new { name = "fault", sql = faultStep });
        }

        steps.Add(new { name = "set", sql = "UPDATE t SET v = v + 1 WHERE id = @key::int" });
        var path = Path.Combine(Output(), name + ".job.json");
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            version = 1,
            name,
            items = new { keys = Enumerable.Range(1, items).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)) },
            throttle = new { itemsPerMinute = 0, maxConcurrency },
            capture = new[] { new { table = "public.t", where = "id = @key::int" } },
            steps,
            verify,
            notify = notify ?? [],
        }));
        return await BackfillRunner.PrepareAsync(JobFile.Load(path), db.Connection, CancellationToken.None);
    }

    private static Task<List<BackfillItemResult>> RunAsync(ValidatedJob job, DatabaseFixture db, BackfillOptions options) => EngineRuns.RunAsync(job, db, options, "backfill-engine-test");

    private static RunLog Log() => EngineRuns.Log("backfill-engine-test");

    private static string Output() => EngineRuns.Output();
}
