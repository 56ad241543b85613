#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Every example in Get-Help, run as pasted against a sandbox: the code comes from the help itself, in a
# folder that holds the files the examples name (./examples/jobs/..., ./fix.job.json, ./score.job.json)
# and with the variables they use ($wf, $id, $prod, $staging, $stg) and $env:DATAOPS_REPORTING_CONNECTION bound to the sandbox. Examples that
# end with 'exit' run in a new pwsh process and are judged by its exit code. An example that cannot run
# here is listed below with the reason; a new example that is in neither list fails the suite.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:examples = foreach ($c in Get-Command -Module DataOps | Sort-Object Name) {
        $i = 0
        foreach ($e in @((Get-Help $c.Name).examples.example)) {
            $i++
            @{ Key = "$($c.Name)#$i"; Code = (@($e.code) -join "`n").Trim() }
        }
    }
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')

    $script:notRunnable = @{
        'Connect-DataOps#1'        = 'connects to host db1 and prompts for a credential (Get-Credential)'
        'Connect-DataOps#2'        = 'a URI for db1.example.com: there is no such server from here'
        'Connect-DataOps#3'        = 'an environment on host stg: there is no such server from here'
        'New-PrismSampleData#2'    = 'a Pester BeforeEach block: examples/pester/DataOps.Usage.Tests.ps1 runs it under Pester 5 and 6'
        'New-WorkflowSampleData#2' = 'a million executions: a scale test, measured by bench/DataOps.Bench (stats)'
        'Undo-Backfill#1'          = 'names a placeholder run id and asks for confirmation; example 2 runs the same undo'
        'Export-BackfillRollback#1' = 'names a placeholder run id; example 2 exports real runs, and the xUnit kill -9 test runs an exported script with psql'
        'Watch-StagingSoak#1'      = "watches for the job's configured six hours"
        # A run in progress in another session: the xUnit RunControlTests steer one in a second pwsh process.
        'Suspend-Backfill#1'       = 'steers a run in progress in another session (RunControlTests: suspend from a second process)'
        'Resume-Backfill#1'        = 'steers a run in progress in another session (RunControlTests: resume at a new rate)'
        'Stop-Backfill#1'          = 'steers a run in progress in another session (RunControlTests: stop with files written)'
        'Stop-Backfill#2'          = 'steers a run in progress in another session (RunControlTests: abort rolls the item in flight back)'
        'Set-BackfillThrottle#1'   = 'steers a run in progress in another session (RunControlTests: 120 items in the minute after resuming)'
        'Invoke-Backfill#6'        = 'needs a streaming standby (the help sandbox has none: ThrottleSignalUnavailable); ThrottleSignals.Tests.ps1 runs it against Start-DataOpsSandbox -Replicas 1 with replay paused'
        'Invoke-Backfill#10'       = 'joins a live run started by another process (WorkerTests runs -Join from a second pwsh process and kills one)'
        'Invoke-Backfill#7'        = 'a fleet of three databases; here eu, us and apac are one database, where three runs of one job cannot hold its lease at once (FleetTests: a fleet backfill is one run per target)'
    }

    # Per example: Setup (runs first, in the test's scope), Check (gets the output), Exit (run in a
    # new pwsh, expect this exit code), Replace (the one adaptation: shorter soak windows).
    $script:cases = @{
        # Named connections: 'reports' is the example sandbox again, from $env:DATAOPS_REPORTING_CONNECTION (set below).
        'Connect-DataOps#4'           = @{ Cleanup = { Disconnect-DataOps -Name reports }
                                           Check = { param($o) ($o | Where-Object db).db | Should -Be 'dataops'; (Get-DataOpsConnection -Name reports).Port | Should -Be $main.Port; (Get-DataOpsConnection).Name | Should -Be 'pester-help' } }
        'Disconnect-DataOps#1'        = @{ Setup = { Use-Reports }; Check = { param($o) $o | Should -BeNullOrEmpty; Get-DataOpsConnection -Name reports* | Should -BeNullOrEmpty } }
        'Disconnect-DataOps#2'        = @{ Setup = { Use-Reports }; Cleanup = { Disconnect-DataOps -Name reports }; Check = { param($o) $o | Should -BeNullOrEmpty; Get-DataOpsConnection -Name reports | Should -Not -BeNullOrEmpty } }
        'Disconnect-DataOps#3'        = @{ Check = { param($o) $o | Should -BeNullOrEmpty; Get-DataOpsConnection | Should -BeNullOrEmpty } }
        'Get-DataOpsConnection#3'     = @{ Setup = { Use-Reports }; Cleanup = { Disconnect-DataOps -Name reports }; Check = { param($o) $o.Name | Should -Contain 'reports' } }
        'Get-BackfillItem#1'          = @{ Setup = { Use-Backfilled }; Check = { param($o) @($o).Count | Should -BeGreaterThan 0; $o[0].PSTypeNames | Should -Contain 'DataOps.Engine.Backfill.BackfillItem'; $o.Status | Should -Contain 'Applied' } }
        # A failed item in the ledger of the latest backfill run, so there is something to group.
        'Get-BackfillItem#2'          = @{ Setup = { Use-Backfilled; $script:id = (Get-BackfillRun | Where-Object Kind -eq backfill | Select-Object -First 1).RunId
                                                     Invoke-TestSql $main "INSERT INTO dataops.ledger (run_id, job_name, item_key, status, error_category, error_message, attempts, finished_at) VALUES ('$id', 'results-v1.2.1', 'help-$(New-Guid)', 'failed', 'Timeout', 'statement timeout', 3, now())" | Out-Null }
                                           Check = { param($o) ($o | Where-Object Name -eq 'Timeout').Count | Should -BeGreaterThan 0 } }
        'Get-BackfillItem#3'          = @{ Setup = { Use-Backfilled; $script:id = (Get-BackfillRun | Where-Object Kind -eq backfill | Select-Object -First 1).RunId }
                                           Check = { param($o) $o.PSObject.Properties.Name | Should -Contain 'prism.profiles' } }
        'Invoke-DataOpsQuery#1'       = @{ Check = { param($o) @($o).Count | Should -Be 5; $o[0].PSObject.Properties.Name | Should -Be @('id', 'name', 'email') } }
        'Invoke-DataOpsQuery#2'       = @{ Check = { param($o) $o | Should -BeOfType [long] } }
        'Invoke-DataOpsQuery#3'       = @{ Setup = { $script:running = Invoke-TestSql $main "SELECT count(*) FROM workflow_executions WHERE status = 'running'" }
                                           Check = { param($o) $o | Should -BeNullOrEmpty; Invoke-TestSql $main "SELECT count(*) FROM workflow_executions WHERE status = 'running'" | Should -Be $running } }
        'Invoke-DataOpsQuery#4'       = @{ Check = { param($o) $o | Should -Be 'ReadOnlyViolation,DataOps.PowerShell.Cmdlets.InvokeDataOpsQueryCommand'; Invoke-TestSql $main 'SELECT count(*) FROM users' | Should -BeGreaterThan 0 } }
        # A backfill run left 'running' without its lease is what a killed process leaves: Get-BackfillRun shows it abandoned.
        'Export-BackfillRollback#2'   = @{ Setup = { Use-Backfilled; Invoke-TestSql $main "UPDATE dataops.run SET status = 'running', finished_at = NULL WHERE run_id = (SELECT run_id FROM dataops.run WHERE kind = 'backfill' ORDER BY started_at DESC LIMIT 1)" | Out-Null }
                                           Check = { param($o) $o | Should -Not -BeNullOrEmpty; $o | ForEach-Object { $_.Path | Should -Exist; $_.Items | Should -BeGreaterThan 0 } } }
        'Get-BackfillRun#1'           = @{ Setup = { Use-Backfilled }; Check = { param($o) $o.Job | Should -Contain 'results-v1.2.1' } }
        'Get-BackfillRun#2'           = @{ Setup = { Use-Backfilled }; Check = { param($o) @($o).Count | Should -BeGreaterThan 0; $o.Job | Sort-Object -Unique | Should -Be 'results-v1.2.1' } }
        'Get-BackfillRun#3'           = @{ Setup = { Use-Backfilled; $script:id = (Get-BackfillRun)[0].RunId }; Check = { param($o) $o | Should -Exist } }
        # No run is live here: the filters pass nothing on, and nothing is asked of any run.
        'Suspend-Backfill#2'          = @{ Setup = { Use-Backfilled }; Check = { param($o) $o | Should -BeNullOrEmpty; Invoke-TestSql $main 'SELECT count(*) FROM dataops.run_control_action' | Should -Be 0 } }
        'Resume-Backfill#2'           = @{ Setup = { Use-Backfilled }; Check = { param($o) $o | Should -BeNullOrEmpty; Invoke-TestSql $main 'SELECT count(*) FROM dataops.run_control_action' | Should -Be 0 } }
        'Set-BackfillThrottle#2'      = @{ Setup = { Use-Backfilled }; Check = { param($o) $o | Should -BeNullOrEmpty; Invoke-TestSql $main 'SELECT count(*) FROM dataops.run_control_action' | Should -Be 0 } }
        'Get-DataOpsConnection#1'     = @{ Check = { param($o) $o.Port | Should -Be $main.Port } }
        'Get-DataOpsConnection#2'     = @{ Check = { param($o) (Get-DataOpsConnection).Port | Should -Be $main.Port } }
        'Get-DataOpsSandbox#1'        = @{ Check = { param($o) $o.Name | Should -Contain 'pester-help' } }
        'Get-DataOpsSandbox#2'        = @{ Check = { param($o) $o.Name | Should -Contain 'pester-help' } }
        'Get-DataOpsSandbox#3'        = @{ Setup = { Start-DataOpsSandbox -Name demo-a -NoDefault | Out-Null }; Check = { param($o) Get-DataOpsSandbox -Name demo-* | Should -BeNullOrEmpty; Get-DataOpsSandbox -Name pester-help | Should -Not -BeNullOrEmpty } }
        'Get-ExecutionStats#1'        = @{ Check = { param($o) $o.Group | Should -Be 'All' } }
        'Get-ExecutionStats#2'        = @{ Check = { param($o) @($o).Count | Should -Be 1; $o.Total | Should -Be $o.Failed } }
        'Get-ExecutionStats#3'        = @{ Check = { param($o) @($o).Count | Should -BeGreaterThan 0; $o.Total | Should -Not -Contain 0 } }
        'Get-WorkflowExecution#1'     = @{ Check = { param($o) $o | Where-Object Status -notin 'failed', 'timed_out' | Should -BeNullOrEmpty } }
        'Get-WorkflowExecution#2'     = @{ Setup = { Invoke-TestSql $main "UPDATE workflow_executions SET started_at = now() - interval '7 hours' WHERE id IN (SELECT id FROM workflow_executions WHERE status = 'running' LIMIT 2)" | Out-Null }
                                           Check = { param($o) Get-WorkflowExecution -Status running -Until (Get-Date).AddHours(-6) | Should -BeNullOrEmpty } }
        'Get-WorkflowExecution#4'     = @{ Setup = { New-WorkflowExecution -WorkflowId $wf -TemporalWorkflowId order-42-input -TemporalRunId (New-Guid) -CreatedBy sample-user-1 -Input @{ orderId = 42 } | Out-Null }; Check = { param($o) @($o).Count | Should -BeGreaterThan 0; $o.InputJson | ForEach-Object { ($_ | ConvertFrom-Json).orderId | Should -Be 42 } } }
        'Get-WorkflowExecution#3'     = @{ Setup = { Use-Order42 }; Check = { param($o) $o.TemporalWorkflowId | Should -Be 'order-42' } }
        'Install-DataOpsSchema#1'     = @{ Check = { param($o) $o.Status | Sort-Object -Unique | Should -Be 'AlreadyApplied' } }
        'Install-DataOpsSchema#2'     = @{ Check = { param($o) $o.Status | Should -Not -Contain 'Applied' } }
        'Invoke-Backfill#1'           = @{ Setup = { Use-Pending }; Check = { param($o) $o.Status | Sort-Object -Unique | Should -Be 'Applied'; './runs/results-v1.2.1' | Should -Exist } }
        'Invoke-Backfill#2'           = @{ Setup = { Use-Pending }; Check = { param($o) $o | Should -BeNullOrEmpty } }
        'Invoke-Backfill#3'           = @{ Setup = { Use-Pending }; Check = { param($o) $o | Should -BeNullOrEmpty; Test-ProdHealth -Job ./fix.job.json -Quiet | Should -BeFalse } }
        'Invoke-Backfill#5'           = @{ Setup = { Use-Pending; Invoke-TestSql $main "UPDATE prism.sessions SET fc_kind = 'legacy' WHERE status = 'completed'" | Out-Null }
                                           Check = { param($o) @($o).Count | Should -BeGreaterThan 0; $o.Status | Sort-Object -Unique | Should -Be 'Applied'; $o[0].Key | Should -Match '^\["'
                                                     Invoke-TestSql $main "SELECT count(*) FROM prism.sessions WHERE fc_kind = 'legacy'" | Should -Be 0 } }
        'Invoke-Backfill#4'           = @{ Setup = { Use-Pending }; Check = { param($o) $o.Status | Sort-Object -Unique | Should -Be 'Applied'; $prom = Get-Content ./textfile/dataops_backfill.prom -Raw
                                                     $prom | Should -Match '(?m)^# TYPE dataops_backfill_items_total counter$'; $prom | Should -Match "(?m)^dataops_backfill_items_total\{job=`"results-v1.2.1`",run_id=`"[0-9a-f-]+`",status=`"applied`"\} $(@($o).Count)$"; $prom | Should -Match '(?m)^dataops_backfill_running\{[^}]*\} 0$' } }
        'New-PrismSampleData#1'       = @{ Setup = { New-PrismSampleData -Sessions 1 -Seed 1 -Reset | Out-Null }; Check = { param($o) ($o | Where-Object Sessions).Sessions | Should -Be 200 } }
        'New-PrismSampleData#3'       = @{ Check = { param($o) ($o | Out-String) | Should -Match 'Pending' } }
        'New-ScriptExecutionSeed#1'   = @{ Cleanup = { Stop-DataOpsSandbox -Name default -Remove -Confirm:$false }
                                           Check = { param($o) $s = $o | Where-Object SeedRunId; $s.Count | Should -Be 1000000; $s.ConstraintViolations | Should -Be 0 } }
        'New-ScriptExecutionSeed#2'   = @{ Check = { param($o) $o.Scheduled | Should -Be 40000 } }
        'New-ScriptExecutionSeed#3'   = @{ Check = { param($o) $o.Count | Should -Be 100000; $o.ConstraintViolations | Should -Be 0 } }
        'New-WorkflowExecution#1'     = @{ Check = { param($o) $o.Status | Should -Be 'running'; $o.CreatedBy | Should -Be 'sample-user-1'; $o.WorkflowName | Should -Be 'sample-workflow-1' } }
        'New-WorkflowExecution#2'     = @{ Check = { param($o) $e.CreatedBy | Should -Be 'sample-user-2'; (Get-WorkflowExecution -Id $e.Id).Status | Should -Be 'completed' } }
        'New-WorkflowSampleData#1'    = @{ Check = { param($o) ($o | Where-Object Group).Group | Should -Contain 'completed' } }
        'Remove-ScriptExecutionSeed#1' = @{ Setup = { New-ScriptExecutionSeed -Count 100 | Out-Null }; Check = { param($o) $o | Should -BeNullOrEmpty; Invoke-TestSql $main 'SELECT count(*) FROM script_execution' | Should -BeGreaterThan 0 } }
        'Remove-ScriptExecutionSeed#2' = @{ Check = { param($o) $o.Removed | Should -Be 1000 } }
        'Remove-WorkflowExecution#1'  = @{ Setup = { $script:kept = Invoke-TestSql $main "SELECT count(*) FROM workflow_executions WHERE created_by = 'sample-user-3'" }
                                           Check = { param($o) $o | Should -BeNullOrEmpty; $kept | Should -BeGreaterThan 0; Invoke-TestSql $main "SELECT count(*) FROM workflow_executions WHERE created_by = 'sample-user-3'" | Should -Be $kept } }
        'Remove-WorkflowExecution#2'  = @{ Setup = { $script:id = (New-WorkflowExecution -WorkflowId $wf -TemporalWorkflowId 'to-remove' -TemporalRunId (New-Guid) -CreatedBy sample-user-1).Id }
                                           Check = { param($o) $o.Id | Should -Be $id; Get-WorkflowExecution -Id $id -ErrorAction SilentlyContinue | Should -BeNullOrEmpty } }
        'Set-WorkflowExecution#1'     = @{ Setup = { Use-Order42 }; Check = { param($o) $o.Status | Should -Be 'completed'; $o.ActivitiesExecuted | Should -Be 7 } }
        'Set-WorkflowExecution#2'     = @{ Setup = { Invoke-TestSql $main "UPDATE workflow_executions SET started_at = now() - interval '7 hours' WHERE id IN (SELECT id FROM workflow_executions WHERE status = 'running' LIMIT 2)" | Out-Null }
                                           Check = { param($o) Get-WorkflowExecution -Status running -Until (Get-Date).AddHours(-6) | Should -BeNullOrEmpty } }
        'Start-DataOpsSandbox#1'      = @{ Cleanup = { Stop-DataOpsSandbox -Name default -Remove -Confirm:$false }; Check = { param($o) $o.Name | Should -Be 'default'; (Get-DataOpsConnection).Port | Should -Be $o.Port } }
        'Start-DataOpsSandbox#2'      = @{ Cleanup = { Stop-DataOpsSandbox -Name demo -Remove -Confirm:$false }; Check = { param($o) $o.Status | Should -Contain 'Applied' } }
        # An earlier 'ci' with data in it: -Reset -Force deletes it without asking (this pwsh is -NonInteractive).
        'Start-DataOpsSandbox#3'      = @{ Setup = { Start-DataOpsSandbox -Name ci -NoDefault | Out-Null; Set-Content (Join-Path $env:DATAOPS_SANDBOX_ROOT 'ci/earlier.txt') 'earlier data' }
                                           Cleanup = { Stop-DataOpsSandbox -Name ci -Remove -Confirm:$false }
                                           Check = { param($o) "$($sb.Action)" | Should -Be 'Created'; Join-Path $env:DATAOPS_SANDBOX_ROOT 'ci/earlier.txt' | Should -Not -Exist } }
        # A sandbox with a streaming replica whose replay the example pauses: it lags from then on.
        'Start-DataOpsSandbox#4'      = @{ Cleanup = { Stop-DataOpsSandbox -Name lagtest -Remove -Confirm:$false }
                                           Check = { param($o) "$($sb.Replicas[0].Status)" | Should -Be 'Running'
                                                     Invoke-DataOpsQuery 'SELECT pg_is_wal_replay_paused()' -Connection $sb.Replicas[0].Connection -As Scalar -ReadOnly | Should -BeTrue } }
        'Stop-DataOpsSandbox#1'       = @{ Setup = { Start-DataOpsSandbox -Name default -NoDefault | Out-Null }; Cleanup = { Stop-DataOpsSandbox -Name default -Remove -Confirm:$false }
                                           Check = { param($o) "$((Get-DataOpsSandbox | Where-Object Name -eq default).Status)" | Should -Be 'Stopped' } }
        'Stop-DataOpsSandbox#2'       = @{ Setup = { $script:fileRoot = $env:DATAOPS_SANDBOX_ROOT; $env:DATAOPS_SANDBOX_ROOT = Join-Path $work 'spare-root'; Start-DataOpsSandbox -Name spare -NoDefault | Out-Null }
                                           Cleanup = { $env:DATAOPS_SANDBOX_ROOT = $fileRoot }
                                           Check = { param($o) Get-DataOpsSandbox | Should -BeNullOrEmpty } }
        'Test-DataOpsEnvironment#1'   = @{ Check = { param($o) $o | Where-Object { -not $_.Passed } | Should -BeNullOrEmpty } }
        'Test-DataOpsEnvironment#2'   = @{ Exit = 0 }
        'Test-ProdHealth#1'           = @{ Check = { param($o) $o.JobName | Should -Be 'results-v1.2.1' } }
        # After a plan ran, nothing is pending; -Quiet would also judge the job's health checks, which read the random sample's
        # telemetry and access rows (a failed access in the sample made the example fail now and then).
        'Test-ProdHealth#2'           = @{ Setup = { Use-Pending }; Check = { param($o) $o.Status | Sort-Object -Unique | Should -Be 'Applied'; (Test-ProdHealth -Job ./fix.job.json).PendingCount | Should -Be 0 } }
        'Test-ProdHealth#3'           = @{ Setup = { Use-Pending }; Exit = 2 }
        # Fleets: eu, us and apac (and staging-eu, staging-us) are environments that all name the example sandbox.
        'Test-ProdHealth#4'           = @{ Setup = { Use-Pending }; Check = { param($o) @($o).Count | Should -Be 3; $o.Target | Sort-Object | Should -Be @('eu', 'pester-help', 'us'); $o.Status | Sort-Object -Unique | Should -Be 'ActionNeeded' } }
        'Test-ProdHealth#5'           = @{ Setup = { Use-Pending }; Exit = 2 }
        'Test-DataOpsEnvironment#3'   = @{ Check = { param($o) $o | Should -BeNullOrEmpty } }
        'Get-ExecutionStats#4'        = @{ Check = { param($o) ($o | Out-String) | Should -Match 'apac' } }
        'Install-DataOpsSchema#3'     = @{ Check = { param($o) $o.Status | Sort-Object -Unique | Should -Be 'AlreadyApplied'; $o.Target | Sort-Object -Unique | Should -Be @('apac', 'eu', 'us') } }
        'Invoke-Backfill#8'           = @{ Setup = { Use-Pending }; Check = { param($o) $o.Status | Should -Contain 'Applied'; (Test-ProdHealth -Job ./fix.job.json).PendingCount | Should -Be 0 } }
        'Invoke-Backfill#9'           = @{ Setup = { Use-Pending }; Check = { param($o) $o.Status | Sort-Object -Unique | Should -Be 'Applied'; (Test-ProdHealth -Job ./fix.job.json).PendingCount | Should -Be 0 } }
        'Watch-StagingSoak#4'         = @{ Replace = @{ '2h' = '2s'; '5m' = '1s' }; Check = { param($o) ($o | Out-String) | Should -Match 'staging-eu'; ($o | Out-String) | Should -Match 'staging-us' } }
        'Undo-Backfill#2'             = @{ Setup = { Use-Pending; $script:fresh = @(Invoke-Backfill -Job ./fix.job.json -ItemsPerMinute 0 -OutputDirectory ./runs -WarningAction SilentlyContinue) }
                                           Check = { param($o) $fresh.Count | Should -BeGreaterThan 0; ($o | Where-Object Key -in $fresh.Key).Status | Should -Be ($fresh | ForEach-Object { 'Restored' }) } }
        'Watch-StagingSoak#3'         = @{ Replace = @{ '10m' = '2s'; '1m' = '500ms' }; Check = { param($o) $o | Select-Object -First 1 | Should -BeOfType [string]; $samples.Count | Should -BeGreaterThan 0; $samples.Outcome | Should -BeIn 'Pass', 'Fail', 'NoData', 'Error'; @($report).Count | Should -Be 1; $report.Verdict | Should -BeIn 'Go', 'NoGo', 'Inconclusive' } }
        'Watch-StagingSoak#2'         = @{ Replace = @{ '90m' = '2s'; '30s' = '1s' }; Check = { param($o) "$($report.Verdict)" | Should -BeIn 'Go', 'NoGo', 'Inconclusive'; $report.ReportPath | Should -Exist } }
    }

    # A private sandbox root: examples start 'default' and 'demo', and one stops every sandbox it lists.
    $script:work = New-TestFolder
    $script:savedRoot = $env:DATAOPS_SANDBOX_ROOT
    $env:DATAOPS_SANDBOX_ROOT = Join-Path $work 'sandboxes'
    $script:main = Start-DataOpsSandbox -Name pester-help
    Install-DataOpsSchema | Out-Null
    New-WorkflowSampleData -Users 6 -Workflows 3 -Executions 120 -Seed 9 | Out-Null
    $script:wf = [guid](Invoke-TestSql $main 'SELECT id FROM workflows ORDER BY name LIMIT 1')
    New-Item -ItemType Directory (Join-Path $work 'examples/jobs') | Out-Null
    foreach ($copy in 'examples/jobs/results-v1.2.1.job.json', 'fix.job.json', 'score.job.json') { Copy-Item $SampleJob (Join-Path $work $copy) }
    Copy-Item (Join-Path (Split-Path $SampleJob) 'legacy-fc-sweep.job.json') (Join-Path $work 'examples/jobs')
    $script:savedReporting = $env:DATAOPS_REPORTING_CONNECTION
    $env:DATAOPS_REPORTING_CONNECTION = Get-SandboxConnectionString $main
    # The fleet examples' environments: every one names the example sandbox.
    $script:fleetEnvironments = 'EU', 'US', 'APAC', 'STAGING_EU', 'STAGING_US'
    foreach ($name in $fleetEnvironments) { Set-Item "env:DATAOPS_$($name)_CONNECTION" (Get-SandboxConnectionString $main) }
    function Use-Reports {
        if (-not (Get-DataOpsConnection -Name reports*)) { Connect-DataOps -Environment reporting -Name reports -NoDefault | Out-Null }
    }

    # A new seed each time (item keys come from the seed, and the ledger skips keys already applied),
    # with one or two items pending: the examples run at the job's own rate of 20 items a minute.
    function Use-Pending {
        do { $r = New-PrismSampleData -Sessions 10 -PendingShare 0.2 -Seed (Get-Random -Maximum 1000000) -Reset -Force }
        until ($r.Pending -ge 1 -and $r.Pending -le 2)
    }
    function Use-Backfilled {
        if (-not (Get-BackfillRun | Where-Object Kind -eq backfill)) {
            Use-Pending
            Invoke-Backfill -Job ./fix.job.json -ItemsPerMinute 0 -OutputDirectory ./runs -WarningAction SilentlyContinue | Out-Null
        }
    }
    function Use-Order42 {
        if (-not (Get-WorkflowExecution -TemporalWorkflowId order-42 -ErrorAction SilentlyContinue | Where-Object Status -eq running)) {
            New-WorkflowExecution -WorkflowId $wf -TemporalWorkflowId order-42 -TemporalRunId (New-Guid) -CreatedBy sample-user-1 | Out-Null
        }
    }
}

