#Requires -Version 7.4
<#
.SYNOPSIS
    The one entry point: build the module, run every test suite, package it, clean up.
.DESCRIPTION
    Run it with the pinned pwsh after 'dotnet tool restore':

        dotnet pwsh ./build.ps1 -Task Build     # out/DataOps (the same as 'dotnet build DataOps.PowerShell.sln')
        dotnet pwsh ./build.ps1 -Task Test      # Build, the xUnit suites, then the Pester suite under each Pester version
        dotnet pwsh ./build.ps1 -Task Pester    # only the Pester suite (tests/Pester and examples/pester) on the built module
        dotnet pwsh ./build.ps1 -Task Package   # Release build, out/package/DataOps and its .nupkg in out/repository
        dotnet pwsh ./build.ps1 -Task PackageTest  # Package, then install it from the folder repository into a clean
                                                   # module path and use it by name in a new pwsh process
        dotnet pwsh ./build.ps1 -Task Clean

    Pester is restored through NuGet like every other package (tests/Pester/Pester.Restore.csproj pins
    5.7.1 and 6.2.0) and imported from the NuGet cache. Each Pester version runs in its own pwsh process
    with its own sandbox root, and writes NUnit XML to out/TestResults/Pester-<version>.xml.
.PARAMETER PesterVersion
    The Pester versions to run the suite under. Default: every version the restore project pins.
