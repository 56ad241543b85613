using DataOps.Engine.Logging;
using DataOps.Engine.Schema;

namespace DataOps.Engine.Tests;

public sealed class SchemaInstallerTests
{
    private static RunLog Log() => RunLog.Open("schema-test", NullObserver.Instance, directory: Path.Combine(TestCluster.Root, "logs"));

    [Fact]
    public async Task Installs_every_component_once_and_is_idempotent()
    {
        var db = new DatabaseFixture();
        using var log = Log();

        var first = await SchemaInstaller.InstallAsync(db.Connection, null, log);
        var second = await SchemaInstaller.InstallAsync(db.Connection, null, log);

        Assert.All(first, m => Assert.Equal(MigrationStatus.Applied, m.Status));
        Assert.Equal(Enum.GetNames<SchemaComponent>(), first.Select(m => m.Component).Distinct());
        Assert.All(second, m => Assert.Equal(MigrationStatus.AlreadyApplied, m.Status));
        Assert.Equal(first.Count, db.Scalar<long>("SELECT count(*) FROM dataops.schema_versions"));
        Assert.Equal(Enum.GetValues<SchemaComponent>(), await SchemaInstaller.InstalledComponentsAsync(db.Connection));
    }

    [Fact]
    public async Task Script_execution_has_the_V97_shape()
    {
        var db = new DatabaseFixture();
        using var log = Log();
        await SchemaInstaller.InstallAsync(db.Connection, [SchemaComponent.ScriptExecution], log);

        Assert.Equal(4L, db.Scalar<long>("SELECT count(*) FROM pg_constraint WHERE conrelid = 'script_execution'::regclass AND contype = 'f' AND convalidated"));
        var check = db.Scalar<string>("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'chk_execution_source'");
        Assert.Contains("schedule_id IS NOT NULL", check);
        Assert.Contains("triggering_event_id IS NULL", check);
        Assert.Equal("YES", db.Scalar<string>("SELECT is_nullable FROM information_schema.columns WHERE table_name = 'script_execution' AND column_name = 'schedule_id'"));
        Assert.Equal("YES", db.Scalar<string>("SELECT is_nullable FROM information_schema.columns WHERE table_name = 'script_execution' AND column_name = 'planned'"));

        // The CHECK constraint is real: both sources set is refused.
        db.Execute("INSERT INTO script_reference (name) VALUES ('r'); INSERT INTO script_version (script_reference_id, version) VALUES (1, '1');" +
                   "INSERT INTO task_schedule (script_reference_id, robot_id, cron) VALUES (1, 1, '* * * * *');" +
                   "INSERT INTO event_trigger (script_reference_id, robot_id, event_type) VALUES (1, 1, 'door');");
        var ex = Assert.ThrowsAny<Npgsql.PostgresException>(() => db.Execute(
            "INSERT INTO script_execution (script_reference_id, script_version_id, schedule_id, triggering_event_id) VALUES (1, 1, 1, 1)"));
        Assert.Equal("chk_execution_source", ex.ConstraintName);

        // Only Core and the requested component were installed.
        Assert.False(db.Scalar<bool>("SELECT to_regclass('workflow_executions') IS NOT NULL"));
        Assert.True(db.Scalar<bool>("SELECT to_regclass('dataops.ledger') IS NOT NULL"));
    }

    [Fact]
    public async Task Workflow_execution_has_the_indexes_the_queries_need()
    {
        var db = new DatabaseFixture();
        using var log = Log();
        await SchemaInstaller.InstallAsync(db.Connection, [SchemaComponent.WorkflowExecution], log);

        var indexes = db.Scalar<string>("SELECT string_agg(indexdef, E'\\n') FROM pg_indexes WHERE tablename = 'workflow_executions'");
        Assert.Contains("(created_by)", indexes);
        Assert.Contains("(created_by, status)", indexes);
        Assert.Contains("(temporal_workflow_id)", indexes);
        Assert.Contains("ON DELETE CASCADE", db.Scalar<string>(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'workflow_executions'::regclass AND contype = 'f' AND pg_get_constraintdef(oid) LIKE '%users%'"));
    }

    [Fact]
    public async Task A_failing_script_rolls_back_the_whole_run()
    {
        var db = new DatabaseFixture();
        db.Execute("CREATE TABLE script_reference (id int)"); // makes the ScriptExecution migration fail
        using var log = Log();

        var ex = await Assert.ThrowsAsync<DataOpsException>(() => SchemaInstaller.InstallAsync(db.Connection, [SchemaComponent.ScriptExecution], log));

        Assert.Equal("SchemaMigrationFailed", ex.ErrorId);
        Assert.Contains("ScriptExecution/0001", ex.Message);
        Assert.Contains("42P07", ex.Message);
        // Core ran in the same transaction, so it is gone too.
        Assert.False(db.Scalar<bool>("SELECT to_regclass('dataops.run') IS NOT NULL"));
        Assert.Empty(await SchemaInstaller.InstalledComponentsAsync(db.Connection));
    }

    [Fact]
    public async Task Concurrent_installers_apply_each_script_once()
    {
        var db = new DatabaseFixture();
        using var log = Log();

        var runs = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => Task.Run(() => SchemaInstaller.InstallAsync(db.Connection, null, log))));

        var applied = runs.SelectMany(r => r).Where(m => m.Status == MigrationStatus.Applied).Select(m => m.Script).ToList();
        Assert.Equal(applied.Distinct().Count(), applied.Count);
        Assert.Equal(runs[0].Count, applied.Count);
        Assert.Equal(runs[0].Count, db.Scalar<long>("SELECT count(*) FROM dataops.schema_versions"));
    }

    [Fact]
    public async Task Plan_lists_pending_scripts_without_changing_anything()
    {
        var db = new DatabaseFixture();

        var plan = await SchemaInstaller.PlanAsync(db.Connection, [SchemaComponent.Prism]);

        Assert.Equal([nameof(SchemaComponent.Core), nameof(SchemaComponent.Prism)], plan.Select(p => p.Component).Distinct());
        Assert.All(plan, p => Assert.Equal(MigrationStatus.Pending, p.Status));
        Assert.False(db.Scalar<bool>("SELECT to_regnamespace('dataops') IS NOT NULL"));
    }

    [Fact]
    public void Unknown_component_is_rejected()
    {
        var ex = Assert.Throws<DataOpsException>(() => SchemaInstaller.Resolve([(SchemaComponent)42]));
        Assert.Equal("SchemaComponentUnknown", ex.ErrorId);
        Assert.Contains("WorkflowExecution", ex.Message);
    }
}
