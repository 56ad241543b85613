using System.Collections;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// Tables with json and jsonb columns, through the cmdlets: Undo-Backfill and the rollback script
/// (run with psql) put back a jsonb 'null' as 'null', SQL NULL as NULL and json text as it was
/// written, and a row whose null state changed since the run is drift for both.
/// </summary>
public sealed class JsonImageTests
{
    /// <summary>The rows exactly: a record's text shows a jsonb 'null' as null, SQL NULL as nothing, json as written.</summary>
    private const string Checksum = "SELECT md5(string_agg(x::text, E'\\n' ORDER BY id)) FROM docs x";

    private const string Job = """
        {
          "version": 1, "name": "json-flip",
          "items": { "discover": "SELECT DISTINCT grp::text AS key FROM docs ORDER BY 1" },
          "capture": [ { "table": "docs", "where": "grp = @key::int" } ],
          "steps": [ { "name": "flip", "sql": "UPDATE docs SET b = CASE WHEN b IS NULL THEN 'null'::jsonb WHEN b = 'null'::jsonb THEN NULL ELSE b END, j = CASE WHEN j IS NULL THEN 'null'::json WHEN j::text = 'null' THEN NULL ELSE j::jsonb::json END, ja = ARRAY['null'::json, NULL], v = v + 1 WHERE grp = @key::int" } ],
          "verify": "SELECT bool_and(v = 1) FROM docs WHERE grp = @key::int"
        }
        """;

    /// <summary>Item 1: rows 1-20 (the bulk restore); items 2-5: two rows each. b, j and ja cycle through JSON null, SQL NULL and odd json text.</summary>
    private static (PsSession Session, string Cs, string Job, string Output) Setup()
    {
        var cs = TestCluster.CreateDatabaseWith("Core");
        Sql.Execute(cs, """
            CREATE TABLE docs (id int PRIMARY KEY, grp int NOT NULL, b jsonb, j json, ja json[], v int NOT NULL DEFAULT 0);
            INSERT INTO docs (id, grp, b, j, ja)
            SELECT i, CASE WHEN i <= 20 THEN 1 ELSE 2 + (i - 21) / 2 END,
                   (ARRAY['null'::jsonb, NULL, '{"k": null}', '[]'])[i % 4 + 1],
                   (ARRAY['{"b":1,  "a":2, "a" : 3}'::json, NULL, 'null', ' [1,2] '])[i % 4 + 1],
                   CASE WHEN i % 2 = 0 THEN ARRAY[NULL, 'null', '{ "x" : 1 }']::json[] END
            FROM generate_series(1, 28) i;
            """);
        var s = new PsSession();
        var output = Directory.CreateTempSubdirectory("dataops-json-").FullName;
        var job = Path.Combine(Path.GetTempPath(), $"dataops-job-{Guid.NewGuid():N}.json");
        File.WriteAllText(job, Job);
        var r = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
        return (s, cs, job, output);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(6000)]
    public void Undo_Backfill_puts_back_jsonb_null_sql_null_and_json_text_exactly(int itemsPerMinute)
    {
        var (s, cs, job, output) = Setup();
        using var session = s;
        var before = (string)Sql.Scalar(cs, Checksum)!;

        var run = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute $rate -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = output, ["rate"] = itemsPerMinute });

        Assert.False(run.HadErrors, string.Join("\n", run.Errors));
        Assert.Equal(5, run.Output.Count);
        Assert.Equal("null", Sql.Scalar(cs, "SELECT jsonb_typeof(b) FROM docs WHERE id = 1"));
        Assert.Equal(true, Sql.Scalar(cs, "SELECT b IS NULL FROM docs WHERE id = 4"));

        var undo = s.Run("Undo-Backfill -RunId $id -Confirm:$false", new Hashtable { ["id"] = run.Output[0].Properties["RunId"].Value });

        Assert.False(undo.HadErrors, string.Join("\n", undo.Errors));
        Assert.All(undo.Output, o => Assert.Equal("Restored", o.Properties["Status"].Value.ToString()));
        Assert.Equal(before, Sql.Scalar(cs, Checksum));
        Assert.Equal(true, Sql.Scalar(cs, "SELECT b IS NULL FROM docs WHERE id = 1"));
        Assert.Equal("null", Sql.Scalar(cs, "SELECT jsonb_typeof(b) FROM docs WHERE id = 4"));
        Assert.Equal("{\"b\":1,  \"a\":2, \"a\" : 3}", Sql.Scalar(cs, "SELECT j::text FROM docs WHERE id = 4"));
        Assert.Equal("{NULL,\"null\",\"{ \\\"x\\\" : 1 }\"}", Sql.Scalar(cs, "SELECT ja::text FROM docs WHERE id = 4"));
    }

    [Fact]
    public void The_rollback_script_restores_exactly_and_refuses_a_row_whose_null_state_changed_since_the_run()
    {
        var (s, cs, job, output) = Setup();
        using var session = s;
        var before = (string)Sql.Scalar(cs, Checksum)!;
        var run = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = output });
        Assert.False(run.HadErrors, string.Join("\n", run.Errors));
        var script = Directory.GetFiles(output, "rollback_*.sql", SearchOption.AllDirectories).Single();

        var (code, stdout, stderr) = PsqlClient.RunFile(cs, script);

        Assert.True(code == 0, stdout + stderr);
        Assert.Equal(before, Sql.Scalar(cs, Checksum));

        // Run again (the script recorded the undo), then someone sets row 4's SQL NULL (the run's) to a JSON null.
        var output2 = Directory.CreateTempSubdirectory("dataops-json-").FullName;
        var again = s.Run("Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", new Hashtable { ["job"] = job, ["out"] = output2 });
        Assert.Equal(5, again.Output.Count(o => o.Properties["Status"].Value.ToString() == "Applied"));
        Sql.Execute(cs, "UPDATE docs SET b = 'null'::jsonb WHERE id = 4 AND b IS NULL");
        var drifted = (string)Sql.Scalar(cs, Checksum)!;

        (code, stdout, stderr) = PsqlClient.RunFile(cs, Directory.GetFiles(output2, "rollback_*.sql", SearchOption.AllDirectories).Single());

        Assert.NotEqual(0, code);
        Assert.Contains("changed since the backfill", stderr, StringComparison.Ordinal);
        Assert.Equal(drifted, Sql.Scalar(cs, Checksum));

        var undo = s.Run("Undo-Backfill -RunId $id -Confirm:$false", new Hashtable { ["id"] = again.Output[0].Properties["RunId"].Value });

        var item = Assert.Single(undo.Output, o => o.Properties["Status"].Value.ToString() == "Drifted");
        Assert.Equal("1", item.Properties["Key"].Value);
        Assert.Equal(4, undo.Output.Count(o => o.Properties["Status"].Value.ToString() == "Restored"));
        Assert.Equal("null", Sql.Scalar(cs, "SELECT jsonb_typeof(b) FROM docs WHERE id = 4"));
    }
}
