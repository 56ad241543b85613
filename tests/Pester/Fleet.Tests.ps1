#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Fleets (issue 18, item 3): -Connection with several databases, as an admin uses it, and the runbook's
# fleet form as CI runs it (pwsh -NonInteractive -File, from another folder): one exit code for the fleet.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:work = New-TestFolder
    $script:a = Start-DataOpsSandbox -Name pester-fleet-a -Reset -Force -NoDefault
    $script:b = Start-DataOpsSandbox -Name pester-fleet-b -Reset -Force -NoDefault
    Install-DataOpsSchema -Connection $a, $b -Component Prism -Force | Out-Null
    New-PrismSampleData -Connection $a -Sessions 40 -Seed 4 -PendingShare 0.4 -Force | Out-Null
    New-PrismSampleData -Connection $b -Sessions 40 -Seed 4 -PendingShare 0 -Force | Out-Null
    $listener = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, 0)
    $listener.Start(); $script:deadPort = $listener.LocalEndpoint.Port; $listener.Stop()
    $script:dead = "Host=127.0.0.1;Port=$deadPort;Database=dataops;Username=postgres;Password=fleet-secret-x9;Timeout=3"
}

AfterAll {
    Get-DataOpsSandbox | Where-Object Name -like 'pester-fleet-*' | Stop-DataOpsSandbox -Remove -Confirm:$false
    Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue
}

Describe 'Test-ProdHealth on a fleet' {
    It 'returns ActionNeeded, Healthy and ConnectionFailed for three targets in one call, each naming its target' {
        $rows = Test-ProdHealth -Job $SampleJob -Connection $a, $b, $dead -OutputDirectory $work -ErrorVariable failed -ErrorAction SilentlyContinue
        $status = @{}; $rows | ForEach-Object { $status[$_.Target] = $_.Status }
        $status['pester-fleet-a'] | Should -Be 'ActionNeeded'
        $status['pester-fleet-b'] | Should -Be 'Healthy'
        $status["127.0.0.1:$deadPort/dataops"] | Should -Be 'ConnectionFailed'
        $failed.Count | Should -Be 1
        $failed[0].FullyQualifiedErrorId | Should -BeLike 'ConnectionFailed,*'
        $failed[0].TargetObject | Should -Be "127.0.0.1:$deadPort/dataops"
        ($rows | Out-String -Width 80) + ($failed | Out-String -Width 80) | Should -Not -Match 'fleet-secret-x9'
        ($rows | Out-String -Width 80) -split "`n" | ForEach-Object { $_.TrimEnd().Length | Should -BeLessOrEqual 80 }
    }

    It 'gives one -Quiet answer for the whole fleet' {
        Test-ProdHealth -Job $SampleJob -Connection $a, $b -OutputDirectory $work -Quiet | Should -BeFalse
        Test-ProdHealth -Job $SampleJob -Connection $b, $b.Connection -OutputDirectory $work -Quiet | Should -BeTrue
    }
}

Describe 'examples/runbook.ps1 -Fleet' {
    It 'exits 2 for a fleet with a target on a dead port, after making the one that needed the backfill healthy' {
        $run = Invoke-NewPwsh @('-File', (Join-Path $RepoRoot 'examples/runbook.ps1'), '-Fleet', '-OutputDirectory', (Join-Path $work 'runbook')) -TimeoutSeconds 240
        $run.ExitCode | Should -Be 2 -Because "$($run.Out)`n$($run.Err)"
        $run.Out | Should -Match 'runbook-a\s+ActionNeeded'
        $run.Out | Should -Match 'runbook-b\s+Healthy'
        $run.Out | Should -Match 'ConnectionFailed'
        $run.Out | Should -Match 'Fleet healthy after the plans: False'
    }
}
