#Requires -Version 7.4
<#
.SYNOPSIS
    Publishes the packaged module folder to a folder repository with Publish-PSResource.
.DESCRIPTION
    build.ps1 -Task Package runs this in a new pwsh whose profile folders are throwaway, so the
    repository registration touches nothing on the machine.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $Repository
)
$ErrorActionPreference = 'Stop'
Register-PSResourceRepository -Name DataOpsBuild -Uri $Repository -Trusted
Publish-PSResource -Path $ModulePath -Repository DataOpsBuild
Get-ChildItem $Repository -Filter *.nupkg | ForEach-Object { "Published $($_.Name) ($([math]::Round($_.Length / 1MB, 1)) MB)" }
