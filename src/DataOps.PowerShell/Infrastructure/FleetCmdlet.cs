using System.Management.Automation;
using DataOps.Engine;
using DataOps.Engine.Connections;
using DataOps.Engine.Logging;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>One database of a fleet: its connection, the name its results carry, and its folder for files.</summary>
public sealed class FleetTarget
{
    internal FleetTarget(int index, DataOpsConnection connection, string name, string folder)
    {
        Index = index;
        Connection = connection;
        Name = name;
        Folder = folder;
    }

    public int Index { get; }

    public DataOpsConnection Connection { get; }

    /// <summary>The connection's name (never its password); the Target property of each result and error.</summary>
    public string Name { get; }

    /// <summary>The target's subfolder under -OutputDirectory: its name with anything but letters, digits, '.', '-' and '_' as '_', unique in the fleet.</summary>
    public string Folder { get; }

    public override string ToString() => Name;
}

/// <summary>How one target of a fleet ended: its result, or the error written for it.</summary>
public sealed record FleetOutcome<T>(FleetTarget Target, T? Result, DataOpsException? Error)
{
    public bool Succeeded => Error is null;
}

/// <summary>
/// A cmdlet whose -Connection takes one database or a fleet: an array of connection objects, sandboxes,
/// stored names, environment names or connection strings. One target behaves exactly as a
/// <see cref="DatabaseCmdlet"/>. Several run at once, up to -ThrottleLimit, each with its own engine
/// objects and connections (nothing mutable is shared between them, and no runspace is used off the
/// pipeline thread); everything they report is queued and written by the pipeline thread. A target
/// that fails writes a non-terminating error naming it and the others go on. Every result object
/// gets a Target note property (the connection's name), and each target's progress is a child bar of
/// the fleet's.
/// </summary>
public abstract class FleetCmdlet : ConnectedCmdlet
{
    /// <summary>The default -ThrottleLimit: how many targets of a fleet run at once.</summary>
    public const int DefaultThrottleLimit = 4;

    /// <summary>The database or databases to use: connection objects, sandboxes (Start-DataOpsSandbox's objects), names of connections Connect-DataOps -Name stored in the session, environment names (DATAOPS_&lt;NAME&gt;_CONNECTION) or connection strings; several make a fleet, run at once up to -ThrottleLimit, where every result names its Target and a target that fails is a non-terminating error that never stops the others. Defaults to the session's connection (Connect-DataOps or Start-DataOpsSandbox). Binds from pipeline objects' Connection property, so piped objects are acted on in the database they came from; a -Connection that names another database is refused (ConnectionMismatch).</summary>
    /// <default>the session's default (Connect-DataOps or Start-DataOpsSandbox)</default>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ConnectionTransformation]
    [ArgumentCompleter(typeof(ConnectionNameCompleter))]
    public DataOpsConnection[]? Connection { get; set; }

    /// <summary>With several -Connection targets (a fleet): how many run at once, 1 to 32. Ignored for one target.</summary>
    /// <default>4</default>
    [Parameter]
    [ValidateRange(1, 32)]
    public int ThrottleLimit { get; set; } = DefaultThrottleLimit;

    private protected override DataOpsConnection? TypedConnection => Connection is { Length: > 0 } c ? c[0] : null;

    /// <summary>Whether -Connection names more than one database.</summary>
    protected bool IsFleet => Connection is { Length: > 1 };

    /// <summary>
    /// The fleet's targets for the object at hand. A piped object that binds nothing, or that carries a
    /// connection of its own (it belongs to one database, not to a fleet), is refused with a
    /// non-terminating error and false.
    /// </summary>
    protected bool TryResolveFleet(out IReadOnlyList<FleetTarget> targets)
    {
        targets = [];
        if (InputObject is { } input)
        {
            if (!PipelineInput.BindsSomething(this, input))
            {
                WriteError(PipelineInput.NotBound(this, input));
                return false;
            }

            if (PipelineInput.Property<DataOpsConnection>(input, "Connection") is { } piped)
            {
                var what = input.BaseObject.GetType().Name;
                var ex = new DataOpsException("ConnectionMismatch", DataOpsErrorKind.InvalidArgument,
                    $"The piped {what} ({input.BaseObject}) comes from {piped}, but -Connection names a fleet of {Connection!.Length} databases; nothing was done with it. " +
                    "Leave out -Connection to act on each object in its own database.",
                    piped.ToString())
                {
                    RecommendedAction = $"Leave out -Connection, or pass -Connection for {piped}.",
                };
                WriteError(ToErrorRecord(ex));
                return false;
            }
        }

        targets = Targets(Connection!);
        return true;
    }

