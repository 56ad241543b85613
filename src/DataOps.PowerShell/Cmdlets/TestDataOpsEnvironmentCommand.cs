using System.Management.Automation;
using DataOps.Engine.Backfill;
using DataOps.Engine.Logging;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Checks, without changing anything, that a backfill job can run here: connection, schema, job file, secrets, endpoints, duration.</para>
/// <para type="description">Test-DataOpsEnvironment returns one object per check (Name, Passed, Detail): the connection (server version,
/// latency, read-only or not, production or not), the Core schema component the ledger needs, the job file (full validation, every
/// statement parsed in a read-only session), every secret the job names (set or not; never its value), every HTTP endpoint's
/// reachability (a TCP connection, nothing sent), and the expected duration at the configured rate. Every check runs even when an
/// earlier one fails, so one call lists every problem. A job whose query fields call what a read-only transaction still allows
/// (pg_terminate_backend, advisory locks, lo_import, dblink...) is not a failed check but a terminating QueryNotReadOnly error, raised
/// before the server is contacted.</para>
/// <para type="link">Invoke-Backfill</para>
/// </summary>
/// <example>
///   <code>Test-DataOpsEnvironment -Job ./score.job.json -Connection $staging</code>
///   <para>Lists each check with PASS or FAIL and the detail.</para>
/// </example>
/// <example>
///   <code>if (Test-DataOpsEnvironment -Job ./score.job.json | Where-Object { -not $_.Passed }) { exit 1 }</code>
///   <para>The first line of a runbook: stop before anything runs when the environment is not ready.</para>
/// </example>
/// <example>
///   <code>Test-DataOpsEnvironment -Job ./score.job.json -Connection eu, us, apac | Where-Object { -not $_.Passed } | Format-Table Target, Name, Detail</code>
///   <para>Preflight of a fleet, three databases at once: every check names its Target; a database that cannot be reached at all is
///   a non-terminating error naming it, and the others are still checked.</para>
/// </example>
[Cmdlet(VerbsDiagnostic.Test, "DataOpsEnvironment")]
[OutputType(typeof(PreflightCheck))]
public sealed class TestDataOpsEnvironmentCommand : FleetCmdlet
{
    /// <summary>The job file to check.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(JobFileCompleter))]
    [Alias("Path", "PlanPath", "LiteralPath", "PSPath")]
    [ValidateNotNullOrEmpty]
    public string Job { get; set; } = string.Empty;

    /// <summary>Secrets for {credential:NAME} placeholders: @{ NAME = $credential }.</summary>
    [Parameter]
    public System.Collections.Hashtable? Secret { get; set; }

    protected override void ProcessRecord()
    {
        if (IsFleet)
        {
            if (!TryResolveFleet(out var targets))
            {
                return;
            }

            var jobPath = GetUnresolvedProviderPathFromPSPath(Job);
            var secrets = SecretArgument.ToDictionary(Secret, new SecretRedactor());
            RunFleet(targets, $"Test-DataOpsEnvironment on {targets.Count} targets", async (target, scope, ct) =>
            {
                foreach (var check in await Preflight.RunAsync(jobPath, target.Connection, secrets, ct).ConfigureAwait(false))
                {
                    scope.Write(check);
                }

                return true;
            });
            return;
        }

        var connection = ResolveConnection();
        var path = GetUnresolvedProviderPathFromPSPath(Job);
        var credentials = SecretArgument.ToDictionary(Secret, new SecretRedactor());
        WriteObject(RunEngine((_, ct) => Preflight.RunAsync(path, connection, credentials, ct)), enumerateCollection: true);
    }
}
