#Requires -Version 7.4
<#
.SYNOPSIS
    The DataOps quickstart: a private PostgreSQL sandbox, the schema, and a clean finish.
.DESCRIPTION
    Runs start to finish on a machine with only the .NET SDK and the PostgreSQL server binaries:
        dotnet run --project src/DataOps.Host -- -File examples/quickstart.ps1
    With pwsh:  Import-Module ./out/DataOps/DataOps.psd1; ./examples/quickstart.ps1
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
}
finally {
    if (-not $Keep) {
        "== 5. Stop and remove the sandbox"
        Stop-DataOpsSandbox -Name $Name -Remove -Confirm:$false
    }
}
