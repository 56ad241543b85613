using System.Collections;
using System.Text.Json.Nodes;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// The commands that promise to change nothing (Invoke-Backfill -WhatIf, Test-DataOpsEnvironment,
/// Test-ProdHealth, Watch-StagingSoak) run a job's query fields. Whatever those fields say, no row
/// changes: a field is one statement, a query must be a query, and it runs in a read-only
/// transaction of a read-only session.
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
}
