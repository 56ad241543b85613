#Requires -Version 7.4
<#
.SYNOPSIS
    Re-scores completed Prism sessions through an HTTP scoring endpoint (the runbook's score_fc_session
    and score_prism edge functions), shows the results, then undoes the run.
.DESCRIPTION
    Runs anywhere, with nothing beyond loopback: a private sandbox 'rescore' with sample data, and a
    local scoring endpoint on 127.0.0.1 (System.Net.HttpListener in a thread job) that stands in for the
    edge functions. Like them it checks the service key (Authorization: Bearer), writes the scores into
    the session's profile through its own connection, and answers 200.

    The job (jobs/rescore-sessions.job.json) reads the endpoint's base URL and the key from the
    environment ({env:DATAOPS_SCORING_URL}, {env:DATAOPS_SCORING_KEY}). The script sets both for its own
    process: the URL of the local endpoint, and the key already in $env:DATAOPS_SCORING_KEY or a new
    random one. It then runs Invoke-Backfill, shows the results and some re-scored profiles, checks that
    every item was applied, that each function was called once per item with the key, and that no file the
    run wrote (under -OutputDirectory: the run's files and, for this run, its run logs) holds the key.
    Last, Undo-Backfill restores the profiles and the script checks they are as before.

    Exit code 0 when every check holds, 1 otherwise.
        pwsh -NonInteractive -File examples/rescore-sessions.ps1
.PARAMETER Job
    The job file. Default: jobs/rescore-sessions.job.json next to this script.
.PARAMETER OutputDirectory
    Where the run's files and run logs go. Default: dataops-rescore in the temp folder.
.PARAMETER Sessions
    How many sample sessions to write. Default: 60.
.PARAMETER ItemsPerMinute
    The rate for this demo (the job's own is 20 a minute, the runbook's). Default: 600.
#>
[CmdletBinding()]
param(
    [string] $Job = (Join-Path $PSScriptRoot 'jobs/rescore-sessions.job.json'),
    [string] $OutputDirectory = (Join-Path ([IO.Path]::GetTempPath()) 'dataops-rescore'),
    [ValidateRange(10, 10000)] [int] $Sessions = 60,
    [ValidateRange(0, 100000)] [int] $ItemsPerMinute = 600
)

$ErrorActionPreference = 'Stop'

# The module: the repository's build (out/DataOps, from 'dotnet build') when this runs from a clone,
# else DataOps installed by name (Install-PSResource DataOps).
$built = Join-Path $PSScriptRoot '../out/DataOps/DataOps.psd1'
$module = if (Test-Path $built) { (Resolve-Path $built).Path } else { 'DataOps' }
Import-Module $module -ErrorAction Stop

function Assert-That([bool] $Condition, [string] $What) {
    if (-not $Condition) { throw "Check failed: $What" }
    "  ok: $What"
}

# The environment this script changes, put back at the end.
$saved = @{}
foreach ($name in 'DATAOPS_SCORING_URL', 'DATAOPS_SCORING_KEY', 'DATAOPS_LOG_DIR') { $saved[$name] = [Environment]::GetEnvironmentVariable($name) }
$listener = $null
$endpoint = $null
$sandbox = $null

try {
    $OutputDirectory = [IO.Path]::GetFullPath($OutputDirectory)
    New-Item -ItemType Directory -Force $OutputDirectory | Out-Null
    # Run logs of this demo go with its other files, so the key check below covers every file it writes.
    $env:DATAOPS_LOG_DIR = Join-Path $OutputDirectory 'logs'
    if (-not $env:DATAOPS_SCORING_KEY) {
        $env:DATAOPS_SCORING_KEY = [Convert]::ToHexString([Security.Cryptography.RandomNumberGenerator]::GetBytes(24))
    }

    $sandbox = Start-DataOpsSandbox -Name rescore -Reset -Force -NoDefault
    $connection = $sandbox.Connection
    Install-DataOpsSchema -Connection $connection -Force | Out-Null
    New-PrismSampleData -Connection $connection -Sessions $Sessions -Seed 7 -Force | Out-Null

    # The scoring endpoint: one request at a time on 127.0.0.1, on a port the system picks.
    $probe = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, 0)
    $probe.Start(); $port = $probe.LocalEndpoint.Port; $probe.Stop()
    $listener = [System.Net.HttpListener]::new()
    $listener.Prefixes.Add("http://127.0.0.1:$port/")
    $listener.Start()
    $env:DATAOPS_SCORING_URL = "http://127.0.0.1:$port"
    $calls = [hashtable]::Synchronized(@{ score_fc_session = 0; score_prism = 0; refused = 0; errors = [System.Collections.ArrayList]::Synchronized([System.Collections.ArrayList]::new()) })
    $endpoint = Start-ThreadJob -Name rescore-endpoint -ArgumentList $listener, $connection, $calls, $module -ScriptBlock {
        param($listener, $connection, $calls, $module)
        Import-Module $module
        # The key is read from the environment, as an edge function reads its service key: it is never passed around.
        $expected = "Bearer $env:DATAOPS_SCORING_KEY"
        while ($listener.IsListening) {
            try { $ctx = $listener.GetContext() } catch { break }   # Stop() ends the wait
            $status = 200; $text = 'scored'
            try {
                $function = $ctx.Request.Url.Segments[-1]
                $request = [IO.StreamReader]::new($ctx.Request.InputStream).ReadToEnd() | ConvertFrom-Json
                if ($ctx.Request.Headers['Authorization'] -cne $expected) {
                    $status = 401; $text = 'unauthorized'; $calls.refused++
                }
                elseif ($function -notin 'score_fc_session', 'score_prism') {
                    $status = 404; $text = "no function $function"
                }
                else {
                    # The same session and function always score the same, so a retried call changes nothing more.
                    $hash = [Security.Cryptography.SHA256]::HashData([Text.Encoding]::UTF8.GetBytes("$function/$($request.session)"))
                    $score = [int]($hash[0] % 100)
                    $field = if ($function -eq 'score_fc_session') { 'fc' } else { 'prism' }
                    $r = Invoke-DataOpsQuery -Connection $connection -As NonQuery -Confirm:$false -ErrorAction Stop -Query @'
UPDATE prism.profiles
SET scores = coalesce(scores, '{}'::jsonb) || jsonb_build_object(@field::text, @score::int, 'model', @model::text), updated_at = now()
WHERE session_id = @session::uuid
'@ -Parameters @{ field = $field; score = $score; model = [string]$request.model; session = [string]$request.session }
                    if ($r.RowsAffected -ne 1) { $status = 404; $text = "no profile for session $($request.session)" }
                    else { $calls[$function]++ }
                }
            }
            catch {
                $status = 500; $text = 'scoring failed'; [void]$calls.errors.Add("$_")
            }
            $ctx.Response.StatusCode = $status
            $bytes = [Text.Encoding]::UTF8.GetBytes($text)
            $ctx.Response.OutputStream.Write($bytes, 0, $bytes.Length)
            $ctx.Response.Close()
        }
    }

    $profilesNow = "SELECT md5(coalesce(string_agg(to_jsonb(p)::text, ',' ORDER BY id), '')) FROM prism.profiles p"
    $before = Invoke-DataOpsQuery -Connection $connection -Query $profilesNow -As Scalar -ReadOnly
    $pending = Invoke-DataOpsQuery -Connection $connection -As Scalar -ReadOnly -Query @'
SELECT count(*) FROM prism.sessions s JOIN prism.profiles p ON p.session_id = s.id
WHERE s.status = 'completed' AND (p.scores ->> 'model' IS DISTINCT FROM 'prism-2025-09' OR p.results_version IS DISTINCT FROM 'v1.2.1')
'@

    "== Preflight: the job, its secrets and the endpoint"
    $preflight = @(Test-DataOpsEnvironment -Job $Job -Connection $connection)
    $preflight | Format-Table Check, Passed, Detail -AutoSize -Wrap | Out-Default
    Assert-That (@($preflight | Where-Object { -not $_.Passed }).Count -eq 0) 'every preflight check passed'

    "== Re-scoring $pending sessions through $($env:DATAOPS_SCORING_URL)/functions/v1/{score_fc_session,score_prism}"
    $results = @(Invoke-Backfill -Job $Job -Connection $connection -ItemsPerMinute $ItemsPerMinute -OutputDirectory $OutputDirectory -Force)
    $results | Out-Default
    $run = Get-BackfillRun -Connection $connection -RunId $results[0].RunId
    $run | Out-Default
    'Some re-scored profiles:'
    Invoke-DataOpsQuery -Connection $connection -ReadOnly -Query "SELECT session_id, results_version, scores ->> 'model' AS model, scores ->> 'fc' AS fc, scores ->> 'prism' AS prism FROM prism.profiles ORDER BY updated_at DESC, session_id LIMIT 5" |
        Format-Table -AutoSize | Out-Default

    "== Checks"
    if ($calls.errors.Count -gt 0) { $calls.errors | ForEach-Object { "  endpoint error: $_" } }
    Assert-That ($results.Count -eq $pending -and $pending -gt 0) "the run took every session to re-score ($($results.Count) of $pending)"
    Assert-That (@($results | Where-Object Status -ne 'Applied').Count -eq 0) 'every item was applied'
    Assert-That ($calls.score_fc_session -eq $pending -and $calls.score_prism -eq $pending) "each function scored each session once ($($calls.score_fc_session) and $($calls.score_prism) calls)"
    Assert-That ($calls.refused -eq 0) 'the endpoint refused no call (every call carried the key)'
    $still = Invoke-DataOpsQuery -Connection $connection -As Scalar -ReadOnly -Query "SELECT count(*) FROM prism.profiles WHERE scores ->> 'model' = 'prism-2025-09' AND scores ? 'fc' AND scores ? 'prism' AND results_version = 'v1.2.1'"
    Assert-That ($still -eq $pending) "$still profiles hold both scores of the current model"
    $written = @(Get-ChildItem -Recurse -File $OutputDirectory)
    $leaks = @($written | Select-String -SimpleMatch -Pattern $env:DATAOPS_SCORING_KEY -List)
    Assert-That ($written.Count -gt 0 -and $leaks.Count -eq 0) "none of the $($written.Count) files the run wrote under $OutputDirectory holds the key"

    "== Undo"
    $undo = @(Undo-Backfill -RunId $run.RunId -Connection $connection -Confirm:$false)
    Assert-That ($undo.Count -eq $pending -and @($undo | Where-Object Status -ne 'Restored').Count -eq 0) "Undo-Backfill restored all $($undo.Count) profiles"
    $after = Invoke-DataOpsQuery -Connection $connection -Query $profilesNow -As Scalar -ReadOnly
    Assert-That ($after -eq $before) 'the profiles are as they were before the run'

    "rescore-sessions: $pending sessions re-scored and restored; run files in $(Join-Path $OutputDirectory $run.Job $run.RunId)"
}
catch {
    "rescore-sessions failed: $_"
    exit 1
}
finally {
    if ($listener) { $listener.Stop(); $listener.Close() }
    if ($endpoint) { $endpoint | Wait-Job -Timeout 10 | Out-Null; $endpoint | Remove-Job -Force }
    foreach ($name in $saved.Keys) { [Environment]::SetEnvironmentVariable($name, $saved[$name]) }
    if ($sandbox) { Stop-DataOpsSandbox -Name rescore -Remove -Confirm:$false }
}
