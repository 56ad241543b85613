#Requires -Version 7.4
<#
.SYNOPSIS
    The package round trip as a user does it: Install-PSResource from the folder repository into a clean
    module path, then in a new pwsh process Import-Module DataOps by name and a short sandbox round trip.
.DESCRIPTION
    build.ps1 -Task PackageTest runs this in a pwsh whose HOME and XDG folders are a fresh temporary
    folder, so the CurrentUser module path starts empty and nothing is registered on the machine.
#>
param([Parameter(Mandatory)] [string] $Repository)
$ErrorActionPreference = 'Stop'

$userModules = ($env:PSModulePath -split [IO.Path]::PathSeparator)[0]
if ((Test-Path $userModules) -and (Get-ChildItem $userModules)) { throw "The user module path $userModules is not empty." }
if (Get-Module -ListAvailable DataOps) { throw 'DataOps is already available before the install.' }

Register-PSResourceRepository -Name DataOpsLocal -Uri $Repository -Trusted
Install-PSResource -Name DataOps -Repository DataOpsLocal -Scope CurrentUser -TrustRepository
$installed = Get-InstalledPSResource -Name DataOps
"Installed DataOps $($installed.Version) into $($installed.InstalledLocation)"

$files = Get-ChildItem -Recurse -File (Join-Path $userModules 'DataOps')
$unwanted = $files | Where-Object { $_.Extension -eq '.pdb' -or ($_.Extension -eq '.xml' -and $_.Name -notlike '*-help.xml' -and $_.Name -ne 'PSGetModuleInfo.xml') }
if ($unwanted) { throw "The package ships debug or doc files: $($unwanted.Name -join ', ')" }
if (-not ($files | Where-Object Name -eq 'LICENSE')) { throw 'The package has no LICENSE.' }

# A new pwsh process, as a user would start one, with the module found by name on the module path.
$roundTrip = @'
$ErrorActionPreference = 'Stop'
Import-Module DataOps
$m = Get-Module DataOps
"Imported DataOps $($m.Version) from $($m.ModuleBase)"
$sb = Start-DataOpsSandbox -Name package-roundtrip -Reset -Force
try {
    Install-DataOpsSchema -Component WorkflowExecution | Out-Null
    New-WorkflowSampleData -Executions 50 -Seed 1 | Out-Null
    $stats = Get-ExecutionStats
    if ($stats.Total -ne 50) { throw "Expected 50 executions, got $($stats.Total)." }
    $stats | Out-String -Width 80
    if (-not (Get-Help Start-DataOpsSandbox).examples) { throw 'No help in the installed module.' }
}
finally {
    Stop-DataOpsSandbox -Name package-roundtrip -Remove -Confirm:$false
}
'round trip: ok'
'@
$dll = Join-Path $PSHOME 'pwsh.dll'
if (Test-Path $dll) { & dotnet $dll -NoProfile -NonInteractive -Command $roundTrip } else { & (Join-Path $PSHOME 'pwsh') -NoProfile -NonInteractive -Command $roundTrip }
if ($LASTEXITCODE -ne 0) { throw "The round trip in a new pwsh failed (exit code $LASTEXITCODE)." }
$base = & dotnet $dll -NoProfile -NonInteractive -Command '(Get-Module -ListAvailable DataOps).ModuleBase'
if (-not "$base".StartsWith($userModules)) { throw "Import-Module DataOps would load $base, not the installed package." }
