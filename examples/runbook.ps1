#Requires -Version 7.4
<#
.SYNOPSIS
    Non-interactive use for automation: preflight, health check, apply the mini plan, report.
.DESCRIPTION
    Exit codes: 0 healthy (or made healthy), 2 action still needed, 1 error. No prompt is ever shown:
    writes pass -Force (it only skips confirmation: Invoke-Backfill still skips items already applied),
    and the structured log paths are printed for the job's record.
    Without -Environment the runbook works on a private sandbox with sample data, so it runs anywhere:
        pwsh -NonInteractive -File examples/runbook.ps1
    Against a real environment: set DATAOPS_PROD_CONNECTION and pass -Environment prod -Apply.

    The fleet form checks several databases in one call and gives one exit code for the fleet:
    0 when every target is healthy (or made healthy), 2 when any target still needs the backfill or could
    not be checked (a dead port is ConnectionFailed), 1 when the runbook itself failed.
        pwsh -NonInteractive -File examples/runbook.ps1 -Environment prod-eu, prod-us, prod-apac -Apply
    With -Fleet and no -Environment it demonstrates that on two sandboxes (one needing the backfill, one
    clean) and a port nothing listens on, and exits 2:
        pwsh -NonInteractive -File examples/runbook.ps1 -Fleet
.PARAMETER Environment
    A DATAOPS_<NAME>_CONNECTION environment; several make a fleet. Default: a sandbox named 'runbook' with sample data.
.PARAMETER Fleet
    The fleet form: every target at once (-ThrottleLimit), one exit code for all. Implied by several -Environment names.
.PARAMETER ThrottleLimit
    How many targets of a fleet are checked at once.
.PARAMETER Apply
    Apply the mini plan when items are pending (the sandbox demos always apply).
#>
[CmdletBinding()]
param(
    [string[]] $Environment,
    [switch] $Fleet,
    [ValidateRange(1, 32)]
    [int] $ThrottleLimit = 4,
    [switch] $Apply,
    [string] $Job = (Join-Path $PSScriptRoot 'jobs/results-v1.2.1.job.json'),
    [string] $OutputDirectory = (Join-Path ([IO.Path]::GetTempPath()) 'dataops-runbook')
)

$ErrorActionPreference = 'Stop'

# The module: the repository's build (out/DataOps, from 'dotnet build') when this runs from a clone,
# else DataOps installed by name (Install-PSResource DataOps).
$built = Join-Path $PSScriptRoot '../out/DataOps/DataOps.psd1'
Import-Module $(if (Test-Path $built) { $built } else { 'DataOps' }) -ErrorAction Stop
$sandbox = $null
$sandboxes = @()

# The fleet form: every target at once; sets $script:fleetExit, one exit code for the fleet.
$fleetExit = 1
function Invoke-FleetRunbook([object[]] $Targets) {
    "Fleet of $($Targets.Count) targets, $ThrottleLimit at a time"
    $preflight = @(Test-DataOpsEnvironment -Job $Job -Connection $Targets -ThrottleLimit $ThrottleLimit -ErrorAction SilentlyContinue -ErrorVariable preflightErrors)
    $preflight | Where-Object { -not $_.Passed } | ForEach-Object { "Preflight failed on $($_.Target): $($_.Name): $($_.Detail)" }
    $preflightErrors | ForEach-Object { "Preflight error: $($_.Exception.Message)" }

    $rows = @(Test-ProdHealth -Job $Job -Connection $Targets -ThrottleLimit $ThrottleLimit -OutputDirectory $OutputDirectory -ErrorAction SilentlyContinue -ErrorVariable healthErrors)
    ($rows | Sort-Object Target | Format-Table | Out-String -Width 80).TrimEnd()
    $healthErrors | ForEach-Object { "Error: $($_.Exception.Message)" }
    $pending = @($rows | Where-Object Status -eq 'ActionNeeded')
    if ($rows.Count -eq $Targets.Count -and @($rows | Where-Object Status -ne 'Healthy').Count -eq 0) {
        $script:fleetExit = 0
        return
    }

    if ($pending.Count -gt 0 -and -not $Apply) {
        $pending | ForEach-Object { "Action needed on $($_.Target): Invoke-Backfill -Job '$($_.PlanPath)' -Connection <$($_.Target)>" }
        $script:fleetExit = 2
        return
    }

    if ($pending.Count -gt 0) {
        # Each report carries its own connection: every plan is applied in the database it came from.
        $results = @($pending | Invoke-Backfill -OutputDirectory $OutputDirectory -ItemsPerMinute 0 -Force -WarningAction SilentlyContinue)
        "Applied $(@($results | Where-Object Status -eq 'Applied').Count) items on $($pending.Count) targets, failed $(@($results | Where-Object Status -eq 'Failed').Count)."
    }

    $healthy = Test-ProdHealth -Job $Job -Connection $Targets -ThrottleLimit $ThrottleLimit -OutputDirectory $OutputDirectory -Quiet -ErrorAction SilentlyContinue
    "Fleet healthy after the plans: $healthy"
    $script:fleetExit = if ($healthy) { 0 } else { 2 }
}

