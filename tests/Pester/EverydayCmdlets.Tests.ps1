#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# The everyday cmdlets a dbatools or SimplySql user reaches for: Invoke-DataOpsQuery, named connections
# (Connect-DataOps -Name, Get-DataOpsConnection -Name, Disconnect-DataOps, -Connection <name>) and Get-BackfillItem.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:sb = Start-DataOpsSandbox -Name pester-everyday -Reset -Force
    Install-DataOpsSchema | Out-Null
    $script:out = New-TestFolder
    Invoke-TestSql $sb @"
CREATE TABLE pets (id uuid PRIMARY KEY, name text NOT NULL, born date, tags text[], doc jsonb, seen timestamptz);
INSERT INTO pets VALUES
  ('6f1c2a4e-0d7b-4c1e-9a55-3b2f4c6d7e8f', 'Rex', '2019-04-01', '{dog,old}', '{"vet": "Dr. Who"}', '2024-05-01 10:00:00+00'),
  ('0b7e3a52-9d1f-4d7e-8a0e-2c5b7f3e1a90', 'Tom', NULL, '{cat}', NULL, NULL);
"@ | Out-Null
    $script:pets = 2
    # The default connection again (tests that disconnect it call this after).
    function Use-Sandbox { $script:sb = Start-DataOpsSandbox -Name pester-everyday -WarningAction SilentlyContinue }
}

AfterAll {
    Get-DataOpsConnection -Name * | Disconnect-DataOps
    Stop-DataOpsSandbox -Name pester-everyday -Remove -Confirm:$false
    Remove-Item -Recurse -Force $out -ErrorAction SilentlyContinue
}

