using System.Collections;
using System.Management.Automation;

namespace DataOps.PowerShell.Tests;

public sealed class SeedTests
{
    private const string Since = "2026-01-01T00:00:00Z";
    private const string Until = "2026-02-01T00:00:00Z";

    private static (PsSession Session, string Cs) SeededSession()
    {
        var cs = TestCluster.CreateDatabaseWith("ScriptExecution");
        var s = new PsSession();
        var r = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return (s, cs);
    }

    /// <summary>A 20-million-row seed started in the background and loading (it has reported progress).</summary>
    private static (System.Management.Automation.PowerShell Ps, IAsyncResult Handle) LongSeedUnderway(PsSession s, int seed)
    {
        var ps = System.Management.Automation.PowerShell.Create(s.Runspace);
        ps.AddCommand("New-ScriptExecutionSeed").AddParameter("Count", 20_000_000L).AddParameter("Seed", seed);
        using var started = new ManualResetEventSlim();
        ps.Streams.Progress.DataAdded += (_, _) => started.Set();
        var handle = ps.BeginInvoke();
        Assert.True(started.Wait(TimeSpan.FromSeconds(60)), "the seed never reported progress");
        return (ps, handle);
    }

    private static long Count(string cs, string sql) => Convert.ToInt64(Sql.Scalar(cs, sql));

    private static string RowsHash(string cs) => (string)Sql.Scalar(cs,
        "SELECT md5(string_agg(concat_ws('|', script_reference_id, script_version_id, schedule_id, planned, triggering_event_id, created_at), ',' ORDER BY id)) FROM script_execution")!;

