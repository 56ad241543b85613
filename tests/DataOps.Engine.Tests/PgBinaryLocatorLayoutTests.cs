using DataOps.Engine.Sandbox;

namespace DataOps.Engine.Tests;

/// <summary>
/// The locator against the layouts Windows and macOS users have, built as real folders under a
/// temporary directory and described by a <see cref="PgPlatform"/>. The "servers" are small
/// scripts named like the real tools (initdb.exe, pg_ctl.exe, postgres.exe on Windows layouts)
/// whose postgres prints a version, so the locator runs exactly what it runs on a real machine.
/// </summary>
public sealed class PgBinaryLocatorLayoutTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("dataops-layouts-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void Edb_installer_with_two_majors_gives_the_newest()
    {
        var pf = Dir("Program Files");
        Server(Path.Combine(pf, "PostgreSQL", "16", "bin"), "16.4", windows: true);
        Server(Path.Combine(pf, "PostgreSQL", "17", "bin"), "17.2", windows: true);

        var found = PgBinaryLocator.Locate(Windows(new() { ["ProgramFiles"] = pf }));

        Assert.Equal(Path.Combine(pf, "PostgreSQL", "17", "bin"), found.Directory);
        Assert.Equal("17.2", found.Version);
        Assert.Equal(17, found.MajorVersion);
        Assert.Equal(Path.Combine(found.Directory, "pg_ctl.exe"), found.PgCtl);
        Assert.Equal(Path.Combine(found.Directory, "initdb.exe"), found.InitDb);
    }

    [Fact]
    public void Edb_install_in_a_non_default_folder_is_found_through_the_registry()
    {
        var custom = Dir("D", "Databases", "PG 15");
        Server(Path.Combine(custom, "bin"), "15.8", windows: true);
        Server(Path.Combine(Dir("Program Files"), "PostgreSQL", "14", "bin"), "14.13", windows: true);

        var found = PgBinaryLocator.Locate(Windows(
            new() { ["ProgramFiles"] = Path.Combine(_root, "Program Files") },
            () => [new PgRegistryInstallation("postgresql-x64-15", custom, "15.8")]));

        Assert.Equal(Path.Combine(custom, "bin"), found.Directory);
        Assert.Equal("15.8", found.Version);
    }

    [Fact]
    public void Postgres_app_gives_the_newest_version_and_latest_is_the_same_folder()
    {
        var apps = Dir("Applications");
        var versions = Path.Combine(apps, "Postgres.app", "Contents", "Versions");
        Server(Path.Combine(versions, "16", "bin"), "16.6");
        Server(Path.Combine(versions, "17", "bin"), "17.3");
        Directory.CreateSymbolicLink(Path.Combine(versions, "latest"), Path.Combine(versions, "17"));

        var found = PgBinaryLocator.Locate(MacOS(apps: [apps]));

        Assert.Equal(Path.Combine(versions, "17", "bin"), found.Directory);
        Assert.Equal(17, found.MajorVersion);
        Assert.Equal(string.Empty, found.ExecutableSuffix);
    }

    [Fact]
    public void Postgres_app_with_only_latest_is_found_through_the_link()
    {
        var apps = Dir("Applications");
        var versions = Path.Combine(apps, "Postgres.app", "Contents", "Versions");
        Server(Path.Combine(_root, "elsewhere", "18", "bin"), "18.1");
        Directory.CreateDirectory(versions);
        Directory.CreateSymbolicLink(Path.Combine(versions, "latest"), Path.Combine(_root, "elsewhere", "18"));

        var found = PgBinaryLocator.Locate(MacOS(apps: [apps]));

        Assert.Equal(Path.Combine(versions, "latest", "bin"), found.Directory);
        Assert.Equal("18.1", found.Version);
    }

    [Fact]
    public void Homebrew_kegs_under_both_prefixes_give_the_newest()
    {
        var arm = Dir("opt", "homebrew");
        var intel = Dir("usr", "local");
        Server(Path.Combine(arm, "opt", "postgresql@16", "bin"), "16.3");
        Server(Path.Combine(intel, "opt", "postgresql@17", "bin"), "17.1");
        Server(Path.Combine(intel, "opt", "postgresql@15", "bin"), "15.9");

        var found = PgBinaryLocator.Locate(MacOS(brew: [arm, intel]));

        Assert.Equal(Path.Combine(intel, "opt", "postgresql@17", "bin"), found.Directory);
    }

    [Fact]
    public void Homebrew_on_an_intel_mac_is_found()
    {
        var intel = Dir("usr", "local");
        Server(Path.Combine(intel, "opt", "postgresql@16", "bin"), "16.3");

        var found = PgBinaryLocator.Locate(MacOS(brew: [Path.Combine(_root, "opt", "homebrew"), intel]));

        Assert.Equal(Path.Combine(intel, "opt", "postgresql@16", "bin"), found.Directory);
    }

    [Fact]
    public void Scoop_app_in_the_home_folder_is_found()
    {
        var home = Dir("Users", "Ada Admin");
        var current = Path.Combine(home, "scoop", "apps", "postgresql", "current", "bin");
        Server(current, "17.0", windows: true);

        var found = PgBinaryLocator.Locate(Windows(new() { ["USERPROFILE"] = home }));

        Assert.Equal(current, found.Directory);
    }

    [Fact]
    public void Scoop_root_from_SCOOP_and_its_shims_on_PATH_lead_to_the_real_folder()
    {
        var scoop = Dir("tools", "scoop");
        var current = Path.Combine(scoop, "apps", "postgresql16", "current", "bin");
        Server(current, "16.2", windows: true);
        // Scoop's shims: stand-in programs, each with a .shim file naming the real tool.
        var shims = Dir("tools", "scoop", "shims");
        Server(shims, "0.1", windows: true);
        File.WriteAllText(Path.Combine(shims, "initdb.shim"), $"path = \"{Path.Combine(current, "initdb.exe")}\"\n");

        var viaPath = PgBinaryLocator.Locate(Windows(new() { ["SCOOP"] = scoop, ["Path"] = shims }));
        var viaRoot = PgBinaryLocator.Locate(Windows(new() { ["SCOOP"] = scoop }));

        Assert.Equal(current, viaPath.Directory);
        Assert.Equal("16.2", viaPath.Version);
        Assert.Equal(current, viaRoot.Directory);
    }

    [Fact]
    public void Chocolatey_shims_on_PATH_lead_to_the_program_files_folder()
    {
        var programData = Dir("ProgramData");
        var shims = Path.Combine(programData, "chocolatey", "bin");
        Server(shims, "16.2", windows: true);
        var pf = Dir("Program Files");
        Server(Path.Combine(pf, "PostgreSQL", "16", "bin"), "16.2", windows: true);

        var found = PgBinaryLocator.Locate(Windows(new() { ["ProgramData"] = programData, ["ProgramFiles"] = pf, ["PATH"] = shims }));

        Assert.Equal(Path.Combine(pf, "PostgreSQL", "16", "bin"), found.Directory);
    }

    [Fact]
    public void Chocolatey_shims_alone_are_the_last_resort()
    {
        var choco = Dir("choco");
        Server(Path.Combine(choco, "bin"), "16.2", windows: true);

        var found = PgBinaryLocator.Locate(Windows(new() { ["ChocolateyInstall"] = choco }));

        Assert.Equal(Path.Combine(choco, "bin"), found.Directory);
    }

    [Fact]
    public void PATH_comes_before_the_install_layouts_on_each_platform()
    {
        var custom = Dir("my tools", "pg", "bin");
        Server(custom, "14.9", windows: true);
        var pf = Dir("Program Files");
        Server(Path.Combine(pf, "PostgreSQL", "17", "bin"), "17.2", windows: true);
        var unixCustom = Dir("opt", "pg14", "bin");
        Server(unixCustom, "14.9");

        // Windows: ';' separates PATH entries, which may be quoted.
        var windows = PgBinaryLocator.Locate(Windows(new() { ["ProgramFiles"] = pf, ["Path"] = $"{Dir("empty")};\"{custom}\"" }));
        var mac = PgBinaryLocator.Locate(MacOS(path: $"{Dir("empty")}:{unixCustom}"));

        Assert.Equal(custom, windows.Directory);
        Assert.Equal(unixCustom, mac.Directory);
    }

    [Fact]
    public void DATAOPS_PG_BIN_wins_over_everything_else()
    {
        var chosen = Dir("chosen", "bin");
        Server(chosen, "13.16", windows: true);
        var pf = Dir("Program Files");
        Server(Path.Combine(pf, "PostgreSQL", "17", "bin"), "17.2", windows: true);
        var onPath = Dir("path", "bin");
        Server(onPath, "16.1", windows: true);

        var found = PgBinaryLocator.Locate(Windows(new() { ["ProgramFiles"] = pf, ["PATH"] = onPath, ["DATAOPS_PG_BIN"] = chosen }));

        Assert.Equal(chosen, found.Directory);
        Assert.Equal("13.16", found.Version);
    }

    [Fact]
    public void A_Unix_server_is_not_taken_for_a_Windows_one()
    {
        // Files without .exe are not Windows binaries, whatever folder they are in.
        var pf = Dir("Program Files");
        Server(Path.Combine(pf, "PostgreSQL", "17", "bin"), "17.2", windows: false);

        var ex = Assert.Throws<DataOpsException>(() => PgBinaryLocator.Locate(Windows(new() { ["ProgramFiles"] = pf })));

        Assert.Equal("PostgresBinariesNotFound", ex.ErrorId);
    }

    [Fact]
    public void Not_found_on_Windows_lists_every_place_searched()
    {
        var pf = Dir("Program Files");
        var home = Dir("Users", "ada");
        var programData = Dir("ProgramData");

        var ex = Assert.Throws<DataOpsException>(() => PgBinaryLocator.Locate(Windows(
            new() { ["ProgramFiles"] = pf, ["ProgramFiles(x86)"] = Dir("Program Files (x86)"), ["USERPROFILE"] = home, ["ProgramData"] = programData, ["PATH"] = Dir("empty") })));

        Assert.Equal("PostgresBinariesNotFound", ex.ErrorId);
        Assert.Equal(DataOpsErrorKind.NotInstalled, ex.Kind);
        foreach (var place in new[]
        {
            "pg_config --bindir",
            "PATH",
            @"HKLM\SOFTWARE\PostgreSQL\Installations",
            Path.Combine(pf, "PostgreSQL", "*", "bin"),
            Path.Combine(_root, "Program Files (x86)", "PostgreSQL", "*", "bin"),
            Path.Combine(home, "scoop", "apps", "postgresql*", "current", "bin"),
            Path.Combine(programData, "scoop", "apps", "postgresql*", "current", "bin"),
            Path.Combine(programData, "chocolatey", "bin"),
        })
        {
            Assert.Contains(place, ex.Message);
        }

        Assert.Contains("DATAOPS_PG_BIN", ex.Message);
        Assert.Contains("EDB installer", ex.Message);
        Assert.Contains("Connect-DataOps", ex.Message);
        Assert.DoesNotContain("apt-get", ex.Message);
    }

    [Fact]
    public void Not_found_on_macOS_lists_every_place_searched()
    {
        var apps = Dir("Applications");
        var arm = Dir("opt", "homebrew");
        var intel = Dir("usr", "local");
        var edb = Dir("Library", "PostgreSQL");

        var ex = Assert.Throws<DataOpsException>(() => PgBinaryLocator.Locate(MacOS(apps: [apps], brew: [arm, intel], roots: [edb])));

        foreach (var place in new[]
        {
            Path.Combine(apps, "Postgres.app", "Contents", "Versions", "*", "bin"),
            Path.Combine(arm, "opt", "postgresql@*", "bin"),
            Path.Combine(intel, "opt", "postgresql@*", "bin"),
            Path.Combine(intel, "opt", "postgresql", "bin"),
            Path.Combine(edb, "*", "bin"),
        })
        {
            Assert.Contains(place, ex.Message);
        }

        Assert.Contains("brew install", ex.Message);
    }

    [Fact]
    public void Default_platform_roots_follow_the_environment()
    {
        var p = new PgPlatform(PgPlatformKind.Windows, new Dictionary<string, string>
        {
            ["programfiles"] = @"E:\Apps",
            ["USERPROFILE"] = @"C:\Users\ada",
            ["ProgramData"] = @"C:\ProgramData",
        });

        Assert.Equal(".exe", p.ExecutableSuffix);
        Assert.Equal(';', p.PathListSeparator);
        Assert.Equal([@"E:\Apps"], p.ProgramFiles);
        Assert.Equal(Path.Combine(@"C:\Users\ada", "scoop"), p.ScoopRoot);
        Assert.Equal(Path.Combine(@"C:\ProgramData", "chocolatey"), p.ChocolateyRoot);
        Assert.Empty(p.ApplicationsDirectories);

        var mac = new PgPlatform(PgPlatformKind.MacOS, new Dictionary<string, string> { ["HOME"] = "/Users/ada" });
        Assert.Equal(string.Empty, mac.ExecutableSuffix);
        Assert.Equal(["/Applications", Path.Combine("/Users/ada", "Applications")], mac.ApplicationsDirectories);
        Assert.Equal(["/opt/homebrew", "/usr/local"], mac.HomebrewPrefixes);
        Assert.Empty(mac.ProgramFiles);
    }

    private PgSearchOptions Windows(Dictionary<string, string> given, Func<IReadOnlyList<PgRegistryInstallation>>? registry = null)
    {
        var env = new Dictionary<string, string>(given, StringComparer.OrdinalIgnoreCase); // as Windows has it
        // Every root not given points into the (empty) test folder, never at this machine's.
        env.TryAdd("ProgramFiles", Path.Combine(_root, "none", "Program Files"));
        env.TryAdd("ProgramData", Path.Combine(_root, "none", "ProgramData"));
        env.TryAdd("USERPROFILE", Path.Combine(_root, "none", "home"));
        env.TryAdd("PATH", string.Empty);
        return new PgSearchOptions { Platform = new PgPlatform(PgPlatformKind.Windows, env, registry) };
    }

    private PgSearchOptions MacOS(IReadOnlyList<string>? apps = null, IReadOnlyList<string>? brew = null, IReadOnlyList<string>? roots = null, string path = "")
    {
        var env = new Dictionary<string, string> { ["HOME"] = Path.Combine(_root, "none", "home"), ["PATH"] = path };
        return new PgSearchOptions
        {
            Platform = new PgPlatform(PgPlatformKind.MacOS, env)
            {
                ApplicationsDirectories = apps ?? [],
                HomebrewPrefixes = brew ?? [],
            },
            InstallRoots = roots ?? [],
        };
    }

    private string Dir(params string[] parts) => Directory.CreateDirectory(Path.Combine([_root, .. parts])).FullName;

    /// <summary>initdb, pg_ctl and a postgres that answers --version like the real one.</summary>
    private static void Server(string bin, string version, bool windows = false)
    {
        Directory.CreateDirectory(bin);
        var suffix = windows ? ".exe" : string.Empty;
        foreach (var tool in new[] { "initdb", "pg_ctl", "postgres" })
        {
            var file = Path.Combine(bin, tool + suffix);
            File.WriteAllText(file, $"#!/bin/sh\necho '{tool} (PostgreSQL) {version}'\n");
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }
        }
    }
}
