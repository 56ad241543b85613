using System.Management.Automation;
using DataOps.Engine.Seeding;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Loads script_execution with realistic scheduled and event-triggered rows at close to bulk-load speed.</para>
/// <para type="description">New-ScriptExecutionSeed writes -Count rows into script_execution (ScriptExecution component): exactly
/// round(Count x ScheduledRatio) scheduled rows (schedule_id and planned set) and the rest triggered (triggering_event_id set),
/// timestamps spread over [-Since, -Until), planned before created_at, parents spread evenly. The prerequisites (script
/// references named dataops-seed-script-N, their versions, task schedules and event triggers) are created when missing and
/// reused when present. The same -Seed and arguments give the same rows.</para>
/// <para type="description">Rows stream through binary COPY in one transaction that holds an exclusive lock on the table: the
/// foreign keys (and, for a load larger than the table, its secondary indexes and primary key) are dropped, the rows copied
/// (written frozen when the table was empty, as pgbench -i does), and everything re-added and validated before commit, as
/// pg_restore does. The validations prove that no row breaks a constraint, so ConstraintViolations is 0; -Verify also counts
/// violating rows by query. If validation fails (SeedConstraintViolation), or on Ctrl+C, the whole seed rolls back;
/// readers never see a half-loaded table. The run is recorded in dataops.seed_run with the id range it loaded, so
/// Remove-ScriptExecutionSeed removes exactly these rows. Memory use does not grow with -Count.</para>
/// <para type="link">Remove-ScriptExecutionSeed</para>
/// <para type="link">Install-DataOpsSchema</para>
/// </summary>
/// <example>
///   <code>Start-DataOpsSandbox; Install-DataOpsSchema -Component ScriptExecution; New-ScriptExecutionSeed</code>
///   <para>Loads one million rows, half scheduled and half triggered, over the last 365 days, into a fresh sandbox.</para>
/// </example>
/// <example>
///   <code>New-ScriptExecutionSeed -Count 50000 -ScheduledRatio 0.8 -Seed 42 -Since '2026-01-01' -Until '2026-02-01'</code>
///   <para>Loads 50,000 rows, 40,000 of them scheduled, in January 2026; running it with the same arguments elsewhere gives the same rows.</para>
/// </example>
/// <example>
///   <code>New-ScriptExecutionSeed -Count 100000 -Seed 7 -Verify | Select-Object Count, ConstraintViolations</code>
///   <para>Loads 100,000 rows and, after the constraints have validated them, also counts violating rows by query (one more scan of the load).</para>
/// </example>
[Cmdlet(VerbsCommon.New, "ScriptExecutionSeed", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(ScriptExecutionSeedResult))]
public sealed class NewScriptExecutionSeedCommand : DatabaseCmdlet
{
    /// <summary>How many script_execution rows to load, from 1 to 1,000,000,000. Default: 1,000,000.</summary>
    [Parameter(Position = 0)]
    [ValidateRange(1L, 1_000_000_000L)]
    public long Count { get; set; } = 1_000_000;

    /// <summary>The share of scheduled rows, from 0 to 1. Default: 0.5.</summary>
    [Parameter]
    [ValidateRange(0.0, 1.0)]
    public double ScheduledRatio { get; set; } = 0.5;

    /// <summary>Seed of the row generator: the same seed and arguments give the same rows. Default: a random seed, reported in the result.</summary>
    /// <default>random, reported in the result</default>
    [Parameter]
    public int? Seed { get; set; }

    /// <summary>Start of the time window (inclusive): a DateTimeOffset, a DateTime or a date string. Default: 365 days before -Until.</summary>
    /// <default>365 days before -Until</default>
    [Parameter]
    [PointInTimeTransformation]
    public DateTimeOffset? Since { get; set; }

    /// <summary>End of the time window (exclusive): a DateTimeOffset, a DateTime or a date string. Default: now.</summary>
    /// <default>now</default>
    [Parameter]
    [PointInTimeTransformation]
    public DateTimeOffset? Until { get; set; }

    /// <summary>How many seed script references to create or reuse. Default: 10.</summary>
    [Parameter]
    [ValidateRange(1, 100_000)]
    public int ScriptReferences { get; set; } = 10;

    /// <summary>How many script versions, spread over the references. Default: 10.</summary>
    [Parameter]
    [ValidateRange(1, 100_000)]
    public int ScriptVersions { get; set; } = 10;

    /// <summary>How many task schedules the scheduled rows point at. Default: 100.</summary>
    [Parameter]
    [ValidateRange(1, 100_000)]
    public int TaskSchedules { get; set; } = 100;

    /// <summary>How many event triggers the triggered rows point at. Default: 100.</summary>
    [Parameter]
    [ValidateRange(1, 100_000)]
    public int EventTriggers { get; set; } = 100;

    /// <summary>Also counts rows that break chk_execution_source or a foreign key by query after the validations (which already prove there are none); a count above 0 fails the seed and rolls it back. Costs one more scan of the loaded rows.</summary>
    [Parameter]
    public SwitchParameter Verify { get; set; }

    /// <summary>Skips confirmation prompts, including the one production connections ask for.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        var connection = ResolveConnection();
        var options = new ScriptExecutionSeedOptions
        {
            Count = Count,
            ScheduledRatio = ScheduledRatio,
            Seed = Seed,
            Since = Since,
            Until = Until,
            ScriptReferences = ScriptReferences,
            ScriptVersions = ScriptVersions,
            TaskSchedules = TaskSchedules,
            EventTriggers = EventTriggers,
            Verify = Verify,
        };

        // Bad arguments are reported before any prompt or connection.
        RunEngine((_, _) => ScriptExecutionSeeder.Validate(options, DateTimeOffset.UtcNow));
        if (!ShouldWrite(connection, $"script_execution in {connection}", $"Load {Count:N0} seeded rows", Force))
        {
            return;
        }

        var result = RunEngineLogged("New-ScriptExecutionSeed", (log, observer, ct) => ScriptExecutionSeeder.RunAsync(connection, options, log, observer, ct));
        WriteObject(result with { Connection = connection });
    }
}