    /// <summary>Names and folders for the connections, each unique in the fleet (a second 'staging' is 'staging#2', folder 'staging-2').</summary>
    internal static IReadOnlyList<FleetTarget> Targets(IReadOnlyList<DataOpsConnection> connections)
    {
        var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var folders = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var targets = new List<FleetTarget>(connections.Count);
        for (var i = 0; i < connections.Count; i++)
        {
            var c = connections[i];
            var name = Unique(c.Name, names, n => $"{c.Name}#{n}");
            var safe = new string([.. c.Name.Select(ch => char.IsAsciiLetterOrDigit(ch) || ch is '.' or '-' or '_' ? ch : '_')]).Trim('.');
            var folder = Unique(safe.Length == 0 ? "target" : safe, folders, n => $"{safe}-{n}");
            targets.Add(new FleetTarget(i, c, name, folder));
        }

        return targets;
    }

    private static string Unique(string first, HashSet<string> taken, Func<int, string> numbered)
    {
        var candidate = first;
        for (var n = 2; !taken.Add(candidate); n++)
        {
            candidate = numbered(n);
        }

        return candidate;
    }

    /// <summary>
    /// Runs <paramref name="work"/> for every target, at most -ThrottleLimit at once, while this (the
    /// pipeline) thread writes what they report. A target's failure is written as a non-terminating
    /// error naming it and never stops the others; Ctrl+C stops them all. Returns each target's outcome,
    /// in the fleet's order.
    /// </summary>
    private protected IReadOnlyList<FleetOutcome<T>> RunFleet<T>(IReadOnlyList<FleetTarget> targets, string activity, Func<FleetTarget, FleetScope, CancellationToken, Task<T>> work, Action<FleetScope, DataOpsException>? failed = null)
    {
        var outcomes = new FleetOutcome<T>[targets.Count];
        var fleetId = FleetProgressId(activity);
        Pump(async (observer, ct) =>
        {
            using var gate = new SemaphoreSlim(ThrottleLimit);
            var finished = 0;
            ParentProgress(observer, fleetId, activity, targets.Count, 0, completed: false);
            var running = targets.Select((target, position) => Task.Run(async () =>
            {
                await gate.WaitAsync(ct).ConfigureAwait(false);
                var scope = new FleetScope(target, observer, fleetId, ct);
                try
                {
                    var result = await work(target, scope, ct).ConfigureAwait(false);
                    outcomes[position] = new FleetOutcome<T>(target, result, null);
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    throw;
                }
                catch (Exception ex)
                {
                    var error = Named(target, ex);
                    outcomes[position] = new FleetOutcome<T>(target, default, error);
                    observer.Post(c => c.WriteError(ToErrorRecord(error)));
                    failed?.Invoke(scope, error);
                }
                finally
                {
                    scope.CloseProgress();
                    gate.Release();
                    ParentProgress(observer, fleetId, activity, targets.Count, Interlocked.Increment(ref finished), completed: false);
                }
            }, ct)).ToList();
            await Task.WhenAll(running).ConfigureAwait(false);
            ParentProgress(observer, fleetId, activity, targets.Count, targets.Count, completed: true);
        });
        return outcomes;
    }

    /// <summary>The target's failure with its name in front of the message and as the error's target (never a secret: the engine's messages are redacted).</summary>
    internal static DataOpsException Named(FleetTarget target, Exception ex)
    {
        var inner = ex as DataOpsException ?? target.Connection.Explain(ex);
        return new DataOpsException(inner.ErrorId, inner.Kind, $"{target.Name}: {inner.Message}", target.Name, inner)
        {
            RecommendedAction = inner.RecommendedAction,
        };
    }

