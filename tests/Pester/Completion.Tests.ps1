#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# What Tab and the pipeline do for an admin used to dbatools: -Job completes job files and any path,
# ids complete from the database, files from Get-ChildItem bind to -Job, Get-BackfillRun -Job/-JobName,
# piped executions summarised together.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:sb = Start-DataOpsSandbox -Name pester-completion -Reset -Force
    Install-DataOpsSchema -Component Prism, ScriptExecution, WorkflowExecution | Out-Null
    New-PrismSampleData -Sessions 20 -Seed 5 -PendingShare 0.3 | Out-Null
    New-WorkflowSampleData -Users 3 -Workflows 2 -Executions 40 -Seed 9 | Out-Null
    $script:seed = New-ScriptExecutionSeed -Count 200 -Seed 3
    $script:out = New-TestFolder
    $script:run = @(Invoke-Backfill -Job $SampleJob -ItemsPerMinute 0 -OutputDirectory $out -WarningAction SilentlyContinue)[0].RunId

    # A folder as an admin keeps one: a job, the schema for the editor, a package.json, notes.
    $script:tree = New-TestFolder
    $script:jobs = Join-Path $tree 'jobs'
    New-Item -ItemType Directory (Join-Path $jobs 'sub') | Out-Null
    Copy-Item $SampleJob (Join-Path $jobs 'fix.job.json')
    Copy-Item (Join-Path $RepoRoot 'module/schemas/backfill-job.schema.json') $jobs
    '{ "name": "tooling", "version": "1.0.0" }' | Set-Content (Join-Path $jobs 'package.json')
    'notes' | Set-Content (Join-Path $jobs 'notes.txt')

    function Get-Completion([string] $Line) {
        @((TabExpansion2 -inputScript $Line -cursorColumn $Line.Length).CompletionMatches)
    }
}

AfterAll {
    Pop-Location -ErrorAction SilentlyContinue
    Stop-DataOpsSandbox -Name pester-completion -Remove -Confirm:$false
    Remove-Item -Recurse -Force $out, $tree -ErrorAction SilentlyContinue
}

Describe '-Job completion' {
    BeforeEach { Push-Location (Join-Path $jobs 'sub') }
    AfterEach { Pop-Location }

    It '-Job ../ offers the job file first, then the folder''s other paths, never the schema or non-job JSON' {
        $m = Get-Completion 'Test-ProdHealth -Job ../'
        $m[0].CompletionText | Should -Be '../fix.job.json'
        $m.CompletionText | Should -Contain '../notes.txt'
        $m.CompletionText | Should -Contain '../sub'
        $m.CompletionText | Should -Not -Contain '../backfill-job.schema.json'
        $m.CompletionText | Should -Not -Contain '../package.json'
        @($m | Where-Object CompletionText -eq '../fix.job.json').Count | Should -Be 1
    }

    It 'an absolute path completes like any path, job files first' {
        $m = Get-Completion "Invoke-Backfill -Job $jobs/"
        $m[0].CompletionText | Should -Be "$jobs/fix.job.json"
        $m.CompletionText | Should -Contain "$jobs/sub"
        $m.ToolTip | Should -Not -Contain (Join-Path $jobs 'backfill-job.schema.json')
    }

    It '~/ completes from the home folder' {
        $homeJobs = Join-Path $HOME "dataops-pester-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
        New-Item -ItemType Directory $homeJobs | Out-Null
        try {
            Copy-Item $SampleJob (Join-Path $homeJobs 'home.job.json')
            $leaf = Split-Path $homeJobs -Leaf
            $m = Get-Completion "Watch-StagingSoak -Job ~/$leaf/"
            $m[0].ToolTip | Should -Be (Join-Path $homeJobs 'home.job.json')
            $m[0].CompletionText | Should -BeLike "*$leaf/home.job.json"
            (Get-Completion 'Watch-StagingSoak -Job ~/').ToolTip | Should -Contain $homeJobs
        }
        finally {
            Remove-Item -Recurse -Force $homeJobs
        }
    }

    It 'a job file behind hundreds of other JSON files is still offered (no count cap)' {
        $many = Join-Path $tree 'many'
        New-Item -ItemType Directory (Join-Path $many 'deeper') | Out-Null
        1..600 | ForEach-Object { '{ "n": 1 }' | Set-Content (Join-Path $many "data-$_.json") }
        Copy-Item $SampleJob (Join-Path $many 'deeper/late.job.json')
        Push-Location $many
        try {
            (Get-Completion 'Test-DataOpsEnvironment -Job late').CompletionText | Should -Be './deeper/late.job.json'
        }
        finally {
            Pop-Location
        }
    }
}

