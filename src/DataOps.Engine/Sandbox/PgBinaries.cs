using System.Globalization;
using System.Text.RegularExpressions;

namespace DataOps.Engine.Sandbox;

/// <summary>A folder holding initdb, pg_ctl and postgres, with the server's version.</summary>
public sealed record PgBinaries(string Directory, string Version, int MajorVersion)
{
    /// <summary>".exe" for binaries of a Windows layout, empty elsewhere.</summary>
    public string ExecutableSuffix { get; init; } = PgPlatform.CurrentKind == PgPlatformKind.Windows ? ".exe" : string.Empty;

    public string InitDb => Path.Combine(Directory, "initdb" + ExecutableSuffix);

    public string PgCtl => Path.Combine(Directory, "pg_ctl" + ExecutableSuffix);

    public string Postgres => Path.Combine(Directory, "postgres" + ExecutableSuffix);

    /// <summary>Makes a sandbox's replicas; shipped beside pg_ctl (Debian puts it in the client package, which the server depends on).</summary>
    public string PgBaseBackup => Path.Combine(Directory, "pg_basebackup" + ExecutableSuffix);

    internal static string Exe(string name) => PgPlatform.CurrentKind == PgPlatformKind.Windows ? name + ".exe" : name;
}

/// <summary>
/// Where to look for the server binaries. Unset properties come from <see cref="Platform"/>
/// (by default the machine we run on): $env:DATAOPS_PG_BIN, PATH, and the install roots of its OS.
/// </summary>
public sealed record PgSearchOptions
{
    private readonly string? _explicitDirectory;
    private readonly bool _explicitSet;
    private readonly string? _pathVariable;
    private readonly bool _pathSet;
    private readonly IReadOnlyList<string>? _installRoots;

    public PgPlatform Platform { get; init; } = PgPlatform.Current;

    /// <summary>A folder that must hold the binaries (an error if it does not); default $env:DATAOPS_PG_BIN.</summary>
    public string? ExplicitDirectory
    {
        get => _explicitSet ? _explicitDirectory : Platform.Get("DATAOPS_PG_BIN");
        init
        {
            _explicitDirectory = value;
            _explicitSet = true;
        }
    }

    public string? PathVariable
    {
        get => _pathSet ? _pathVariable : Platform.PathVariable;
        init
        {
            _pathVariable = value;
            _pathSet = true;
        }
    }

    public bool UsePgConfig { get; init; } = true;

    /// <summary>
    /// Folders laid out as &lt;root&gt;/&lt;version&gt;/bin (or &lt;root&gt;/bin): /usr/lib/postgresql and
    /// /usr/local/pgsql on Linux, /Library/PostgreSQL (the EDB installer) and /usr/local/pgsql on macOS.
    /// </summary>
    public IReadOnlyList<string> InstallRoots
    {
        get => _installRoots ?? Platform.Kind switch
        {
            PgPlatformKind.Linux => ["/usr/lib/postgresql", "/usr/local/pgsql"],
            PgPlatformKind.MacOS => ["/Library/PostgreSQL", "/usr/local/pgsql"],
            _ => [],
        };
        init => _installRoots = value;
    }
}

/// <summary>
/// Finds PostgreSQL server binaries. Order: $env:DATAOPS_PG_BIN (alone: a wrong setting is an
/// error), pg_config --bindir, PATH, then every install layout the OS is known for, of which the
/// newest server wins (on a tie the earlier layout): Windows: the EDB installer's registry entries,
/// %ProgramFiles%\PostgreSQL\&lt;major&gt;\bin, Scoop, Chocolatey; macOS: Postgres.app, Homebrew's
/// postgresql@&lt;major&gt; kegs, /Library/PostgreSQL; Linux: /usr/lib/postgresql/&lt;major&gt;/bin,
/// /usr/pgsql-&lt;major&gt;/bin, Homebrew on Linux. docs/platforms.md lists the order per OS.
/// </summary>
public static partial class PgBinaryLocator
{
    public const string InstallHint =
        "Install the PostgreSQL server (Debian/Ubuntu: 'sudo apt-get install postgresql'; Fedora: 'sudo dnf install postgresql-server'; macOS: 'brew install postgresql') " +
        "or set $env:DATAOPS_PG_BIN to the folder that holds initdb, pg_ctl and postgres.";

