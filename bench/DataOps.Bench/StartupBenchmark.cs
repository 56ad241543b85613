using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace DataOps.Bench;

/// <summary>
/// What Import-Module DataOps costs a user in real pwsh: paired process runs of a bare
/// 'pwsh -NoProfile -Command exit' and the same with 'Import-Module out/DataOps/DataOps.psd1' first.
/// The pair's order alternates so drift on a busy machine falls on both sides; the figure is the median
/// of the paired differences (target: at most 150 ms). The CPU time of each process (user + system,
/// from getrusage of the reaped children) is reported beside it: on a machine that other jobs load, wall
/// time swings by seconds while CPU time stays put.
/// </summary>
internal static class StartupBenchmark
{
    // struct rusage on 64-bit Linux: ru_utime and ru_stime (two timevals of two longs), then 14 longs.
    [DllImport("libc", EntryPoint = "getrusage")]
    private static extern int GetRUsage(int who, [Out] long[] usage);

    private static double ChildrenCpuMilliseconds()
    {
        var u = new long[18];
        _ = GetRUsage(-1, u); // RUSAGE_CHILDREN: every reaped child process
        return ((u[0] + u[2]) * 1000.0) + ((u[1] + u[3]) / 1000.0);
    }

    public static void Run(int repeats)
    {
        var manifest = BenchSession.FindManifest();
        var pwshDll = FindPwsh();
        Console.WriteLine($"pwsh: dotnet {pwshDll}");
        Console.WriteLine($"module: {manifest}");
        var bare = "exit 0";
        var import = $"Import-Module '{manifest}'; if (-not (Get-Command Start-DataOpsSandbox)) {{ exit 1 }}; exit 0";

        // Warm-up: the OS file cache and the first JIT of both command lines.
        for (var i = 0; i < 2; i++)
        {
            Time(pwshDll, bare);
            Time(pwshDll, import);
        }

        var bareTimes = new List<double>();
        var importTimes = new List<double>();
        var differences = new List<double>();
        var cpuDifferences = new List<double>();
        for (var i = 0; i < repeats; i++)
        {
            (double Wall, double Cpu) b, m;
            if (i % 2 == 0)
            {
                b = Time(pwshDll, bare);
                m = Time(pwshDll, import);
            }
            else
            {
                m = Time(pwshDll, import);
                b = Time(pwshDll, bare);
            }

            bareTimes.Add(b.Wall);
            importTimes.Add(m.Wall);
            differences.Add(m.Wall - b.Wall);
            cpuDifferences.Add(m.Cpu - b.Cpu);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"pair {i + 1,2}: bare {b.Wall,6:F0} ms (cpu {b.Cpu,5:F0})  with Import-Module {m.Wall,6:F0} ms (cpu {m.Cpu,5:F0})  difference {m.Wall - b.Wall,5:F0} ms (cpu {m.Cpu - b.Cpu,4:F0})"));
        }

        var inProcess = InProcessImport(pwshDll, manifest);
        Console.WriteLine();
        Console.WriteLine("| measure | median |");
        Console.WriteLine("| --- | --- |");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| pwsh -NoProfile -Command exit | {Median(bareTimes):F0} ms |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| the same with Import-Module DataOps first | {Median(importTimes):F0} ms |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| Import-Module cost (median of {repeats} paired differences) | {Median(differences):F0} ms (target <= 150 ms: {(Median(differences) <= 150 ? "met" : "missed")}) |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| CPU time Import-Module adds (median of {repeats} paired differences, user + system) | {Median(cpuDifferences):F0} ms |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| Import-Module inside a running pwsh (Measure-Command, first import) | {inProcess:F0} ms |"));
    }

    private static (double Wall, double Cpu) Time(string pwshDll, string command)
    {
        var cpuBefore = ChildrenCpuMilliseconds();
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { pwshDll, "-NoProfile", "-NonInteractive", "-Command", command })
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["NO_COLOR"] = "1";
        var wall = BenchSession.TimedRun(psi, $"pwsh -Command '{command}'");
        return (wall.TotalMilliseconds, ChildrenCpuMilliseconds() - cpuBefore);
    }

    private static double InProcessImport(string pwshDll, string manifest)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { pwshDll, "-NoProfile", "-NonInteractive", "-Command", $"(Measure-Command {{ Import-Module '{manifest}' }}).TotalMilliseconds" })
        {
            psi.ArgumentList.Add(a);
        }

        using var p = Process.Start(psi)!;
        var text = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return double.Parse(text.Trim(), CultureInfo.InvariantCulture);
    }

    /// <summary>The pinned pwsh: 'dotnet pwsh' from the repository (the tool manifest), asked for its pwsh.dll.</summary>
    /// <summary>The pinned pwsh tool's pwsh.dll (run it with dotnet).</summary>
    internal static string FindPwsh()
    {
        var root = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(BenchSession.FindManifest())!, "..", ".."));
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false, WorkingDirectory = root };
        foreach (var a in new[] { "pwsh", "-NoProfile", "-NonInteractive", "-Command", "Join-Path $PSHOME pwsh.dll" })
        {
            psi.ArgumentList.Add(a);
        }

        using var p = Process.Start(psi)!;
        var path = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        if (p.ExitCode != 0 || !File.Exists(path))
        {
            throw new InvalidOperationException("pwsh not found: run 'dotnet tool restore' in the repository first.");
        }

        return path;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.OrderBy(v => v).ToList();
        var mid = sorted.Count / 2;
        return sorted.Count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
