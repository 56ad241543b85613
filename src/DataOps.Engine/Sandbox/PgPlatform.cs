using System.Collections;

namespace DataOps.Engine.Sandbox;

/// <summary>The operating systems whose PostgreSQL layouts the locator knows.</summary>
public enum PgPlatformKind
{
    Linux,
    MacOS,
    Windows,
}

/// <summary>One key under HKLM\SOFTWARE\PostgreSQL\Installations, as the EDB installer writes it.</summary>
/// <param name="Id">The key name, such as <c>postgresql-x64-16</c>.</param>
/// <param name="BaseDirectory">The "Base Directory" value: the folder that holds bin\.</param>
/// <param name="Version">The "Version" value, such as <c>16.4</c>; null when absent.</param>
public sealed record PgRegistryInstallation(string Id, string BaseDirectory, string? Version);

/// <summary>
/// The machine as the binary locator sees it: the OS kind, the environment, and a reader for the
/// Windows registry. Every root the locator searches (Program Files, the home folder, Scoop,
/// Chocolatey, /Applications, Homebrew prefixes, PATH) and the executable suffix come from here, so
/// a test can describe a Windows or macOS machine with folders under a temporary directory and run
/// the real locator against it on Linux. <see cref="Current"/> describes the machine we run on.
/// </summary>
public sealed record PgPlatform
{
    public const string RegistryKey = @"HKLM\SOFTWARE\PostgreSQL\Installations";

    private IReadOnlyList<string>? _applications;
    private IReadOnlyList<string>? _homebrew;

    public PgPlatform(PgPlatformKind kind, IReadOnlyDictionary<string, string> environment, Func<IReadOnlyList<PgRegistryInstallation>>? readRegistry = null)
    {
        Kind = kind;
        Environment = environment;
        ReadRegistry = readRegistry ?? (() => []);
    }

    public PgPlatformKind Kind { get; init; }

    /// <summary>Environment variables; looked up case-insensitively on Windows, as Windows does.</summary>
    public IReadOnlyDictionary<string, string> Environment { get; init; }

    /// <summary>Reads the EDB installer's registry entries (empty off Windows).</summary>
    public Func<IReadOnlyList<PgRegistryInstallation>> ReadRegistry { get; init; }

    /// <summary>The machine this process runs on.</summary>
    public static PgPlatform Current => CreateCurrent();

    public static PgPlatformKind CurrentKind =>
        OperatingSystem.IsWindows() ? PgPlatformKind.Windows : OperatingSystem.IsMacOS() ? PgPlatformKind.MacOS : PgPlatformKind.Linux;

    public string ExecutableSuffix => Kind == PgPlatformKind.Windows ? ".exe" : string.Empty;

    public char PathListSeparator => Kind == PgPlatformKind.Windows ? ';' : ':';

    public string? PathVariable => Get("PATH");

    /// <summary>USERPROFILE on Windows, HOME elsewhere.</summary>
    public string? HomeDirectory => Kind == PgPlatformKind.Windows ? Get("USERPROFILE") ?? Combine(Get("HOMEDRIVE"), Get("HOMEPATH")) : Get("HOME");

    /// <summary>Where Windows programs are installed: %ProgramFiles%, %ProgramW6432%, %ProgramFiles(x86)%.</summary>
    public IReadOnlyList<string> ProgramFiles =>
        Kind != PgPlatformKind.Windows
            ? []
            : new[] { Get("ProgramFiles") ?? @"C:\Program Files", Get("ProgramW6432"), Get("ProgramFiles(x86)") }
                .OfType<string>().Distinct(StringComparer.OrdinalIgnoreCase).ToList();

    /// <summary>%ProgramData% (machine-wide Scoop and Chocolatey live under it).</summary>
    public string ProgramData => Get("ProgramData") ?? @"C:\ProgramData";

    /// <summary>Scoop's per-user root: %SCOOP%, else ~\scoop.</summary>
    public string? ScoopRoot => Get("SCOOP") ?? Combine(HomeDirectory, "scoop");

