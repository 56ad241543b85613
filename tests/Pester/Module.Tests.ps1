#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# The module as installed and loaded: manifest, commands, help, and real pwsh processes run the way an
# admin's automation runs them (pwsh -NonInteractive -File / -Command, output redirected, NO_COLOR).

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:manifest = Test-ModuleManifest $ModuleManifest
    $script:commands = @(Get-Command -Module DataOps)
    $script:work = New-TestFolder
}

AfterAll {
    Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue
}

Describe 'Manifest and commands' {
    It 'is a Core-only 7.4+ module with explicit export lists and no functions' {
        $manifest.PowerShellVersion | Should -Be ([version]'7.4')
        $manifest.CompatiblePSEditions | Should -Be @('Core')
        $manifest.ExportedFunctions.Count | Should -Be 0
        Get-Content -Raw $ModuleManifest | Should -Not -Match "'\*'"
    }

    It 'exports exactly the cmdlets the manifest lists, with approved verbs' {
        $listed = (Import-PowerShellDataFile $ModuleManifest).CmdletsToExport
        ($commands.Name | Sort-Object) | Should -Be ($listed | Sort-Object)
        $approved = (Get-Verb).Verb
        $commands | Where-Object Verb -notin $approved | Should -BeNullOrEmpty
    }

    It 'names a licence that ships, and release notes for this version' {
        $psData = (Import-PowerShellDataFile $ModuleManifest).PrivateData.PSData
        $psData.LicenseUri | Should -Match '/LICENSE$'
        Join-Path (Split-Path $ModuleManifest) 'LICENSE' | Should -Exist
        $psData.ReleaseNotes | Should -Match ([regex]::Escape($manifest.Version.ToString()))
        $psData.ProjectUri | Should -Not -BeNullOrEmpty
    }

    It 'every cmdlet declares its output type, and every writer supports -WhatIf' {
        foreach ($c in $commands) {
            $c.OutputType | Should -Not -BeNullOrEmpty -Because "$($c.Name) declares [OutputType]"
            if ($c.Verb -in 'New', 'Set', 'Remove', 'Install', 'Invoke', 'Undo', 'Start', 'Stop') {
                $c.Parameters.Keys | Should -Contain 'WhatIf' -Because "$($c.Name) writes"
            }
        }
    }

    It 'every cmdlet has help: a synopsis, described parameters and at least one example' {
        foreach ($c in $commands) {
            $help = Get-Help $c.Name -Full
            $help.Synopsis | Should -Not -BeLike "$($c.Name)*" -Because "$($c.Name) has a synopsis"
            @($help.examples.example).Count | Should -BeGreaterOrEqual 1 -Because "$($c.Name) has examples"
            @($help.parameters.parameter | Where-Object { $_ -and -not $_.description }).Count | Should -Be 0 -Because "$($c.Name) documents its parameters"
        }
    }

    It 'ships the about topics' {
        Get-Help about_DataOps | Out-String | Should -Match 'Start-DataOpsSandbox'
        Get-Help about_DataOps_JobFile | Out-String | Should -Match 'itemsPerMinute'
    }

    It 'tells in help how to match its output types, whose type literals do not resolve (PSTypeNames)' {
        foreach ($c in $commands | Where-Object { $_.OutputType.Name -like 'DataOps.Engine.*' }) {
            $returns = (Get-Help $c.Name).returnValues.returnValue | Where-Object { $_.type.name -like 'DataOps.Engine.*' }
            foreach ($r in $returns) {
                ($r.description.Text -join ' ') | Should -Match ([regex]::Escape("PSTypeNames -contains '$($r.type.name)'")) -Because "$($c.Name) returns $($r.type.name)"
            }
        }
    }

    It 'keeps its dependencies out of the default context (the engine types are not resolvable by name)' {
        # Npgsql loads when the module first needs it (the load context is made on first use, not at import):
        # a connection string is parsed by Npgsql before the connection is refused. Without this the test
        # depended on an earlier test file having loaded it.
        { Connect-DataOps 'Host=127.0.0.1;Port=1;Database=none;Username=none;Timeout=2' -NoDefault -ErrorAction Stop } | Should -Throw
        { [DataOps.Engine.Soak.SoakReport] } | Should -Throw
        [AppDomain]::CurrentDomain.GetAssemblies().Where({ $_.GetName().Name -eq 'Npgsql' }).ForEach({ [Runtime.Loader.AssemblyLoadContext]::GetLoadContext($_).Name }) | Should -Be 'DataOps.Dependencies'
    }
}

Describe 'In a new pwsh process' {
    It 'imports by path from any working directory and lists its commands' {
        $r = Invoke-NewPwsh @('-Command', "Import-Module '$ModuleManifest'; (Get-Command -Module DataOps).Count")
        $r.ExitCode | Should -Be 0 -Because $r.Err
        [int]$r.Out.Trim() | Should -Be $commands.Count
    }

    It 'a terminating error stops a -File script with exit code 1 and the ErrorId on stderr' {
        $script = Join-Path $work 'fails.ps1'
        Set-Content $script "param([string]`$Who)`n`"hello `$Who`"`n`$ErrorActionPreference = 'Stop'`nImport-Module '$ModuleManifest'`nInstall-DataOpsSchema`n'not reached'"
        $r = Invoke-NewPwsh @('-File', $script, '-Who', 'admin')
        $r.ExitCode | Should -Be 1
        $r.Out | Should -Match 'hello admin'
        $r.Out | Should -Not -Match 'not reached'
        $r.Err | Should -Match 'No database connection'
        "$($r.Out)$($r.Err)" | Should -Not -Match "`e\["
    }

    It 'a prompt in -NonInteractive fails clearly instead of hanging' {
        $r = Invoke-NewPwsh @('-Command', "`$ErrorActionPreference = 'Stop'; Import-Module '$ModuleManifest'; Stop-DataOpsSandbox -Name pester-none -Confirm")
        $r.ExitCode | Should -Be 1
        $r.Err | Should -Match 'NonInteractive|non-interactive'
    }

    It 'the script''s exit code is the process exit code' {
        $r = Invoke-NewPwsh @('-Command', "Import-Module '$ModuleManifest'; exit 3")
        $r.ExitCode | Should -Be 3
        $r.Err | Should -BeNullOrEmpty
    }
}
