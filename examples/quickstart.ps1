#Requires -Version 7.4
<#
.SYNOPSIS
    The DataOps quickstart: a private PostgreSQL sandbox, the schema, and a clean finish.
.DESCRIPTION
    Runs start to finish on a machine with only the .NET SDK and the PostgreSQL server binaries:
        dotnet tool restore; dotnet pwsh -File examples/quickstart.ps1
    It imports the module itself: the clone's out/DataOps build, else DataOps installed by name.
.PARAMETER Name
    The sandbox to use. Default: quickstart.
.PARAMETER Keep
    Leave the sandbox running at the end (stop it later with Stop-DataOpsSandbox -Name quickstart).
#>
[CmdletBinding()]
param(
    [string] $Name = 'quickstart',
    [switch] $Keep
)

$ErrorActionPreference = 'Stop'

# The module: the repository's build (out/DataOps, from 'dotnet build') when this runs from a clone,
# else DataOps installed by name (Install-PSResource DataOps).
$built = Join-Path $PSScriptRoot '../out/DataOps/DataOps.psd1'
Import-Module $(if (Test-Path $built) { $built } else { 'DataOps' }) -ErrorAction Stop

"== 1. Start a private PostgreSQL sandbox (the first start runs initdb once; later starts take about a second)"
$sandbox = Start-DataOpsSandbox -Name $Name
$sandbox | Out-Default

try {
    "== 2. Install the schema components (idempotent, journaled migrations)"
    Install-DataOpsSchema | Out-Default

    "== 3. Run it again: nothing left to apply"
    $again = Install-DataOpsSchema
    $pending = @($again | Where-Object Status -ne 'AlreadyApplied')
    if ($pending.Count -ne 0) { throw "Expected nothing left to apply, found $($pending.Count) script(s)." }
    "All $(@($again).Count) scripts already applied."

    "== 4. The session's default connection (no password shown)"
    Get-DataOpsConnection | Out-Default

    "== 5. Seed 100,000 script_execution rows (binary COPY, constraints validated in bulk)"
    New-ScriptExecutionSeed -Count 100000 -Seed 42 | Out-Default

    "== 5b. Execution tracking: sample executions and their statistics, computed in SQL"
    New-WorkflowSampleData -Seed 3 | Out-Default
    Get-ExecutionStats -GroupBy Status | Out-Default

    "== 6. Sample Prism data where a share of completed sessions still needs the results-v1.2.1 backfill"
    $sample = New-PrismSampleData -Sessions 120 -Seed 7
    $sample | Out-Default

    "== 7. Rehearse the backfill (every item in a rolled-back transaction), then apply it"
    $job = Join-Path $PSScriptRoot 'jobs/results-v1.2.1.job.json'
    $out = Join-Path ([IO.Path]::GetTempPath()) 'dataops-quickstart-runs'
    $dry = @(Invoke-Backfill -Job $job -DryRun -ItemsPerMinute 0 -OutputDirectory $out -WarningAction SilentlyContinue)
    "Dry run: $($dry.Count) items would change."
    $applied = @(Invoke-Backfill -Job $job -ItemsPerMinute 600 -OutputDirectory $out)
    $applied | Out-Default
    if (@($applied | Where-Object Status -ne 'Applied').Count -ne 0) { throw 'Some items did not apply.' }

    "== 8. A short read-only soak of the job's checks (hours in real life): Go, NoGo or Inconclusive"
    $soak = @(Watch-StagingSoak -Job $job -Duration 3s -Interval 1s -OutputDirectory $out -WarningAction SilentlyContinue)
    $soak[-1] | Out-Default

    "== 9. Production health: nothing left to fix, so no mini plan"
    Test-ProdHealth -Job $job -OutputDirectory $out | Out-Default

    "== 10. Runs recorded in the ledger; undo restores the before-images"
    Get-BackfillRun | Out-Default
    $undone = @(Undo-Backfill -RunId $applied[0].RunId -Confirm:$false)
    "Restored $(@($undone | Where-Object Status -eq 'Restored').Count) of $($undone.Count) items."
    "Health after the undo: $(if (Test-ProdHealth -Job $job -OutputDirectory $out -Quiet) { 'healthy' } else { 'action needed (a mini plan was written)' })"
}
finally {
    if (-not $Keep) {
        "== 11. Stop and remove the sandbox"
        Stop-DataOpsSandbox -Name $Name -Remove -Confirm:$false
    }
}
