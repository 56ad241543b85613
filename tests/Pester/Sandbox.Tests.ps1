#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Sandbox and connection cmdlets as an admin uses them: objects, defaults, pipelines, -WhatIf, errors.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:name = 'pester-sandbox'
    $script:sb = Start-DataOpsSandbox -Name $name -Reset -Force
}

AfterAll {
    Get-DataOpsSandbox | Where-Object Name -like 'pester-sandbox*' | Stop-DataOpsSandbox -Remove -Confirm:$false
}

Describe 'Start-DataOpsSandbox' {
    It 'returns a running DataOpsSandbox on loopback and makes it the session default' {
        $sb.PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Sandbox.DataOpsSandbox'
        "$($sb.Status)" | Should -Be 'Running'
        $sb.Port | Should -BeGreaterThan 1024
        $sb.Connection.Host | Should -Be '127.0.0.1'
        (Get-DataOpsConnection).Port | Should -Be $sb.Port
        Test-Path $sb.DataDirectory | Should -BeTrue
    }

    It 'reuses the running sandbox on a second start (same port, Action Reused), without warning about a sandbox it started itself' {
        $again = Start-DataOpsSandbox -Name $name -WarningVariable warned
        $again.Port | Should -Be $sb.Port
        "$($again.Action)" | Should -Be 'Reused'
        $warned | Should -BeNullOrEmpty
    }

    It '-WhatIf starts nothing and writes nothing' {
        $result = Start-DataOpsSandbox -Name "$name-whatif" -WhatIf
        $result | Should -BeNullOrEmpty
        Get-DataOpsSandbox | Where-Object Name -eq "$name-whatif" | Should -BeNullOrEmpty
    }

    It 'refuses a bad name with SandboxNameInvalid, InvalidArgument and the name as target' {
        $err = Get-ErrorRecord { Start-DataOpsSandbox -Name 'bad name!' }
        $err.FullyQualifiedErrorId | Should -Be 'SandboxNameInvalid,DataOps.PowerShell.Cmdlets.StartDataOpsSandboxCommand'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err.TargetObject | Should -Be 'bad name!'
    }
}

