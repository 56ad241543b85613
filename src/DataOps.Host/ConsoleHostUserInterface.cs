using System.Collections.ObjectModel;
using System.Diagnostics;
using System.Management.Automation;
using System.Management.Automation.Host;
using System.Security;

namespace DataOps.Host;

/// <summary>
/// Writes output to stdout; errors, warnings, verbose, debug and progress to stderr, without ANSI
/// colour codes. Prompts read stdin, and fail clearly when there is no one to answer them.
/// </summary>
internal sealed class ConsoleHostUserInterface(bool nonInteractive) : PSHostUserInterface
{
    private readonly ConsoleRawUserInterface _raw = new();
    private readonly Stopwatch _sinceProgress = Stopwatch.StartNew();
    private string? _lastProgress;

    public override PSHostRawUserInterface RawUI => _raw;

    public override bool SupportsVirtualTerminal => false;

    private bool CanPrompt => !nonInteractive && !Console.IsInputRedirected;

    public override void Write(string value) => Console.Out.Write(Plain(value));

    public override void Write(ConsoleColor foregroundColor, ConsoleColor backgroundColor, string value) => Write(value);

    public override void WriteLine(string value) => Console.Out.WriteLine(Plain(value));

    public override void WriteErrorLine(string value) => Console.Error.WriteLine(Plain(value));

    public override void WriteDebugLine(string message) => Console.Error.WriteLine("DEBUG: " + Plain(message));

    public override void WriteVerboseLine(string message) => Console.Error.WriteLine("VERBOSE: " + Plain(message));

    public override void WriteWarningLine(string message) => Console.Error.WriteLine("WARNING: " + Plain(message));

    public override void WriteInformation(InformationRecord record)
    {
    }

    /// <summary>One line per change of activity or ten percent, at most once a second otherwise.</summary>
    public override void WriteProgress(long sourceId, ProgressRecord record)
    {
        var eta = record.SecondsRemaining > 0 ? $" ETA {TimeSpan.FromSeconds(record.SecondsRemaining):hh\\:mm\\:ss}" : string.Empty;
        var pct = record.PercentComplete >= 0 ? $" {record.PercentComplete}%" : string.Empty;
        var line = record.RecordType == ProgressRecordType.Completed
            ? $"[{record.Activity}] done"
            : $"[{record.Activity}] {record.StatusDescription}{pct}{eta}";
        var key = $"{record.Activity}|{record.RecordType}|{record.PercentComplete / 10}";
        if (key == _lastProgress && _sinceProgress.ElapsedMilliseconds < 1000)
        {
            return;
        }

        _lastProgress = key;
        _sinceProgress.Restart();
        Console.Error.WriteLine(Plain(line));
    }

    public override string ReadLine()
    {
        RequireInteractive("read input");
        return Console.ReadLine() ?? string.Empty;
    }

    public override SecureString ReadLineAsSecureString()
    {
        RequireInteractive("read a secret");
        var secure = new SecureString();
        foreach (var ch in Console.ReadLine() ?? string.Empty)
        {
            secure.AppendChar(ch);
        }

        secure.MakeReadOnly();
        return secure;
    }

    public override Dictionary<string, PSObject> Prompt(string caption, string message, Collection<FieldDescription> descriptions)
    {
        RequireInteractive($"prompt for {string.Join(", ", descriptions.Select(d => d.Name))}");
        WriteLine(caption);
        WriteLine(message);
        var result = new Dictionary<string, PSObject>();
        foreach (var d in descriptions)
        {
            Console.Out.Write($"{d.Name}: ");
            result[d.Name] = PSObject.AsPSObject(Console.ReadLine() ?? string.Empty);
        }

        return result;
    }

    public override int PromptForChoice(string caption, string message, Collection<ChoiceDescription> choices, int defaultChoice)
    {
        RequireInteractive($"ask '{message}'");
        WriteLine(caption);
        WriteLine(message);
        var labels = choices.Select(c => c.Label.Replace("&", string.Empty, StringComparison.Ordinal)).ToList();
        while (true)
        {
            Console.Out.Write($"{string.Join("  ", labels.Select((l, i) => $"[{HotKey(choices[i].Label)}] {l}"))} (default {HotKey(choices[defaultChoice].Label)}): ");
            var answer = Console.ReadLine();
            if (answer is null)
            {
                return defaultChoice;
            }

            answer = answer.Trim();
            if (answer.Length == 0)
            {
                return defaultChoice;
            }

            for (var i = 0; i < choices.Count; i++)
            {
                if (string.Equals(answer, HotKey(choices[i].Label), StringComparison.OrdinalIgnoreCase) ||
                    string.Equals(answer, labels[i], StringComparison.OrdinalIgnoreCase))
                {
                    return i;
                }
            }
        }
    }

    public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName) =>
        PromptForCredential(caption, message, userName, targetName, PSCredentialTypes.Default, PSCredentialUIOptions.Default);

    public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName, PSCredentialTypes allowedCredentialTypes, PSCredentialUIOptions options)
    {
        RequireInteractive("prompt for a credential");
        WriteLine(message);
        if (string.IsNullOrEmpty(userName))
        {
            Console.Out.Write("User: ");
            userName = Console.ReadLine() ?? string.Empty;
        }

        Console.Out.Write("Password: ");
        return new PSCredential(userName, ReadLineAsSecureString());
    }

    private void RequireInteractive(string what)
    {
        if (!CanPrompt)
        {
            throw new PSInvalidOperationException(
                $"DataOps.Host cannot {what}: the session is non-interactive (no console input). Pass -Force or -Confirm:$false, or give the value as a parameter.");
        }
    }

    private static string HotKey(string label)
    {
        var i = label.IndexOf('&', StringComparison.Ordinal);
        return i >= 0 && i + 1 < label.Length ? label[i + 1].ToString() : label[..1];
    }

    private static string Plain(string text) => PSHostUserInterface.GetOutputString(text, supportsVirtualTerminal: false);
}
