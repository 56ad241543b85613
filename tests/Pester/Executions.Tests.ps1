#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Execution tracking: New/Get/Set/Remove-WorkflowExecution, Get-ExecutionStats, New-WorkflowSampleData.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:sb = Start-DataOpsSandbox -Name pester-exec -Reset -Force
    Install-DataOpsSchema -Component WorkflowExecution | Out-Null
    $script:sample = New-WorkflowSampleData -Users 5 -Workflows 4 -Executions 300 -Seed 21
    Invoke-TestSql $sb "INSERT INTO users (id, email, name) VALUES ('u-pester', 'u-pester@example.test', 'Pester')" | Out-Null
    $script:wf = [guid](Invoke-TestSql $sb "SELECT id FROM workflows ORDER BY name LIMIT 1")
}

AfterAll {
    Stop-DataOpsSandbox -Name pester-exec -Remove -Confirm:$false
}

Describe 'New-WorkflowSampleData' {
    It 'returns a WorkflowSampleResult with what it wrote and the seed' {
        $sample.PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Executions.WorkflowSampleResult'
        $sample.Executions | Should -Be 300
        $sample.Seed | Should -Be 21
        Invoke-TestSql $sb 'SELECT count(*) FROM workflow_executions' | Should -Be 300
    }
}

Describe 'New-WorkflowExecution' {
    It 'records a running execution with its input as JSON and the workflow name joined in' {
        $e = New-WorkflowExecution -WorkflowId $wf -TemporalWorkflowId 'pester-1' -TemporalRunId 'r1' -CreatedBy 'u-pester' -Input @{ orderId = 42 }
        $e.PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Executions.WorkflowExecution'
        $e.Status | Should -Be 'running'
        $e.WorkflowName | Should -Not -BeNullOrEmpty
        $e.Input.orderId | Should -Be 42
        ($e.InputJson | ConvertFrom-Json).orderId | Should -Be 42
        $e.StartedAt | Should -BeOfType [DateTimeOffset]
    }

    It '-WhatIf records nothing' {
        New-WorkflowExecution -WorkflowId $wf -TemporalWorkflowId 'pester-whatif' -TemporalRunId 'r1' -CreatedBy 'u-pester' -WhatIf | Should -BeNullOrEmpty
        Get-WorkflowExecution -TemporalWorkflowId 'pester-whatif' -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'an unknown user is an error naming the user' {
        $err = Get-ErrorRecord { New-WorkflowExecution -WorkflowId $wf -TemporalWorkflowId 'x' -TemporalRunId 'r' -CreatedBy 'nobody-here' -ErrorAction Stop }
        $err.FullyQualifiedErrorId | Should -BeLike 'UserNotFound,*'
        $err.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err.Exception.Message | Should -Match 'nobody-here'
    }
}

Describe 'Get-WorkflowExecution' {
    It 'filters by status and user, newest first, paged in SQL with -First/-Skip' {
        $all = @(Get-WorkflowExecution -Status completed, failed)
        $all.Status | Sort-Object -Unique | Should -Be @('completed', 'failed')
        $sorted = $all.StartedAt | Sort-Object -Descending
        $all.StartedAt | Should -Be $sorted
        $page = @(Get-WorkflowExecution -Status completed, failed -Skip 5 -First 10)
        $page.Count | Should -Be 10
        $page[0].Id | Should -Be $all[5].Id
    }

    It '-IncludeTotalCount writes the total first' {
        $out = @(Get-WorkflowExecution -First 2 -IncludeTotalCount)
        $out.Count | Should -Be 3
        $out[0].ToString() | Should -Match '301|302'
    }

    It 'an unknown -Id is a non-terminating ObjectNotFound error and the rest still come back' {
        $known = (Get-WorkflowExecution -First 1).Id
        $got = @(Get-WorkflowExecution -Id ([guid]::NewGuid()), $known -ErrorVariable errs -ErrorAction SilentlyContinue)
        $got.Id | Should -Be $known
        $errs.Count | Should -Be 1
        $errs[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'an unknown status is refused' {
        { Get-WorkflowExecution -Status exploded -ErrorAction Stop } | Should -Throw
    }
}

Describe 'Set-WorkflowExecution' {
    It 'completes by -TemporalWorkflowId with -PassThru, filling completed_at and the duration' {
        $done = Set-WorkflowExecution -TemporalWorkflowId 'pester-1' -Status completed -Output @{ total = 99.5 } -ActivitiesExecuted 7 -PassThru
        $done.Status | Should -Be 'completed'
        $done.CompletedAt | Should -Not -BeNullOrEmpty
        $done.DurationMs | Should -BeGreaterOrEqual 0
        $done.ActivitiesExecuted | Should -Be 7
        $done.Output.total | Should -Be 99.5
        ($done.OutputJson | ConvertFrom-Json).total | Should -Be 99.5
    }

    It 'refuses to reopen a finished execution, even with -Force (InvalidStatusTransition), and -AllowFinalStatusChange allows it' {
        $err = Get-ErrorRecord { Set-WorkflowExecution -TemporalWorkflowId 'pester-1' -Status running -ErrorAction Stop }
        $err.FullyQualifiedErrorId | Should -BeLike 'InvalidStatusTransition,*'
        $err.CategoryInfo.Category | Should -Be 'InvalidOperation'
        $err.Exception.Message | Should -Match 'completed'
        $err.Exception.Message | Should -Match '-AllowFinalStatusChange'
        $forced = Get-ErrorRecord { Set-WorkflowExecution -TemporalWorkflowId 'pester-1' -Status running -Force -ErrorAction Stop }
        $forced.FullyQualifiedErrorId | Should -BeLike 'InvalidStatusTransition,*'
        (Get-WorkflowExecution -TemporalWorkflowId 'pester-1').Status | Should -Be 'completed'
        (Set-WorkflowExecution -TemporalWorkflowId 'pester-1' -Status running -AllowFinalStatusChange -PassThru).Status | Should -Be 'running'
    }

    It 'takes executions from the pipeline: running ones become timed_out' {
        $running = @(Get-WorkflowExecution -Status running)
        $running.Count | Should -BeGreaterThan 1
        $running | Set-WorkflowExecution -Status timed_out -ErrorMessage 'stale'
        Get-WorkflowExecution -Status running | Should -BeNullOrEmpty
        (Get-WorkflowExecution -Id $running[0].Id).ErrorMessage | Should -Be 'stale'
    }

    It '-WhatIf changes nothing' {
        $e = Get-WorkflowExecution -Status completed -First 1
        $e | Set-WorkflowExecution -Status failed -AllowFinalStatusChange -WhatIf
        (Get-WorkflowExecution -Id $e.Id).Status | Should -Be 'completed'
    }
}

Describe 'Remove-WorkflowExecution' {
    It 'removes from the pipeline with -Confirm:$false and -PassThru returns what was deleted' {
        $victims = @(Get-WorkflowExecution -Status failed -First 3)
        $gone = @($victims | Remove-WorkflowExecution -Confirm:$false -PassThru)
        $gone.Id | Should -Be $victims.Id
        Get-WorkflowExecution -Id $victims.Id -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It '-WhatIf deletes nothing' {
        $before = Invoke-TestSql $sb 'SELECT count(*) FROM workflow_executions'
        Get-WorkflowExecution -Status cancelled | Remove-WorkflowExecution -WhatIf
        Invoke-TestSql $sb 'SELECT count(*) FROM workflow_executions' | Should -Be $before
    }

    It 'declares ConfirmImpact High, so it would ask by default' {
        (Get-Command Remove-WorkflowExecution).ImplementingType.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false)[0].ConfirmImpact | Should -Be 'High'
    }
}

Describe 'Get-ExecutionStats' {
    It 'totals by status agree with the table, computed in one call' {
        $stats = @(Get-ExecutionStats -GroupBy Status)
        $stats[0].PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Executions.ExecutionStats'
        ($stats | Measure-Object Total -Sum).Sum | Should -Be ([int](Invoke-TestSql $sb 'SELECT count(*) FROM workflow_executions'))
        ($stats | Where-Object Group -eq 'completed').Completed | Should -Be ([int](Invoke-TestSql $sb "SELECT count(*) FROM workflow_executions WHERE status = 'completed'"))
    }

    It 'one All row without -GroupBy, with a success rate between 0 and 1' {
        $all = Get-ExecutionStats
        $all.Group | Should -Be 'All'
        $all.SuccessRate | Should -BeGreaterThan 0
        $all.SuccessRate | Should -BeLessOrEqual 1
        $all.P95DurationMs | Should -BeGreaterOrEqual $all.P50DurationMs
    }
}