Describe 'Get-DataOpsSandbox and Stop-DataOpsSandbox' {
    It 'lists the sandbox with its status and port' {
        $listed = Get-DataOpsSandbox -Name $name
        "$($listed.Status)" | Should -Be 'Running'
        $listed.Port | Should -Be $sb.Port
    }

    It 'stops a sandbox from the pipeline, clears the default (then ConnectionMissing), and a later start resumes it with its data' {
        $other = Start-DataOpsSandbox -Name "$name-2"
        Install-DataOpsSchema -Component Core | Out-Null
        $stopped = Get-DataOpsSandbox -Name "$name-2" | Stop-DataOpsSandbox -PassThru -Confirm:$false
        "$($stopped.Status)" | Should -Be 'Stopped'
        Get-DataOpsConnection | Should -BeNullOrEmpty
        $err = Get-ErrorRecord { Install-DataOpsSchema }
        $err.FullyQualifiedErrorId | Should -Be 'ConnectionMissing,DataOps.PowerShell.Cmdlets.InstallDataOpsSchemaCommand'
        $err.CategoryInfo.Category | Should -Be 'InvalidOperation'
        $err.Exception.Message | Should -Match 'Connect-DataOps or Start-DataOpsSandbox'
        $resumed = Start-DataOpsSandbox -Name "$name-2"
        "$($resumed.Action)" | Should -Be 'Resumed'
        (Install-DataOpsSchema -Component Core).Status | Sort-Object -Unique | Should -Be 'AlreadyApplied'
        Stop-DataOpsSandbox -Name "$name-2" -Remove -Confirm:$false
        Get-DataOpsSandbox | Where-Object Name -eq "$name-2" | Should -BeNullOrEmpty
        Start-DataOpsSandbox -Name $name | Out-Null
    }

    It 'Stop -WhatIf leaves the server running' {
        Stop-DataOpsSandbox -Name $name -WhatIf
        "$((Get-DataOpsSandbox -Name $name).Status)" | Should -Be 'Running'
    }

    It 'Stop -Remove and Start -Reset in pwsh -NonInteractive are refused with ConfirmationRequired and delete nothing' {
        $root = if ($env:DATAOPS_SANDBOX_ROOT) { $env:DATAOPS_SANDBOX_ROOT } else { Join-Path ([IO.Path]::GetTempPath()) 'dataops-sandboxes' }
        $marker = Join-Path $root $name 'earlier-data.txt'
        Set-Content $marker 'earlier data'
        foreach ($command in "Stop-DataOpsSandbox -Name $name -Remove", "Start-DataOpsSandbox -Name $name -Reset") {
            $psi = [Diagnostics.ProcessStartInfo]::new((Get-Process -Id $PID).Path)
            if ($psi.FileName -notlike '*pwsh*') { $psi.ArgumentList.Add((Join-Path $PSHOME 'pwsh.dll')) }
            foreach ($a in '-NoProfile', '-NonInteractive', '-Command', "Import-Module '$ModuleManifest'; $command") { $psi.ArgumentList.Add($a) }
            $psi.RedirectStandardOutput = $true; $psi.RedirectStandardError = $true; $psi.Environment['NO_COLOR'] = '1'
            $p = [Diagnostics.Process]::Start($psi)
            $err = $p.StandardError.ReadToEndAsync(); $null = $p.StandardOutput.ReadToEnd()
            $p.WaitForExit()
            $p.ExitCode | Should -Not -Be 0 -Because $command
            $err.Result | Should -Match ([regex]::Escape('-Confirm:$false'))
            $marker | Should -Exist
        }
        "$((Get-DataOpsSandbox -Name $name).Status)" | Should -Be 'Running'
        Remove-Item $marker
    }

    It 'an unknown sandbox is SandboxNotFound, ObjectNotFound' {
        $err = Get-ErrorRecord { Stop-DataOpsSandbox -Name 'no-such-sandbox' -Confirm:$false -ErrorAction Stop }
        $err.FullyQualifiedErrorId | Should -BeLike 'SandboxNotFound,*'
        $err.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err.Exception.Message | Should -Match 'Get-DataOpsSandbox'
    }
}

