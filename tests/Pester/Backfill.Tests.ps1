#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# The backfill lifecycle as an admin runs it: preflight, rehearse, apply, files, ledger, soak, health, undo.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:sb = Start-DataOpsSandbox -Name pester-backfill -Reset -Force
    Install-DataOpsSchema -Component Prism | Out-Null
    $script:out = New-TestFolder
    $script:sample = New-PrismSampleData -Sessions 40 -Seed 8 -PendingShare 0.3
}

AfterAll {
    Stop-DataOpsSandbox -Name pester-backfill -Remove -Confirm:$false
    Remove-Item -Recurse -Force $out -ErrorAction SilentlyContinue
}

Describe 'New-PrismSampleData' {
    It 'reports what it wrote, with pending sessions for the backfill' {
        $sample.PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Prism.PrismSampleResult'
        $sample.Sessions | Should -Be 40
        $sample.Pending | Should -BeGreaterThan 0
        $sample.Seed | Should -Be 8
    }

    It 'the same sample again without -Reset is SampleDataExists and writes nothing' {
        $before = Invoke-TestSql $sb 'SELECT count(*) FROM prism.sessions'
        $err = Get-ErrorRecord { New-PrismSampleData -Sessions 40 -Seed 8 }
        $err.FullyQualifiedErrorId | Should -Be 'SampleDataExists,DataOps.PowerShell.Cmdlets.NewPrismSampleDataCommand'
        $err.CategoryInfo.Category | Should -Be 'InvalidOperation'
        $err.Exception.Message | Should -Match '-Reset'
        Invoke-TestSql $sb 'SELECT count(*) FROM prism.sessions' | Should -Be $before
    }
}

Describe 'Test-DataOpsEnvironment' {
    It 'returns one passing PreflightCheck per check' {
        $checks = @(Test-DataOpsEnvironment -Job $SampleJob)
        $checks[0].PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Backfill.PreflightCheck'
        $checks.Name | Should -Contain 'Connection'
        $checks.Name | Should -Contain 'JobFile'
        $checks | Where-Object { -not $_.Passed } | Should -BeNullOrEmpty
    }
}

Describe 'Invoke-Backfill' {
    It 'a missing job file is JobFileNotFound, ObjectNotFound, with the path as target' {
        $missing = Join-Path $out 'nope.job.json'
        $err = Get-ErrorRecord { Invoke-Backfill -Job $missing -OutputDirectory $out }
        $err.FullyQualifiedErrorId | Should -Be 'JobFileNotFound,DataOps.PowerShell.Cmdlets.InvokeBackfillCommand'
        $err.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err.TargetObject | Should -Be $missing
    }

    It 'an invalid job file is JobFileInvalid with the JSON path of the problem, before anything runs' {
        $bad = Join-Path $out 'bad.job.json'
        $job = Get-Content -Raw $SampleJob | ConvertFrom-Json -AsHashtable
        $job['throttle']['itemsPerMinute'] = -5
        $job | ConvertTo-Json -Depth 20 | Set-Content $bad
        $err = Get-ErrorRecord { Invoke-Backfill -Job $bad -OutputDirectory $out }
        $err.FullyQualifiedErrorId | Should -BeLike 'JobFileInvalid,*'
        $err.CategoryInfo.Category | Should -Be 'InvalidData'
        $err.Exception.Message | Should -Match 'itemsPerMinute'
        Get-BackfillRun | Should -BeNullOrEmpty
    }

    It '-WhatIf lists nothing to the pipeline and changes no row' {
        Invoke-Backfill -Job $SampleJob -OutputDirectory $out -WhatIf | Should -BeNullOrEmpty
        (Test-ProdHealth -Job $SampleJob -OutputDirectory $out).PendingCount | Should -Be $sample.Pending
    }

    It '-DryRun rehearses every pending item and rolls it back' {
        $dry = @(Invoke-Backfill -Job $SampleJob -DryRun -ItemsPerMinute 0 -OutputDirectory $out -WarningAction SilentlyContinue)
        $dry.Count | Should -Be $sample.Pending
        $dry.Status | Sort-Object -Unique | Should -Be 'WouldApply'
        (Test-ProdHealth -Job $SampleJob -OutputDirectory $out).PendingCount | Should -Be $sample.Pending
    }

    It 'applies every item, one BackfillItemResult each, and says on the host (not as a warning) that the run halted for review' {
        $script:applied = @(Invoke-Backfill -Job $SampleJob -ItemsPerMinute 0 -OutputDirectory $out -WarningVariable warnings -InformationVariable info -InformationAction SilentlyContinue)
        $applied.Count | Should -Be $sample.Pending
        $applied[0].PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Backfill.BackfillItemResult'
        $applied.Status | Sort-Object -Unique | Should -Be 'Applied'
        $applied.RunId | Sort-Object -Unique | Should -HaveCount 1
        $warnings | Should -BeNullOrEmpty
        $halted = @($info | Where-Object { "$($_.MessageData)" -match 'halted for review' })
        $halted | Should -HaveCount 1
        "$($halted[0].MessageData)" | Should -Match 'backfill_summary.md'
        $halted[0].Tags | Should -Contain 'PSHOST'
    }

    It 'writes the summary, the execution results and a psql rollback script into the run folder' {
        $run = Join-Path $out 'results-v1.2.1' $applied[0].RunId
        Join-Path $run 'backfill_summary.md' | Should -Exist
        $results = Get-Content -Raw (Join-Path $run 'backfill_logs/execution_results.json') | ConvertFrom-Json
        $results | Should -Not -BeNullOrEmpty
        $rollback = @(Get-ChildItem (Join-Path $run 'backfill_logs') -Filter 'rollback_*.sql')
        $rollback.Count | Should -Be 1
        Get-Content -Raw $rollback[0].FullName | Should -Match 'BEGIN'
    }

    It 'a re-run skips what the ledger shows as applied' {
        $again = @(Invoke-Backfill -Job $SampleJob -ItemsPerMinute 0 -OutputDirectory $out -WarningAction SilentlyContinue)
        $again | Where-Object Status -eq 'Applied' | Should -BeNullOrEmpty
    }
}