    [Fact]
    public void Loads_the_exact_split_within_the_window_with_every_constraint_in_place()
    {
        var (s, cs) = SeededSession();
        using var _ = s;

        var r = s.Run($"New-ScriptExecutionSeed -Count 10001 -ScheduledRatio 0.3 -Seed 7 -Since '{Since}' -Until '{Until}'");

        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        var result = r.Output.Single();
        Assert.Equal(10001L, result.Properties["Count"].Value);
        Assert.Equal(3000L, result.Properties["Scheduled"].Value);
        Assert.Equal(7001L, result.Properties["Triggered"].Value);
        Assert.Equal(0L, result.Properties["ConstraintViolations"].Value);

        // Checked independently of the seeder.
        Assert.Equal(3000, Count(cs, "SELECT count(*) FROM script_execution WHERE schedule_id IS NOT NULL AND planned IS NOT NULL AND triggering_event_id IS NULL"));
        Assert.Equal(7001, Count(cs, "SELECT count(*) FROM script_execution WHERE schedule_id IS NULL AND planned IS NULL AND triggering_event_id IS NOT NULL"));
        Assert.Equal(0, Count(cs, $"SELECT count(*) FROM script_execution WHERE created_at < '{Since}' OR created_at >= '{Until}' OR planned < '{Since}' OR planned >= created_at"));
        Assert.Equal(0, Count(cs, "SELECT count(*) FROM script_execution e JOIN script_version v ON v.id = e.script_version_id WHERE v.script_reference_id <> e.script_reference_id"));
        Assert.Equal(4, Count(cs, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'script_execution'::regclass AND contype = 'f' AND convalidated"));
        Assert.Equal(1, Count(cs, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'script_execution'::regclass AND conname = 'chk_execution_source' AND convalidated"));
        Assert.Equal(4, Count(cs, "SELECT count(*) FROM pg_indexes WHERE tablename = 'script_execution'"));

        // Parents spread evenly: 100 schedules and 100 triggers, counts differ by at most one.
        Assert.True(Count(cs, "SELECT max(n) - min(n) FROM (SELECT count(*) n FROM script_execution WHERE schedule_id IS NOT NULL GROUP BY schedule_id) x") <= 1);
        Assert.Equal(100, Count(cs, "SELECT count(DISTINCT schedule_id) FROM script_execution"));
        Assert.True(Count(cs, "SELECT max(n) - min(n) FROM (SELECT count(*) n FROM script_execution WHERE triggering_event_id IS NOT NULL GROUP BY triggering_event_id) x") <= 1);

        // The run is recorded with its id range; the table was analyzed.
        Assert.Equal(1, Count(cs, "SELECT count(*) FROM dataops.seed_run WHERE status = 'completed' AND inserted_count = 10001 AND last_id - first_id = 10000 AND seed = 7"));
        Assert.True(Count(cs, "SELECT reltuples::bigint FROM pg_class WHERE oid = 'script_execution'::regclass") > 0);
        Assert.Contains(r.Progress, p => p.RecordType == ProgressRecordType.Completed);
    }

    [Fact]
    public void The_same_seed_gives_the_same_rows_and_another_seed_does_not()
    {
        var hashes = new[] { 11, 11, 12 }.Select(seed =>
        {
            var (s, cs) = SeededSession();
            using var _ = s;
            var r = s.Run($"New-ScriptExecutionSeed -Count 3000 -Seed {seed} -Since '{Since}' -Until '{Until}'");
            Assert.False(r.HadErrors, string.Join("\n", r.Errors));
            return RowsHash(cs);
        }).ToList();

        Assert.Equal(hashes[0], hashes[1]);
        Assert.NotEqual(hashes[0], hashes[2]);
    }

    [Fact]
    public void Prerequisites_are_created_once_and_reused()
    {
        var (s, cs) = SeededSession();
        using var _ = s;
        Sql.Execute(cs, "INSERT INTO script_reference (name) VALUES ('real-app-script')");

        var first = s.Run("New-ScriptExecutionSeed -Count 500 -Seed 1");
        var second = s.Run("New-ScriptExecutionSeed -Count 500 -Seed 2 -TaskSchedules 5 -EventTriggers 3");

        Assert.False(first.HadErrors || second.HadErrors, string.Join("\n", first.Errors.Concat(second.Errors)));
        Assert.Equal(10, Count(cs, "SELECT count(*) FROM script_reference WHERE name LIKE 'dataops-seed-script-%'"));
        Assert.Equal(10, Count(cs, "SELECT count(*) FROM script_version"));
        Assert.Equal(100, Count(cs, "SELECT count(*) FROM task_schedule"));
        Assert.Equal(100, Count(cs, "SELECT count(*) FROM event_trigger"));
        Assert.Equal(1, Count(cs, "SELECT count(*) FROM script_reference WHERE name = 'real-app-script'"));
        var (firstId, lastId) = ((long)second.Output.Single().Properties["FirstId"].Value, (long)second.Output.Single().Properties["LastId"].Value);
        Assert.Equal(5, Count(cs, $"SELECT count(DISTINCT schedule_id) FROM script_execution WHERE id BETWEEN {firstId} AND {lastId}"));
        Assert.Equal(3, Count(cs, $"SELECT count(DISTINCT triggering_event_id) FROM script_execution WHERE id BETWEEN {firstId} AND {lastId}"));
        Assert.Equal(1000, Count(cs, "SELECT count(*) FROM script_execution"));
    }

    [Fact]
    public void A_row_that_fails_validation_rolls_the_whole_seed_back()
    {
        var (s, cs) = SeededSession();
        using var _ = s;
        // Corrupt one row during the load; the foreign key re-added at the end must catch it.
        Sql.Execute(cs, """
            CREATE FUNCTION corrupt() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF NEW.schedule_id IS NOT NULL AND NEW.id % 997 = 0 THEN NEW.schedule_id := 987654321; END IF; RETURN NEW; END $$;
            CREATE TRIGGER corrupt BEFORE INSERT ON script_execution FOR EACH ROW EXECUTE FUNCTION corrupt();
            """);

        var r = s.Run("New-ScriptExecutionSeed -Count 5000 -Seed 3");

        Assert.True(r.HadErrors);
        var error = r.Errors[0];
        Assert.StartsWith("SeedConstraintViolation,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidData, error.CategoryInfo.Category);
        Assert.Equal("fk_script_execution_schedule", error.TargetObject);
        Assert.Contains("23503", error.Exception.Message);
        Assert.Equal(0, Count(cs, "SELECT count(*) FROM script_execution"));
        Assert.Equal(0, Count(cs, "SELECT count(*) FROM script_reference"));
        Assert.Equal(4, Count(cs, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'script_execution'::regclass AND contype = 'f'"));
        Assert.Equal(4, Count(cs, "SELECT count(*) FROM pg_indexes WHERE tablename = 'script_execution'"));
        Assert.Equal(1, Count(cs, "SELECT count(*) FROM dataops.seed_run WHERE status = 'failed' AND error_message LIKE '%23503%'"));
    }

    [Fact]
    public void An_empty_table_is_loaded_frozen_with_its_primary_key_rebuilt_and_no_extra_count()
    {
        var (s, cs) = SeededSession();
        using var _ = s;

        var r = s.Run("New-ScriptExecutionSeed -Count 20000 -Seed 4 -Verbose");

        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        Assert.Equal(0L, r.Output.Single().Properties["ConstraintViolations"].Value);
        // Written frozen: every page is all-visible (ANALYZE copies the visibility map's count into relallvisible).
        Assert.Equal(
            Count(cs, "SELECT relpages FROM pg_class WHERE oid = 'script_execution'::regclass"),
            Count(cs, "SELECT relallvisible FROM pg_class WHERE oid = 'script_execution'::regclass"));
        Assert.True(Count(cs, "SELECT relpages FROM pg_class WHERE oid = 'script_execution'::regclass") > 0);
        Assert.Equal(1, Count(cs, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'script_execution'::regclass AND contype = 'p' AND conname = 'script_execution_pkey'"));
        Assert.Contains(r.Verbose, v => v.Contains("Rebuilding the primary key", StringComparison.Ordinal));
        // The validations are the proof; no violation query runs without -Verify.
        Assert.DoesNotContain(r.Verbose, v => v.Contains("Violation count", StringComparison.Ordinal));
    }

    [Fact]
    public void Verify_counts_violating_rows_the_constraints_let_through_and_rolls_back()
    {
        var (s, cs) = SeededSession();
        using var _ = s;
        // A looser chk_execution_source than V97's lets a row with both sources through; the foreign keys hold
        // (both ids exist), so only -Verify's count, which checks V97's rule, sees it.
        Sql.Execute(cs, """
            ALTER TABLE script_execution DROP CONSTRAINT chk_execution_source;
            ALTER TABLE script_execution ADD CONSTRAINT chk_execution_source CHECK (schedule_id IS NOT NULL OR triggering_event_id IS NOT NULL);
            CREATE FUNCTION both_sources() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF NEW.schedule_id IS NOT NULL AND NEW.id % 100 = 0 THEN NEW.triggering_event_id := (SELECT min(id) FROM event_trigger); END IF; RETURN NEW; END $$;
            CREATE TRIGGER both_sources BEFORE INSERT ON script_execution FOR EACH ROW EXECUTE FUNCTION both_sources();
            """);

        var unverified = s.Run("New-ScriptExecutionSeed -Count 3000 -ScheduledRatio 1 -Seed 8");
        Assert.False(unverified.HadErrors, string.Join("\n", unverified.Errors));
        Assert.Equal(30, Count(cs, "SELECT count(*) FROM script_execution WHERE schedule_id IS NOT NULL AND triggering_event_id IS NOT NULL"));

        var verified = s.Run("New-ScriptExecutionSeed -Count 3000 -ScheduledRatio 1 -Seed 8 -Verify");

        var error = Assert.Single(verified.Errors);
        Assert.StartsWith("SeedConstraintViolation,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidData, error.CategoryInfo.Category);
        Assert.Equal(30L, error.TargetObject);
        Assert.Equal(3000, Count(cs, "SELECT count(*) FROM script_execution"));

        Sql.Execute(cs, "DROP TRIGGER both_sources ON script_execution");
        var clean = s.Run("New-ScriptExecutionSeed -Count 3000 -Seed 8 -Verify -Verbose");
        Assert.False(clean.HadErrors, string.Join("\n", clean.Errors));
        Assert.Equal(0L, clean.Output.Single().Properties["ConstraintViolations"].Value);
        Assert.Contains(clean.Verbose, v => v.Contains("Violation count", StringComparison.Ordinal) && v.Contains("-Verify", StringComparison.Ordinal) && v.Contains("found 0 ", StringComparison.Ordinal));
    }

    [Fact]
    public void An_id_taken_outside_the_sequence_fails_the_rebuilt_primary_key_and_rolls_back()
    {
        var (s, cs) = SeededSession();
        using var _ = s;
        s.Run("New-ScriptExecutionSeed -Count 1 -Seed 1 | Remove-ScriptExecutionSeed -Confirm:$false");
        Sql.Execute(cs, "INSERT INTO script_execution (id, script_reference_id, script_version_id, schedule_id, planned) SELECT (SELECT last_value FROM script_execution_id_seq) + 50, r.id, v.id, t.id, now() FROM script_reference r JOIN script_version v ON v.script_reference_id = r.id JOIN task_schedule t ON t.script_reference_id = r.id LIMIT 1");

        var r = s.Run("New-ScriptExecutionSeed -Count 1000 -Seed 2");

        var error = Assert.Single(r.Errors);
        Assert.StartsWith("SeedConstraintViolation,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidData, error.CategoryInfo.Category);
        Assert.Contains("23505", error.Exception.Message);
        Assert.Equal(1, Count(cs, "SELECT count(*) FROM script_execution"));
        Assert.Equal(1, Count(cs, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'script_execution'::regclass AND contype = 'p'"));
    }

    [Fact]
    public void A_table_other_tables_reference_keeps_its_primary_key_and_is_not_truncated()
    {
        var (s, cs) = SeededSession();
        using var _ = s;
        Sql.Execute(cs, "CREATE TABLE execution_note (execution_id bigint NOT NULL REFERENCES script_execution (id), note text)");

        var r = s.Run("New-ScriptExecutionSeed -Count 5000 -Seed 3 -Verbose");

        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        Assert.Equal(5000, Count(cs, "SELECT count(*) FROM script_execution"));
        Assert.Contains(r.Verbose, v => v.Contains("Dropped 4 foreign keys, 0 primary key and 3 indexes", StringComparison.Ordinal) && v.Contains("False", StringComparison.Ordinal));
        Assert.Equal(1, Count(cs, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'execution_note'::regclass AND contype = 'f' AND convalidated"));
        Sql.Execute(cs, "INSERT INTO execution_note SELECT min(id), 'ok' FROM script_execution");
    }

    [Fact]
    public void Stopping_rolls_back_and_releases_the_table()
    {
        var (s, cs) = SeededSession();
        using var _ = s;
        var (ps, handle) = LongSeedUnderway(s, seed: 5);
        using var __ = ps;
        ps.Stop();
        Assert.ThrowsAny<PipelineStoppedException>(() => ps.EndInvoke(handle));

        Assert.Equal(0, Count(cs, "SELECT count(*) FROM script_execution"));
        Assert.Equal(4, Count(cs, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'script_execution'::regclass AND contype = 'f'"));
        Assert.Equal(1, Count(cs, "SELECT count(*) FROM dataops.seed_run WHERE status = 'cancelled'"));
        var again = s.Run("New-ScriptExecutionSeed -Count 100 -Seed 5");
        Assert.False(again.HadErrors, string.Join("\n", again.Errors));
    }

    [Fact]
    public void A_loading_session_killed_on_the_server_is_a_clear_error_rolls_back_and_leaves_no_run_running()
    {
        var (s, cs) = SeededSession();
        using var _ = s;
        var (ps, handle) = LongSeedUnderway(s, seed: 6);
        using var __ = ps;

        // What a server crash, a restart or an admin's pg_terminate_backend does to the loading session (57P01).
        var killed = Count(cs, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'");
        Assert.True(killed > 0, "no loading session to terminate");
        var error = Assert.ThrowsAny<RuntimeException>(() => ps.EndInvoke(handle)).ErrorRecord;

        Assert.Equal("DataOps.Engine.DataOpsException", error.Exception.GetType().FullName);
        Assert.StartsWith("SeedConnectionLost,", error.FullyQualifiedErrorId);
        Assert.True(ErrorCategory.ConnectionError == error.CategoryInfo.Category, error.Exception.Message);
        Assert.Contains("rolled back", error.Exception.Message);
        Assert.Equal(0, Count(cs, "SELECT count(*) FROM script_execution"));
        Assert.Equal(0, Count(cs, "SELECT count(*) FROM dataops.seed_run WHERE status = 'running'"));
        Assert.Equal(1, Count(cs, "SELECT count(*) FROM dataops.seed_run WHERE status IN ('failed', 'abandoned')"));
        var again = s.Run("New-ScriptExecutionSeed -Count 100 -Seed 6");
        Assert.False(again.HadErrors, string.Join("\n", again.Errors));
        Assert.Equal(100, Count(cs, "SELECT count(*) FROM script_execution"));
    }

    [Fact]
    public void Remove_deletes_only_seeded_rows()
    {
        var (s, cs) = SeededSession();
        using var _ = s;
        var seeded = s.Run("New-ScriptExecutionSeed -Count 1200 -Seed 9").Output.Single();
        var seedRunId = (long)seeded.Properties["SeedRunId"].Value;
        Sql.Execute(cs, "INSERT INTO script_execution (script_reference_id, script_version_id, schedule_id, planned) SELECT 1, 1, 1, now()");

        s.Run($"Remove-ScriptExecutionSeed -SeedRunId {seedRunId} -WhatIf");
        Assert.Equal(1201, Count(cs, "SELECT count(*) FROM script_execution"));

        var removed = s.Run("$seeded | Remove-ScriptExecutionSeed -Confirm:$false", new Hashtable { ["seeded"] = seeded });

        Assert.False(removed.HadErrors, string.Join("\n", removed.Errors));
        Assert.Equal(1200L, removed.Output.Single().Properties["Removed"].Value);
        Assert.Equal(1, Count(cs, "SELECT count(*) FROM script_execution"));
        Assert.Equal(1, Count(cs, $"SELECT count(*) FROM dataops.seed_run WHERE seed_run_id = {seedRunId} AND status = 'removed' AND removed_count = 1200"));

        var missing = s.Run("Remove-ScriptExecutionSeed -SeedRunId 424242 -Confirm:$false");
        Assert.StartsWith("SeedRunNotFound,", Assert.Single(missing.Errors).FullyQualifiedErrorId);
        var twice = s.Run($"Remove-ScriptExecutionSeed -SeedRunId {seedRunId} -Confirm:$false");
        Assert.StartsWith("SeedRunNotRemovable,", Assert.Single(twice.Errors).FullyQualifiedErrorId);
    }

    [Theory]
    [InlineData("-Count 0", "Count")]
    [InlineData("-Count -5", "Count")]
    [InlineData("-ScheduledRatio 1.5", "ScheduledRatio")]
    [InlineData("-ScheduledRatio -0.1", "ScheduledRatio")]
    public void Out_of_range_arguments_are_binding_errors(string arguments, string parameter)
    {
        var (s, cs) = SeededSession();
        using var _ = s;

        var r = s.Run($"New-ScriptExecutionSeed {arguments}");

        var error = Assert.Single(r.Errors);
        Assert.StartsWith("ParameterArgumentValidationError,", error.FullyQualifiedErrorId);
        Assert.Contains(parameter, error.Exception.Message);
        Assert.Equal(0, Count(cs, "SELECT count(*) FROM dataops.seed_run"));
    }

    [Fact]
    public void Since_not_before_Until_is_rejected_before_anything_is_written()
    {
        var (s, cs) = SeededSession();
        using var _ = s;

        var r = s.Run($"New-ScriptExecutionSeed -Count 10 -Since '{Until}' -Until '{Since}'");

        var error = Assert.Single(r.Errors);
        Assert.StartsWith("SeedWindowInvalid,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
        Assert.Equal(0, Count(cs, "SELECT count(*) FROM dataops.seed_run"));
        Assert.Equal(0, Count(cs, "SELECT count(*) FROM script_reference"));
    }

    [Fact]
    public void Missing_schema_names_the_component_to_install()
    {
        var cs = TestCluster.CreateDatabase();
        using var s = new PsSession();

        var r = s.Run("New-ScriptExecutionSeed -Count 10 -Connection (Connect-DataOps -ConnectionString $cs)", new Hashtable { ["cs"] = cs });

        var error = Assert.Single(r.Errors);
        Assert.StartsWith("SchemaMissing,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.NotInstalled, error.CategoryInfo.Category);
        Assert.Contains("Install-DataOpsSchema -Component Core,ScriptExecution", error.Exception.Message);
    }

    [Theory]
    [InlineData("ALTER TABLE script_execution ADD COLUMN robot_id bigint NOT NULL", "robot_id")]
    [InlineData("ALTER TABLE script_execution ALTER COLUMN planned TYPE timestamp", "planned")]
    [InlineData("ALTER TABLE script_execution DROP CONSTRAINT chk_execution_source", "chk_execution_source")]
    [InlineData("ALTER TABLE script_execution ALTER COLUMN schedule_id SET NOT NULL", "schedule_id")]
    public void A_table_that_is_not_V97_is_refused(string alter, string named)
    {
        var (s, cs) = SeededSession();
        using var _ = s;
        Sql.Execute(cs, alter);

        var r = s.Run("New-ScriptExecutionSeed -Count 10");

        var error = Assert.Single(r.Errors);
        Assert.StartsWith("SchemaMismatch,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidData, error.CategoryInfo.Category);
        Assert.Contains(named, error.Exception.Message);
        Assert.Equal(0, Count(cs, "SELECT count(*) FROM dataops.seed_run"));
    }
}
