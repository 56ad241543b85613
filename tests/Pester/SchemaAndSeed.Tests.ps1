#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Install-DataOpsSchema, New-ScriptExecutionSeed and Remove-ScriptExecutionSeed from the user's side.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:sb = Start-DataOpsSandbox -Name pester-schema -Reset -Force
}

AfterAll {
    Stop-DataOpsSandbox -Name pester-schema -Remove -Confirm:$false
}

Describe 'Install-DataOpsSchema' {
    It '-WhatIf applies nothing' {
        Install-DataOpsSchema -Component ScriptExecution -WhatIf | Out-Null
        Invoke-TestSql $sb "SELECT count(*) FROM pg_tables WHERE tablename = 'script_execution'" | Should -Be 0
    }

    It 'installs a component with Core first, one SchemaMigration per script' {
        $applied = @(Install-DataOpsSchema -Component ScriptExecution)
        $applied[0].PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Schema.SchemaMigration'
        "$($applied[0].Component)" | Should -Be 'Core'
        $applied.Component | Should -Contain 'ScriptExecution'
        $applied.Status | Sort-Object -Unique | Should -Be 'Applied'
        Invoke-TestSql $sb "SELECT count(*) FROM pg_tables WHERE tablename = 'script_execution'" | Should -Be 1
    }

    It 'is idempotent: a second run reports every script AlreadyApplied' {
        $again = @(Install-DataOpsSchema -Component ScriptExecution)
        $again.Status | Sort-Object -Unique | Should -Be 'AlreadyApplied'
    }

    It 'an unknown component is a parameter binding error naming the valid ones' {
        $err = Get-ErrorRecord { Install-DataOpsSchema -Component Bogus }
        $err.FullyQualifiedErrorId | Should -BeLike '*,DataOps.PowerShell.Cmdlets.InstallDataOpsSchemaCommand'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err.Exception.Message | Should -Match 'WorkflowExecution'
    }

    It 'completes component names on Tab' {
        $line = 'Install-DataOpsSchema -Component Scr'
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Contain 'ScriptExecution'
    }
}

Describe 'New-ScriptExecutionSeed and Remove-ScriptExecutionSeed' {
    It 'loads the exact scheduled split with no violations and reports its speed' {
        $seed = New-ScriptExecutionSeed -Count 5000 -ScheduledRatio 0.2 -Seed 11 -Since '2026-01-01' -Until '2026-02-01'
        $seed.PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Seeding.ScriptExecutionSeedResult'
        $seed.Count | Should -Be 5000
        $seed.Scheduled | Should -Be 1000
        $seed.Triggered | Should -Be 4000
        $seed.ConstraintViolations | Should -Be 0
        $seed.RowsPerSecond | Should -BeGreaterThan 0
        Invoke-TestSql $sb 'SELECT count(*) FROM script_execution WHERE schedule_id IS NOT NULL' | Should -Be 1000
    }

    It 'is deterministic for a -Seed and window: the same rows again after a remove' {
        $first = Invoke-TestSql $sb "SELECT md5(string_agg(concat_ws(':', schedule_id, triggering_event_id, created_at), ',' ORDER BY id)) FROM script_execution"
        Remove-ScriptExecutionSeed -Confirm:$false | Out-Null
        New-ScriptExecutionSeed -Count 5000 -ScheduledRatio 0.2 -Seed 11 -Since '2026-01-01' -Until '2026-02-01' | Out-Null
        Invoke-TestSql $sb "SELECT md5(string_agg(concat_ws(':', schedule_id, triggering_event_id, created_at), ',' ORDER BY id)) FROM script_execution" | Should -Be $first
    }

    It 'Remove -WhatIf deletes nothing' {
        Remove-ScriptExecutionSeed -WhatIf | Out-Null
        Invoke-TestSql $sb 'SELECT count(*) FROM script_execution' | Should -Be 5000
    }

    It 'pipes a seed result into Remove-ScriptExecutionSeed, which removes exactly its rows' {
        Invoke-TestSql $sb "INSERT INTO script_execution (script_reference_id, script_version_id, triggering_event_id) SELECT script_reference_id, script_version_id, triggering_event_id FROM script_execution WHERE triggering_event_id IS NOT NULL LIMIT 1" | Out-Null
        $seed = New-ScriptExecutionSeed -Count 300 -Seed 5
        $removed = $seed | Remove-ScriptExecutionSeed -Confirm:$false
        $removed.PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Seeding.SeedRun'
        $removed.SeedRunId | Should -Be $seed.SeedRunId
        $removed.Removed | Should -Be 300
        Invoke-TestSql $sb 'SELECT count(*) FROM script_execution' | Should -Be 5001
    }

    It 'refuses -Count 0 before touching the database' {
        $err = Get-ErrorRecord { New-ScriptExecutionSeed -Count 0 }
        $err.FullyQualifiedErrorId | Should -BeLike 'ParameterArgumentValidationError,*NewScriptExecutionSeedCommand'
        $err.CategoryInfo.Category | Should -Be 'InvalidData'
    }

    It 'refuses a window that ends before it starts with SeedWindowInvalid' {
        $err = Get-ErrorRecord { New-ScriptExecutionSeed -Count 10 -Since '2026-02-01' -Until '2026-01-01' }
        $err.FullyQualifiedErrorId | Should -BeLike 'SeedWindowInvalid,*'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
    }

    It 'New-ScriptExecutionSeed -WhatIf loads nothing' {
        $before = Invoke-TestSql $sb 'SELECT count(*) FROM script_execution'
        New-ScriptExecutionSeed -Count 100 -WhatIf | Should -BeNullOrEmpty
        Invoke-TestSql $sb 'SELECT count(*) FROM script_execution' | Should -Be $before
    }
}