try {
    $targets = $null
    if ($Environment.Count -gt 1 -or ($Fleet -and $Environment)) {
        $targets = @($Environment | ForEach-Object { Connect-DataOps -Environment $_ -NoDefault })
    }
    elseif ($Fleet) {
        # The demo fleet: a sandbox that needs the backfill, a clean one, and a port nothing listens on.
        $sandboxes = @(
            Start-DataOpsSandbox -Name runbook-a -Reset -Force -NoDefault
            Start-DataOpsSandbox -Name runbook-b -Reset -Force -NoDefault
        )
        Install-DataOpsSchema -Connection $sandboxes -Force | Out-Null
        New-PrismSampleData -Connection $sandboxes[0] -Sessions 80 -Seed 11 -Force | Out-Null
        New-PrismSampleData -Connection $sandboxes[1] -Sessions 80 -Seed 11 -PendingShare 0 -Force | Out-Null
        $listener = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, 0)
        $listener.Start(); $deadPort = $listener.LocalEndpoint.Port; $listener.Stop()
        $targets = @($sandboxes[0], $sandboxes[1], "Host=127.0.0.1;Port=$deadPort;Database=dataops;Username=postgres;Timeout=3")
        $Apply = $true
    }

    if ($targets) {
        Invoke-FleetRunbook $targets
        exit $fleetExit
    }

    if ($Environment) {
        $connection = Connect-DataOps -Environment $Environment[0]
    }
    else {
        $sandbox = Start-DataOpsSandbox -Name runbook -Reset -Force
        $connection = $sandbox.Connection
        Install-DataOpsSchema -Connection $connection -Force | Out-Null
        New-PrismSampleData -Connection $connection -Sessions 80 -Seed 11 -Force | Out-Null
        $Apply = $true
    }

    "Preflight on $connection"
    $failed = @(Test-DataOpsEnvironment -Job $Job -Connection $connection | Where-Object { -not $_.Passed })
    if ($failed.Count -gt 0) {
        $failed | Out-Default
        'Preflight failed.'
        exit 1
    }

    $health = Test-ProdHealth -Job $Job -Connection $connection -OutputDirectory $OutputDirectory -Verbose 4>&1 |
        ForEach-Object { if ($_ -is [System.Management.Automation.VerboseRecord]) { "log: $($_.Message)" } else { $_ } }
    $report = $health | Where-Object { $_ -isnot [string] }
    $health | Where-Object { $_ -is [string] }
    "Health: $(if ($report.Healthy) { 'healthy' } else { "$($report.PendingCount) items pending" }); report $($report.ReportPath)"
    if ($report.Healthy) { exit 0 }

    if (-not $Apply) {
        "Action needed: Invoke-Backfill -Job '$($report.PlanPath)' -Connection <prod>"
        exit 2
    }

    $results = @($report | Invoke-Backfill -Connection $connection -OutputDirectory $OutputDirectory -ItemsPerMinute 0 -Force -WarningAction SilentlyContinue)
    "Applied $(@($results | Where-Object Status -eq 'Applied').Count), stale $(@($results | Where-Object Status -eq 'Stale').Count), failed $(@($results | Where-Object Status -eq 'Failed').Count)."
    $run = Get-BackfillRun -Connection $connection -RunId $results[0].RunId
    "Run files: $(Join-Path $run.OutputDirectory $report.JobName $run.RunId)"

    if (Test-ProdHealth -Job $Job -Connection $connection -OutputDirectory $OutputDirectory -Quiet) { exit 0 }
    exit 2
}
catch {
    "Runbook error: $($_.Exception.Message)"
    exit 1
}
finally {
    if ($sandbox) { Stop-DataOpsSandbox -Name runbook -Remove -Confirm:$false }
    foreach ($s in $sandboxes) { Stop-DataOpsSandbox -Name $s.Name -Remove -Confirm:$false }
}