#>
[CmdletBinding()]
param(
    [ValidateSet('Build', 'Test', 'Pester', 'Package', 'PackageTest', 'Clean')]
    [string] $Task = 'Test',
    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Debug',
    [string[]] $PesterVersion = @('5.7.1', '6.2.0')
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$root = $PSScriptRoot
$solution = Join-Path $root 'DataOps.PowerShell.sln'
$out = Join-Path $root 'out'
$env:DOTNET_CLI_TELEMETRY_OPTOUT = '1'
$env:DOTNET_NOLOGO = '1'

function Invoke-Dotnet {
    & dotnet @args
    if ($LASTEXITCODE -ne 0) { throw "dotnet $($args -join ' ') failed with exit code $LASTEXITCODE" }
}

# The pwsh that runs this script, started afresh: 'dotnet <PSHOME>/pwsh.dll' works whether pwsh came from
# the local tool manifest, a global tool or a package (the tool's apphost may lack its execute bit).
function Invoke-Pwsh {
    param([string[]] $Arguments, [hashtable] $Environment = @{})
    $saved = @{}
    foreach ($name in $Environment.Keys) {
        $saved[$name] = [Environment]::GetEnvironmentVariable($name)
        [Environment]::SetEnvironmentVariable($name, $Environment[$name])
    }
    try {
        $dll = Join-Path $PSHOME 'pwsh.dll'
        if (Test-Path $dll) { & dotnet $dll -NoProfile -NonInteractive @Arguments | Out-Host }
        else { & (Join-Path $PSHOME 'pwsh') -NoProfile -NonInteractive @Arguments | Out-Host }
        return $LASTEXITCODE
    }
    finally {
        foreach ($name in $saved.Keys) { [Environment]::SetEnvironmentVariable($name, $saved[$name]) }
    }
}

function Get-PesterManifest([string] $Version) {
    $cache = if ($env:NUGET_PACKAGES) { $env:NUGET_PACKAGES } else { Join-Path $HOME '.nuget/packages' }
    $folder = Join-Path $cache "pester/$Version"
    $manifest = Join-Path $folder 'tools/Pester.psd1'
    if (-not (Test-Path $manifest)) {
        Invoke-Dotnet restore (Join-Path $root 'tests/Pester/Pester.Restore.csproj') --verbosity quiet
    }
    if (-not (Test-Path $manifest)) {
        # Seen once: the cache folder held only the .nupkg. A .nupkg is a zip whose tools/ is the module.
        $nupkg = Join-Path $folder "pester.$Version.nupkg"
        if (-not (Test-Path $nupkg)) { throw "Pester $Version is not in the NuGet cache ($folder); 'dotnet restore tests/Pester/Pester.Restore.csproj' should put it there." }
        $extracted = Join-Path $out "pester/$Version"
        $manifest = Join-Path $extracted 'tools/Pester.psd1'
        if (-not (Test-Path $manifest)) {
            Remove-Item -Recurse -Force $extracted -ErrorAction SilentlyContinue
            Expand-Archive -Path $nupkg -DestinationPath $extracted
        }
    }
    return $manifest
}

function Invoke-PesterSuite {
    $results = Join-Path $out 'TestResults'
    New-Item -ItemType Directory -Force $results | Out-Null
    $failed = @()
    foreach ($version in $PesterVersion) {
        $manifest = Get-PesterManifest $version
        $sandboxRoot = Join-Path ([IO.Path]::GetTempPath()) "dataops-pester-$version-$PID"
        Write-Host "== Pester $version (sandboxes in $sandboxRoot)"
        $code = Invoke-Pwsh -Arguments @(
            '-File', (Join-Path $root 'tests/Pester/Invoke-DataOpsPester.ps1'),
            '-PesterManifest', $manifest,
            '-ResultPath', (Join-Path $results "Pester-$version.xml")
        ) -Environment @{ DATAOPS_SANDBOX_ROOT = $sandboxRoot; NO_COLOR = '1' }
        if ($code -ne 0) { $failed += $version }
    }
    if ($failed) { throw "The Pester suite failed under Pester $($failed -join ', ')." }
}

function New-ModulePackage {
    $release = Join-Path $out 'release/DataOps/'
    # The module project and the help generator, in Release, laid out in a folder of their own so the
    # Debug module in out/DataOps (which the tests use) is left alone. HelpGen reads the XML doc file.
    Invoke-Dotnet build (Join-Path $root 'tools/DataOps.HelpGen/DataOps.HelpGen.csproj') -c Release "-p:ModuleOutDir=$release"
    $package = Join-Path $out 'package/DataOps'
    Remove-Item -Recurse -Force $package -ErrorAction SilentlyContinue
    New-Item -ItemType Directory -Force $package | Out-Null
    Copy-Item -Recurse -Path (Join-Path $release '*') -Destination $package
    # What a user installs: no debug symbols, no XML doc comments (Get-Help reads en-US/*-help.xml).
    Get-ChildItem -Recurse -File $package |
        Where-Object { $_.Extension -eq '.pdb' -or ($_.Extension -eq '.xml' -and $_.Name -notlike '*-help.xml') } |
        Remove-Item
    $manifest = Test-ModuleManifest (Join-Path $package 'DataOps.psd1')

    $repository = Join-Path $out 'repository'
    Remove-Item -Recurse -Force $repository -ErrorAction SilentlyContinue
    New-Item -ItemType Directory -Force $repository | Out-Null
    # PSResourceGet keeps its repository list in the user's profile: publish from a process whose
    # profile folders are throwaway, so the build registers nothing on the machine.
    $environment = New-ThrowawayProfile 'publish'
    try {
        $code = Invoke-Pwsh -Arguments @('-File', (Join-Path $root 'tests/Package/Publish-Package.ps1'), '-ModulePath', $package, '-Repository', $repository) -Environment $environment
        if ($code -ne 0) { throw "Publish-PSResource failed (exit code $code)." }
    }
    finally {
        Remove-Item -Recurse -Force $environment.HOME -ErrorAction SilentlyContinue
    }
    $nupkg = Get-ChildItem $repository -Filter "DataOps.$($manifest.Version)*.nupkg"
    if (-not $nupkg) { throw "No DataOps.$($manifest.Version).nupkg in $repository." }
    Write-Host "Package: $($nupkg.FullName)"
}

function New-ThrowawayProfile([string] $Purpose) {
    $home2 = Join-Path ([IO.Path]::GetTempPath()) "dataops-$Purpose-home-$PID"
    Remove-Item -Recurse -Force $home2 -ErrorAction SilentlyContinue
    # The folders must exist: .NET reports a missing LocalApplicationData as '' and PSResourceGet then
    # writes its repository list into the working directory.
    foreach ($sub in '.local/share', '.config', '.cache') { New-Item -ItemType Directory -Force (Join-Path $home2 $sub) | Out-Null }
    return @{
        HOME            = $home2
        XDG_DATA_HOME   = Join-Path $home2 '.local/share'
        XDG_CONFIG_HOME = Join-Path $home2 '.config'
        XDG_CACHE_HOME  = Join-Path $home2 '.cache'
        # A new process computes its module path from these folders and PSHOME only.
        PSModulePath    = $null
        NO_COLOR        = '1'
    }
}

function Test-ModulePackage {
    $environment = New-ThrowawayProfile 'install'
    try {
        $code = Invoke-Pwsh -Arguments @('-File', (Join-Path $root 'tests/Package/Test-PackageInstall.ps1'), '-Repository', (Join-Path $out 'repository')) -Environment $environment
        if ($code -ne 0) { throw "The package round trip failed (exit code $code)." }
    }
    finally {
        Remove-Item -Recurse -Force $environment.HOME -ErrorAction SilentlyContinue
    }
}

# One line with every suite's counts (xUnit from its TRX files, Pester from its NUnit XML), also kept
# in out/TestResults/summary.txt for .ci/run's last line.
function Write-TestSummary([string] $Results) {
    $passed = 0; $failed = 0; $parts = @()
    foreach ($trx in Get-ChildItem $Results -Filter *.trx -ErrorAction SilentlyContinue) {
        $run = ([xml](Get-Content -Raw -LiteralPath $trx.FullName)).TestRun
        $counters = $run.ResultSummary.Counters
        $assembly = Split-Path -LeafBase @($run.TestDefinitions.UnitTest)[0].storage
        $passed += [int]$counters.passed; $failed += [int]$counters.failed + [int]$counters.error
        $parts += "$($assembly): $($counters.passed)/$($counters.total)"
    }
    foreach ($nunit in Get-ChildItem $Results -Filter 'Pester-*.xml' -ErrorAction SilentlyContinue) {
        $run = ([xml](Get-Content -Raw -LiteralPath $nunit.FullName)).'test-results'
        $p = [int]$run.total - [int]$run.failures - [int]$run.errors - [int]$run.'not-run' - [int]$run.skipped - [int]$run.inconclusive - [int]$run.ignored
        $passed += $p; $failed += [int]$run.failures + [int]$run.errors
        $parts += "$($nunit.BaseName): $p/$($run.total)"
    }
    $line = "tests: $passed passed, $failed failed"
    Write-Host ($parts -join '; ')
    Write-Host $line
    Set-Content -Path (Join-Path $Results 'summary.txt') -Value (($parts -join '; '), $line)
}

switch ($Task) {
    'Clean' {
        Invoke-Dotnet clean $solution -c $Configuration
        Remove-Item -Recurse -Force $out -ErrorAction SilentlyContinue
    }
    'Build' {
        Invoke-Dotnet build $solution -c $Configuration
        Write-Host "Module assembled in $(Join-Path $out 'DataOps')"
    }
    'Test' {
        Invoke-Dotnet build $solution -c $Configuration
        $results = Join-Path $out 'TestResults'
        Remove-Item -Recurse -Force $results -ErrorAction SilentlyContinue
        & dotnet test $solution -c $Configuration --no-build --results-directory $results --logger 'trx'
        $xunitFailed = $LASTEXITCODE -ne 0
        $pesterError = $null
        try { Invoke-PesterSuite } catch { $pesterError = $_ }
        Write-TestSummary $results
        if ($xunitFailed) { throw 'The xUnit suites failed (see above).' }
        if ($pesterError) { throw $pesterError }
    }
    'Pester' {
        Invoke-PesterSuite
    }
    'Package' {
        New-ModulePackage
    }
    'PackageTest' {
        New-ModulePackage
        Test-ModulePackage
    }
}