Describe 'Id completion from the database' {
    It 'completes -RunId with the runs in the session''s database, described' {
        $m = Get-Completion 'Get-BackfillItem -RunId '
        $m.CompletionText | Should -Contain "$run"
        ($m | Where-Object CompletionText -eq "$run").ToolTip | Should -Match 'backfill of results-v1\.2\.1'
        (Get-Completion "Undo-Backfill -RunId $("$run".Substring(0, 6))").CompletionText | Should -Contain "$run"
        (Get-Completion 'Export-BackfillRollback -RunId ').CompletionText | Should -Contain "$run"
    }

    It 'completes seed run ids, users, workflow ids, Temporal ids and job names' {
        (Get-Completion 'Remove-ScriptExecutionSeed -SeedRunId ').CompletionText | Should -Contain "$($seed.SeedRunId)"
        $users = @(Invoke-TestSql $sb 'SELECT id FROM users ORDER BY id')
        (Get-Completion 'Get-ExecutionStats -CreatedBy ').CompletionText | Should -Be $users
        $workflows = @(Invoke-TestSql $sb 'SELECT id FROM workflows')
        (Get-Completion 'Get-WorkflowExecution -WorkflowId ').CompletionText | Sort-Object | Should -Be ($workflows | Sort-Object)
        $temporal = Invoke-TestSql $sb 'SELECT temporal_workflow_id FROM workflow_executions ORDER BY started_at DESC LIMIT 1'
        (Get-Completion 'Set-WorkflowExecution -TemporalWorkflowId ').CompletionText | Should -Contain $temporal
        (Get-Completion 'Get-BackfillRun -JobName res').CompletionText | Should -Be 'results-v1.2.1'
    }

    It 'uses the -Connection already typed, and offers nothing (no error, no hang) where it cannot read' {
        # A database without the DataOps schema, and a server that is gone.
        Connect-DataOps -ConnectionString ((Get-SandboxConnectionString $sb) -replace 'Database=dataops', 'Database=postgres') -Name pester-bare -NoDefault | Out-Null
        $gone = Start-DataOpsSandbox -Name pester-completion-gone -NoDefault
        Connect-DataOps -ConnectionString (Get-SandboxConnectionString $gone) -Name pester-gone -NoDefault | Out-Null
        Stop-DataOpsSandbox -Name pester-completion-gone -Remove -Confirm:$false
        $errors = $Error.Count
        try {
            (Get-Completion 'Get-BackfillItem -Connection pester-bare -RunId ') | Should -BeNullOrEmpty
            $clock = [Diagnostics.Stopwatch]::StartNew()
            (Get-Completion 'Get-BackfillItem -Connection pester-gone -RunId ') | Should -BeNullOrEmpty
            (Get-Completion 'Get-ExecutionStats -Connection pester-gone -CreatedBy ') | Should -BeNullOrEmpty
            $clock.Elapsed.TotalSeconds | Should -BeLessThan 6
            $Error.Count | Should -Be $errors
            # The default connection still answers.
            (Get-Completion 'Get-BackfillItem -RunId ').CompletionText | Should -Contain "$run"
        }
        finally {
            Disconnect-DataOps -Name pester-bare, pester-gone
        }
    }
}

