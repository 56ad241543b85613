#Requires -Version 7.4
<#
.SYNOPSIS
    Builds DataOps.PowerShell, assembles out/DataOps, and runs the tests.
.DESCRIPTION
    The module is laid out by an MSBuild target that 'dotnet build' runs, so this script and a
    plain 'dotnet build DataOps.PowerShell.sln' produce the same out/DataOps folder.
.EXAMPLE
    ./build.ps1                 # restore, build, assemble, test
.EXAMPLE
    ./build.ps1 -Task Build -Configuration Release
#>
[CmdletBinding()]
param(
    [ValidateSet('Build', 'Test', 'Clean')]
    [string] $Task = 'Test',
    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Debug'
)

$ErrorActionPreference = 'Stop'
Set-Location $PSScriptRoot
$solution = Join-Path $PSScriptRoot 'DataOps.PowerShell.sln'

function Invoke-Dotnet {
    & dotnet @args
    if ($LASTEXITCODE -ne 0) { throw "dotnet $($args -join ' ') failed with exit code $LASTEXITCODE" }
}

switch ($Task) {
    'Clean' {
        Invoke-Dotnet clean $solution -c $Configuration
        Remove-Item -Recurse -Force (Join-Path $PSScriptRoot 'out') -ErrorAction SilentlyContinue
    }
    'Build' {
        Invoke-Dotnet build $solution -c $Configuration
        Write-Host "Module assembled in $(Join-Path $PSScriptRoot 'out/DataOps')"
    }
    'Test' {
        Invoke-Dotnet build $solution -c $Configuration
        Invoke-Dotnet test $solution -c $Configuration --no-build
    }
}