Describe 'Invoke-DataOpsQuery' {
    It 'returns one PSCustomObject per row, columns as properties in order, NULL as $null' {
        $rows = @(Invoke-DataOpsQuery 'SELECT name, born, tags, doc, seen FROM pets ORDER BY name' -ReadOnly)
        $rows.Count | Should -Be 2
        $rows[0] | Should -BeOfType [pscustomobject]
        $rows[0].PSObject.Properties.Name | Should -Be @('name', 'born', 'tags', 'doc', 'seen')
        $rows[0].name | Should -Be 'Rex'
        $rows[0].tags | Should -Be @('dog', 'old')
        ($rows[0].doc | ConvertFrom-Json).vet | Should -Be 'Dr. Who'
        $rows[0].seen | Should -BeOfType [DateTimeOffset]
        $rows[0].seen.UtcDateTime | Should -Be ([datetime]::new(2024, 5, 1, 10, 0, 0, [DateTimeKind]::Utc))
        $rows[1].born | Should -BeNullOrEmpty
        $null -eq $rows[1].doc | Should -BeTrue
    }

    It 'gives a repeated column name a suffix instead of failing' {
        $row = Invoke-DataOpsQuery 'SELECT 1 AS n, 2 AS "N", 3' -ReadOnly
        $row.PSObject.Properties.Name | Should -Be @('n', 'N_2', '?column?')
        $row.N_2 | Should -Be 2
    }

    It 'binds -Parameters as values: a quote in a value changes nothing, a string takes the column''s type' {
        $hostile = "x'; DROP TABLE pets; --"
        Invoke-DataOpsQuery 'SELECT * FROM pets WHERE name = @name' -Parameters @{ name = $hostile } -ReadOnly | Should -BeNullOrEmpty
        Invoke-TestSql $sb 'SELECT count(*) FROM pets' | Should -Be $pets
        (Invoke-DataOpsQuery 'SELECT name FROM pets WHERE id = @id AND born < @before' -Parameters @{ id = '6f1c2a4e-0d7b-4c1e-9a55-3b2f4c6d7e8f'; before = (Get-Date) } -ReadOnly).name | Should -Be 'Rex'
        (Invoke-DataOpsQuery 'SELECT name FROM pets WHERE name = ANY(@names) ORDER BY name' -Parameters @{ names = 'Tom', 'Rex', 'Nobody' } -ReadOnly).name | Should -Be @('Rex', 'Tom')
        (Invoke-DataOpsQuery 'SELECT name FROM pets WHERE doc @> @doc' -Parameters @{ doc = (@{ vet = 'Dr. Who' } | ConvertTo-Json) } -ReadOnly).name | Should -Be 'Rex'
    }

    It '-As Scalar returns the first value; -As NonQuery a QueryResult with the rows changed' {
        Invoke-DataOpsQuery 'SELECT count(*) FROM pets' -As Scalar -ReadOnly | Should -Be $pets
        Invoke-DataOpsQuery 'SELECT NULL' -As Scalar -ReadOnly | Should -BeNullOrEmpty
        $r = Invoke-DataOpsQuery "UPDATE pets SET name = name WHERE name = 'Rex'" -As NonQuery
        $r.PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Queries.QueryResult'
        $r.RowsAffected | Should -Be 1
        $r.Elapsed | Should -BeOfType [timespan]
        $r.Connection.Port | Should -Be $sb.Port
    }

    It '-ReadOnly: a write fails with the server''s refusal (ReadOnlyViolation, WriteError, the query as target) and nothing changes' {
        $err = Get-ErrorRecord { Invoke-DataOpsQuery 'DELETE FROM pets' -ReadOnly }
        $err.FullyQualifiedErrorId | Should -Be 'ReadOnlyViolation,DataOps.PowerShell.Cmdlets.InvokeDataOpsQueryCommand'
        $err.CategoryInfo.Category | Should -Be 'WriteError'
        $err.TargetObject | Should -Be 'DELETE FROM pets'
        $err.Exception.Message | Should -Match 'cannot execute DELETE in a read-only transaction'
        $err.Exception.Data['SqlState'] | Should -Be '25006'
        Invoke-TestSql $sb 'SELECT count(*) FROM pets' | Should -Be $pets
    }

    It '-ReadOnly runs one statement: "COMMIT; DELETE ..." is QueryMultipleStatements and runs nothing' {
        $err = Get-ErrorRecord { Invoke-DataOpsQuery 'COMMIT; DELETE FROM pets' -ReadOnly }
        $err.FullyQualifiedErrorId | Should -BeLike 'QueryMultipleStatements,*'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
        Invoke-TestSql $sb 'SELECT count(*) FROM pets' | Should -Be $pets
    }

    It 'a write asks ShouldProcess: -WhatIf runs nothing, while -ReadOnly still reads under -WhatIf' {
        Invoke-DataOpsQuery 'DELETE FROM pets' -WhatIf | Should -BeNullOrEmpty
        Invoke-TestSql $sb 'SELECT count(*) FROM pets' | Should -Be $pets
        Invoke-DataOpsQuery 'SELECT count(*) FROM pets' -As Scalar -ReadOnly -WhatIf | Should -Be $pets
    }

    It 'a write to a production connection needs confirmation; -ReadOnly does not' {
        $prod = Connect-DataOps -ConnectionString (Get-SandboxConnectionString $sb) -Production -NoDefault
        $err = Get-ErrorRecord { Invoke-DataOpsQuery "DELETE FROM pets WHERE name = 'Nobody'" -Connection $prod }
        $err.FullyQualifiedErrorId | Should -BeLike 'ConfirmationRequired,*'
        Invoke-DataOpsQuery 'SELECT count(*) FROM pets' -Connection $prod -As Scalar -ReadOnly | Should -Be $pets
        (Invoke-DataOpsQuery "DELETE FROM pets WHERE name = 'Nobody'" -Connection $prod -As NonQuery -Force).RowsAffected | Should -Be 0
    }

    It 'an @name that -Parameters does not give is QueryParameterMissing before anything runs (PostgreSQL would read it as abs())' {
        $err = Get-ErrorRecord { Invoke-DataOpsQuery 'DELETE FROM pets WHERE length(name) = @len' -Parameters @{ length = 3 } }
        $err.FullyQualifiedErrorId | Should -BeLike 'QueryParameterMissing,*'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err.TargetObject | Should -Be 'len'
        $err.Exception.Message | Should -Match '@len'
        Invoke-TestSql $sb 'SELECT count(*) FROM pets' | Should -Be $pets
    }

    It 'a parameter that cannot be bound is QueryParameterInvalid naming it: <Why>' -ForEach @(
        @{ Why = 'not a name'; Parameters = @{ 'my id' = 1 }; Target = 'my id' }
        @{ Why = 'a hashtable'; Parameters = @{ doc = @{ a = 1 } }; Target = 'doc' }
    ) {
        $err = Get-ErrorRecord { Invoke-DataOpsQuery 'SELECT 1' -Parameters $Parameters -ReadOnly }
        $err.FullyQualifiedErrorId | Should -BeLike 'QueryParameterInvalid,*'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err.TargetObject | Should -Be $Target
    }

    It 'a bad query is QueryFailed with the SQLSTATE and the position, an error of that query that -ErrorAction governs' {
        Invoke-DataOpsQuery 'SELEC name FROM pets' -ReadOnly -ErrorVariable failed -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err = @($failed)[0]
        $err.FullyQualifiedErrorId | Should -BeLike 'QueryFailed,*'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err.Exception.Data['SqlState'] | Should -Be '42601'
        $err.Exception.Message | Should -Match 'at character 1'
        (Get-ErrorRecord { Invoke-DataOpsQuery 'SELECT 1 / 0' -ReadOnly -ErrorAction Stop }).FullyQualifiedErrorId | Should -BeLike 'QueryFailed,*'
    }

    It 'queries run one after another: the one that fails is an error of its own and the others still run' {
        $rows = 'SELECT 1 AS n', 'SELECT 1 / 0 AS n', 'SELECT 3 AS n' | ForEach-Object { Invoke-DataOpsQuery $_ -ReadOnly -ErrorVariable +failed -ErrorAction SilentlyContinue }
        $rows.n | Should -Be @(1, 3)
        @($failed).Count | Should -Be 1
        $failed[0].Exception.Data['SqlState'] | Should -Be '22012'
        $failed[0].Exception.Message | Should -Match '22012: division by zero'
    }

    It 'a query over -Timeout is QueryTimeout (OperationTimeout); a negative -Timeout is refused' {
        $err = Get-ErrorRecord { Invoke-DataOpsQuery 'SELECT pg_sleep(10)' -ReadOnly -Timeout 1s -ErrorAction Stop }
        $err.FullyQualifiedErrorId | Should -BeLike 'QueryTimeout,*'
        $err.CategoryInfo.Category | Should -Be 'OperationTimeout'
        $err = Get-ErrorRecord { Invoke-DataOpsQuery 'SELECT 1' -ReadOnly -Timeout ([timespan]'-00:00:05') }
        $err.FullyQualifiedErrorId | Should -BeLike 'QueryTimeoutInvalid,*'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err.TargetObject | Should -Be ([timespan]::FromSeconds(-5))
        (Get-ErrorRecord { Invoke-DataOpsQuery 'SELECT 1' -ReadOnly -Timeout -5 }).FullyQualifiedErrorId | Should -BeLike 'ParameterArgumentTransformationError,*'
    }

    It 'a SecureString value is a secret: -Debug shows the SQL and masks it, and errors never show it' {
        $secret = 'pest3r-S3cret-77'
        $records = @(Invoke-DataOpsQuery 'SELECT @name AS n, length(@pw) AS l' -Parameters @{ name = 'Rex'; pw = (ConvertTo-SecureString $secret -AsPlainText) } -ReadOnly -Debug 5>&1)
        $debug = ($records | Where-Object { $_ -is [System.Management.Automation.DebugRecord] }).Message -join "`n"
        $debug | Should -Match 'SELECT @name AS n'
        $debug | Should -Match "@name = 'Rex'"
        $debug | Should -Match '@pw = \*{8} \(secret\)'
        $debug | Should -Not -Match $secret
        ($records | Where-Object l).l | Should -Be $secret.Length
        $err = Get-ErrorRecord { Invoke-DataOpsQuery 'SELECT @pw::int' -Parameters @{ pw = (ConvertTo-SecureString $secret -AsPlainText) } -ReadOnly }
        "$err $($err.Exception) $($err.TargetObject)" | Should -Not -Match $secret
    }

    It 'a read-only query is stopped on the server when the pipeline needs no more rows (10 GB not read)' {
        $huge = "SELECT x, repeat('x', 10000) AS pad FROM generate_series(1, 1000000) x"
        $watch = [Diagnostics.Stopwatch]::StartNew()
        (Invoke-DataOpsQuery $huge -ReadOnly | Select-Object -First 1).x | Should -Be 1
        Invoke-DataOpsQuery $huge -ReadOnly -As Scalar | Should -Be 1
        $watch.Elapsed.TotalSeconds | Should -BeLessThan 10
    }
}