Describe 'Run logs' {
    It 'writes a run log file only for cmdlets that change data, pruning old ones by $env:DATAOPS_LOG_RETENTION_DAYS' {
        $logs = New-TestFolder
        $old = Join-Path $logs 'Invoke-Backfill-20200101-000000-0123456789ab.json'
        Set-Content -LiteralPath $old -Value '{}'
        (Get-Item -LiteralPath $old).LastWriteTimeUtc = [datetime]::UtcNow.AddDays(-10)
        $saved = $env:DATAOPS_LOG_DIR, $env:DATAOPS_LOG_RETENTION_DAYS
        try {
            $env:DATAOPS_LOG_DIR = $logs
            $env:DATAOPS_LOG_RETENTION_DAYS = '5'
            Test-ProdHealth -Job $SampleJob -OutputDirectory $out | Out-Null
            @(Get-ChildItem -LiteralPath $logs -Filter 'Test-ProdHealth-*').Count | Should -Be 0
            Test-Path -LiteralPath $old | Should -BeTrue

            Invoke-Backfill -Job $SampleJob -OutputDirectory $out -DryRun -ItemsPerMinute 0 -WarningAction SilentlyContinue | Out-Null
            @(Get-ChildItem -LiteralPath $logs -Filter 'Invoke-Backfill-*').Count | Should -Be 1
            Test-Path -LiteralPath $old | Should -BeFalse

            $env:DATAOPS_LOG_RETENTION_DAYS = 'soon'
            $err = Get-ErrorRecord { Invoke-Backfill -Job $SampleJob -OutputDirectory $out -DryRun -ItemsPerMinute 0 }
            $err.FullyQualifiedErrorId | Should -BeLike 'LogRetentionInvalid,*'
            $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
            $err.Exception.Message | Should -Match "'soon'"
        }
        finally {
            $env:DATAOPS_LOG_DIR, $env:DATAOPS_LOG_RETENTION_DAYS = $saved
        }
    }
}

Describe 'Get-BackfillRun' {
    It 'returns the runs newest first with ledger counts, filtered by job and run id' {
        $runs = @(Get-BackfillRun -JobName results-v1.2.1)
        $runs[0].PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Backfill.BackfillRun'
        $one = Get-BackfillRun -RunId $applied[0].RunId
        $one.Applied | Should -Be $sample.Pending
        $one.Kind | Should -Be 'backfill'
        $runs.StartedAt | Should -Be ($runs.StartedAt | Sort-Object -Descending)
    }
}