    public static string InstallHintFor(PgPlatformKind kind) => kind switch
    {
        PgPlatformKind.Windows =>
            "Install the PostgreSQL server (the EDB installer, 'scoop install postgresql' or 'choco install postgresql16') " +
            "or set $env:DATAOPS_PG_BIN to the folder that holds initdb.exe, pg_ctl.exe and postgres.exe (such as 'C:\\Program Files\\PostgreSQL\\16\\bin').",
        PgPlatformKind.MacOS =>
            "Install the PostgreSQL server (Postgres.app, or 'brew install postgresql@16') " +
            "or set $env:DATAOPS_PG_BIN to the folder that holds initdb, pg_ctl and postgres (such as '/Applications/Postgres.app/Contents/Versions/latest/bin').",
        _ => InstallHint,
    };

    public static PgBinaries Locate(PgSearchOptions? options = null)
    {
        options ??= new PgSearchOptions();
        var platform = options.Platform;
        var looked = new List<string>();

        if (options.ExplicitDirectory is { } explicitDir && !string.IsNullOrWhiteSpace(explicitDir))
        {
            // An explicit setting that is wrong is an error, not a reason to pick some other server.
            var found = TryDirectory(explicitDir, platform);
            return found ?? throw NotFound([$"DATAOPS_PG_BIN={explicitDir}"], platform.Kind);
        }

        foreach (var dir in ConfiguredCandidates(options, looked))
        {
            var found = TryDirectory(dir, platform);
            if (found is not null)
            {
                return found;
            }
        }

        // The known layouts: probe them all and take the newest server, so PostgreSQL 17 from
        // Homebrew wins over 16 from Postgres.app, and a broken newer install does not hide a working one.
        var seen = new HashSet<string>(platform.Kind == PgPlatformKind.Windows ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal);
        PgBinaries? best = null;
        foreach (var dir in LayoutCandidates(options, looked))
        {
            if (!seen.Add(RealPath(dir)))
            {
                continue;
            }

            var found = TryDirectory(dir, platform);
            if (found is not null && (best is null || ParseVersion(found.Version) > ParseVersion(best.Version)))
            {
                best = found;
            }
        }

        return best ?? throw NotFound(looked, platform.Kind);
    }

    /// <summary>What the user configured: pg_config on PATH, then PATH itself, first hit wins.</summary>
    private static IEnumerable<string> ConfiguredCandidates(PgSearchOptions options, List<string> looked)
    {
        var platform = options.Platform;
        if (options.UsePgConfig)
        {
            var pgConfig = SplitPath(options.PathVariable, platform)
                .Where(d => !IsChocolateyShims(d, platform))
                .Select(d => Path.Combine(d, "pg_config" + platform.ExecutableSuffix))
                .FirstOrDefault(File.Exists);
            if (pgConfig is null)
            {
                looked.Add("pg_config --bindir (no pg_config on PATH)");
            }
            else
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

                looked.Add($"pg_config --bindir ({binDir ?? pgConfig + " failed"})");
                if (!string.IsNullOrEmpty(binDir))
                {
                    yield return binDir;
                }
            }
        }