AfterAll {
    $env:DATAOPS_REPORTING_CONNECTION = $savedReporting
    foreach ($name in $fleetEnvironments) { Remove-Item "env:DATAOPS_$($name)_CONNECTION" -ErrorAction SilentlyContinue }
    Get-DataOpsSandbox | Stop-DataOpsSandbox -Remove -Confirm:$false
    $env:DATAOPS_SANDBOX_ROOT = $savedRoot
    Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue
}

Describe 'Help examples run as pasted' {
    BeforeEach {
        Push-Location $work
        # The session's default is the example sandbox again, whatever the previous example did.
        $script:main = Start-DataOpsSandbox -Name pester-help -WarningAction SilentlyContinue
        $script:prod = $script:staging = $script:stg = $script:apac = $main.Connection
    }

    AfterEach {
        Pop-Location
    }

    It '<Key>: <Code>' -ForEach $examples {
        if ($notRunnable.ContainsKey($Key)) {
            # Not run here; the reason is part of the suite so a reviewer sees it.
            $notRunnable[$Key] | Should -Not -BeNullOrEmpty
            return
        }
        $case = $cases[$Key]
        $case | Should -Not -BeNullOrEmpty -Because "every help example is either run here or listed with a reason ($Key is new)"
        if ($case.Setup) { . $case.Setup }
        $code = $Code
        if ($case.Replace) { foreach ($r in $case.Replace.GetEnumerator()) { $code = $code.Replace($r.Key, $r.Value) } }
        try {
            if ($case.ContainsKey('Exit')) {
                $prelude = "`$ErrorActionPreference = 'Stop'; Import-Module '$ModuleManifest'; Start-DataOpsSandbox -Name pester-help -WarningAction SilentlyContinue | Out-Null`n"
                $dll = Join-Path $PSHOME 'pwsh.dll'
                $exe = (Get-Process -Id $PID).Path
                $argv = @('-NoProfile', '-NonInteractive', '-Command', $prelude + $code)
                if ($exe -notlike '*pwsh*') { $argv = @($dll) + $argv }
                & $exe @argv | Out-Null
                $LASTEXITCODE | Should -Be $case.Exit
            }
            else {
                $ErrorActionPreference = 'Stop'
                $output = . ([scriptblock]::Create($code))
                & $case.Check $output
            }
        }
        finally {
            if ($case.Cleanup) { . $case.Cleanup }
        }
    }
}