Describe 'Watch-StagingSoak' {
    It 'streams SoakSample objects and ends with a Go SoakReport and its Markdown report' {
        $soak = @(Watch-StagingSoak -Job $SampleJob -Duration 2s -Interval 1s -OutputDirectory $out -WarningAction SilentlyContinue)
        $report = $soak[-1]
        $report.PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Soak.SoakReport'
        "$($report.Verdict)" | Should -Be 'Go'
        $soak[0].PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Soak.SoakSample'
        $soak.Count - 1 | Should -Be ($report.Rounds * @($report.Checks).Count)
        Get-Content -Raw $report.ReportPath | Should -Match 'Verdict: Go'
    }

    It 'shows the final report with its own view after the samples table, at 80 columns' {
        $text = Watch-StagingSoak -Job $SampleJob -Duration 1s -Interval 500ms -OutputDirectory $out | Out-String -Width 80
        $text | Should -Not -Match 'DataOps\.Engine\.Soak\.SoakCheckSummary'
        $text | Should -Match '(?m)^Verdict\s+: Go'
        $text | Should -Match '\d+ pass, \d+ fail, \d+ no data, \d+ error'
        $text | Should -Match '(?m)^ReportPath\s+: '
        ($text -split "`n" | Where-Object { $_.TrimEnd().Length -gt 80 }) | Should -BeNullOrEmpty
    }

    It 'keeps its last report in $DataOpsLastSoak and reports Go on the host, not as a warning' {
        $report = Watch-StagingSoak -Job $SampleJob -Duration 1s -Interval 500ms -OutputDirectory $out -WarningVariable warnings -InformationVariable info -InformationAction SilentlyContinue | Select-Object -Last 1
        $DataOpsLastSoak.ReportPath | Should -Be $report.ReportPath
        $warnings | Should -BeNullOrEmpty
        "$($info.MessageData)" | Should -Match 'verdict Go'
    }

    It 'takes -Duration and -Interval as 90s/500ms strings' {
        $p = (Get-Command Watch-StagingSoak).Parameters['Interval']
        $p | Should -Not -BeNullOrEmpty
        { Watch-StagingSoak -Job $SampleJob -Duration 1s -Interval 500ms -OutputDirectory $out -WarningAction SilentlyContinue | Out-Null } | Should -Not -Throw
    }

    It 'refuses a window below its limits with SoakWindowInvalid' {
        $err = Get-ErrorRecord { Watch-StagingSoak -Job $SampleJob -Duration 1s -Interval 10ms -OutputDirectory $out }
        $err.FullyQualifiedErrorId | Should -BeLike 'SoakWindowInvalid,*'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
    }
}

Describe 'Test-ProdHealth and Undo-Backfill' {
    It 'healthy after the backfill: -Quiet is $true, and the report has no plan' {
        Test-ProdHealth -Job $SampleJob -OutputDirectory $out -Quiet | Should -BeTrue
        $h = Test-ProdHealth -Job $SampleJob -OutputDirectory $out
        $h.PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Health.ProdHealthReport'
        $h.Healthy | Should -BeTrue
        $h.PlanPath | Should -BeNullOrEmpty
        $h.ReportPath | Should -Exist
    }

    It 'Undo-Backfill -WhatIf restores nothing' {
        Undo-Backfill -RunId $applied[0].RunId -WhatIf | Should -BeNullOrEmpty
        Test-ProdHealth -Job $SampleJob -OutputDirectory $out -Quiet | Should -BeTrue
    }

    It 'Get-BackfillRun | Undo-Backfill restores every item, and health then finds them pending with a plan' {
        $undone = @(Get-BackfillRun -RunId $applied[0].RunId | Undo-Backfill -Confirm:$false)
        $undone.Count | Should -Be $sample.Pending
        $undone.Status | Sort-Object -Unique | Should -Be 'Restored'
        $script:health = Test-ProdHealth -Job $SampleJob -OutputDirectory $out
        $health.Healthy | Should -BeFalse
        $health.PendingCount | Should -Be $sample.Pending
        $health.PlanPath | Should -Exist
    }

    It 'the health report pipes into Invoke-Backfill, which applies exactly the planned items' {
        $fixed = @($health | Invoke-Backfill -ItemsPerMinute 0 -OutputDirectory $out -Force -WarningAction SilentlyContinue)
        $fixed.Status | Sort-Object -Unique | Should -Be 'Applied'
        $fixed.Count | Should -Be $sample.Pending
        Test-ProdHealth -Job $SampleJob -OutputDirectory $out -Quiet | Should -BeTrue
    }

    It 'an unknown run is RunNotFound, ObjectNotFound, with the id as target' {
        $id = [guid]::NewGuid()
        $err = Get-ErrorRecord { Undo-Backfill -RunId $id -Confirm:$false }
        $err.FullyQualifiedErrorId | Should -Be 'RunNotFound,DataOps.PowerShell.Cmdlets.UndoBackfillCommand'
        $err.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        "$($err.TargetObject)" | Should -Be "$id"
    }
}

