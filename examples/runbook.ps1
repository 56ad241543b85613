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
.PARAMETER Environment
    A DATAOPS_<NAME>_CONNECTION environment. Default: a sandbox named 'runbook' with sample data.
.PARAMETER Apply
    Apply the mini plan when items are pending (the sandbox demo always applies).
#>
[CmdletBinding()]
param(
    [string] $Environment,
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
try {
    if ($Environment) {
        $connection = Connect-DataOps -Environment $Environment
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
}