Describe 'Start-DataOpsSandbox -Replicas' {
    BeforeAll {
        # Short enough for the 16-column Name of the table view.
        $script:repName = 'pester-rep'
    }

    AfterAll {
        Get-DataOpsSandbox | Where-Object Name -eq $repName | Stop-DataOpsSandbox -Remove -Confirm:$false
    }

    It 'starts a streaming hot standby: $sb.Replicas[0] with its own connection, data written on the primary read on it, verbose steps' {
        $out = Start-DataOpsSandbox -Name $repName -Replicas 1 -NoDefault -Verbose 4>&1
        $verbose = @($out | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object Message)
        $script:rep = $out | Where-Object { $_ -isnot [System.Management.Automation.VerboseRecord] }
        $verbose -join "`n" | Should -Match 'pg_basebackup -R -X stream'
        $verbose -join "`n" | Should -Match "Replica '$repName-r1' is streaming"

        $rep.Replicas.Count | Should -Be 1
        $r = $rep.Replicas[0]
        $r.PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Sandbox.DataOpsSandboxReplica'
        $r.Name | Should -Be "$repName-r1"
        "$($r.Status)" | Should -Be 'Running'
        "$($r.Action)" | Should -Be 'Created'
        $r.Port | Should -Not -Be $rep.Port
        $r.Connection.Port | Should -Be $r.Port
        Invoke-DataOpsQuery 'SELECT pg_is_in_recovery()' -Connection $r.Connection -As Scalar -ReadOnly | Should -BeTrue

        Invoke-DataOpsQuery 'CREATE TABLE seen (v text); INSERT INTO seen VALUES (''from the primary'')' -Connection $rep.Connection -As NonQuery | Out-Null
        $deadline = (Get-Date).AddSeconds(30)
        do {
            # Until the standby has replayed the CREATE TABLE, the query fails (42P01): try again.
            $seen = try { Invoke-DataOpsQuery 'SELECT v FROM seen' -Connection $r.Connection -As Scalar -ReadOnly -ErrorAction Stop } catch { Start-Sleep -Milliseconds 100 }
        } until ($seen -or (Get-Date) -gt $deadline)
        $seen | Should -Be 'from the primary'
    }

    It 'shows the replica count in the table and the replicas in their own table, within 80 columns' {
        $table = ($rep | Out-String -Width 80) -split "`r?`n" | ForEach-Object TrimEnd
        $table | Where-Object Length -gt 80 | Should -BeNullOrEmpty
        $table | Where-Object { $_ -match '^Name\s+Status\s+Action\s+Port\s+Version\s+Replicas\s+DataDirectory' } | Should -Not -BeNullOrEmpty
        $table | Where-Object { $_ -match "^$([regex]::Escape($repName))\s+Running\s+Created\s+\d+\s+\S+\s+1\s" } | Should -Not -BeNullOrEmpty
        $replicas = ($rep.Replicas | Out-String -Width 80) -split "`r?`n" | ForEach-Object TrimEnd
        $replicas | Where-Object Length -gt 80 | Should -BeNullOrEmpty
        $replicas | Where-Object { $_ -match '^Name\s+Status\s+Action\s+Port\s+DataDirectory$' } | Should -Not -BeNullOrEmpty
        $replicas | Where-Object { $_ -match "^$([regex]::Escape("$repName-r1"))\s+Running\s+Created\s+$($rep.Replicas[0].Port)\s" } | Should -Not -BeNullOrEmpty
    }

    It 'Get-DataOpsSandbox lists the replica; Stop stops it with the primary and a plain Start resumes it' {
        (Get-DataOpsSandbox -Name $repName).Replicas[0].Port | Should -Be $rep.Replicas[0].Port
        $stopped = Stop-DataOpsSandbox -Name $repName -PassThru
        "$($stopped.Replicas[0].Status)" | Should -Be 'Stopped'
        $stopped.Replicas[0].Connection | Should -BeNullOrEmpty
        $again = Start-DataOpsSandbox -Name $repName -NoDefault
        "$($again.Replicas[0].Action)" | Should -Be 'Resumed'
        $again.Replicas[0].Port | Should -Be $rep.Replicas[0].Port
    }

    It 'refuses fewer replicas than the sandbox has with SandboxReplicasFewer, and changes nothing' {
        $err = Get-ErrorRecord { Start-DataOpsSandbox -Name $repName -Replicas 0 -NoDefault }
        $err.FullyQualifiedErrorId | Should -Be 'SandboxReplicasFewer,DataOps.PowerShell.Cmdlets.StartDataOpsSandboxCommand'
        $err.CategoryInfo.Category | Should -Be 'InvalidOperation'
        $err.ErrorDetails.RecommendedAction | Should -Match '-Reset'
        "$((Get-DataOpsSandbox -Name $repName).Replicas[0].Status)" | Should -Be 'Running'
    }

    It 'refuses -Replicas <Count> with a parameter validation error and starts nothing' -ForEach @(@{ Count = -1 }, @{ Count = 5 }) {
        $err = Get-ErrorRecord { Start-DataOpsSandbox -Name "$name-badrep" -Replicas $Count }
        $err.FullyQualifiedErrorId | Should -Be 'ParameterArgumentValidationError,DataOps.PowerShell.Cmdlets.StartDataOpsSandboxCommand'
        Get-DataOpsSandbox | Where-Object Name -eq "$name-badrep" | Should -BeNullOrEmpty
    }

    It '-WhatIf with -Replicas starts nothing' {
        Start-DataOpsSandbox -Name "$name-whatifrep" -Replicas 2 -WhatIf | Should -BeNullOrEmpty
        Get-DataOpsSandbox | Where-Object Name -eq "$name-whatifrep" | Should -BeNullOrEmpty
    }

    It 'Stop -Remove deletes the replicas with the sandbox and leaves no server running' {
        $pids = @((Get-DataOpsSandbox -Name $repName).ProcessId) + @((Get-DataOpsSandbox -Name $repName).Replicas.ProcessId)
        $folder = Split-Path (Get-DataOpsSandbox -Name $repName).DataDirectory
        Stop-DataOpsSandbox -Name $repName -Remove -Confirm:$false
        $folder | Should -Not -Exist
        $deadline = (Get-Date).AddSeconds(10)
        while (($pids | Where-Object { Get-Process -Id $_ -ErrorAction SilentlyContinue }) -and (Get-Date) -lt $deadline) { Start-Sleep -Milliseconds 100 }
        $pids | Where-Object { Get-Process -Id $_ -ErrorAction SilentlyContinue } | Should -BeNullOrEmpty
    }
}