Describe 'Tables with json columns' {
    BeforeAll {
        # A jsonb 'null' and an SQL NULL look alike in to_jsonb, and json text is rewritten by it: the
        # flip swaps the two and rewrites the json as jsonb would.
        Invoke-TestSql $sb @'
CREATE TABLE public.docs (id int PRIMARY KEY, b jsonb, j json, v int NOT NULL DEFAULT 0);
INSERT INTO public.docs VALUES (1, 'null', '{"b":1,  "a":2, "a":3}'), (2, NULL, 'null'), (3, '{"k": null}', NULL);
'@ | Out-Null
        $script:jsonJob = Join-Path $out 'json-flip.job.json'
        @{
            version = 1; name = 'json-flip'
            items   = @{ discover = 'SELECT id::text AS key FROM docs WHERE v = 0 ORDER BY id' }
            capture = @(@{ table = 'docs'; where = 'id = @key::int' })
            steps   = @(@{ name = 'flip'; sql = "UPDATE docs SET b = CASE WHEN b IS NULL THEN 'null'::jsonb WHEN b = 'null'::jsonb THEN NULL ELSE b END, j = j::jsonb::json, v = 1 WHERE id = @key::int" })
            verify  = 'SELECT v = 1 FROM docs WHERE id = @key::int'
        } | ConvertTo-Json -Depth 5 | Set-Content $jsonJob
        $script:jsonRows = "SELECT string_agg(format('%s:%s:%s:%s', id, b IS NULL, jsonb_typeof(b), j::text), ' ' ORDER BY id) FROM docs"
        $script:jsonBefore = Invoke-TestSql $sb $jsonRows
    }

    It 'Undo-Backfill puts back the jsonb null, the SQL NULL and the json text as they were' {
        $run = @(Invoke-Backfill -Job $jsonJob -ItemsPerMinute 0 -OutputDirectory $out -WarningAction SilentlyContinue)
        $run.Status | Sort-Object -Unique | Should -Be 'Applied'
        $run.RowsChanged | Sort-Object -Unique | Should -Be 1
        Invoke-TestSql $sb $jsonRows | Should -Not -Be $jsonBefore
        (Get-BackfillItem -RunId $run[0].RunId -IncludeImages)[0].BeforeImageJson | Should -Match '"dataops:json": \{"b": "null"'

        $undone = @(Undo-Backfill -RunId $run[0].RunId -Confirm:$false)

        $undone.Status | Sort-Object -Unique | Should -Be 'Restored'
        Invoke-TestSql $sb $jsonRows | Should -Be $jsonBefore
        Invoke-TestSql $sb 'SELECT jsonb_typeof(b) FROM docs WHERE id = 1' | Should -Be 'null'
    }

    It 'a Test-ProdHealth plan of the table runs, and a row whose null state changed since is Drifted for Undo-Backfill' {
        $h = Test-ProdHealth -Job $jsonJob -OutputDirectory $out
        $h.PendingCount | Should -Be 3
        $fixed = @($h | Invoke-Backfill -ItemsPerMinute 0 -OutputDirectory $out -Force -WarningAction SilentlyContinue)
        $fixed.Status | Sort-Object -Unique | Should -Be 'Applied'
        Invoke-TestSql $sb "UPDATE docs SET b = 'null' WHERE id = 1 AND b IS NULL" | Out-Null

        $undo = @(Undo-Backfill -RunId $fixed[0].RunId -Confirm:$false)

        ($undo | Where-Object Key -EQ '1').Status | Should -Be 'Drifted'
        ($undo | Where-Object Key -NE '1').Status | Sort-Object -Unique | Should -Be 'Restored'
        Invoke-TestSql $sb 'SELECT v FROM docs WHERE id = 1' | Should -Be 1
    }
}
