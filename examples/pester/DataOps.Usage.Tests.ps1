#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }
<#
    How a team uses DataOps inside its own Pester tests in CI: a throwaway sandbox per run, seeded data,
    and assertions on the health check and the soak verdict. Run with: Invoke-Pester ./examples/pester
    (CI runs it under Pester 5.7.1 and 6.2.0: dotnet pwsh ./build.ps1 -Task Pester.)
#>

BeforeAll {
    # The repository's build when run from a clone, else DataOps installed by name.
    $built = Join-Path $PSScriptRoot '../../out/DataOps/DataOps.psd1'
    Import-Module $(if (Test-Path $built) { $built } else { 'DataOps' }) -ErrorAction Stop
    # -Reset asks before deleting a sandbox an earlier run left behind, and CI cannot answer: -Force says yes.
    $script:sandbox = Start-DataOpsSandbox -Name pester-usage -Reset -Force
    Install-DataOpsSchema -Component Prism, ScriptExecution | Out-Null
    $script:job = Join-Path $PSScriptRoot '../jobs/results-v1.2.1.job.json'
    $script:out = Join-Path ([IO.Path]::GetTempPath()) 'dataops-pester'
}

AfterAll {
    Stop-DataOpsSandbox -Name pester-usage -Remove -Confirm:$false
}

Describe 'results-v1.2.1 backfill' {
    BeforeEach {
        New-PrismSampleData -Sessions 50 -Seed 42 -PendingShare 0.3 -Reset | Out-Null
    }

    It 'finds pending sessions before the backfill' {
        Test-ProdHealth -Job $job -OutputDirectory $out -Quiet | Should -BeFalse
    }

    It 'rehearses cleanly' {
        $dry = Invoke-Backfill -Job $job -DryRun -ItemsPerMinute 0 -OutputDirectory $out
        $dry.Status | Should -Not -Contain 'Failed'
    }

    It 'is healthy and soaks Go after the backfill' {
        Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out -Confirm:$false | Out-Null
        Test-ProdHealth -Job $job -OutputDirectory $out -Quiet | Should -BeTrue
        $report = Watch-StagingSoak -Job $job -Duration 2s -Interval 1s -OutputDirectory $out | Select-Object -Last 1
        $report.Verdict | Should -Be 'Go'
    }
}

Describe 'script_execution seeding' {
    It 'loads the exact split with no violations' {
        $seed = New-ScriptExecutionSeed -Count 10000 -ScheduledRatio 0.25 -Seed 7
        $seed.Scheduled | Should -Be 2500
        $seed.ConstraintViolations | Should -Be 0
        $seed | Remove-ScriptExecutionSeed -Confirm:$false | Out-Null
    }
}
