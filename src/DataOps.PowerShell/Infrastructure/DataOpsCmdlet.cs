using System.Collections.Concurrent;
using System.Management.Automation;
using DataOps.Engine;
using DataOps.Engine.Logging;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>
/// What every DataOps cmdlet shares: engine calls run off the pipeline thread while this thread
/// pumps their Verbose, Warning, Information, Debug and Progress records; Ctrl+C cancels the engine's token; engine
/// failures become ErrorRecords with the engine's ErrorId, category and target. StopProcessing is
/// sealed (a cmdlet that overrode it without calling this one would leave its engine work running
/// after Ctrl+C), and PowerShell disposes the cmdlet, with its cancellation source, when its
/// pipeline ends.
/// </summary>
public abstract class DataOpsCmdlet : PSCmdlet, IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private int _disposed;

    protected CancellationToken StopToken => _stop.Token;

    protected sealed override void StopProcessing()
    {
        // Ctrl+C can arrive from another thread as the pipeline ends: a disposed source has nothing left to stop.
        if (Volatile.Read(ref _disposed) == 0)
        {
            try
            {
                _stop.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // Disposed between the check and the call.
            }
        }

        base.StopProcessing();
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _stop.Dispose();
        }

        GC.SuppressFinalize(this);
    }

    /// <summary>Runs an engine operation, relaying its reports, and returns its result.</summary>
    protected T RunEngine<T>(Func<IOperationObserver, CancellationToken, Task<T>> operation)
    {
        T result = default!;
        try
        {
            Pump(async (observer, ct) => result = await operation(observer, ct).ConfigureAwait(false));
        }
        catch (DataOpsException ex)
        {
            ThrowTerminatingError(ToErrorRecord(ex));
        }

        return result;
    }

    /// <summary>
    /// Runs an engine operation for one item of several: a failure is written as a non-terminating
    /// error and the cmdlet goes on with the next item.
    /// </summary>
    protected bool TryRunEngine<T>(Func<IOperationObserver, CancellationToken, Task<T>> operation, out T result)
    {
        T value = default!;
        try
        {
            Pump(async (observer, ct) => value = await operation(observer, ct).ConfigureAwait(false));
            result = value;
            return true;
        }
        catch (DataOpsException ex)
        {
            WriteError(ToErrorRecord(ex));
            result = default!;
            return false;
        }
    }

    /// <summary>Runs a synchronous engine operation the same way.</summary>
    protected T RunEngine<T>(Func<IOperationObserver, CancellationToken, T> operation) =>
        RunEngine((o, ct) => Task.FromResult(operation(o, ct)));

    /// <summary>
    /// Writes each item of an engine stream to the pipeline as it arrives. The hand-over queue is
    /// bounded, so a slow pipeline slows the reader instead of buffering the whole result.
    /// </summary>
    protected void StreamEngine<T>(Func<IOperationObserver, CancellationToken, IAsyncEnumerable<T>> source)
    {
        try
        {
            PumpStream(source);
        }
        catch (DataOpsException ex)
        {
            ThrowTerminatingError(ToErrorRecord(ex));
        }
    }

    /// <summary>
    /// Streams an engine operation for one item of several: a failure is written as a non-terminating
    /// error (after the items already written) and the cmdlet goes on with the next item.
    /// </summary>
    protected bool TryStreamEngine<T>(Func<IOperationObserver, CancellationToken, IAsyncEnumerable<T>> source)
    {
        try
        {
            PumpStream(source);
            return true;
        }
        catch (DataOpsException ex)
        {
            WriteError(ToErrorRecord(ex));
            return false;
        }
    }

    private void PumpStream<T>(Func<IOperationObserver, CancellationToken, IAsyncEnumerable<T>> source) =>
        Pump(async (observer, ct) =>
        {
            await foreach (var item in source(observer, ct).WithCancellation(ct).ConfigureAwait(false))
            {
                observer.Emit(c => c.WriteObject(item), ct);
            }
        });

    /// <summary>Runs an engine operation with a run log of its own, whose path -Verbose announces.</summary>
    protected T RunEngineLogged<T>(string operation, Func<RunLog, IOperationObserver, CancellationToken, Task<T>> work, SecretRedactor? redactor = null) =>
        RunEngine(async (observer, ct) =>
        {
            using var log = OpenLog(operation, observer, redactor);
            return await work(log, observer, ct).ConfigureAwait(false);
        });

    /// <summary>Streams an engine operation's items with a run log of its own, whose path -Verbose announces.</summary>
    protected void StreamEngineLogged<T>(string operation, Func<RunLog, IOperationObserver, CancellationToken, IAsyncEnumerable<T>> source, SecretRedactor? redactor = null) =>
        StreamEngine((observer, ct) => Logged(operation, source, redactor, observer, ct));

    private static async IAsyncEnumerable<T> Logged<T>(string operation, Func<RunLog, IOperationObserver, CancellationToken, IAsyncEnumerable<T>> source, SecretRedactor? redactor, IOperationObserver observer, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        using var log = OpenLog(operation, observer, redactor);
        await foreach (var item in source(log, observer, ct).WithCancellation(ct).ConfigureAwait(false))
        {
            yield return item;
        }
    }

    /// <summary>
    /// A run log: a file for the operations that change data, -Verbose only for the read-only ones
    /// (<see cref="ReadOnlyOperations"/>), so looking never fills the log folder.
    /// </summary>
    private protected static RunLog OpenLog(string operation, IOperationObserver observer, SecretRedactor? redactor)
    {
        var log = RunLog.Open(operation, observer, redactor, file: !ReadOnlyOperations.Contains(operation));
        observer.Verbose(log.Path is null ? $"No run log file: {operation} changes no data" : $"Run log: {log.Path}");
        return log;
    }

    /// <summary>Operations that read and report but change no data: they write no run log file.</summary>
    private static readonly HashSet<string> ReadOnlyOperations = new(StringComparer.Ordinal) { "Watch-StagingSoak", "Test-ProdHealth" };

    /// <summary>
    /// Runs work off the pipeline thread while this thread writes what it reports. If the pipeline
    /// stops early (Ctrl+C, or a downstream command that needs no more input) the work is cancelled.
    /// </summary>
    private protected void Pump(Func<PumpObserver, CancellationToken, Task> work)
    {
        using var call = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        using var observer = new PumpObserver(call.Token);
        Task task;
        using (TracesSql && DebugRequested ? SqlTrace.Begin(observer.Debug) : null)
        {
            // The trace is an AsyncLocal: the work's task (started inside this scope) carries it.
            task = Task.Run(() => work(observer, call.Token));
        }

        task.ContinueWith(_ => observer.Complete(), TaskScheduler.Default);
        try
        {
            foreach (var record in observer.Records.GetConsumingEnumerable())
            {
                record(this);
            }
        }
        finally
        {
            if (!task.IsCompleted)
            {
                call.Cancel();
                try
                {
                    task.Wait();
                }
                catch (AggregateException)
                {
                    // The pipeline is already failing or stopping; its own exception is the one to report.
                }
            }
        }

        try
        {
            task.GetAwaiter().GetResult();
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            throw new PipelineStoppedException();
        }
    }

    /// <summary>
    /// How an operation ended well and where to look next, as host output through the Information
    /// stream the way Write-Host writes it (the PSHOST tag): shown by default, captured by
    /// -InformationVariable, silenced by -InformationAction Ignore or 6>$null; never a warning, which
    /// CI systems flag.
    /// </summary>
    protected static void WriteHostInformation(Cmdlet cmdlet, string message) =>
        cmdlet.WriteInformation(new HostInformationMessage { Message = message }, ["PSHOST", "DataOps"]);

    /// <summary>
    /// Whether -Debug shows the SQL this cmdlet's engine work sends (each statement's text and
    /// duration as Npgsql completes it; never parameter values). A cmdlet that writes its own SQL
    /// description to Debug turns it off so -Debug does not say it twice.
    /// </summary>
    protected virtual bool TracesSql => true;

    /// <summary>
    /// WriteVerbose, except under -Debug without -Verbose: PowerShell then sets a compiled cmdlet's
    /// verbose preference to Inquire, so each line would stop for a prompt (and fail where the host cannot
    /// prompt). Those lines go to the Debug stream instead, which -Debug shows without asking.
    /// </summary>
    protected new void WriteVerbose(string text)
    {
        if (MyInvocation.BoundParameters.TryGetValue("Debug", out var debug) && debug is SwitchParameter { IsPresent: true } && !MyInvocation.BoundParameters.ContainsKey("Verbose"))
        {
            WriteDebug(text);
        }
        else
        {
            base.WriteVerbose(text);
        }
    }

    private bool DebugRequested =>
        (MyInvocation.BoundParameters.TryGetValue("Debug", out var debug) && debug is SwitchParameter { IsPresent: true }) ||
        GetVariableValue("DebugPreference") is ActionPreference preference && preference is not (ActionPreference.SilentlyContinue or ActionPreference.Ignore);

    /// <summary>
    /// A write that must be confirmed as if the cmdlet's ConfirmImpact were High, for this call only:
    /// <paramref name="What"/> says what it does as the start of a sentence (the question and the
    /// refusal both begin with it), <paramref name="Caption"/> titles the prompt, and a refusal names
    /// <paramref name="Target"/>.
    /// </summary>
    protected sealed record HighImpact(string What, string Caption, object? Target);

    /// <summary>
    /// ShouldProcess, raised to ConfirmImpact High for a <see cref="HighImpact"/> write: the user is then
    /// asked whenever $ConfirmPreference would ask for a High-impact command, even if this cmdlet's own
    /// impact is lower (production writes, deleting a sandbox's data). -Force skips the prompts (never
    /// -WhatIf, never an explicit -Confirm); -Confirm:$false skips them too. A session that cannot ask
    /// (pwsh -NonInteractive, CI, a runbook) ends the command with ConfirmationRequired: it never writes unasked.
    /// </summary>
    protected bool ShouldWrite(string target, string action, bool force, HighImpact? highImpact)
    {
        // -Force skips prompts, never a question the user asked for with an explicit -Confirm.
        var confirmRequested = MyInvocation.BoundParameters.TryGetValue("Confirm", out var confirm) && confirm is SwitchParameter { IsPresent: true };
        if (force && !WhatIfRequested && !confirmRequested)
        {
            WriteVerbose($"{action} on {target} (confirmation skipped by -Force).");
            return true;
        }

        if (!ShouldProcess(target, action))
        {
            return false;
        }

        if (highImpact is null || MyInvocation.BoundParameters.ContainsKey("Confirm"))
        {
            return true;
        }

        var preference = SessionState.PSVariable.GetValue("ConfirmPreference") is ConfirmImpact p ? p : ConfirmImpact.High;
        var declared = ((CmdletAttribute)Attribute.GetCustomAttribute(GetType(), typeof(CmdletAttribute))!).ConfirmImpact;
        var alreadyAsked = declared >= preference && preference != ConfirmImpact.None;
        if (preference == ConfirmImpact.None || alreadyAsked)
        {
            return true;
        }

        // Yes to All / No to All hold for the rest of this invocation (every item of a pipeline).
        try
        {
            return ShouldContinue($"{highImpact.What}. Continue?", highImpact.Caption, ref _yesToAll, ref _noToAll);
        }
        catch (Exception ex) when (ex is PSInvalidOperationException or System.Management.Automation.Host.HostException or NotImplementedException)
        {
            // A non-interactive host (a runbook, CI, pwsh -NonInteractive) cannot ask.
            ThrowTerminating("ConfirmationRequired", DataOpsErrorKind.InvalidOperation,
                $"{highImpact.What}, and this session cannot ask for confirmation ({ex.Message}). " +
                "Confirm it on the command line: pass -Confirm:$false (or -Force).",
                highImpact.Target);
            return false;
        }
    }

    private bool _yesToAll;
    private bool _noToAll;

    protected bool WhatIfRequested =>
        (MyInvocation.BoundParameters.TryGetValue("WhatIf", out var w) && w is SwitchParameter { IsPresent: true }) ||
        (SessionState.PSVariable.GetValue("WhatIfPreference") is bool b && b) ||
        (SessionState.PSVariable.GetValue("WhatIfPreference") is SwitchParameter { IsPresent: true });

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
        DataOpsErrorKind.OperationTimeout => ErrorCategory.OperationTimeout,
        _ => ErrorCategory.InvalidOperation,
    };

    /// <summary>Queues the engine's reports so only the pipeline thread writes to the streams.</summary>
    private protected sealed class PumpObserver(CancellationToken stopped) : IOperationObserver, IDisposable
    {
        public BlockingCollection<Action<Cmdlet>> Records { get; } = new(boundedCapacity: 512);

        /// <summary>Queues an output record, waiting while the queue is full.</summary>
        public void Emit(Action<Cmdlet> record, CancellationToken ct) => Records.Add(record, ct);

        public void Verbose(string message) => Add(c => ((DataOpsCmdlet)c).WriteVerbose(message));

        public void Warning(string message) => Add(c => c.WriteWarning(message));

        public void Information(string message) => Add(c => WriteHostInformation(c, message));

        public void Debug(string message) => Add(c => c.WriteDebug(message));

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

        /// <summary>Queues any record for the pipeline thread (dropped once the operation has finished or stopped).</summary>
        public void Post(Action<Cmdlet> record) => Add(record);

        public void Complete() => Records.CompleteAdding();

        public void Dispose() => Records.Dispose();

        private void Add(Action<Cmdlet> record)
        {
            try
            {
                Records.Add(record, stopped);
            }
            catch (Exception ex) when (ex is InvalidOperationException or OperationCanceledException)
            {
                // The operation finished or the pipeline stopped; late reports have nowhere to go.
            }
        }
    }
}