    /// <summary>Adds the Target note property (the target's name) to a result object; returns it wrapped.</summary>
    internal static PSObject Tag(object item, string target, string? fleetTypeName = null)
    {
        var ps = PSObject.AsPSObject(item);
        if (ps.Properties["Target"] is PSNoteProperty existing)
        {
            existing.Value = target;
        }
        else if (ps.Properties["Target"] is null)
        {
            ps.Properties.Add(new PSNoteProperty("Target", target));
        }

        if (fleetTypeName is not null && !ps.TypeNames.Contains(fleetTypeName))
        {
            ps.TypeNames.Insert(0, fleetTypeName);
        }

        return ps;
    }

    private static int FleetProgressId(string activity) => 20000 + Math.Abs(activity.GetHashCode(StringComparison.Ordinal) % 10000);

    private static void ParentProgress(PumpObserver observer, int id, string activity, int count, int finished, bool completed) =>
        observer.Post(c => c.WriteProgress(new ProgressRecord(id, activity, $"{finished} of {count} targets done")
        {
            PercentComplete = count == 0 ? 100 : finished * 100 / count,
            RecordType = completed ? ProgressRecordType.Completed : ProgressRecordType.Processing,
        }));

    /// <summary>
    /// What one target's work reports through: Verbose, Warning and Information lines start with
    /// "[target] ", progress is a child bar of the fleet's, and Write queues a result (with its Target)
    /// for the pipeline thread.
    /// </summary>
    private protected sealed class FleetScope : IOperationObserver
    {
        private readonly PumpObserver _observer;
        private readonly int _parentId;
        private readonly CancellationToken _ct;
        private readonly HashSet<int> _open = [];

        internal FleetScope(FleetTarget target, PumpObserver observer, int parentId, CancellationToken ct)
        {
            Target = target;
            _observer = observer;
            _parentId = parentId;
            _ct = ct;
        }

        public FleetTarget Target { get; }

        /// <summary>Writes a result object, with its Target, waiting while the pipeline is behind.</summary>
        public void Write(object item, string? fleetTypeName = null)
        {
            var name = Target.Name;
            _observer.Emit(c => c.WriteObject(Tag(item, name, fleetTypeName)), _ct);
        }

        public void Verbose(string message) => _observer.Verbose($"[{Target.Name}] {message}");

        public void Warning(string message) => _observer.Warning($"[{Target.Name}] {message}");

        public void Information(string message) => _observer.Information($"[{Target.Name}] {message}");

        public void Progress(OperationProgress p)
        {
            var id = _parentId + 1 + Math.Abs(HashCode.Combine(Target.Index, p.Activity) % 9999);
            lock (_open)
            {
                if (p.Completed)
                {
                    _open.Remove(id);
                }
                else
                {
                    _open.Add(id);
                }
            }

            var activity = $"{Target.Name}: {p.Activity}";
            _observer.Post(c => c.WriteProgress(new ProgressRecord(id, activity, string.IsNullOrEmpty(p.Status) ? p.Activity : p.Status)
            {
                ParentActivityId = _parentId,
                PercentComplete = Math.Clamp(p.PercentComplete, -1, 100),
                SecondsRemaining = p.Remaining is { } r ? (int)Math.Ceiling(r.TotalSeconds) : -1,
                CurrentOperation = p.CurrentOperation,
                RecordType = p.Completed ? ProgressRecordType.Completed : ProgressRecordType.Processing,
            }));
        }

        /// <summary>Closes the bars a failed or finished target left open.</summary>
        internal void CloseProgress()
        {
            int[] open;
            lock (_open)
            {
                open = [.. _open];
                _open.Clear();
            }

            foreach (var id in open)
            {
                var activity = Target.Name;
                _observer.Post(c => c.WriteProgress(new ProgressRecord(id, activity, "Done") { ParentActivityId = _parentId, RecordType = ProgressRecordType.Completed }));
            }
        }
    }
}
