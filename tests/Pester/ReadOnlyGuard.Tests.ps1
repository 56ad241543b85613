#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Commands that promise to change nothing refuse a query that would change the server anyway
# (pg_terminate_backend runs in a read-only transaction): QueryNotReadOnly before anything runs, and
# the session it aimed at lives on.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:sb = Start-DataOpsSandbox -Name pester-readonly-guard -Reset -Force
    Install-DataOpsSchema -Component Prism | Out-Null
    $script:out = New-TestFolder
    New-PrismSampleData -Sessions 10 -Seed 5 -PendingShare 0.5 | Out-Null

    # The victim: another session, a psql waiting on the server.
    $psi = [System.Diagnostics.ProcessStartInfo]::new((Join-Path $sb.BinDirectory 'psql'))
    foreach ($a in '-X', '-q', '-h', '127.0.0.1', '-p', "$($sb.Port)", '-U', 'postgres', '-d', 'dataops', '-c', 'SELECT pg_sleep(900)') { $psi.ArgumentList.Add($a) }
    $psi.Environment['PGPASSWORD'] = Get-SandboxPassword $sb
    $psi.Environment['PGAPPNAME'] = 'readonly-guard-victim'
    $psi.RedirectStandardOutput = $true
    $psi.RedirectStandardError = $true
    $script:victim = [System.Diagnostics.Process]::Start($psi)

    $deadline = (Get-Date).AddSeconds(20)
    do {
        Start-Sleep -Milliseconds 200
        $script:victimPid = Invoke-TestSql $sb "SELECT pid FROM pg_stat_activity WHERE application_name = 'readonly-guard-victim'"
    } until ($victimPid -or (Get-Date) -gt $deadline)
    if (-not $victimPid) { throw 'The victim session did not start.' }

    # The sample job with one query field replaced.
    function New-Job([string] $Query, [string] $Field = 'soak') {
        $job = Get-Content -Raw $SampleJob | ConvertFrom-Json -AsHashtable
        $job.Remove('$schema')
        switch ($Field) {
            'soak' { $job.soak.checks[0].query = $Query; $job.soak.checks[0].expect = @{ atLeast = 0 } }
            'health' { $job.health.checks[0].query = $Query; $job.health.checks[0].expect = @{ atLeast = 0 } }
        }
        $path = Join-Path $out "job-$([guid]::NewGuid().ToString('N').Substring(0, 8)).json"
        $job | ConvertTo-Json -Depth 20 | Set-Content $path
        $path
    }

    function Test-VictimAlive {
        -not $victim.HasExited -and (Invoke-TestSql $sb "SELECT count(*) FROM pg_stat_activity WHERE pid = $victimPid") -eq 1
    }
}

AfterAll {
    if ($victim -and -not $victim.HasExited) { Stop-Process -Id $victim.Id -ErrorAction SilentlyContinue }
    Stop-DataOpsSandbox -Name pester-readonly-guard -Remove -Confirm:$false
    Remove-Item -Recurse -Force $out -ErrorAction SilentlyContinue
}

Describe 'A query that calls pg_terminate_backend' {
    It '<Command> refuses it: QueryNotReadOnly, PermissionDenied, naming the field, the function and the position' -ForEach @(
        @{ Command = 'Watch-StagingSoak'; Field = 'soak'; Path = '$.soak.checks[0].query'; Run = { param($job) Watch-StagingSoak -Job $job -Duration 1s -Interval 300ms -OutputDirectory $out } }
        @{ Command = 'Test-ProdHealth'; Field = 'health'; Path = '$.health.checks[0].query'; Run = { param($job) Test-ProdHealth -Job $job -OutputDirectory $out } }
        @{ Command = 'Test-DataOpsEnvironment'; Field = 'health'; Path = '$.health.checks[0].query'; Run = { param($job) Test-DataOpsEnvironment -Job $job } }
        @{ Command = 'Invoke-Backfill -WhatIf'; Field = 'soak'; Path = '$.soak.checks[0].query'; Run = { param($job) Invoke-Backfill -Job $job -WhatIf -OutputDirectory $out } }
    ) {
        $job = New-Job "SELECT count(*) FROM pg_stat_activity WHERE pg_catalog.PG_TERMINATE_BACKEND(pid) AND pid = $victimPid" $Field

        $err = Get-ErrorRecord { & $Run $job }

        $err.FullyQualifiedErrorId | Should -BeLike 'QueryNotReadOnly,*'
        $err.CategoryInfo.Category | Should -Be 'PermissionDenied'
        $err.Exception.Message | Should -BeLike "$([WildcardPattern]::Escape($Path)) calls pg_terminate_backend (at character 56), which changes the server even in a read-only transaction*"
        Test-VictimAlive | Should -BeTrue
        Get-BackfillRun | Should -BeNullOrEmpty
    }

    It 'Invoke-DataOpsQuery -ReadOnly refuses it too, before it connects' {
        $err = Get-ErrorRecord { Invoke-DataOpsQuery -Query "SELECT pg_terminate_backend($victimPid)" -ReadOnly }

        $err.FullyQualifiedErrorId | Should -BeLike 'QueryNotReadOnly,*'
        $err.Exception.Message | Should -BeLike 'The query calls pg_terminate_backend (at character 8)*'
        Test-VictimAlive | Should -BeTrue
    }

    It 'the name as text, in a comment or in a column name is not a call, and the check runs' {
        $job = New-Job "SELECT count(*) FROM (SELECT 1 AS pg_notify_count, 'pg_terminate_backend($victimPid)' AS said) x WHERE x.pg_notify_count = 1 -- pg_cancel_backend($victimPid)" 'health'

        $report = Test-ProdHealth -Job $job -OutputDirectory $out

        $report.Checks[0].Outcome | Should -Be 'Pass'
        Test-VictimAlive | Should -BeTrue
    }
}
