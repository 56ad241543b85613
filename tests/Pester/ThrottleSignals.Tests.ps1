#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Throttle signals as an admin meets them: a sandbox with a streaming standby, replay paused on it, and
# Invoke-Backfill -MaxReplicaLag 1MB -Verbose saying why it waits, then finishing once replay resumes.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:sb = Start-DataOpsSandbox -Name pester-signals -Replicas 1 -Reset -Force
    Install-DataOpsSchema -Component Prism | Out-Null
    $script:out = New-TestFolder
    $script:sample = New-PrismSampleData -Sessions 30 -Seed 17 -PendingShare 0.5
    $script:standby = [pscustomobject]@{ Name = $sb.Name; BinDirectory = $sb.BinDirectory; Port = $sb.Replicas[0].Port }
}

AfterAll {
    Invoke-TestSql $standby 'SELECT pg_wal_replay_resume()' -ErrorAction SilentlyContinue | Out-Null
    Stop-DataOpsSandbox -Name pester-signals -Remove -Confirm:$false
    Remove-Item -Recurse -Force $out -ErrorAction SilentlyContinue
}

Describe 'Invoke-Backfill -MaxReplicaLag' {
    It 'bad limits are SignalLimitInvalid / SignalCheckIntervalOutOfRange, InvalidArgument, with the value, before anything runs' {
        $err = Get-ErrorRecord { Invoke-Backfill -Job $SampleJob -MaxReplicaLag 'lots' -OutputDirectory $out }
        $err.FullyQualifiedErrorId | Should -Be 'SignalLimitInvalid,DataOps.PowerShell.Cmdlets.InvokeBackfillCommand'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err.TargetObject | Should -Be 'lots'
        $err = Get-ErrorRecord { Invoke-Backfill -Job $SampleJob -MaxReplicaLag 16MB -SignalCheckInterval 10ms -OutputDirectory $out }
        $err.FullyQualifiedErrorId | Should -BeLike 'SignalCheckIntervalOutOfRange,*'
        Get-BackfillRun | Should -BeNullOrEmpty
    }

    It 'Test-DataOpsEnvironment samples a job file''s signals: the standby is 0 bytes behind' {
        $job = Join-Path $out 'signals.job.json'
        $j = Get-Content -Raw $SampleJob | ConvertFrom-Json -AsHashtable
        $j['throttle']['signals'] = @(@{ kind = 'replicaLag'; limit = '16MB' }, @{ kind = 'retainedWal'; limit = '1GB'; checkInterval = '500ms' })
        $j | ConvertTo-Json -Depth 20 | Set-Content $job
        $deadline = (Get-Date).AddSeconds(30)
        do {
            $checks = @(Test-DataOpsEnvironment -Job $job)
            $lag = $checks | Where-Object Name -eq 'Signal replica lag'
        } until ($lag.Detail -match 'now 0 B' -or (Get-Date) -gt $deadline)
        $lag.Passed | Should -BeTrue
        $lag.Detail | Should -Match "now 0 B \($([regex]::Escape($sb.Replicas[0].Name))\), limit 16.0 MB"
        ($checks | Where-Object Name -eq 'Signal retained WAL').Passed | Should -BeTrue
        $checks | Where-Object { -not $_.Passed } | Should -BeNullOrEmpty
    }

    It 'with replay paused on the standby, -Verbose says it waits for replica lag; after resume every item applies and Get-BackfillRun shows the time waited' {
        Invoke-TestSql $standby 'SELECT pg_wal_replay_pause()' | Out-Null
        # WAL the standby receives but does not replay: a few MB past the 1MB limit before the run starts.
        Invoke-TestSql $sb "CREATE TABLE filler (v text); INSERT INTO filler SELECT repeat('x', 500) FROM generate_series(1, 8000)" | Out-Null
        $uri = "postgresql://postgres:$([uri]::EscapeDataString((Get-SandboxPassword $sb)))@127.0.0.1:$($standby.Port)/dataops"
        $psql = Join-Path $sb.BinDirectory 'psql'
        # Another session resumes replay a few seconds into the run, as an operator would.
        $resume = Start-ThreadJob { Start-Sleep -Seconds 6; & $using:psql -X -q -d $using:uri -c 'SELECT pg_wal_replay_resume()' }
        try {
            $results = @(Invoke-Backfill -Job $SampleJob -MaxReplicaLag 1MB -SignalCheckInterval 250ms -ItemsPerMinute 0 -OutputDirectory $out -Verbose -WarningAction SilentlyContinue 4>&1)
        }
        finally {
            $resume | Wait-Job -Timeout 60 | Receive-Job -ErrorAction SilentlyContinue | Out-Null
            $resume | Remove-Job -Force
            Invoke-TestSql $standby 'SELECT pg_wal_replay_resume()' | Out-Null
        }

        $verbose = @($results | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object Message)
        $items = @($results | Where-Object { $_ -isnot [System.Management.Automation.VerboseRecord] })
        $waiting = @($verbose | Where-Object { $_ -match 'waits \(replica lag\)' })
        $waiting | Should -Not -BeNullOrEmpty
        $waiting[0] | Should -Match "standby `"?$([regex]::Escape($sb.Replicas[0].Name))`"? is [\d.]+ MB behind \(limit 1.0 MB\)"
        $verbose -join "`n" | Should -Match 'goes on after waiting'

        $items.Count | Should -Be $sample.Pending
        $items.Status | Sort-Object -Unique | Should -Be 'Applied'
        (Test-ProdHealth -Job $SampleJob -OutputDirectory $out).PendingCount | Should -Be 0

        $run = Get-BackfillRun -RunId $items[0].RunId
        $run.Status | Should -Be 'completed'
        $run.ThrottledTime['replica lag'].TotalSeconds | Should -BeGreaterThan 1
        $run.Throttled | Should -BeGreaterThan ([timespan]::FromSeconds(1))
        $run.Signals[0].Reason | Should -Be 'replica lag'
        $run.Signals[0].Limit | Should -Be '1.0 MB'
        $run.Signals[0].MaxValue | Should -BeGreaterThan 1MB
        Get-Content -Raw (Join-Path $out 'results-v1.2.1' $run.RunId 'backfill_summary.md') | Should -Match '\| Throttled \| [\d.]+ s \(replica lag: [\d.]+ s\) \|'
    }
}
