using System.Text.RegularExpressions;

namespace DataOps.Engine.Sandbox;

/// <summary>A folder holding initdb, pg_ctl and postgres, with the server's version.</summary>
public sealed record PgBinaries(string Directory, string Version, int MajorVersion)
{
    public string InitDb => Path.Combine(Directory, Exe("initdb"));

    public string PgCtl => Path.Combine(Directory, Exe("pg_ctl"));

    public string Postgres => Path.Combine(Directory, Exe("postgres"));

    internal static string Exe(string name) => OperatingSystem.IsWindows() ? name + ".exe" : name;
}

/// <summary>Where to look for the server binaries; the defaults read the process environment.</summary>
public sealed record PgSearchOptions
{
    public string? ExplicitDirectory { get; init; } = Environment.GetEnvironmentVariable("DATAOPS_PG_BIN");

    public string? PathVariable { get; init; } = Environment.GetEnvironmentVariable("PATH");

    public bool UsePgConfig { get; init; } = true;

    public IReadOnlyList<string> InstallRoots { get; init; } = ["/usr/lib/postgresql", "/usr/local/pgsql", "/opt/homebrew/opt"];
}

/// <summary>
/// Finds PostgreSQL server binaries: $env:DATAOPS_PG_BIN, then pg_config --bindir, then PATH,
/// then /usr/lib/postgresql/*/bin, newest version first.
/// </summary>
public static partial class PgBinaryLocator
{
    public const string InstallHint =
        "Install the PostgreSQL server (Debian/Ubuntu: 'sudo apt-get install postgresql'; Fedora: 'sudo dnf install postgresql-server'; macOS: 'brew install postgresql') " +
        "or set $env:DATAOPS_PG_BIN to the folder that holds initdb, pg_ctl and postgres.";

    public static PgBinaries Locate(PgSearchOptions? options = null)
    {
        options ??= new PgSearchOptions();
        var looked = new List<string>();

        if (!string.IsNullOrWhiteSpace(options.ExplicitDirectory))
        {
            // An explicit setting that is wrong is an error, not a reason to pick some other server.
            var found = TryDirectory(options.ExplicitDirectory);
            return found ?? throw NotFound([$"DATAOPS_PG_BIN={options.ExplicitDirectory}"]);
        }

        foreach (var dir in Candidates(options, looked))
        {
            var found = TryDirectory(dir);
            if (found is not null)
            {
                return found;
            }
        }

        throw NotFound(looked);
    }

    private static IEnumerable<string> Candidates(PgSearchOptions options, List<string> looked)
    {
        if (options.UsePgConfig)
        {
            var pgConfig = FindOnPath("pg_config", options.PathVariable);
            if (pgConfig is not null)
            {
                string? binDir = null;
                try
                {
                    var r = ProcessRunner.Run(pgConfig, ["--bindir"], asServiceUser: false, TimeSpan.FromSeconds(10));
                    binDir = r.ExitCode == 0 ? r.StandardOutput.Trim() : null;
                }
                catch (DataOpsException)
                {
                }

                if (!string.IsNullOrEmpty(binDir))
                {
                    looked.Add($"pg_config --bindir ({binDir})");
                    yield return binDir;
                }
            }
        }

        foreach (var dir in SplitPath(options.PathVariable))
        {
            if (File.Exists(Path.Combine(dir, PgBinaries.Exe("initdb"))))
            {
                looked.Add($"PATH ({dir})");
                yield return dir;
            }
        }

        if (!options.PathVariable.IsNullOrEmpty())
        {
            looked.Add("PATH");
        }

        foreach (var root in options.InstallRoots)
        {
            looked.Add(Path.Combine(root, "*", "bin"));
            if (!System.IO.Directory.Exists(root))
            {
                continue;
            }

            var versions = System.IO.Directory.GetDirectories(root)
                .Select(d => (Dir: d, Version: ParseVersion(Path.GetFileName(d))))
                .OrderByDescending(x => x.Version)
                .Select(x => Path.Combine(x.Dir, "bin"));
            foreach (var bin in versions)
            {
                yield return bin;
            }
        }
    }

    private static PgBinaries? TryDirectory(string dir)
    {
        // Symlinks such as /usr/local/bin/initdb point into the real bin folder; use that folder.
        var initdb = Path.Combine(dir, PgBinaries.Exe("initdb"));
        if (!File.Exists(initdb))
        {
            return null;
        }

        var target = new FileInfo(initdb).ResolveLinkTarget(returnFinalTarget: true);
        if (target is not null)
        {
            dir = Path.GetDirectoryName(target.FullName)!;
        }

        foreach (var tool in new[] { "pg_ctl", "postgres" })
        {
            if (!File.Exists(Path.Combine(dir, PgBinaries.Exe(tool))))
            {
                return null;
            }
        }

        var postgres = Path.Combine(dir, PgBinaries.Exe("postgres"));
        ProcessResult version;
        try
        {
            version = ProcessRunner.Run(postgres, ["--version"], asServiceUser: false, TimeSpan.FromSeconds(10));
        }
        catch (DataOpsException)
        {
            return null;
        }

        var m = VersionPattern().Match(version.StandardOutput);
        if (version.ExitCode != 0 || !m.Success)
        {
            return null;
        }

        return new PgBinaries(dir, m.Groups[1].Value, int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
    }

    private static DataOpsException NotFound(IEnumerable<string> looked) =>
        new("PostgresBinariesNotFound", DataOpsErrorKind.NotInstalled,
            $"No PostgreSQL server binaries (initdb, pg_ctl, postgres) were found. Looked in: {string.Join("; ", looked.DefaultIfEmpty("nothing to search"))}. {InstallHint}",
            string.Join("; ", looked))
        {
            RecommendedAction = InstallHint,
        };

    private static string? FindOnPath(string tool, string? pathVariable) =>
        SplitPath(pathVariable).Select(d => Path.Combine(d, PgBinaries.Exe(tool))).FirstOrDefault(File.Exists);

    private static IEnumerable<string> SplitPath(string? pathVariable) =>
        (pathVariable ?? string.Empty).Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static Version ParseVersion(string text) =>
        Version.TryParse(text.Contains('.') ? text : text + ".0", out var v) ? v : new Version(0, 0);

    private static bool IsNullOrEmpty(this string? s) => string.IsNullOrEmpty(s);

    [GeneratedRegex(@"\(PostgreSQL\)\s+((\d+)(?:\.\d+)*)")]
    private static partial Regex VersionPattern();
}
