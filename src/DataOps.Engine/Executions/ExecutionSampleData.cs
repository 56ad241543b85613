using Dapper;
using DataOps.Engine.Connections;
using DataOps.Engine.Schema;

namespace DataOps.Engine.Executions;

/// <summary>What New-WorkflowSampleData wrote.</summary>
public sealed class WorkflowSampleResult
{
    public int Users { get; init; }

    public int Workflows { get; init; }

    public int Executions { get; init; }

    public int Seed { get; init; }

    public override string ToString() => $"{Users} users, {Workflows} workflows, {Executions} executions";
}

/// <summary>
/// Users, workflows and executions for the WorkflowExecution component, generated in SQL from a seed
/// (setseed), so statistics and listings have something realistic to work on.
/// </summary>
public static class ExecutionSampleData
{
    public static async Task<WorkflowSampleResult> CreateAsync(DataOpsConnection connection, int users, int workflows, int executions, int? seed, CancellationToken ct)
    {
        foreach (var (name, value) in new[] { ("Users", users), ("Workflows", workflows), ("Executions", executions) })
        {
            if (value < 1)
            {
                throw new DataOpsException("SampleSizeInvalid", DataOpsErrorKind.InvalidArgument, $"-{name} must be at least 1; got {value}.", value);
            }
        }

        await SchemaInstaller.RequireAsync(connection, ct, SchemaComponent.WorkflowExecution).ConfigureAwait(false);

        var actualSeed = seed ?? Random.Shared.Next();
        await using var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
        await conn.ExecuteAsync(new CommandDefinition(
            """
            SELECT setseed(@s);
            INSERT INTO users (id, email, name)
              SELECT 'sample-user-' || g, 'sample-user-' || g || '@example.com', 'Sample user ' || g FROM generate_series(1, @users) g
              ON CONFLICT (id) DO NOTHING;
            CREATE TEMP TABLE sample_workflows ON COMMIT DROP AS
              SELECT gen_random_uuid() AS id, 'sample-workflow-' || g AS name, 'sample-user-' || (1 + (g - 1) % @users) AS owner FROM generate_series(1, @workflows) g;
            INSERT INTO workflows (id, name, description, created_by) SELECT id, name, 'Sample workflow', owner FROM sample_workflows;
            INSERT INTO workflow_executions (workflow_id, temporal_workflow_id, temporal_run_id, status, started_at, completed_at, duration_ms, activities_executed, created_by)
              SELECT w.id, 'sample-' || g, md5(g::text), x.status, x.started,
                     CASE WHEN x.status = 'running' THEN NULL ELSE x.started + x.ms * interval '1 millisecond' END,
                     CASE WHEN x.status = 'running' THEN NULL ELSE x.ms END,
                     (random() * 20)::int, 'sample-user-' || (1 + (g - 1) % @users)
              FROM generate_series(1, @executions) g
              CROSS JOIN LATERAL (SELECT -- "0 * g" ties each draw to its row; an uncorrelated subquery would run once
                  (ARRAY['completed','completed','completed','completed','completed','completed','failed','cancelled','timed_out','running'])[1 + floor(random() * 10 + 0 * g)::int] AS status,
                  now() - (random() + 0 * g) * interval '30 days' AS started,
                  (100 + random() * random() * 600000 + 0 * g)::bigint AS ms,
                  1 + floor(random() * @workflows + 0 * g)::int AS wf) x
              JOIN (SELECT id, row_number() OVER (ORDER BY name) AS n FROM sample_workflows) w ON w.n = x.wf;
            """, new { s = (actualSeed % 1000) / 1000.0, users, workflows, executions }, tx, cancellationToken: ct)).ConfigureAwait(false);
        await tx.CommitAsync(ct).ConfigureAwait(false);
        return new WorkflowSampleResult { Users = users, Workflows = workflows, Executions = executions, Seed = actualSeed };
    }
}
