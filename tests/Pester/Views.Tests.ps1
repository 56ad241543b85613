#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Every output type's default view, rendered as an admin's console would (Out-String -Width 80, the
# width of redirected output, and 120): every header label whole on the header line, every column there,
# no line wider than the console.

BeforeDiscovery {
    $script:cases = foreach ($width in 80, 120) {
        foreach ($type in 'DataOpsSandbox', 'DataOpsConnection', 'SchemaMigration', 'ScriptExecutionSeedResult', 'SeedRun',
            'WorkflowExecution', 'ExecutionStats', 'WorkflowSampleResult', 'PrismSampleResult', 'PreflightCheck',
            'BackfillItemResult', 'BackfillItem', 'BackfillRun', 'BackfillRunControl', 'SoakSample', 'SoakCheckSummary', 'SoakReport', 'ProdHealthReport', 'QueryResult') {
            @{ Type = $type; Width = $width }
        }
    }
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:out = New-TestFolder
    $sb = Start-DataOpsSandbox -Name pester-views -Reset -Force
    $schema = @(Install-DataOpsSchema)
    $seed = New-ScriptExecutionSeed -Count 2000 -Seed 3
    $wfSample = New-WorkflowSampleData -Executions 200 -Seed 4
    $prism = New-PrismSampleData -Sessions 30 -Seed 5
    $applied = @(Invoke-Backfill -Job $SampleJob -ItemsPerMinute 0 -OutputDirectory $out -WarningAction SilentlyContinue)
    # A run live elsewhere (another host holds its lease), so there is a run to steer and one shown running.
    $live = New-Guid
    Invoke-TestSql $sb "INSERT INTO dataops.run (run_id, kind, job_name, host_name) VALUES ('$live', 'backfill', 'live-elsewhere', 'pester-elsewhere'); INSERT INTO dataops.job_lease (job_name, run_id, host_name, process_id, expires_at) VALUES ('live-elsewhere', '$live', 'pester-elsewhere', 1, now() + interval '1 hour')" | Out-Null
    $control = Set-BackfillThrottle -RunId $live -ItemsPerMinute 120
    $soak = @(Watch-StagingSoak -Job $SampleJob -Duration 1s -Interval 500ms -OutputDirectory $out -WarningAction SilentlyContinue)
    $script:objects = @{
        DataOpsSandbox            = Get-DataOpsSandbox -Name pester-views
        DataOpsConnection         = $sb.Connection
        SchemaMigration           = $schema
        ScriptExecutionSeedResult = $seed
        SeedRun                   = $seed | Remove-ScriptExecutionSeed -Confirm:$false
        WorkflowExecution         = Get-WorkflowExecution -First 5
        ExecutionStats            = Get-ExecutionStats -GroupBy Status
        WorkflowSampleResult      = $wfSample
        PrismSampleResult         = $prism
        PreflightCheck            = Test-DataOpsEnvironment -Job $SampleJob
        BackfillItemResult        = $applied
        BackfillItem              = $applied | Get-BackfillItem
        BackfillRun               = Get-BackfillRun
        BackfillRunControl        = $control
        SoakSample                = $soak | Select-Object -SkipLast 1
        SoakCheckSummary          = $soak[-1].Checks
        SoakReport                = $soak[-1]
        ProdHealthReport          = Test-ProdHealth -Job $SampleJob -OutputDirectory $out
        QueryResult               = Invoke-DataOpsQuery 'UPDATE prism.sessions SET status = status' -As NonQuery
    }
}

AfterAll {
    Stop-DataOpsSandbox -Name pester-views -Remove -Confirm:$false
    Remove-Item -Recurse -Force $out -ErrorAction SilentlyContinue
}

Describe 'Default views' {
    It '<Type> at width <Width>: every label whole, every column present, nothing wider than the console' -ForEach $cases {
        $items = @($objects[$Type])
        $items.Count | Should -BeGreaterThan 0
        $typeName = $items[0].PSObject.TypeNames[0]
        $typeName | Should -BeLike "DataOps.Engine.*.$Type"
        $labels = Get-ViewLabels $typeName
        $labels.Count | Should -BeGreaterThan 1
        $text = $items | Out-String -Width $Width
        $lines = $text -split "`r?`n" | ForEach-Object TrimEnd
        $lines | Where-Object Length -gt $Width | Should -BeNullOrEmpty

        $isList = ([xml](Get-Content -Raw (Join-Path (Split-Path $ModuleManifest) 'DataOps.Format.ps1xml'))).Configuration.ViewDefinitions.View |
            Where-Object { $_.ViewSelectedBy.TypeName -eq $typeName } | Select-Object -First 1 | ForEach-Object { [bool]$_.ListControl }
        if ($isList) {
            foreach ($label in $labels) {
                $lines | Where-Object { $_ -match "^$([regex]::Escape($label))\s+:( |$)" } | Should -Not -BeNullOrEmpty -Because "the list shows '$label'"
            }
            return
        }

        # The table header: the line above the first line of dashes. Each run of dashes underlines one
        # label, exactly as long as the label; a squeezed column shows a cut or wrapped label instead.
        $dash = [array]::FindIndex([string[]]$lines, [Predicate[string]] { param($l) $l -match '^[ -]*-[ -]*$' })
        $dash | Should -BeGreaterThan 0
        $header = $lines[$dash - 1]
        $shown = foreach ($run in [regex]::Matches($lines[$dash], '-+')) {
            $header.Substring($run.Index, [Math]::Min($run.Length, [Math]::Max(0, $header.Length - $run.Index))).Trim()
        }
        $shown | Should -Be $labels
        # The first row follows right under the dashes (no wrapped header continuation lines).
        $lines[$dash + 1] | Should -Not -BeNullOrEmpty
    }
}

Describe 'List views' {
    It 'ExecutionStats by day in Format-List: the day as yyyy-MM-dd and durations as TimeSpans, within 80 columns' {
        $text = Get-ExecutionStats -GroupBy Day | Select-Object -First 1 | Format-List | Out-String -Width 80
        $lines = $text -split "`r?`n" | ForEach-Object TrimEnd
        $lines | Where-Object Length -gt 80 | Should -BeNullOrEmpty
        $lines | Where-Object { $_ -match '^Day\s+: \d{4}-\d{2}-\d{2}$' } | Should -Not -BeNullOrEmpty
        $lines | Where-Object { $_ -match '^AverageDuration\s+: \d{2}:\d{2}:\d{2}' } | Should -Not -BeNullOrEmpty
    }
}
