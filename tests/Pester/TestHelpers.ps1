# Dot-sourced by every test file's BeforeAll: the built module as a user imports it, paths, and a few
# helpers. Each file starts a sandbox of its own (named after the file), so files can run in parallel.
$script:RepoRoot = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
$script:ModuleManifest = if ($env:DATAOPS_TEST_MODULE) { $env:DATAOPS_TEST_MODULE } else { Join-Path $RepoRoot 'out/DataOps/DataOps.psd1' }
if (-not (Get-Module DataOps)) { Import-Module $ModuleManifest -ErrorAction Stop }
$script:SampleJob = Join-Path $RepoRoot 'examples/jobs/results-v1.2.1.job.json'

function New-TestFolder {
    $path = Join-Path ([IO.Path]::GetTempPath()) "dataops-pester-$([guid]::NewGuid().ToString('N').Substring(0, 10))"
    New-Item -ItemType Directory -Path $path | Out-Null
    $path
}

# Runs a command that must fail, and returns its ErrorRecord (terminating or not: -ErrorAction Stop
# turns a non-terminating one into an exception too).
function Get-ErrorRecord([scriptblock] $Command) {
    try {
        & $Command
    }
    catch {
        return $_
    }
    throw "Expected an error from { $Command }, got none."
}

# The sandbox's password, read from its folder, as the admin who owns it could.
function Get-SandboxPassword([Parameter(Mandatory)] $Sandbox) {
    $root = if ($env:DATAOPS_SANDBOX_ROOT) { $env:DATAOPS_SANDBOX_ROOT } else { Join-Path ([IO.Path]::GetTempPath()) 'dataops-sandboxes' }
    (Get-Content -Raw (Join-Path $root $Sandbox.Name 'password')).Trim()
}

# A connection string for the sandbox's dataops database, as an admin would keep it in DATAOPS_<NAME>_CONNECTION.
function Get-SandboxConnectionString([Parameter(Mandatory)] $Sandbox) {
    "Host=127.0.0.1;Port=$($Sandbox.Port);Database=dataops;Username=postgres;Password=$(Get-SandboxPassword $Sandbox)"
}

# SQL through psql from the sandbox's own binaries: arranging and checking data independently of
# the module.
function Invoke-TestSql([Parameter(Mandatory)] $Sandbox, [Parameter(Mandatory)] [string] $Sql) {
    $env:PGPASSWORD = Get-SandboxPassword $Sandbox
    try {
        $psql = Join-Path $Sandbox.BinDirectory 'psql'
        $out = & $psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p $Sandbox.Port -U postgres -d dataops -c $Sql
        if ($LASTEXITCODE -ne 0) { throw "psql failed ($LASTEXITCODE): $Sql" }
        $out
    }
    finally {
        Remove-Item Env:PGPASSWORD
    }
}

# The table view of an object as text, and the header labels the format file declares for its type.
function Get-ViewLabels([string] $TypeName) {
    $xml = [xml](Get-Content -Raw (Join-Path (Split-Path $ModuleManifest) 'DataOps.Format.ps1xml'))
    # The default view: the first for the type (ExecutionStats has a list view after its table).
    $view = $xml.Configuration.ViewDefinitions.View | Where-Object { $_.ViewSelectedBy.TypeName -eq $TypeName } | Select-Object -First 1
    if ($view.TableControl) { return @($view.TableControl.TableHeaders.TableColumnHeader | ForEach-Object Label) }
    @($view.ListControl.ListEntries.ListEntry.ListItems.ListItem | ForEach-Object { if ($_.Label) { $_.Label } else { $_.PropertyName } })
}

# A new pwsh process (the pinned tool, as the current one) with -NoProfile -NonInteractive and these arguments,
# in $work (the calling test file's folder), no stdin, NO_COLOR; its exit code and both streams. Killed after the timeout.
function Invoke-NewPwsh([string[]] $Arguments, [int] $TimeoutSeconds = 120) {
    $psi = [Diagnostics.ProcessStartInfo]::new((Get-Process -Id $PID).Path)
    if ($psi.FileName -notlike '*pwsh*') { $psi.ArgumentList.Add((Join-Path $PSHOME 'pwsh.dll')) }
    foreach ($arg in @('-NoProfile', '-NonInteractive') + $Arguments) { $psi.ArgumentList.Add($arg) }
    $psi.WorkingDirectory = $work
    $psi.RedirectStandardOutput = $true; $psi.RedirectStandardError = $true; $psi.RedirectStandardInput = $true
    $psi.Environment['NO_COLOR'] = '1'
    $p = [Diagnostics.Process]::Start($psi)
    $p.StandardInput.Close()
    $stdout = $p.StandardOutput.ReadToEndAsync(); $stderr = $p.StandardError.ReadToEndAsync()
    if (-not $p.WaitForExit($TimeoutSeconds * 1000)) { $p.Kill($true); throw "pwsh did not finish in $TimeoutSeconds s" }
    [pscustomobject]@{ ExitCode = $p.ExitCode; Out = $stdout.Result; Err = $stderr.Result }
}