Describe 'Connect-DataOps and Get-DataOpsConnection' {
    BeforeAll {
        $script:password = (Get-Content -Raw (Join-Path $(if ($env:DATAOPS_SANDBOX_ROOT) { $env:DATAOPS_SANDBOX_ROOT } else { Join-Path ([IO.Path]::GetTempPath()) 'dataops-sandboxes' }) $name 'password')).Trim()
        $script:cs = "Host=127.0.0.1;Port=$($sb.Port);Database=dataops;Username=postgres"
    }

    It 'connects with -Credential, returns a DataOpsConnection and never shows the password' {
        $cred = [pscredential]::new('postgres', (ConvertTo-SecureString $password -AsPlainText -Force))
        $c = Connect-DataOps -ConnectionString $cs -Credential $cred
        $c.PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Connections.DataOpsConnection'
        $c.HasPassword | Should -BeTrue
        $c.SafeConnectionString | Should -Not -Match ([regex]::Escape($password))
        ($c | Out-String -Width 200) + ($c | Format-List * | Out-String) | Should -Not -Match ([regex]::Escape($password))
        (Get-DataOpsConnection).SafeConnectionString | Should -Be $c.SafeConnectionString
    }

    It 'reads DATAOPS_<NAME>_CONNECTION for -Environment, and -NoDefault keeps the session default' {
        $before = (Get-DataOpsConnection).SafeConnectionString
        $env:DATAOPS_PESTERSTG_CONNECTION = "$cs;Password=$password"
        try {
            $c = Connect-DataOps -Environment pesterstg -NoDefault
            "$($c.Source)" | Should -Be 'Environment'
            $c.Database | Should -Be 'dataops'
            (Get-DataOpsConnection).SafeConnectionString | Should -Be $before
        }
        finally {
            Remove-Item Env:DATAOPS_PESTERSTG_CONNECTION
        }
    }

    It 'refuses a bad connection string with ConnectionStringInvalid and masks the password in the target' {
        $err = Get-ErrorRecord { Connect-DataOps -ConnectionString 'Host=x;Bogus=1;Password=hunter2' }
        $err.FullyQualifiedErrorId | Should -Be 'ConnectionStringInvalid,DataOps.PowerShell.Cmdlets.ConnectDataOpsCommand'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
        "$($err.TargetObject) $($err.Exception.Message)" | Should -Not -Match 'hunter2'
    }

    It 'a -Production connection is marked and shows Prod True in its view' {
        $c = Connect-DataOps -ConnectionString "$cs;Password=$password" -Production -NoDefault
        $c.IsProduction | Should -BeTrue
        ($c | Out-String -Width 80) | Should -Match '\bTrue\s*$'
    }
}
