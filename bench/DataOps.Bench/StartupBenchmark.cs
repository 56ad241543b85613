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
/// <para>
/// pwsh keeps a multicore-JIT startup profile (StartupProfileData-NonInteractive in its cache folder,
/// $XDG_CACHE_HOME/powershell): every pwsh process replays the profile the previous pwsh process wrote,
/// pre-compiling those methods on a second thread, and then overwrites it. With the shared profile a run
/// depends on whatever pwsh ran before it on the machine (the other side of the pair, or anyone's tests).
/// So the pairs run twice: once as a user's shell does (the shared profile), and once with a cache folder
/// of each side's own, warmed by that side's own runs (each command in its steady state, nothing else
/// on the machine can change it).
/// </para>
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

        Console.WriteLine("== the shared startup profile (as a user's shell runs)");
        var shared = Pairs(pwshDll, bare, import, repeats, null, null);

        var profiles = Path.Combine(Path.GetTempPath(), $"dataops-bench-startup-{Environment.ProcessId}");
        var bareCache = Directory.CreateDirectory(Path.Combine(profiles, "bare")).FullName;
        var importCache = Directory.CreateDirectory(Path.Combine(profiles, "import")).FullName;
        PairResult isolated;
        double inProcess;
        try
        {
            Console.WriteLine("== a startup profile of each side's own (steady state)");
            for (var i = 0; i < 2; i++)
            {
                Time(pwshDll, bare, bareCache);
                Time(pwshDll, import, importCache);
            }

            isolated = Pairs(pwshDll, bare, import, repeats, bareCache, importCache);
            inProcess = InProcessImport(pwshDll, manifest, importCache);
        }
        finally
        {
            Directory.Delete(profiles, recursive: true);
        }

        Console.WriteLine();
        Console.WriteLine("| measure | shared startup profile | each side's own profile |");
        Console.WriteLine("| --- | --- | --- |");
        Row("pwsh -NoProfile -Command exit", shared.Bare, isolated.Bare);
        Row("the same with Import-Module DataOps first", shared.Import, isolated.Import);
        Row($"Import-Module cost (median of {repeats} paired differences)", shared.Difference, isolated.Difference);
        Row($"CPU time Import-Module adds (median of {repeats} paired differences, user + system)", shared.Cpu, isolated.Cpu);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| target <= 150 ms | {Verdict(shared.Difference)} | {Verdict(isolated.Difference)} |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| Import-Module as the first command inside pwsh (Stopwatch, median of 5, own profile) | | {inProcess:F0} ms |"));
    }

    private sealed record PairResult(double Bare, double Import, double Difference, double Cpu);

    private static void Row(string what, double shared, double isolated) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {what} | {shared:F0} ms | {isolated:F0} ms |"));

    private static string Verdict(double difference) => difference <= 150 ? "met" : "missed";

    private static PairResult Pairs(string pwshDll, string bare, string import, int repeats, string? bareCache, string? importCache)
    {
        var bareTimes = new List<double>();
        var importTimes = new List<double>();
        var differences = new List<double>();
        var cpuDifferences = new List<double>();
        for (var i = 0; i < repeats; i++)
        {
            (double Wall, double Cpu) b, m;
            if (i % 2 == 0)
            {
                b = Time(pwshDll, bare, bareCache);
                m = Time(pwshDll, import, importCache);
            }
            else
            {
                m = Time(pwshDll, import, importCache);
                b = Time(pwshDll, bare, bareCache);
            }

            bareTimes.Add(b.Wall);
            importTimes.Add(m.Wall);
            differences.Add(m.Wall - b.Wall);
            cpuDifferences.Add(m.Cpu - b.Cpu);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"pair {i + 1,2}: bare {b.Wall,6:F0} ms (cpu {b.Cpu,5:F0})  with Import-Module {m.Wall,6:F0} ms (cpu {m.Cpu,5:F0})  difference {m.Wall - b.Wall,5:F0} ms (cpu {m.Cpu - b.Cpu,4:F0})"));
        }

        return new PairResult(Median(bareTimes), Median(importTimes), Median(differences), Median(cpuDifferences));
    }

    private static (double Wall, double Cpu) Time(string pwshDll, string command, string? cacheHome = null)
    {
        var cpuBefore = ChildrenCpuMilliseconds();
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { pwshDll, "-NoProfile", "-NonInteractive", "-Command", command })
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["NO_COLOR"] = "1";
        if (cacheHome is not null)
        {
            psi.Environment["XDG_CACHE_HOME"] = cacheHome;
        }

        var wall = BenchSession.TimedRun(psi, $"pwsh -Command '{command}'");
        return (wall.TotalMilliseconds, ChildrenCpuMilliseconds() - cpuBefore);
    }

    /// <summary>
    /// Import-Module timed by a Stopwatch as the first command of a new pwsh. (Measure-Command { Import-Module }
    /// reads low: Measure-Command is itself a cmdlet, so the first-cmdlet costs, most of them JIT of the
    /// IL-only System.Management.Automation, are paid before its clock starts.)
    /// </summary>
    private static double InProcessImport(string pwshDll, string manifest, string cacheHome)
    {
        var times = new List<double>();
        for (var i = 0; i < 5; i++)
        {
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in new[] { pwshDll, "-NoProfile", "-NonInteractive", "-Command", $"$t = [Diagnostics.Stopwatch]::StartNew(); Import-Module '{manifest}'; [Console]::WriteLine($t.Elapsed.TotalMilliseconds.ToString([Globalization.CultureInfo]::InvariantCulture))" })
            {
                psi.ArgumentList.Add(a);
            }

            psi.Environment["XDG_CACHE_HOME"] = cacheHome;
            using var p = Process.Start(psi)!;
            var text = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            times.Add(double.Parse(text.Trim(), CultureInfo.InvariantCulture));
        }

        return Median(times);
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
