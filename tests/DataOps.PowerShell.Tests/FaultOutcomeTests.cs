using System.Collections;
using System.Management.Automation;

namespace DataOps.PowerShell.Tests;

/// <summary>Failures a user can cause or meet end in a DataOps ErrorId and category, never a raw driver exception.</summary>
public sealed class FaultOutcomeTests
{
    /// <summary>The sample's content apart from its timestamps (they are relative to the time it was made).</summary>
    private const string Checksum = "SELECT md5(coalesce((SELECT string_agg(concat_ws('|', id, user_id, status, fc_kind), ',' ORDER BY id) FROM prism.sessions), '') || coalesce((SELECT string_agg(concat_ws('|', session_id, results_version), ',' ORDER BY session_id) FROM prism.profiles), ''))";

    [Fact]
    public void The_same_Prism_sample_twice_is_refused_cleanly_and_Reset_gives_the_same_state_again()
    {
        var cs = TestCluster.CreateDatabaseWith("Prism");
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = cs });
        var first = s.Run("New-PrismSampleData -Sessions 30 -Seed 42 -PendingShare 0.5");
        Assert.False(first.HadErrors, string.Join("\n", first.Errors));
        var original = Sql.Scalar(cs, Checksum);

        var again = s.Run("New-PrismSampleData -Sessions 30 -Seed 42 -PendingShare 0.5");

        var error = Assert.Single(again.Errors);
        Assert.StartsWith("SampleDataExists,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidOperation, error.CategoryInfo.Category);
        Assert.Contains("-Reset", error.Exception.Message);
        Assert.Equal(original, Sql.Scalar(cs, Checksum));

        // Change the data as a test would (a backfill), then -Reset puts the same sample back.
        Sql.Execute(cs, "UPDATE prism.sessions SET fc_kind = 'functions'; DELETE FROM prism.profiles");
        var reset = s.Run("New-PrismSampleData -Sessions 30 -Seed 42 -PendingShare 0.5 -Reset");

        Assert.False(reset.HadErrors, string.Join("\n", reset.Errors));
        Assert.Equal(first.Output[0].Properties["Pending"].Value, reset.Output[0].Properties["Pending"].Value);
        Assert.Equal(original, Sql.Scalar(cs, Checksum));
    }
}