Describe 'Named connections' {
    BeforeAll {
        $env:DATAOPS_PESTER_REPORTS_CONNECTION = Get-SandboxConnectionString $sb
    }

    AfterAll {
        Remove-Item Env:DATAOPS_PESTER_REPORTS_CONNECTION -ErrorAction SilentlyContinue
        Use-Sandbox
    }

    It 'Connect-DataOps -Name stores the connection by name; -NoDefault leaves the default as it was' {
        $c = Connect-DataOps -Environment pester_reports -Name reports -NoDefault
        $c.Name | Should -Be 'reports'
        (Get-DataOpsConnection).Name | Should -Be 'pester-everyday'
        (Get-DataOpsConnection -Name reports).Port | Should -Be $sb.Port
    }

    It '-Connection takes the name, on every database cmdlet' {
        Invoke-DataOpsQuery -Connection reports 'SELECT current_database()' -As Scalar -ReadOnly | Should -Be 'dataops'
        { Get-BackfillRun -Connection reports } | Should -Not -Throw
        (TabExpansion2 'Invoke-DataOpsQuery -Connection rep').CompletionMatches.CompletionText | Should -Contain 'reports'
    }

    It 'an unknown name for -Connection fails at binding, naming it and the names there are' {
        $err = Get-ErrorRecord { Invoke-DataOpsQuery -Connection nosuch 'SELECT 1' -ReadOnly }
        $err.FullyQualifiedErrorId | Should -BeLike 'ParameterArgumentTransformationError,*'
        $err.Exception.Message | Should -Match "No connection named 'nosuch'"
        $err.Exception.Message | Should -Match 'reports'
    }

    It 'Get-DataOpsConnection -Name takes wildcards; a plain unknown name is ConnectionNotFound (ObjectNotFound)' {
        Connect-DataOps -Environment pester_reports -Name audit -NoDefault | Out-Null
        (Get-DataOpsConnection -Name *).Name | Should -Be @('audit', 'reports')
        (Get-DataOpsConnection -Name rep*).Name | Should -Be 'reports'
        Get-DataOpsConnection -Name zz* | Should -BeNullOrEmpty
        $err = Get-ErrorRecord { Get-DataOpsConnection -Name nosuch -ErrorAction Stop }
        $err.FullyQualifiedErrorId | Should -Be 'ConnectionNotFound,DataOps.PowerShell.Cmdlets.GetDataOpsConnectionCommand'
        $err.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err.TargetObject | Should -Be 'nosuch'
        $err.Exception.Message | Should -Match 'audit, reports'
    }

    It 'the password of a named connection shows nowhere' {
        $password = Get-SandboxPassword $sb
        $shown = (Get-DataOpsConnection -Name * | Format-List * | Out-String) + (Get-DataOpsConnection -Name * | ForEach-Object ToString)
        $shown | Should -Not -Match ([regex]::Escape($password))
        (Get-DataOpsConnection -Name reports).SafeConnectionString | Should -Match 'Password=\*{8}'
    }

    It 'a name with wildcard characters is refused (ConnectionNameInvalid); a name given again replaces its connection' {
        $err = Get-ErrorRecord { Connect-DataOps -Environment pester_reports -Name 'rep*' -NoDefault }
        $err.FullyQualifiedErrorId | Should -BeLike 'ConnectionNameInvalid,*'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err.TargetObject | Should -Be 'rep*'
        $before = Get-DataOpsConnection -Name audit
        $again = Connect-DataOps -Environment pester_reports -Name AUDIT -NoDefault -Production
        Get-DataOpsConnection -Name audit | Should -Be $again
        (Get-DataOpsConnection -Name audit).IsProduction | Should -BeTrue
        [object]::ReferenceEquals($before, $again) | Should -BeFalse
    }

    It 'Disconnect-DataOps -Name: -WhatIf keeps it; then it goes; again it is ConnectionNotFound' {
        Disconnect-DataOps -Name audit -WhatIf
        Get-DataOpsConnection -Name audit | Should -Not -BeNullOrEmpty
        (Disconnect-DataOps -Name audit -PassThru).Name | Should -Be 'audit'
        Get-DataOpsConnection -Name audit* | Should -BeNullOrEmpty
        $err = Get-ErrorRecord { Disconnect-DataOps -Name audit -ErrorAction Stop }
        $err.FullyQualifiedErrorId | Should -Be 'ConnectionNotFound,DataOps.PowerShell.Cmdlets.DisconnectDataOpsCommand'
        $err.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err.TargetObject | Should -Be 'audit'
    }

    It 'Disconnect-DataOps takes connections from the pipeline, and a pattern that matches nothing is no error' {
        Connect-DataOps -Environment pester_reports -Name piped -NoDefault | Out-Null
        Get-DataOpsConnection -Name pip* | Disconnect-DataOps
        Get-DataOpsConnection -Name piped* | Should -BeNullOrEmpty
        { Disconnect-DataOps -Name nothing-like-this* -ErrorAction Stop } | Should -Not -Throw
    }

    It 'Disconnect-DataOps alone removes the default: cmdlets then need -Connection (ConnectionMissing)' {
        Disconnect-DataOps
        Get-DataOpsConnection | Should -BeNullOrEmpty
        $err = Get-ErrorRecord { Invoke-DataOpsQuery 'SELECT 1' -ReadOnly }
        $err.FullyQualifiedErrorId | Should -BeLike 'ConnectionMissing,*'
        Invoke-DataOpsQuery -Connection reports 'SELECT 1' -As Scalar -ReadOnly | Should -Be 1
        { Disconnect-DataOps -ErrorAction Stop } | Should -Not -Throw
        Use-Sandbox
    }

    It 'a named connection that is also the default leaves both places' {
        Connect-DataOps -Environment pester_reports -Name both | Out-Null
        (Get-DataOpsConnection).Name | Should -Be 'both'
        Disconnect-DataOps -Name both
        Get-DataOpsConnection | Should -BeNullOrEmpty
        Use-Sandbox
    }
}

