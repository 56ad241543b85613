#Requires -Version 7.4
<#
.SYNOPSIS
    The three phases of the original runbook, with a human gate after each: apply on staging,
    soak staging, then check production and write the mini plan.
.DESCRIPTION
    Phase 1 applies the job on staging (throttled) and halts for review of backfill_summary.md.
    Phase 2 watches staging read-only and halts for the production go/no-go decision.
    Phase 3 checks production read-only and, if items are pending, writes the fingerprinted mini plan
    with the exact command to apply it. Nothing moves to the next phase by itself: each gate asks
    (ShouldContinue); -Force answers yes for unattended demos.

    Without -Staging and -Production connections it runs on two private sandboxes with sample data:
        pwsh -NonInteractive -File examples/backfill-pipeline.ps1 -Force
.PARAMETER Staging
    The staging connection (Connect-DataOps). Default: a sandbox 'pipeline-staging' with sample data.
.PARAMETER Production
    The production connection. Default: a sandbox 'pipeline-prod' with sample data.
.PARAMETER Force
    Pass every gate without asking.
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    $Staging,
    $Production,
    [string] $Job = (Join-Path $PSScriptRoot 'jobs/results-v1.2.1.job.json'),
    [string] $OutputDirectory = (Join-Path ([IO.Path]::GetTempPath()) 'dataops-pipeline'),
    [TimeSpan] $SoakDuration = [TimeSpan]::FromSeconds(4),
    [switch] $Force
)

$ErrorActionPreference = 'Stop'

# The module: the repository's build (out/DataOps, from 'dotnet build') when this runs from a clone,
# else DataOps installed by name (Install-PSResource DataOps).
$built = Join-Path $PSScriptRoot '../out/DataOps/DataOps.psd1'
Import-Module $(if (Test-Path $built) { $built } else { 'DataOps' }) -ErrorAction Stop
$sandboxes = @()

function Gate([string] $Question, [string] $Title) {
    # Each phase halts for a person; -Force is the person saying yes in advance.
    if ($Force) { return $true }
    return $PSCmdlet.ShouldContinue($Question, $Title)
}

try {
    foreach ($name in 'pipeline-staging', 'pipeline-prod') {
        if (($name -eq 'pipeline-staging' -and -not $Staging) -or ($name -eq 'pipeline-prod' -and -not $Production)) {
            $sb = Start-DataOpsSandbox -Name $name -Reset -Force -NoDefault
            $sandboxes += $name
            Install-DataOpsSchema -Connection $sb.Connection -Force | Out-Null
            New-PrismSampleData -Connection $sb.Connection -Sessions 100 -Seed ($name.Length) -Force | Out-Null
            if ($name -eq 'pipeline-staging') { $Staging = $sb.Connection } else { $Production = $sb.Connection }
        }
    }

    "== PHASE 1: BACKFILL (staging), applied guarded and throttled"
    $results = @(Invoke-Backfill -Job $Job -Connection $Staging -ItemsPerMinute 600 -OutputDirectory $OutputDirectory -Force)
    $results | Out-Default
    $run = Get-BackfillRun -Connection $Staging -RunId $results[0].RunId
    $summary = Join-Path $run.OutputDirectory $run.Job $run.RunId 'backfill_summary.md'
    if (-not (Gate "Phase 1 is done: $(@($results | Where-Object Status -eq 'Applied').Count) applied, $(@($results | Where-Object Status -eq 'Failed').Count) failed. Review $summary. Start the staging soak?" 'Review the backfill')) {
        'Halted after phase 1.'
        return
    }

    "== PHASE 2: STAGING SOAK (read-only)"
    $soak = @(Watch-StagingSoak -Job $Job -Connection $Staging -Duration $SoakDuration -Interval 1s -OutputDirectory $OutputDirectory -WarningAction SilentlyContinue)
    $report = $soak[-1]
    $report | Out-Default
    if ($report.Verdict -ne 'Go') {
        "Soak verdict $($report.Verdict): do not go to production. See $($report.ReportPath)."
        return
    }

    if (-not (Gate "The soak says Go ($($report.ReportPath)). Check production?" 'Production go/no-go')) {
        'Halted after phase 2.'
        return
    }

    "== PHASE 3: PROD HEALTH (read-only)"
    $health = Test-ProdHealth -Job $Job -Connection $Production -OutputDirectory $OutputDirectory
    $health | Out-Default
    if ($health.Healthy) {
        'Production needs nothing.'
    }
    else {
        "Production has $($health.PendingCount) items to fix. Recommendation (see $($health.ReportPath)):"
        "    Invoke-Backfill -Job '$($health.PlanPath)' -Connection `$prod"
    }

    'The pipeline has halted with its recommendations; nothing was applied to production.'
}
finally {
    foreach ($name in $sandboxes) { Stop-DataOpsSandbox -Name $name -Remove -Confirm:$false }
}
