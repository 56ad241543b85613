using System.Collections;
using System.Management.Automation;
using System.Text.Json.Nodes;
using Npgsql;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// The commands that promise to change nothing (Invoke-Backfill -WhatIf, Test-DataOpsEnvironment,
/// Test-ProdHealth, Watch-StagingSoak) run a job's query fields. Whatever those fields say, no row
/// changes: a field is one statement, a query must be a query, and it runs in a read-only
/// transaction of a read-only session. What a read-only transaction still allows (signalling other
/// sessions, locks, files, session settings) is refused before anything runs (QueryNotReadOnly),
/// for these four and for Invoke-DataOpsQuery -ReadOnly.
/// </summary>
public sealed class ReadOnlyQueryTests
{
    /// <summary>A query that returns keys and one that returns a number, each trying to delete every profile.</summary>
    public static TheoryData<string, string, string?> HostileQueries => new()
    {
        { "COMMIT; DELETE FROM prism.profiles; SELECT s.id::text AS key FROM prism.sessions s", "COMMIT; DELETE FROM prism.profiles; SELECT 0", "holds more than one statement" },
        { "COMMIT; BEGIN READ WRITE; DELETE FROM prism.profiles; SELECT 'x' AS key", "COMMIT; BEGIN READ WRITE; DELETE FROM prism.profiles; COMMIT; SELECT 0", "holds more than one statement" },
        { "SELECT 'x' AS key; COMMIT; DELETE FROM prism.profiles -- trailing", "SELECT 0; ROLLBACK; DELETE FROM prism.profiles", "holds more than one statement" },
        { "WITH d AS (DELETE FROM prism.profiles RETURNING session_id::text AS key) SELECT key FROM d", "WITH d AS (DELETE FROM prism.profiles RETURNING 1) SELECT count(*) FROM d", null },
        { "DELETE FROM prism.profiles RETURNING session_id::text AS key", "DELETE FROM prism.profiles RETURNING 0", null },
        { "SELECT evil_delete() AS key", "SELECT length(evil_delete())", null },
        { "SELECT set_config('default_transaction_read_only', 'off', false) AS key", "SELECT length(set_config('default_transaction_read_only', 'off', false)) - 3 + length(evil_delete())", null },
    };

    [Theory]
    [MemberData(nameof(HostileQueries))]
    public void A_query_field_changes_nothing_through_any_read_only_command(string keysQuery, string valueQuery, string? refusal)
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        using var s = new PsSession();
        var output = Directory.CreateTempSubdirectory("dataops-ro-").FullName;
        var setup = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null; New-PrismSampleData -Sessions 20 -Seed 7 -PendingShare 0.5 | Out-Null", new Hashtable { ["cs"] = cs });
        Assert.False(setup.HadErrors, string.Join("\n", setup.Errors));
        Sql.Execute(cs, "CREATE FUNCTION evil_delete() RETURNS text LANGUAGE plpgsql AS $$ BEGIN DELETE FROM prism.profiles; RETURN 'x'; END $$");
        var profiles = Sql.Scalar(cs, "SELECT count(*) FROM prism.profiles");
        Assert.True((long)profiles! > 0);

        var path = SampleJobs.With(job =>
        {
            job["items"] = new JsonObject { ["discover"] = keysQuery };
            job["health"]!["discover"] = keysQuery;
            job["health"]!["checks"]![0]!["query"] = valueQuery;
            job["soak"] = new JsonObject { ["checks"] = new JsonArray(new JsonObject { ["name"] = "hostile", ["query"] = valueQuery, ["expect"] = new JsonObject { ["equals"] = 0 } }) };
        }, output);
        var vars = new Hashtable { ["job"] = path, ["out"] = output };