Describe 'Files from Get-ChildItem bind to -Job' {
    It 'Get-ChildItem *.job.json | Test-ProdHealth checks each file' {
        $two = New-TestFolder
        Copy-Item $SampleJob (Join-Path $two 'a.job.json')
        Copy-Item $SampleJob (Join-Path $two 'b.job.json')
        $reports = @(Get-ChildItem (Join-Path $two '*.job.json') | Test-ProdHealth -OutputDirectory $out)
        $reports.Count | Should -Be 2
        $reports.JobName | Should -Be @('results-v1.2.1', 'results-v1.2.1')
        @(Get-ChildItem (Join-Path $two '*.job.json') | Test-DataOpsEnvironment | Where-Object Name -eq JobFile).Count | Should -Be 2
        Remove-Item -Recurse -Force $two
    }

    It '-LiteralPath is another name for -Job' {
        (Test-ProdHealth -LiteralPath $SampleJob -OutputDirectory $out).JobName | Should -Be 'results-v1.2.1'
        foreach ($name in 'Test-ProdHealth', 'Watch-StagingSoak', 'Invoke-Backfill', 'Test-DataOpsEnvironment') {
            (Get-Command $name).Parameters['Job'].Aliases | Should -Contain 'PSPath'
        }
    }
}

Describe 'Invoke-Backfill and a piped health report' {
    It 'shows no -Healthy parameter, and a healthy report piped still means nothing to do' {
        (Get-Command Invoke-Backfill).Parameters.Keys | Should -Not -Contain 'Healthy'
        $report = Test-ProdHealth -Job $SampleJob -OutputDirectory $out
        $report.Healthy | Should -BeTrue
        $result = $report | Invoke-Backfill -OutputDirectory $out -InformationVariable info -InformationAction SilentlyContinue -WarningVariable w
        $result | Should -BeNullOrEmpty
        "$info" | Should -Match 'nothing to do'
        $w | Should -BeNullOrEmpty
    }
}

Describe 'Get-BackfillRun -Job and -JobName' {
    It '-Job takes the job file and reads its name' {
        $runs = @(Get-BackfillRun -Job $SampleJob)
        $runs.RunId | Should -Contain $run
        $runs.Job | Sort-Object -Unique | Should -Be 'results-v1.2.1'
    }

    It '-JobName takes names with wildcards, and binds from a health report' {
        (Get-BackfillRun -JobName 'results-*').RunId | Should -Contain $run
        Get-BackfillRun -JobName 'nomatch-*' | Should -BeNullOrEmpty
        (Test-ProdHealth -Job $SampleJob -OutputDirectory $out | Get-BackfillRun).RunId | Should -Contain $run
    }

    It 'an old script passing the name to -Job still works, with a warning to use -JobName' {
        $runs = @(Get-BackfillRun -Job results-v1.2.1 -WarningVariable w -WarningAction SilentlyContinue)
        $runs.RunId | Should -Contain $run
        "$w" | Should -Match '-JobName'
    }

    It 'a -Job path that does not exist is a clear error naming it' {
        $missing = Join-Path $out 'missing.job.json'
        $err = Get-ErrorRecord { Get-BackfillRun -Job $missing }
        $err.FullyQualifiedErrorId | Should -BeLike 'JobFileNotFound,*'
        $err.TargetObject | Should -Be $missing
    }
}

Describe 'Get-WorkflowExecution | Get-ExecutionStats' {
    It 'summarises the piped executions as one result' {
        $failed = @(Get-WorkflowExecution -Status failed)
        $failed.Count | Should -BeGreaterThan 1
        $stats = @($failed | Get-ExecutionStats)
        $stats.Count | Should -Be 1
        $stats[0].Total | Should -Be $failed.Count
        $stats[0].Failed | Should -Be $failed.Count
        $first = @(Get-WorkflowExecution -First 7 | Get-ExecutionStats -GroupBy Status)
        ($first | Measure-Object Total -Sum).Sum | Should -Be 7
    }
}
