using DataOps.Bench;

// Usage: dotnet run -c Release --project bench/DataOps.Bench -- seed|stats|backfill|startup|backfill-memory|keyset|fleet|workers [options]; see the usage text below.
var mode = args.FirstOrDefault() ?? "help";
int Option(string name, int fallback) => args.SkipWhile(a => a != name).Skip(1).Select(int.Parse).DefaultIfEmpty(fallback).First();
switch (mode)
{
    case "seed":
        SeedBenchmark.Run(Option("--repeats", 3), Option("--big", 10_000_000), args.Contains("--skip-insert"),
            args.SkipWhile(a => a != "--settings").Skip(1).DefaultIfEmpty("both").First());
        return 0;
    case "stats":
        StatsBenchmark.Run(Option("--repeats", 5), args.Contains("--list-all"));
        return 0;
    case "backfill":
        BackfillBenchmark.Run(Option("--items", 10_000), args.Contains("--skip-throttle"), Option("--repeats", 5));
        return 0;
    case "startup":
        StartupBenchmark.Run(Option("--repeats", 10));
        return 0;
    case "keyset":
        KeysetBenchmark.Run(args.SkipWhile(a => a != "--scales").Skip(1).DefaultIfEmpty("10,100").First().Split(',').Select(int.Parse).ToList(),
            args.SkipWhile(a => a != "--chunk-time").Skip(1).DefaultIfEmpty("500ms").First());
        return 0;
    case "fleet":
        FleetBenchmark.Run(Option("--targets", 8), Option("--throttle", 4), Option("--sessions", 2000), Option("--repeats", 5), Option("--latency-ms", 0));
        return 0;
    case "workers":
        WorkersBenchmark.Run(Option("--items", 10_000), Option("--repeats", 3));
        return 0;
    case "backfill-memory":
        BackfillMemoryBenchmark.Run(Option("--small", 7_000), Option("--large", 72_000));
        return 0;
    default:
        Console.WriteLine("Usage: DataOps.Bench seed [--repeats N] [--big ROWS] [--skip-insert] [--settings both|sandbox|default]");
        Console.WriteLine("       DataOps.Bench stats [--repeats N] [--list-all]");
        Console.WriteLine("       DataOps.Bench backfill [--items N] [--repeats N] [--skip-throttle]");
        Console.WriteLine("       DataOps.Bench startup [--repeats N]");
        Console.WriteLine("       DataOps.Bench backfill-memory [--small N] [--large N]");
        Console.WriteLine("       DataOps.Bench keyset [--scales 10,100] [--chunk-time 500ms]");
        Console.WriteLine("       DataOps.Bench workers [--items 10000] [--repeats 3]");
        Console.WriteLine("       DataOps.Bench fleet [--targets 8] [--throttle 4] [--sessions 2000] [--repeats 5] [--latency-ms 0]");
        return mode == "help" ? 0 : 64;
}
