namespace DataOps.Engine.Logging;

/// <summary>
/// How an engine operation reports to whoever runs it (the cmdlet layer turns these into
/// Verbose, Warning and Progress records). Implementations must be thread-safe.
/// </summary>
public interface IOperationObserver
{
    void Verbose(string message);

    void Warning(string message);

    void Progress(OperationProgress progress);
}

/// <summary>One progress update. PercentComplete -1 means unknown; Completed closes the bar.</summary>
public sealed record OperationProgress(
    string Activity,
    string Status,
    int PercentComplete = -1,
    TimeSpan? Remaining = null,
    bool Completed = false,
    string? CurrentOperation = null);

/// <summary>An observer that discards everything (engine tests, library use).</summary>
public sealed class NullObserver : IOperationObserver
{
    public static readonly NullObserver Instance = new();

    private NullObserver()
    {
    }

    public void Verbose(string message)
    {
    }

    public void Warning(string message)
    {
    }

    public void Progress(OperationProgress progress)
    {
    }
}
