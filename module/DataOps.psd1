@{
    RootModule           = 'DataOps.PowerShell.dll'
    ModuleVersion        = '0.1.0'
    GUID                 = '3f6c1f0e-8a4b-4f7e-9a53-2d1c6b0e7a41'
    Author               = 'DataOps.PowerShell contributors'
    CompanyName          = 'DataOps.PowerShell'
    Copyright            = '(c) DataOps.PowerShell contributors. MIT licence.'
    Description          = 'Safe, fast PostgreSQL data operations for admins: guarded backfills with rollback, read-only soaks, production health checks, high-volume seeding and execution tracking, with a one-command local sandbox.'
    PowerShellVersion    = '7.4'
    CompatiblePSEditions = 'Core'
    FormatsToProcess     = 'DataOps.Format.ps1xml'
    CmdletsToExport      = 'Start-DataOpsSandbox',
                           'Stop-DataOpsSandbox',
                           'Get-DataOpsSandbox',
                           'Connect-DataOps',
                           'Disconnect-DataOps',
                           'Get-DataOpsConnection',
                           'Invoke-DataOpsQuery',
                           'Install-DataOpsSchema',
                           'New-ScriptExecutionSeed',
                           'Remove-ScriptExecutionSeed',
                           'New-WorkflowExecution',
                           'Get-WorkflowExecution',
                           'Set-WorkflowExecution',
                           'Remove-WorkflowExecution',
                           'Get-ExecutionStats',
                           'New-WorkflowSampleData',
                           'Invoke-Backfill',
                           'Undo-Backfill',
                           'Get-BackfillRun',
                           'Get-BackfillItem',
                           'Suspend-Backfill',
                           'Resume-Backfill',
                           'Stop-Backfill',
                           'Set-BackfillThrottle',
                           'Export-BackfillRollback',
                           'New-PrismSampleData',
                           'Watch-StagingSoak',
                           'Test-ProdHealth',
                           'Test-DataOpsEnvironment'
    # No HelpInfoUri: the full help (MAML and about topics) ships inside the module and there is no
    # updatable-help server; a HelpInfoUri that serves no HelpInfo XML would make Update-Help fail.
    FunctionsToExport    = @()
    VariablesToExport    = @()
    AliasesToExport      = @()
    PrivateData          = @{
        PSData = @{
            Tags         = 'PostgreSQL', 'Database', 'Backfill', 'DBA', 'DataOps', 'Migration', 'Seeding', 'PSEdition_Core', 'Linux'
            ProjectUri   = 'https://github.com/dataops-powershell/DataOps.PowerShell'
            # The LICENSE file at the repository root (also shipped in the package folder).
            LicenseUri   = 'https://github.com/dataops-powershell/DataOps.PowerShell/blob/main/LICENSE'
            ReleaseNotes = @'
0.1.0, the first release:
- Start-/Stop-/Get-DataOpsSandbox: a private PostgreSQL cluster from local binaries, loopback only.
- Connect-DataOps (key=value or postgresql:// URI, -Credential, -Production, -Name), Get-DataOpsConnection,
  Disconnect-DataOps; -Connection takes the name of a stored connection.
- Invoke-DataOpsQuery: ad-hoc SQL with bound parameters, rows as objects, -ReadOnly.
- Install-DataOpsSchema: Core, ScriptExecution, WorkflowExecution and Prism components, idempotent.
- Invoke-Backfill / Undo-Backfill / Get-BackfillRun / Get-BackfillItem: guarded per-item backfills (SQL and HTTP steps)
  with before/after images, ledger, throttle, resume, psql rollback script and drift-checked undo.
- Suspend-/Resume-/Stop-Backfill (-Abort) and Set-BackfillThrottle: steer a live run from any session or machine
  through its control row; every request recorded with who and when; Get-BackfillRun shows the live State.
- Watch-StagingSoak (read-only, Go/NoGo/Inconclusive), Test-ProdHealth (fingerprinted mini plan),
  Test-DataOpsEnvironment (preflight).
- New-/Remove-ScriptExecutionSeed (binary COPY), New-PrismSampleData, New-WorkflowSampleData,
  New-/Get-/Set-/Remove-WorkflowExecution, Get-ExecutionStats.
Requires PowerShell 7.4+ and the PostgreSQL server binaries for the sandbox.
'@
        }
    }
}
