#Requires -Version 7.4
<#
.SYNOPSIS
    Runs the Pester suite (tests/Pester) and the usage example (examples/pester) under one Pester version.
.DESCRIPTION
    build.ps1 starts this in a new pwsh process per Pester version (one process cannot load two).
    Exit code: the number of failed tests (Pester's Run.Exit), 0 when everything passed.
.PARAMETER PesterManifest
    The Pester.psd1 to import (the tools/ folder of the restored NuGet package).
.PARAMETER ResultPath
    Where the NUnit XML results go.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $PesterManifest,
    [Parameter(Mandatory)] [string] $ResultPath,
    [string[]] $Path = @((Join-Path $PSScriptRoot '.'), (Join-Path $PSScriptRoot '../../examples/pester'))
)

$ErrorActionPreference = 'Stop'
Import-Module $PesterManifest -Force
$pester = Get-Module Pester
Write-Host "Pester $($pester.Version) from $($pester.ModuleBase); pwsh $($PSVersionTable.PSVersion)"

$config = New-PesterConfiguration
$config.Run.Path = $Path
$config.Run.Exit = $true
$config.Run.PassThru = $false
$config.Output.Verbosity = 'Normal'
$config.TestResult.Enabled = $true
$config.TestResult.OutputFormat = 'NUnitXml'
$config.TestResult.OutputPath = $ResultPath
$config.TestResult.TestSuiteName = "DataOps-Pester-$($pester.Version)"
Invoke-Pester -Configuration $config
