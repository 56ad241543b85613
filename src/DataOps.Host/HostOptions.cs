namespace DataOps.Host;

/// <summary>Command-line options, spelled the way pwsh spells them.</summary>
internal sealed class HostOptions
{
    public const string Usage = """
        Usage: DataOps.Host -File <script.ps1> [script arguments]
               DataOps.Host -Command "<PowerShell text>"
        Options: -Module <path to DataOps.psd1>  -NonInteractive  -NoProfile (accepted, ignored)  -Help
        The DataOps module is imported first. Exit code: the script's 'exit N', 1 on a terminating
        error (or, with -Command, when the last command failed), else 0.
        """;

    public string? File { get; private set; }

    public string? Command { get; private set; }

    public string? ModulePath { get; private set; }

    public bool NonInteractive { get; private set; }

    public bool ShowHelp { get; private set; }

    public string? Error { get; private set; }

    /// <summary>Script arguments: (name, value) for -Name value, (name, null) for a switch, (null, value) for a positional one.</summary>
    public List<(string? Name, string? Value)> ScriptArguments { get; } = [];

    public static HostOptions Parse(string[] args)
    {
        var o = new HostOptions();
        var i = 0;
        while (i < args.Length)
        {
            var a = args[i];
            switch (a.ToLowerInvariant())
            {
                case "-file" or "-f" when i + 1 < args.Length:
                    o.File = args[i + 1];
                    o.ParseScriptArguments(args[(i + 2)..]);
                    return o;
                case "-command" or "-c" when i + 1 < args.Length:
                    o.Command = string.Join(' ', args[(i + 1)..]);
                    return o;
                case "-module" when i + 1 < args.Length:
                    o.ModulePath = args[i + 1];
                    i += 2;
                    continue;
                case "-noninteractive":
                    o.NonInteractive = true;
                    break;
                case "-noprofile" or "-nologo":
                    break;
                case "-help" or "-?" or "--help" or "-h":
                    o.ShowHelp = true;
                    return o;
                default:
                    o.Error = $"DataOps.Host: unknown or incomplete option '{a}'.";
                    return o;
            }

            i++;
        }

        if (o.File is null && o.Command is null)
        {
            o.Error = "DataOps.Host: give -File or -Command.";
        }

        return o;
    }

    private void ParseScriptArguments(string[] rest)
    {
        for (var i = 0; i < rest.Length; i++)
        {
            var a = rest[i];
            if (a.Length > 1 && a[0] == '-' && char.IsLetter(a[1]))
            {
                var colon = a.IndexOf(':', StringComparison.Ordinal);
                if (colon > 0)
                {
                    ScriptArguments.Add((a[1..colon], a[(colon + 1)..]));
                }
                else if (i + 1 < rest.Length && !(rest[i + 1].Length > 1 && rest[i + 1][0] == '-' && char.IsLetter(rest[i + 1][1])))
                {
                    ScriptArguments.Add((a[1..], rest[i + 1]));
                    i++;
                }
                else
                {
                    ScriptArguments.Add((a[1..], null));
                }
            }
            else
            {
                ScriptArguments.Add((null, a));
            }
        }
    }
}
