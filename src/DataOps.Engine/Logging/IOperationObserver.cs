namespace DataOps.Engine.Logging;

/// <summary>
/// How an engine operation reports to whoever runs it (the cmdlet layer turns these into
/// Verbose, Warning, Information and Progress records). Implementations must be thread-safe.
/// </summary>
public interface IOperationObserver
{
    void Verbose(string message);

    /// <summary>Something that needs the user's attention (CI systems flag warnings).</summary>
    void Warning(string message);

    /// <summary>
    /// How a successful operation ended and where to look next ("halted for review: read the summary"):
    /// shown to an interactive user as host output, never flagged as a warning.
    /// </summary>
    void Information(string message);

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

    public void Information(string message)
    {
    }

    public void Progress(OperationProgress progress)
    {
    }
}

/// <summary>Progress for work that is one long step (one statement, one migration run): a bar that shows it is alive.</summary>
public static class Heartbeat
{
    /// <summary>
    /// Awaits <paramref name="work"/>, reporting <paramref name="status"/> with the time taken so far
    /// every half second, then closes the bar.
    /// </summary>
    public static async Task<T> Track<T>(Task<T> work, IOperationObserver observer, string activity, string status)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        observer.Progress(new OperationProgress(activity, status));
        while (await Task.WhenAny(work, Task.Delay(500)).ConfigureAwait(false) != work)
        {
            observer.Progress(new OperationProgress(activity, $"{status} ({clock.Elapsed.TotalSeconds:0} s)"));
        }

        observer.Progress(new OperationProgress(activity, "Done", Completed: true));
        return await work.ConfigureAwait(false);
    }
}