        foreach (var command in new[]
        {
            "Invoke-Backfill -Job $job -WhatIf -OutputDirectory $out",
            "Test-DataOpsEnvironment -Job $job",
            "Test-ProdHealth -Job $job -OutputDirectory $out",
            "Watch-StagingSoak -Job $job -Duration 1s -Interval 300ms -OutputDirectory $out",
        })
        {
            var r = s.Run(command, vars);

            Assert.Equal(profiles, Sql.Scalar(cs, "SELECT count(*) FROM prism.profiles"));
            var said = string.Join("\n", r.Errors.Select(e => e.Exception.Message).Concat(r.Output.Select(o => o.ToString())));
            if (refusal is not null)
            {
                Assert.True(said.Contains(refusal, StringComparison.Ordinal), $"{command}: {said}");
            }
        }

        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run"));
    }

    [Theory]
    [InlineData("steps", "UPDATE prism.sessions SET fc_kind = 'functions' WHERE id = @key::uuid; COMMIT; CREATE TABLE escaped (id int)", "$.steps[0].sql: holds more than one statement (another begins after the ';' at character 70)")]
    [InlineData("verify", "SELECT true OR @key IS NULL; DELETE FROM prism.profiles", "$.verify: holds more than one statement")]
    [InlineData("where", "id = @key::uuid); DELETE FROM prism.profiles; SELECT (1", "$.capture[0].where: holds a ';' at character 17")]
    [InlineData("discover", "SELECT 'a;b' AS key, $x$;$x$ AS y, \"c;d\" AS z /* ; /* ; */ ; */ -- ;\n; DELETE FROM prism.profiles", "$.items.discover: holds more than one statement")]
    public void A_field_with_more_than_one_statement_is_refused_before_anything_runs(string field, string sql, string expected)
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        var path = SampleJobs.With(job =>
        {
            switch (field)
            {
                case "steps": job["steps"]![0]!["sql"] = sql; break;
                case "verify": job["verify"] = sql; break;
                case "where": job["capture"]![0]!["where"] = sql; break;
                default: job["items"] = new JsonObject { ["discover"] = sql }; break;
            }
        });

        var error = s.Terminating("Invoke-Backfill", new Hashtable { ["Job"] = path, ["Confirm"] = false });

        Assert.StartsWith("JobFileInvalid,", error.FullyQualifiedErrorId);
        Assert.True(error.Exception.Message.Contains(expected, StringComparison.Ordinal), error.Exception.Message);
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run"));
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM pg_class WHERE relname = 'escaped'"));
    }

    [Theory]
    [InlineData("SELECT 1 AS key;")]
    [InlineData("SELECT 1 AS key; -- done\n")]
    [InlineData("SELECT ';' AS key, E'\\';' AS y, $$;$$ AS z")]
    public void One_statement_with_a_trailing_semicolon_or_quoted_semicolons_is_accepted(string discover)
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        var path = SampleJobs.With(job => job["items"] = new JsonObject { ["discover"] = discover });

        var r = s.Run("Test-DataOpsEnvironment -Job $job", new Hashtable { ["job"] = path });

        var duration = r.Output.Select(o => o.BaseObject).Single(o => (string)o.GetType().GetProperty("Name")!.GetValue(o)! == "Duration");
        Assert.True((bool)duration.GetType().GetProperty("Passed")!.GetValue(duration)!, duration.ToString());
        Assert.Contains("1 items", duration.ToString());
    }

    private static readonly string[] ReadOnlyCommands =
    [
        "Invoke-Backfill -Job $job -WhatIf -OutputDirectory $out",
        "Test-DataOpsEnvironment -Job $job",
        "Test-ProdHealth -Job $job -OutputDirectory $out",
        "Watch-StagingSoak -Job $job -Duration 1s -Interval 300ms -OutputDirectory $out",
    ];

    /// <summary>A query field that would end another session ({0}: its pid), in a different spelling per field.</summary>
    public static TheoryData<string, string, string> TerminatingQueries => new()
    {
        { "$.items.discover", "SELECT pid::text AS key FROM pg_stat_activity WHERE pg_terminate_backend({0})", "calls pg_terminate_backend (at character 53)" },
        { "$.health.discover", "SELECT x::text AS key FROM pg_catalog.PG_TERMINATE_BACKEND({0}) AS t(x)", "calls pg_terminate_backend (at character 39)" },
        { "$.health.checks[0].query", "SELECT \"pg_terminate_backend\"({0})::int", "calls pg_terminate_backend (at character 8)" },
        { "$.soak.checks[2].query", "SELECT count(*) FROM pg_stat_activity WHERE pg_catalog.\"pg_terminate_backend\"(pid) AND pid = {0}", "calls pg_terminate_backend (at character 56)" },
        { "$.soak.checks[0].baseline.query", "SELECT (pid).pg_terminate_backend::int FROM pg_stat_activity WHERE pid = {0}", "calls pg_terminate_backend (at character 14)" },
    };

    [Theory]
    [MemberData(nameof(TerminatingQueries))]
    public void A_query_field_calling_pg_terminate_backend_is_refused_by_every_read_only_command_and_the_victim_lives(string field, string template, string expected)
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        using var s = new PsSession();
        var output = Directory.CreateTempSubdirectory("dataops-ro-").FullName;
        var setup = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null; New-PrismSampleData -Sessions 10 -Seed 8 -PendingShare 0.5 | Out-Null", new Hashtable { ["cs"] = cs });
        Assert.False(setup.HadErrors, string.Join("\n", setup.Errors));
        using var victim = new NpgsqlConnection(cs);
        victim.Open();
        var sql = string.Format(System.Globalization.CultureInfo.InvariantCulture, template, victim.ProcessID);
        var path = SampleJobs.With(job =>
        {
            switch (field)
            {
                case "$.items.discover": job["items"] = new JsonObject { ["discover"] = sql }; break;
                case "$.health.discover": job["health"]!["discover"] = sql; break;
                case "$.health.checks[0].query": job["health"]!["checks"]![0]!["query"] = sql; break;
                case "$.soak.checks[2].query": job["soak"]!["checks"]![2]!["query"] = sql; break;
                default: job["soak"]!["checks"]![0]!["baseline"] = new JsonObject { ["query"] = sql }; job["soak"]!["checks"]![0]!["expect"] = new JsonObject { ["atLeastBaseline"] = 1 }; break;
            }
        }, output);

        foreach (var command in ReadOnlyCommands)
        {
            var r = s.Run(command, new Hashtable { ["job"] = path, ["out"] = output });

            var error = Assert.Single(r.Errors);
            Assert.StartsWith("QueryNotReadOnly,", error.FullyQualifiedErrorId);
            Assert.Equal(ErrorCategory.PermissionDenied, error.CategoryInfo.Category);
            Assert.Contains($"{field} {expected}, which changes the server even in a read-only transaction; a read-only command refuses it.", error.Exception.Message);
            Assert.Equal(1, new NpgsqlCommand("SELECT 1", victim).ExecuteScalar());
        }

        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM dataops.run"));
    }

    [Theory]
    [InlineData("SELECT pg_terminate_backend({0})")]
    [InlineData("select PG_CATALOG.\"pg_terminate_backend\" ({0}) -- 'x'")]
    [InlineData("SELECT ({0}).pg_cancel_backend")]
    [InlineData("SELECT pg_advisory_lock({0})")]
    [InlineData("SELECT lo_import('/etc/hostname')")]
    [InlineData("SELECT set_config('default_transaction_read_only', 'off', false)")]
    [InlineData("SELECT * FROM dblink('dbname=postgres', 'SELECT pg_terminate_backend({0})') AS t(ok boolean)")]
    [InlineData("LOCK pg_catalog.pg_class IN ACCESS EXCLUSIVE MODE")]
    [InlineData("COPY (SELECT 1) TO PROGRAM 'true'")]
    [InlineData("DO $$ BEGIN PERFORM pg_terminate_backend({0}); END $$")]
    public void Invoke_DataOpsQuery_ReadOnly_refuses_what_changes_the_server_and_the_victim_lives(string template)
    {
        var cs = TestCluster.CreateDatabase();
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        using var victim = new NpgsqlConnection(cs);
        victim.Open();
        var sql = string.Format(System.Globalization.CultureInfo.InvariantCulture, template, victim.ProcessID);

        var error = s.Terminating("Invoke-DataOpsQuery", new Hashtable { ["Query"] = sql, ["ReadOnly"] = true });

        Assert.StartsWith("QueryNotReadOnly,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.PermissionDenied, error.CategoryInfo.Category);
        Assert.StartsWith("The query ", error.Exception.Message);
        Assert.Equal(1, new NpgsqlCommand("SELECT 1", victim).ExecuteScalar());
        Assert.Equal(0L, Sql.Scalar(cs, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"));
    }

    [Fact]
    public void Names_in_text_comments_and_columns_and_transaction_local_settings_still_run()
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        using var s = new PsSession();
        var output = Directory.CreateTempSubdirectory("dataops-ro-").FullName;
        var setup = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null; New-PrismSampleData -Sessions 10 -Seed 9 -PendingShare 0.5 | Out-Null", new Hashtable { ["cs"] = cs });
        Assert.False(setup.HadErrors, string.Join("\n", setup.Errors));
        const string Query = "SELECT count(*) FROM (SELECT 1 AS pg_notify_count, 'pg_terminate_backend(1)' AS said) x " +
                             "WHERE x.pg_notify_count = 1 AND set_config('statement_timeout', '20s', true) = '20s' /* pg_cancel_backend(1) */ -- lo_import('x')";
        var path = SampleJobs.With(job =>
        {
            job["health"]!["checks"] = new JsonArray(new JsonObject { ["name"] = "text only", ["query"] = Query, ["expect"] = new JsonObject { ["equals"] = 1 } });
            job["soak"]!["checks"] = new JsonArray(new JsonObject { ["name"] = "text only", ["query"] = Query, ["expect"] = new JsonObject { ["equals"] = 1 } });
        }, output);
        var vars = new Hashtable { ["job"] = path, ["out"] = output, ["q"] = Query };

        foreach (var command in ReadOnlyCommands.Append("Invoke-DataOpsQuery -Query $q -ReadOnly -As Scalar"))
        {
            var r = s.Run(command, vars);

            Assert.False(r.HadErrors, $"{command}: {string.Join("\n", r.Errors)}");
        }

        var health = s.Run("(Test-ProdHealth -Job $job -OutputDirectory $out).Checks", vars);
        Assert.Equal("Pass", Assert.Single(health.Output).Properties["Outcome"].Value);
        Assert.Equal(1L, s.Run("Invoke-DataOpsQuery -Query $q -ReadOnly -As Scalar", vars).Output.Single().BaseObject);
    }
}
