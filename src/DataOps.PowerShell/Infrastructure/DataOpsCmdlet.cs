using System.Collections.Concurrent;
using System.Management.Automation;
using DataOps.Engine;
using DataOps.Engine.Logging;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>
/// What every DataOps cmdlet shares: engine calls run off the pipeline thread while this thread
/// pumps their Verbose, Warning and Progress records; Ctrl+C cancels the engine's token; engine
/// failures become ErrorRecords with the engine's ErrorId, category and target.
/// </summary>
public abstract class DataOpsCmdlet : PSCmdlet
{
    private readonly CancellationTokenSource _stop = new();

    protected CancellationToken StopToken => _stop.Token;

    protected override void StopProcessing()
    {
        _stop.Cancel();
        base.StopProcessing();
    }

    protected override void EndProcessing()
    {
        base.EndProcessing();
    }

    /// <summary>Runs an engine operation, relaying its reports, and returns its result.</summary>
    protected T RunEngine<T>(Func<IOperationObserver, CancellationToken, Task<T>> operation)
    {
        using var observer = new PumpObserver();
        var task = Task.Run(() => operation(observer, _stop.Token));
        task.ContinueWith(_ => observer.Complete(), TaskScheduler.Default);
        foreach (var record in observer.Records.GetConsumingEnumerable())
        {
            record(this);
        }

        try
        {
            return task.GetAwaiter().GetResult();
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            throw new PipelineStoppedException();
        }
        catch (DataOpsException ex)
        {
            ThrowTerminatingError(ToErrorRecord(ex));
            throw; // not reached: ThrowTerminatingError always throws
        }
    }

    /// <summary>Runs a synchronous engine operation the same way.</summary>
    protected T RunEngine<T>(Func<IOperationObserver, CancellationToken, T> operation) =>
        RunEngine((o, ct) => Task.FromResult(operation(o, ct)));

    protected static ErrorRecord ToErrorRecord(DataOpsException ex)
    {
        var record = new ErrorRecord(ex, ex.ErrorId, Category(ex.Kind), ex.Target);
        if (ex.RecommendedAction is not null)
        {
            record.ErrorDetails = new ErrorDetails(ex.Message) { RecommendedAction = ex.RecommendedAction };
        }

        return record;
    }

    protected void ThrowTerminating(DataOpsException ex) => ThrowTerminatingError(ToErrorRecord(ex));

    protected void ThrowTerminating(string errorId, DataOpsErrorKind kind, string message, object? target) =>
        ThrowTerminating(new DataOpsException(errorId, kind, message, target));

    private static ErrorCategory Category(DataOpsErrorKind kind) => kind switch
    {
        DataOpsErrorKind.InvalidArgument => ErrorCategory.InvalidArgument,
        DataOpsErrorKind.InvalidData => ErrorCategory.InvalidData,
        DataOpsErrorKind.ObjectNotFound => ErrorCategory.ObjectNotFound,
        DataOpsErrorKind.ConnectionError => ErrorCategory.ConnectionError,
        DataOpsErrorKind.AuthenticationError => ErrorCategory.AuthenticationError,
        DataOpsErrorKind.PermissionDenied => ErrorCategory.PermissionDenied,
        DataOpsErrorKind.ResourceUnavailable => ErrorCategory.ResourceUnavailable,
        DataOpsErrorKind.NotInstalled => ErrorCategory.NotInstalled,
        DataOpsErrorKind.OperationStopped => ErrorCategory.OperationStopped,
        DataOpsErrorKind.WriteError => ErrorCategory.WriteError,
        _ => ErrorCategory.InvalidOperation,
    };

    /// <summary>Queues the engine's reports so only the pipeline thread writes to the streams.</summary>
    private sealed class PumpObserver : IOperationObserver, IDisposable
    {
        public BlockingCollection<Action<Cmdlet>> Records { get; } = new();

        public void Verbose(string message) => Add(c => c.WriteVerbose(message));

        public void Warning(string message) => Add(c => c.WriteWarning(message));

        public void Progress(OperationProgress p) => Add(c =>
        {
            var record = new ProgressRecord(Math.Abs(p.Activity.GetHashCode() % 10000), p.Activity, string.IsNullOrEmpty(p.Status) ? p.Activity : p.Status)
            {
                PercentComplete = Math.Clamp(p.PercentComplete, -1, 100),
                SecondsRemaining = p.Remaining is { } r ? (int)Math.Ceiling(r.TotalSeconds) : -1,
                CurrentOperation = p.CurrentOperation,
                RecordType = p.Completed ? ProgressRecordType.Completed : ProgressRecordType.Processing,
            };
            c.WriteProgress(record);
        });

        public void Complete() => Records.CompleteAdding();

        public void Dispose() => Records.Dispose();

        private void Add(Action<Cmdlet> record)
        {
            try
            {
                Records.Add(record);
            }
            catch (InvalidOperationException)
            {
                // The operation finished and the pump stopped; late reports have nowhere to go.
            }
        }
    }
}
