namespace DataOps.Host;

/// <summary>Finds the assembled module: -Module, $env:DATAOPS_MODULE_PATH, else out/DataOps above this program or the current folder.</summary>
internal static class ModuleLocator
{
    public static string? Find(string? explicitPath)
    {
        var candidate = explicitPath ?? Environment.GetEnvironmentVariable("DATAOPS_MODULE_PATH");
        if (!string.IsNullOrWhiteSpace(candidate))
        {
            candidate = Path.GetFullPath(candidate);
            if (Directory.Exists(candidate))
            {
                candidate = Path.Combine(candidate, "DataOps.psd1");
            }

            return File.Exists(candidate) ? candidate : null;
        }

        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var manifest = Path.Combine(dir.FullName, "out", "DataOps", "DataOps.psd1");
                if (File.Exists(manifest))
                {
                    return manifest;
                }
            }
        }

        return null;
    }
}