    /// <summary>Scoop's machine-wide root: %SCOOP_GLOBAL%, else %ProgramData%\scoop.</summary>
    public string ScoopGlobalRoot => Get("SCOOP_GLOBAL") ?? Path.Combine(ProgramData, "scoop");

    /// <summary>Chocolatey's root: %ChocolateyInstall%, else %ProgramData%\chocolatey.</summary>
    public string ChocolateyRoot => Get("ChocolateyInstall") ?? Path.Combine(ProgramData, "chocolatey");

    /// <summary>Where Postgres.app may be: /Applications and ~/Applications (macOS only).</summary>
    public IReadOnlyList<string> ApplicationsDirectories
    {
        get => _applications ?? (Kind == PgPlatformKind.MacOS ? new[] { "/Applications", Combine(HomeDirectory, "Applications") }.OfType<string>().ToList() : []);
        init => _applications = value;
    }

    /// <summary>
    /// Homebrew prefixes: $HOMEBREW_PREFIX, then /opt/homebrew (Apple silicon) and /usr/local (Intel)
    /// on macOS, /home/linuxbrew/.linuxbrew on Linux.
    /// </summary>
    public IReadOnlyList<string> HomebrewPrefixes
    {
        get => _homebrew ?? new[]
            {
                Get("HOMEBREW_PREFIX"),
                Kind == PgPlatformKind.MacOS ? "/opt/homebrew" : null,
                Kind == PgPlatformKind.MacOS ? "/usr/local" : null,
                Kind == PgPlatformKind.Linux ? "/home/linuxbrew/.linuxbrew" : null,
            }.OfType<string>().Distinct(StringComparer.Ordinal).ToList();
        init => _homebrew = value;
    }

    /// <summary>A variable's value; null when unset or blank.</summary>
    public string? Get(string name)
    {
        if (!Environment.TryGetValue(name, out var v) && Kind == PgPlatformKind.Windows)
        {
            v = Environment.FirstOrDefault(e => string.Equals(e.Key, name, StringComparison.OrdinalIgnoreCase)).Value;
        }

        return string.IsNullOrWhiteSpace(v) ? null : v;
    }

    private static string? Combine(string? a, string? b) => a is null || b is null ? null : Path.Combine(a, b);

    private static PgPlatform CreateCurrent()
    {
        var kind = CurrentKind;
        var env = new Dictionary<string, string>(kind == PgPlatformKind.Windows ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal);
        foreach (DictionaryEntry e in System.Environment.GetEnvironmentVariables())
        {
            if (e.Key is string k && e.Value is string v)
            {
                env[k] = v;
            }
        }

        return new PgPlatform(kind, env, ReadWindowsRegistry);
    }

    /// <summary>
    /// The EDB installer's keys, in the 64-bit and the 32-bit view of HKLM: each
    /// Installations\&lt;id&gt; holds "Base Directory" and "Version".
    /// </summary>
    private static IReadOnlyList<PgRegistryInstallation> ReadWindowsRegistry()
    {
        if (!OperatingSystem.IsWindows())
        {
            return [];
        }

        var found = new List<PgRegistryInstallation>();
        foreach (var view in new[] { Microsoft.Win32.RegistryView.Registry64, Microsoft.Win32.RegistryView.Registry32 })
        {
            try
            {
                using var hklm = Microsoft.Win32.RegistryKey.OpenBaseKey(Microsoft.Win32.RegistryHive.LocalMachine, view);
                using var installations = hklm.OpenSubKey(@"SOFTWARE\PostgreSQL\Installations");
                if (installations is null)
                {
                    continue;
                }

                foreach (var id in installations.GetSubKeyNames())
                {
                    using var key = installations.OpenSubKey(id);
                    if (key?.GetValue("Base Directory") is string dir && !string.IsNullOrWhiteSpace(dir))
                    {
                        found.Add(new PgRegistryInstallation(id, dir, key.GetValue("Version") as string));
                    }
                }
            }
            catch (Exception ex) when (ex is System.Security.SecurityException or UnauthorizedAccessException or IOException)
            {
                // An unreadable registry is one place fewer to look, not a failure.
            }
        }

        return found;
    }
}
