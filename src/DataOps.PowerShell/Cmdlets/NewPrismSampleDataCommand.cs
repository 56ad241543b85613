using System.Management.Automation;
using DataOps.Engine.Logging;
using DataOps.Engine.Prism;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Fills the Prism sample tables with realistic data where a known share still needs the backfill.</para>
/// <para type="description">New-PrismSampleData writes sessions (about 80% completed), their profiles, telemetry events and tokenized
/// result access records into the Prism component's tables. Of the completed sessions, -PendingShare still need the results-v1.2.1
/// backfill: no profile yet, a profile stamped with an older results_version, and/or the legacy FC pipeline. The same -Seed gives
/// the same data. -Reset empties the Prism tables first, in the same transaction, so a test can start from the same state each time;
/// without it, a sample that collides with rows already there (the same -Seed twice) is refused with SampleDataExists.</para>
/// <para type="link">Invoke-Backfill</para>
/// <para type="link">Install-DataOpsSchema</para>
/// </summary>
/// <example>
///   <code>Install-DataOpsSchema -Component Prism; New-PrismSampleData -Sessions 200 -Seed 7</code>
///   <para>Writes 200 sessions; the result says how many need the backfill.</para>
/// </example>
/// <example>
///   <code>BeforeEach { New-PrismSampleData -Sessions 50 -Seed 42 -Reset | Out-Null }</code>
///   <para>In a Pester file: every test starts from the same sample, whatever the previous test changed.</para>
/// </example>
/// <example>
///   <code>New-PrismSampleData -Sessions 1000 -PendingShare 0.5 | Format-List</code>
///   <para>A larger sample where half of the completed sessions need the backfill.</para>
/// </example>
[Cmdlet(VerbsCommon.New, "PrismSampleData", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(PrismSampleResult))]
public sealed class NewPrismSampleDataCommand : DatabaseCmdlet
{
    /// <summary>How many sessions to write. Default: 200.</summary>
    [Parameter(Position = 0)]
    [ValidateRange(1, 10_000_000)]
    public int Sessions { get; set; } = 200;

    /// <summary>The share of completed sessions that still need the backfill, 0 to 1. Default: 0.25.</summary>
    [Parameter]
    [ValidateRange(0.0, 1.0)]
    public double PendingShare { get; set; } = 0.25;

    /// <summary>Seed of the generator: the same seed gives the same data. Default: random, reported in the result.</summary>
    /// <default>random, reported in the result</default>
    [Parameter]
    public int? Seed { get; set; }

    /// <summary>Empties the Prism sample tables (sessions, profiles, telemetry, result access) before writing, in the same transaction.</summary>
    [Parameter]
    public SwitchParameter Reset { get; set; }

    /// <summary>Skips confirmation prompts.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        var connection = ResolveConnection();
        var action = Reset ? $"Replace all Prism sample data with {Sessions} sample sessions" : $"Write {Sessions} sample sessions";
        if (ShouldWrite(connection, $"prism schema in {connection}", action, Force))
        {
            var reset = Reset.IsPresent;
            WriteObject(RunEngine((observer, ct) => Heartbeat.Track(PrismSampleData.CreateAsync(connection, Sessions, PendingShare, Seed, ct, reset), observer,
                "New-PrismSampleData", $"Writing {Sessions} sample sessions")));
        }
    }
}