        looked.Add(string.IsNullOrEmpty(options.PathVariable) ? "PATH (empty)" : "PATH");
        foreach (var dir in SplitPath(options.PathVariable, platform))
        {
            if (!File.Exists(Path.Combine(dir, "initdb" + platform.ExecutableSuffix)))
            {
                continue;
            }

            if (IsChocolateyShims(dir, platform))
            {
                // Chocolatey's shims only start the real tools; the real folder (Program Files or the
                // registry's) is found among the layouts below, and the shims are the last resort there.
                looked.Add($"PATH ({dir}: Chocolatey shims, searched below)");
                continue;
            }

            looked.Add($"PATH ({dir})");
            yield return dir;
        }
    }

    /// <summary>Every install layout of the platform, in the order that breaks a version tie.</summary>
    private static IEnumerable<string> LayoutCandidates(PgSearchOptions options, List<string> looked)
    {
        var p = options.Platform;
        switch (p.Kind)
        {
            case PgPlatformKind.Windows:
                var registry = p.ReadRegistry();
                looked.Add($"{PgPlatform.RegistryKey}\\*\\Base Directory ({(registry.Count == 0 ? "no entries" : string.Join(", ", registry.Select(r => r.Id)))})");
                foreach (var entry in registry.OrderByDescending(r => ParseVersion(r.Version ?? string.Empty)))
                {
                    yield return Path.Combine(entry.BaseDirectory, "bin");
                }

                foreach (var programFiles in p.ProgramFiles)
                {
                    foreach (var dir in VersionFolders(Path.Combine(programFiles, "PostgreSQL"), "*", looked, "bin"))
                    {
                        yield return dir;
                    }
                }

                foreach (var scoop in new[] { p.ScoopRoot, p.ScoopGlobalRoot }.OfType<string>())
                {
                    // postgresql, postgresql16, ...: each app's "current" points at its installed version.
                    foreach (var dir in VersionFolders(Path.Combine(scoop, "apps"), "postgresql*", looked, "current", "bin"))
                    {
                        yield return dir;
                    }
                }

                var choco = Path.Combine(p.ChocolateyRoot, "bin");
                looked.Add(choco);
                yield return choco;
                break;

            case PgPlatformKind.MacOS:
                foreach (var apps in p.ApplicationsDirectories)
                {
                    // Versions/16, Versions/17 and Versions/latest (a link to the newest).
                    foreach (var dir in VersionFolders(Path.Combine(apps, "Postgres.app", "Contents", "Versions"), "*", looked, "bin"))
                    {
                        yield return dir;
                    }
                }

                foreach (var dir in HomebrewFolders(p, looked))
                {
                    yield return dir;
                }

                break;

            default:
                foreach (var dir in VersionFolders("/usr", "pgsql-*", looked, "bin"))
                {
                    yield return dir;
                }

                foreach (var dir in HomebrewFolders(p, looked))
                {
                    yield return dir;
                }

                break;
        }

        foreach (var root in options.InstallRoots)
        {
            looked.Add(Path.Combine(root, "bin"));
            yield return Path.Combine(root, "bin");
            foreach (var dir in VersionFolders(root, "*", looked, "bin"))
            {
                yield return dir;
            }
        }
    }

    private static IEnumerable<string> HomebrewFolders(PgPlatform p, List<string> looked)
    {
        foreach (var prefix in p.HomebrewPrefixes)
        {
            // Kegs postgresql@16, postgresql@17 (the unversioned 'postgresql' formula is older).
            foreach (var dir in VersionFolders(Path.Combine(prefix, "opt"), "postgresql@*", looked, "bin"))
            {
                yield return dir;
            }

            var plain = Path.Combine(prefix, "opt", "postgresql", "bin");
            looked.Add(plain);
            yield return plain;
        }
    }

    /// <summary>&lt;parent&gt;/&lt;pattern&gt;/&lt;below...&gt;, newest version (from the folder's name) first.</summary>
    private static IEnumerable<string> VersionFolders(string parent, string pattern, List<string> looked, params string[] below)
    {
        looked.Add(Path.Combine([parent, pattern, .. below]));
        if (!System.IO.Directory.Exists(parent))
        {
            return [];
        }

        try
        {
            return System.IO.Directory.GetDirectories(parent, pattern)
                .Select(d => (Dir: d, Version: FolderVersion(d)))
                .OrderByDescending(x => x.Version)
                .ThenBy(x => x.Dir, StringComparer.Ordinal)
                .Select(x => Path.Combine([x.Dir, .. below]))
                .ToList();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }

    /// <summary>The version a folder's name says (16, 9.6, postgresql@17, pgsql-15); a link such as Postgres.app's 'latest' says its target's.</summary>
    private static Version FolderVersion(string dir)
    {
        var name = Path.GetFileName(dir);
        try
        {
            if (new DirectoryInfo(dir).ResolveLinkTarget(returnFinalTarget: true) is { } target)
            {
                name = target.Name;
            }
        }
        catch (IOException)
        {
        }

        var m = FolderVersionPattern().Match(name);
        return m.Success ? ParseVersion(m.Value) : new Version(0, 0);
    }

    private static bool IsChocolateyShims(string dir, PgPlatform p) =>
        p.Kind == PgPlatformKind.Windows && string.Equals(TrimEnd(dir), TrimEnd(Path.Combine(p.ChocolateyRoot, "bin")), StringComparison.OrdinalIgnoreCase);

    private static string TrimEnd(string path) => path.TrimEnd('/', '\\');

    private static string RealPath(string dir)
    {
        try
        {
            var full = Path.GetFullPath(dir);
            var parent = Path.GetDirectoryName(full);
            if (parent is not null && new DirectoryInfo(parent).ResolveLinkTarget(returnFinalTarget: true) is { } target)
            {
                return Path.Combine(target.FullName, Path.GetFileName(full));
            }

            return full;
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or UnauthorizedAccessException)
        {
            return dir;
        }
    }

    private static PgBinaries? TryDirectory(string dir, PgPlatform platform)
    {
        string Exe(string tool) => tool + platform.ExecutableSuffix;

        var initdb = Path.Combine(dir, Exe("initdb"));
        if (!File.Exists(initdb))
        {
            return null;
        }

        // Scoop's shims are small programs with a text file beside them naming the real tool.
        var shim = Path.Combine(dir, "initdb.shim");
        if (File.Exists(shim) && ShimTarget(shim) is { } real && File.Exists(real))
        {
            dir = Path.GetDirectoryName(real)!;
        }
        else if (new FileInfo(initdb).ResolveLinkTarget(returnFinalTarget: true) is { } target)
        {
            // Symlinks such as /usr/local/bin/initdb point into the real bin folder; use that folder.
            dir = Path.GetDirectoryName(target.FullName)!;
        }

        foreach (var tool in new[] { "pg_ctl", "postgres" })
        {
            if (!File.Exists(Path.Combine(dir, Exe(tool))))
            {
                return null;
            }
        }

        var postgres = Path.Combine(dir, Exe("postgres"));
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

        return new PgBinaries(dir, m.Groups[1].Value, int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture))
        {
            ExecutableSuffix = platform.ExecutableSuffix,
        };
    }

    /// <summary>The target in a Scoop .shim file: a line <c>path = "C:\...\initdb.exe"</c>.</summary>
    private static string? ShimTarget(string shimFile)
    {
        try
        {
            foreach (var line in File.ReadLines(shimFile))
            {
                var m = ShimPathPattern().Match(line);
                if (m.Success)
                {
                    return m.Groups[1].Value.Trim();
                }
            }
        }
        catch (IOException)
        {
        }

        return null;
    }

    private static DataOpsException NotFound(IEnumerable<string> looked, PgPlatformKind kind)
    {
        var hint = InstallHintFor(kind);
        return new("PostgresBinariesNotFound", DataOpsErrorKind.NotInstalled,
            $"No PostgreSQL server binaries (initdb, pg_ctl, postgres) were found. Looked in: {string.Join("; ", looked.DefaultIfEmpty("nothing to search"))}. {hint} Or use a server you already have: Connect-DataOps -ConnectionString '...'.",
            string.Join("; ", looked))
        {
            RecommendedAction = hint,
        };
    }

    private static IEnumerable<string> SplitPath(string? pathVariable, PgPlatform platform) =>
        (pathVariable ?? string.Empty).Split(platform.PathListSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(d => d.Trim('"'))
            .Where(d => d.Length > 0);

    private static Version ParseVersion(string text) =>
        Version.TryParse(text.Contains('.') ? text : text + ".0", out var v) ? v : new Version(0, 0);

    [GeneratedRegex(@"\(PostgreSQL\)\s+((\d+)(?:\.\d+)*)")]
    private static partial Regex VersionPattern();

    [GeneratedRegex(@"\d+(\.\d+)?")]
    private static partial Regex FolderVersionPattern();

    [GeneratedRegex(@"^\s*path\s*=\s*""?([^""]+)""?\s*$")]
    private static partial Regex ShimPathPattern();
}
