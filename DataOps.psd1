@{
    RootModule           = 'DataOps.PowerShell.dll'
    ModuleVersion        = '0.1.0'
    GUID                 = '3f6c1f0e-8a4b-4f7e-9a53-2d1c6b0e7a41'
    Author               = 'DataOps.PowerShell contributors'
    CompanyName          = 'DataOps.PowerShell'
    Copyright            = '(c) DataOps.PowerShell contributors. MIT licence.'
    Description          = 'Safe, fast PostgreSQL data operations for admins: guarded backfills with rollback, read-only soaks, production health checks, high-volume seeding and execution tracking, with a one-command local sandbox.'
    PowerShellVersion    = '7.4'
    CompatiblePSEditions = @('Core')
    FormatsToProcess     = @('DataOps.Format.ps1xml')
    CmdletsToExport      = @(
        'Start-DataOpsSandbox'
        'Stop-DataOpsSandbox'
        'Get-DataOpsSandbox'
        'Connect-DataOps'
        'Get-DataOpsConnection'
        'Install-DataOpsSchema'
        'New-ScriptExecutionSeed'
        'Remove-ScriptExecutionSeed'
        'New-WorkflowExecution'
        'Get-WorkflowExecution'
        'Set-WorkflowExecution'
        'Remove-WorkflowExecution'
        'Get-ExecutionStats'
        'New-WorkflowSampleData'
        'Invoke-Backfill'
        'Undo-Backfill'
        'Get-BackfillRun'
        'Export-BackfillRollback'
        'New-PrismSampleData'
        'Watch-StagingSoak'
        'Test-ProdHealth'
        'Test-DataOpsEnvironment'
    )
    FunctionsToExport    = @()
    VariablesToExport    = @()
    AliasesToExport      = @()
    PrivateData          = @{
        PSData = @{
            Tags         = @('PostgreSQL', 'Database', 'Backfill', 'DBA', 'DataOps', 'Migration', 'Seeding', 'PSEdition_Core', 'Linux')
            ProjectUri   = 'https://github.com/dataops-powershell/DataOps.PowerShell'
            LicenseUri   = 'https://github.com/dataops-powershell/DataOps.PowerShell/blob/main/LICENSE'
            ReleaseNotes = '0.1.0: foundation: sandbox, connections, schema components, hosted test harness.'
        }
    }
}