Describe 'Get-BackfillItem' {
    BeforeAll {
        New-PrismSampleData -Sessions 30 -Seed 11 -PendingShare 0.4 -Reset -Force | Out-Null
        $script:applied = @(Invoke-Backfill -Job $SampleJob -ItemsPerMinute 0 -OutputDirectory $out -WarningAction SilentlyContinue)
        $script:run = Get-BackfillRun | Where-Object Kind -eq backfill | Select-Object -First 1
    }

    It 'lists one BackfillItem per ledger row of a piped run, in commit order, without images' {
        $items = @($run | Get-BackfillItem)
        $items.Count | Should -Be $applied.Count
        $items[0].PSObject.TypeNames[0] | Should -Be 'DataOps.Engine.Backfill.BackfillItem'
        ($items.Key | Sort-Object) | Should -Be ($applied.Key | Sort-Object)
        $items.Status | Sort-Object -Unique | Should -Be 'Applied'
        $items.RunId | Sort-Object -Unique | Should -Be $run.RunId
        $items[0].RowsChanged | Should -BeGreaterThan 0
        $items[0].Attempts | Should -Be 1
        $items[0].Duration | Should -BeOfType [timespan]
        $items[0].Connection.Port | Should -Be $sb.Port
        $null -eq $items[0].BeforeImage -and $null -eq $items[0].AfterImageJson | Should -BeTrue
    }

    It 'binds RunId and Key from Invoke-Backfill results: one item for one' {
        $items = @($applied | Select-Object -First 2 | Get-BackfillItem)
        $items.Key | Should -Be ($applied | Select-Object -First 2).Key
    }

    It '-IncludeImages adds the rows before and after, as objects and as the ledger''s JSON' {
        $item = Get-BackfillItem -RunId $run.RunId -Key $applied[0].Key -IncludeImages
        $item.BeforeImage.'prism.sessions'[0].id | Should -Be $applied[0].Key
        $item.AfterImage.'prism.profiles'[0].results_version | Should -Be 'v1.2.1'
        ($item.AfterImageJson | ConvertFrom-Json).'prism.sessions'[0].fc_kind | Should -Be 'functions'
    }

    It '-Key takes wildcards; a pattern that matches nothing returns nothing; a plain unknown key is ItemNotFound' {
        $key = $applied[0].Key
        (Get-BackfillItem -RunId $run.RunId -Key ($key.Substring(0, 8).ToUpperInvariant() + '*')).Key | Should -Contain $key
        Get-BackfillItem -RunId $run.RunId -Key 'zz*' | Should -BeNullOrEmpty
        $err = Get-ErrorRecord { Get-BackfillItem -RunId $run.RunId -Key 'no-such-key' -ErrorAction Stop }
        $err.FullyQualifiedErrorId | Should -Be 'ItemNotFound,DataOps.PowerShell.Cmdlets.GetBackfillItemCommand'
        $err.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err.TargetObject | Should -Be 'no-such-key'
    }

    It '-Status Failed shows failed items with their error category and error' {
        Invoke-TestSql $sb "INSERT INTO dataops.ledger (run_id, job_name, item_key, status, error_category, error_message, attempts, finished_at, duration_ms) VALUES ('$($run.RunId)', 'results-v1.2.1', 'pester-failed', 'failed', 'Constraint', 'violates check constraint', 3, now(), 12)" | Out-Null
        $failed = @(Get-BackfillItem -RunId $run.RunId -Status Failed)
        $failed.Key | Should -Be 'pester-failed'
        $failed[0].ErrorCategory | Should -Be 'Constraint'
        $failed[0].Error | Should -Match 'check constraint'
        $failed[0].Attempts | Should -Be 3
        $failed[0].RowsChanged | Should -BeNullOrEmpty
        (Get-BackfillItem -RunId $run.RunId -Status Applied).Key | Should -Not -Contain 'pester-failed'
    }

    It 'an unknown run is RunNotFound for that run only; the next piped run is still listed' {
        $unknown = [guid]::NewGuid()
        $items = @([pscustomobject]@{ RunId = $unknown }, $run | Get-BackfillItem -ErrorAction SilentlyContinue -ErrorVariable errs)
        $items.Count | Should -BeGreaterThan 0
        $errs.Count | Should -Be 1
        $errs[0].FullyQualifiedErrorId | Should -Be 'RunNotFound,DataOps.PowerShell.Cmdlets.GetBackfillItemCommand'
        $errs[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $errs[0].TargetObject | Should -Be $unknown
    }

    It 'a status that is not one is refused at binding' {
        { Get-BackfillItem -RunId $run.RunId -Status Exploded -ErrorAction Stop } | Should -Throw -ErrorId 'ParameterArgumentValidationError,DataOps.PowerShell.Cmdlets.GetBackfillItemCommand'
    }

    It 'after Undo-Backfill: the undo run lists Restored items, and each applied item names the undo that restored it' {
        Undo-Backfill -RunId $run.RunId -Confirm:$false | Out-Null
        $undo = Get-BackfillRun | Where-Object Kind -eq undo | Select-Object -First 1
        $restored = @(Get-BackfillItem -RunId $undo.RunId)
        $restored.Status | Sort-Object -Unique | Should -Be 'Restored'
        $restored.Count | Should -Be $applied.Count
        (Get-BackfillItem -RunId $run.RunId -Status Applied).UndoneBy | Sort-Object -Unique | Should -Be $undo.RunId
    }
}
