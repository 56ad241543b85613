using System.Collections;
using System.Diagnostics;
using System.Globalization;

namespace DataOps.Bench;

/// <summary>
/// Issue 18, item 3: Test-ProdHealth on a fleet of eight sandboxes (eight clusters, each with the Prism
/// sample where a share still needs the backfill) with -ThrottleLimit 4, against the slowest of the
/// same eight checks run one at a time. Target: fleet / slowest single &lt;= 1.5.
/// </summary>
internal static class FleetBenchmark
{
    public static void Run(int targets, int throttle, int sessions, int repeats, int latencyMs)
    {
        using var s = new BenchSession("bench-fleet-1");
        var names = Enumerable.Range(1, targets).Select(i => $"bench-fleet-{i}").ToList();
        var output = Directory.CreateTempSubdirectory("dataops-bench-fleet-").FullName;
        var job = Path.Combine(FindRepo(), "examples", "jobs", "results-v1.2.1.job.json");
        var relays = new List<LatencyRelay>();
        try
        {
            var watch = Stopwatch.StartNew();
            s.Invoke("$fleet = @(Get-DataOpsSandbox -Name $first) + @($rest | ForEach-Object { Start-DataOpsSandbox -Name $_ -Reset -Force -NoDefault })",
                new Hashtable { ["first"] = names[0], ["rest"] = names.Skip(1).ToArray() });
            s.Invoke($"Install-DataOpsSchema -Connection $fleet -Component Prism -Force | Out-Null; $i = 0; foreach ($t in $fleet) {{ $i++; New-PrismSampleData -Connection $t -Sessions {sessions} -Seed $i -PendingShare 0.3 -Force | Out-Null }}");
            Console.WriteLine($"{targets} sandboxes with {sessions} Prism sessions each in {watch.Elapsed.TotalSeconds:0.0} s; load average {LoadAverage()}");
            var vars = new Hashtable { ["job"] = job, ["out"] = output };
            if (latencyMs > 0)
            {
                // Each sandbox behind a relay that adds latencyMs each way: the fleet as remote servers.
                var sandboxes = s.Invoke("$fleet");
                var strings = new List<string>();
                foreach (var sb in sandboxes)
                {
                    var relay = new LatencyRelay((int)sb.Properties["Port"].Value, TimeSpan.FromMilliseconds(latencyMs));
                    relays.Add(relay);
                    var password = File.ReadAllText(Path.Combine(Path.GetDirectoryName((string)sb.Properties["DataDirectory"].Value)!, "password")).Trim();
                    strings.Add($"Host=127.0.0.1;Port={relay.Port};Database=dataops;Username=postgres;Password={password}");
                }

                s.Invoke("$fleet = $targets", new Hashtable { ["targets"] = strings.ToArray() });
                Console.WriteLine($"every target behind a loopback relay adding {latencyMs} ms each way");
            }

            // Warm-up: every code path once (JIT, pools), single and fleet.
            s.Invoke("foreach ($t in $fleet) { Test-ProdHealth -Job $job -Connection $t -OutputDirectory $out | Out-Null }", vars);
            s.Invoke($"Test-ProdHealth -Job $job -Connection $fleet -ThrottleLimit {throttle} -OutputDirectory $out | Out-Null", vars);

            var ratios = new List<double>();
            for (var r = 1; r <= repeats; r++)
            {
                var singles = new List<double>();
                for (var i = 0; i < targets; i++)
                {
                    vars["i"] = i;
                    singles.Add(Time(() => s.Invoke("Test-ProdHealth -Job $job -Connection $fleet[$i] -OutputDirectory $out | Out-Null", vars)));
                }

                var fleet = Time(() =>
                {
                    var rows = s.Invoke($"Test-ProdHealth -Job $job -Connection $fleet -ThrottleLimit {throttle} -OutputDirectory $out", vars);
                    if (rows.Count != targets || rows.Any(o => (string)o.Properties["Status"].Value != "ActionNeeded"))
                    {
                        throw new InvalidOperationException($"expected {targets} ActionNeeded rows, got {rows.Count}");
                    }
                });
                var slowest = singles.Max();
                ratios.Add(fleet / slowest);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"round {r}: singles {string.Join(", ", singles.Select(x => x.ToString("0", CultureInfo.InvariantCulture)))} ms (sum {singles.Sum():0}, slowest {slowest:0}); fleet -ThrottleLimit {throttle} {fleet:0} ms; fleet / slowest {fleet / slowest:0.00}; load average {LoadAverage()}"));
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"fleet / slowest single, median of {repeats}: {Stats.Median(ratios):0.00} (target <= 1.5)"));
        }
        finally
        {
            relays.ForEach(r => r.Dispose());
            s.Invoke("$rest | ForEach-Object { Stop-DataOpsSandbox -Name $_ -Remove -Confirm:$false }", new Hashtable { ["rest"] = names.Skip(1).ToArray() });
            Directory.Delete(output, recursive: true);
        }
    }

    private static double Time(Action action)
    {
        var watch = Stopwatch.StartNew();
        action();
        return watch.Elapsed.TotalMilliseconds;
    }

    private static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

    private static string FindRepo() => Path.GetFullPath(Path.Combine(Path.GetDirectoryName(BenchSession.FindManifest())!, "..", ".."));
}
