using System.Globalization;
using System.Management.Automation;
using System.Management.Automation.Host;

namespace DataOps.Host;

/// <summary>The smallest PSHost that renders output, streams and prompts on the console.</summary>
internal sealed class ConsoleHost(bool nonInteractive) : PSHost
{
    private readonly ConsoleHostUserInterface _ui = new(nonInteractive);

    public int? ExitCode { get; private set; }

    public override CultureInfo CurrentCulture => CultureInfo.CurrentCulture;

    public override CultureInfo CurrentUICulture => CultureInfo.CurrentUICulture;

    public override Guid InstanceId { get; } = Guid.NewGuid();

    public override string Name => "DataOps.Host";

    public override PSHostUserInterface UI => _ui;

    public override Version Version => typeof(ConsoleHost).Assembly.GetName().Version ?? new Version(0, 1);

    public override void EnterNestedPrompt() => throw new NotSupportedException("DataOps.Host has no nested prompt.");

    public override void ExitNestedPrompt() => throw new NotSupportedException("DataOps.Host has no nested prompt.");

    public override void NotifyBeginApplication()
    {
    }

    public override void NotifyEndApplication()
    {
    }

    public override void SetShouldExit(int exitCode) => ExitCode = exitCode;
}
