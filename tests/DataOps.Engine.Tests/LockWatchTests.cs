using DataOps.Engine.Backfill;
using DataOps.Engine.Logging;

namespace DataOps.Engine.Tests;

/// <summary>How a blocking session's query reads in a LockTimeout error, the ledger, the batch files and the logs.</summary>
public sealed class LockWatchTests
{
    [Theory]
    [InlineData("CREATE ROLE app LOGIN PASSWORD 'Hunter2Secret';", "CREATE ROLE app LOGIN PASSWORD '********';")]
    [InlineData("ALTER ROLE app WITH ENCRYPTED PASSWORD 'it''s Hunter2Secret'", "ALTER ROLE app WITH ENCRYPTED PASSWORD '********'")]
    [InlineData("SELECT 1 WHERE x = 'host=db password=Hunter2Secret'", "SELECT 1 WHERE x = 'host=db password=********")]
    public void A_blockers_password_literal_is_masked(string query, string expected)
    {
        var text = LockWatch.QueryText(query, new SecretRedactor());

        Assert.Equal(expected, text);
        Assert.DoesNotContain("Hunter2Secret", text);
    }

    [Fact]
    public void A_blockers_query_is_one_line_cut_to_its_length()
    {
        var text = LockWatch.QueryText("SELECT\n" + new string('x', 500), new SecretRedactor());

        Assert.Equal(LockWatch.QueryLength + 3, text.Length);
        Assert.StartsWith("SELECT x", text);
        Assert.EndsWith("...", text);
    }
}
