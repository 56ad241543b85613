using System.Management.Automation;
using System.Management.Automation.Runspaces;
using DataOps.Host;

// DataOps.Host: run a script or a command with the DataOps module imported, the way
// 'pwsh -File' and 'pwsh -Command' do, on machines that have no pwsh.
var options = HostOptions.Parse(args);
if (options.Error is not null)
{
    Console.Error.WriteLine(options.Error);
    Console.Error.WriteLine(HostOptions.Usage);
    return 64;
}

if (options.ShowHelp)
{
    Console.Out.WriteLine(HostOptions.Usage);
    return 0;
}

var manifest = ModuleLocator.Find(options.ModulePath);
if (manifest is null)
{
    Console.Error.WriteLine("DataOps.Host: the built module (out/DataOps/DataOps.psd1) was not found. Build it with 'dotnet build DataOps.PowerShell.sln', pass -Module <path to DataOps.psd1>, or set DATAOPS_MODULE_PATH.");
    return 1;
}

var host = new ConsoleHost(options.NonInteractive);
var state = InitialSessionState.CreateDefault2();
state.ImportPSModule(manifest);
using var runspace = RunspaceFactory.CreateRunspace(host, state);
runspace.Open();
using var ps = PowerShell.Create(runspace);

using var cancel = new CancelOnCtrlC(ps);
try
{
    if (options.File is not null)
    {
        var path = Path.GetFullPath(options.File);
        if (!File.Exists(path))
        {
            Console.Error.WriteLine($"DataOps.Host: the script '{options.File}' does not exist.");
            return 64;
        }

        ps.AddCommand(path);
        foreach (var (name, value) in options.ScriptArguments)
        {
            if (name is null)
            {
                ps.AddArgument(value);
            }
            else
            {
                ps.AddParameter(name, value ?? (object)new SwitchParameter(true));
            }
        }
    }
    else
    {
        ps.AddScript(options.Command!);
    }

    ps.Commands.Commands[0].MergeMyResults(PipelineResultTypes.Error, PipelineResultTypes.Output);
    ps.AddCommand("Out-Default");
    ps.Invoke();
    if (host.ExitCode is { } code)
    {
        return code;
    }

    return options.Command is not null && ps.HadErrors ? 1 : 0;
}
catch (RuntimeException ex)
{
    if (host.ExitCode is { } code)
    {
        return code;
    }

    ErrorPrinter.Print(ex.ErrorRecord);
    return 1;
}

/// <summary>Ctrl+C stops the pipeline (cmdlets roll back and flush) instead of killing the process.</summary>
internal sealed class CancelOnCtrlC : IDisposable
{
    private readonly PowerShell _ps;

    public CancelOnCtrlC(PowerShell ps)
    {
        _ps = ps;
        Console.CancelKeyPress += OnCancel;
    }

    public void Dispose() => Console.CancelKeyPress -= OnCancel;

    private void OnCancel(object? sender, ConsoleCancelEventArgs e)
    {
        e.Cancel = true;
        Console.Error.WriteLine("Stopping...");
        _ps.BeginStop(null, null);
    }
}

internal static class ErrorPrinter
{
    public static void Print(ErrorRecord record)
    {
        var message = record.ErrorDetails?.Message ?? record.Exception?.Message ?? record.ToString();
        Console.Error.WriteLine(PSHostUserInterfaceText.Plain(message));
        if (record.InvocationInfo?.PositionMessage is { Length: > 0 } position)
        {
            Console.Error.WriteLine(PSHostUserInterfaceText.Plain(position));
        }

        Console.Error.WriteLine($"    + CategoryInfo          : {record.CategoryInfo}");
        Console.Error.WriteLine($"    + FullyQualifiedErrorId : {record.FullyQualifiedErrorId}");
        if (record.ErrorDetails?.RecommendedAction is { Length: > 0 } action)
        {
            Console.Error.WriteLine($"    + RecommendedAction     : {action}");
        }
    }
}

internal static class PSHostUserInterfaceText
{
    public static string Plain(string text) => System.Management.Automation.Host.PSHostUserInterface.GetOutputString(text, supportsVirtualTerminal: false);
}
