using System.Collections;
using System.Text.Json;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// The rollback script is run by an operator with psql, whose lexer executes a line starting with
/// a backslash (\! runs a shell command). Keys and row values come from data: none of it may act.
/// </summary>
public sealed class RollbackScriptSafetyTests
{
    internal static string[] HostileValues(string marker) =>
    [
        $"A-2\n\\! touch {marker}\n",
        $"B\r\\! touch {marker}\r",
        "C\n\\set ON_ERROR_STOP off\n\\echo set\n",
        "D\n\\i /etc/hostname\n",
        "E\nSELECT 'SELECT 1' \\gexec\n",
        "F'; DROP TABLE hostile; --",
        $"G$$ $dataops$ END $dataops$; \\! touch {marker}\n$dataops$",
        "H\\' \\\\ :foo :'foo' :\"foo\" \\",
        "I\u2028\u0085\u000b\u000c\u0001\u001b[31m é ソ 表 \u00a5",
        "J\n/* unterminated\n-- comment\n",
        "K\\",
    ];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Hostile_keys_and_values_stay_inert_when_psql_runs_the_rollback_script(bool hostileSettings)
    {
        var cs = TestCluster.CreateDatabaseWith("Core");
        var marker = Path.Combine(Path.GetTempPath(), $"dataops-pwned-{Guid.NewGuid():N}");
        var values = HostileValues(marker);
        Sql.Execute(cs, "CREATE TABLE hostile (id text PRIMARY KEY, note text NOT NULL, n int NOT NULL DEFAULT 0)");
        for (var i = 0; i < values.Length; i++)
        {
            using var conn = new Npgsql.NpgsqlConnection(cs);
            conn.Open();
            using var cmd = new Npgsql.NpgsqlCommand("INSERT INTO hostile (id, note) VALUES (@id, @note)", conn);
            cmd.Parameters.AddWithValue("id", values[i]);
            cmd.Parameters.AddWithValue("note", values[(i + 1) % values.Length]);
            cmd.ExecuteNonQuery();
        }

        if (hostileSettings)
        {
            // A legacy database: backslashes escape in plain literals unless the script turns that off.
            Sql.Execute(cs, $"ALTER DATABASE \"{new Npgsql.NpgsqlConnectionStringBuilder(cs).Database}\" SET standard_conforming_strings = off");
        }

        var job = Path.Combine(Path.GetTempPath(), $"dataops-job-{Guid.NewGuid():N}.json");
        File.WriteAllText(job, JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["version"] = 1,
            ["name"] = "hostile-keys",
            ["parameters"] = new Dictionary<string, string> { ["suffix"] = $"\n\\! touch {marker}\n$dataops$'" },
            ["items"] = new Dictionary<string, string> { ["discover"] = "SELECT id AS key FROM hostile ORDER BY id" },
            ["capture"] = new[] { new Dictionary<string, string> { ["table"] = "hostile", ["where"] = "id = @key" } },
            ["steps"] = new[] { new Dictionary<string, string> { ["name"] = "append", ["sql"] = "UPDATE hostile SET note = note || @suffix || @key, n = n + 1 WHERE id = @key" } },
            ["verify"] = "SELECT n = 1 FROM hostile WHERE id = @key",
        }));
        var output = Directory.CreateTempSubdirectory("dataops-rb-").FullName;
        const string checksum = "SELECT md5(string_agg(to_jsonb(h)::text, ',' ORDER BY id)) FROM hostile h";
        var before = Sql.Scalar(cs, checksum);
        using var s = new PsSession();

        var run = s.Run("Connect-DataOps -ConnectionString $cs | Out-Null; Invoke-Backfill -Job $job -ItemsPerMinute 0 -OutputDirectory $out", new Hashtable { ["cs"] = cs, ["job"] = job, ["out"] = output });

        Assert.False(run.HadErrors, string.Join("\n", run.Errors));
        Assert.Equal(values.Length, run.Output.Count(o => o.Properties["Status"].Value.ToString() == "Applied"));
        Assert.NotEqual(before, Sql.Scalar(cs, checksum));
        var script = Directory.GetFiles(output, "rollback_*.sql", SearchOption.AllDirectories).Single();
        var lines = File.ReadAllLines(script);
        // Multi-line values put lines starting with a backslash inside literals (psql's run below is the
        // real check); the comments the script writes are one line of printable ASCII each.
        Assert.All(lines.Where(l => l.StartsWith("-- item ", StringComparison.Ordinal) || l.StartsWith("-- DataOps", StringComparison.Ordinal)), l => Assert.True(l.All(c => c is >= ' ' and <= '~'), l));
        // Each item's comment names its key exactly (as a JSON string), whatever the key holds.
        Assert.Equal(values.Order(StringComparer.Ordinal), RollbackScript.ItemKeys(script).Order(StringComparer.Ordinal));

        var env = hostileSettings ? new Dictionary<string, string> { ["PGCLIENTENCODING"] = "SJIS" } : null;
        var (code, stdout, stderr) = PsqlClient.RunFile(cs, script, env);

        Assert.True(code == 0, stderr + stdout);
        Assert.Contains("verified", stdout);
        Assert.False(File.Exists(marker), "psql ran a shell command taken from data");
        Assert.DoesNotContain("set", stdout.Split('\n').Select(l => l.Trim()));
        Assert.Equal(before, Sql.Scalar(cs, checksum));
        Assert.Equal((long)values.Length, Sql.Scalar(cs, "SELECT count(*) FROM dataops.ledger WHERE status = 'undone'"));
    }
}
