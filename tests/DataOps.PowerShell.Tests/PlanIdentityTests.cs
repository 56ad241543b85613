using System.Collections;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// Two sandboxes are copies of one initdb: the same cluster system identifier and the same database
/// name. A mini plan made on one must still be refused on the other.
/// </summary>
public sealed class PlanIdentityTests
{
    [Fact]
    public void A_plan_from_one_sandbox_is_refused_on_a_twin_sandbox_and_changes_nothing_there()
    {
        var names = new[] { $"twin-a-{Guid.NewGuid():N}"[..14], $"twin-b-{Guid.NewGuid():N}"[..14] };
        using var s = new PsSession();
        var vars = new Hashtable { ["a"] = names[0], ["b"] = names[1], ["root"] = TestCluster.Root, ["job"] = SampleJobs.Path, ["out"] = Directory.CreateTempSubdirectory("dataops-twin-").FullName };
        try
        {
            var setup = s.Run("""
                $ConnA = (Start-DataOpsSandbox -Name $a -Root $root -NoDefault).Connection
                $ConnB = (Start-DataOpsSandbox -Name $b -Root $root -NoDefault).Connection
                foreach ($c in $ConnA, $ConnB) {
                    Install-DataOpsSchema -Connection $c -Component Prism | Out-Null
                    New-PrismSampleData -Connection $c -Sessions 30 -Seed 5 -PendingShare 0.5 | Out-Null
                }
                $plan = (Test-ProdHealth -Connection $ConnA -Job $job -OutputDirectory $out).PlanPath
                $ConnA.Port, $ConnB.Port
                """, vars);
            Assert.False(setup.HadErrors, string.Join("\n", setup.Errors));
            string Cs(int i) => $"Host=127.0.0.1;Port={(int)setup.Output[i].BaseObject};Username=postgres;Password={File.ReadAllText(Path.Combine(TestCluster.Root, names[i], "password")).Trim()};Database=dataops;Pooling=false";
            var csB = Cs(1);
            // The twins are indistinguishable by cluster and name; only the installation tells them apart.
            const string identity = "SELECT system_identifier::text || '/' || current_database() FROM pg_control_system()";
            Assert.Equal(Sql.Scalar(Cs(0), identity), Sql.Scalar(csB, identity));
            var before = Sql.Scalar(csB, "SELECT md5(string_agg(to_jsonb(s)::text, ',' ORDER BY id)) FROM prism.sessions s");

            var r = s.Run("Invoke-Backfill -Connection $ConnB -Job $plan -ItemsPerMinute 0 -OutputDirectory $out -Confirm:$false", vars);

            var error = Assert.Single(r.Errors);
            Assert.StartsWith("WrongDatabase,", error.FullyQualifiedErrorId);
            Assert.Contains("installation", error.Exception.Message);
            Assert.Equal(before, Sql.Scalar(csB, "SELECT md5(string_agg(to_jsonb(s)::text, ',' ORDER BY id)) FROM prism.sessions s"));
            Assert.Equal(0L, Sql.Scalar(csB, "SELECT count(*) FROM dataops.ledger"));

            // On its own sandbox the plan runs.
            var own = s.Run("Invoke-Backfill -Connection $ConnA -Job $plan -ItemsPerMinute 0 -OutputDirectory $out -Confirm:$false", vars);
            Assert.False(own.HadErrors, string.Join("\n", own.Errors));
            Assert.NotEmpty(own.Output);
        }
        finally
        {
            s.Run("$a, $b | Stop-DataOpsSandbox -Root $root -Remove -Confirm:$false", vars);
        }
    }
}
