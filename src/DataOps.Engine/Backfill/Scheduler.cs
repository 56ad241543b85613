using System.Runtime.CompilerServices;
using System.Threading.Channels;
using DataOps.Engine.Connections;

namespace DataOps.Engine.Backfill;

/// <summary>
/// Hands a run's keys to its workers and streams what they did, batch by batch. One worker for a
/// plain job, the job's maxConcurrency for independent items; each worker has its own connection and
/// asks the <see cref="Throttle"/> before each item or group. Items that can run whole on the server go
/// in groups (<see cref="GroupExecutor"/>), the rest one by one (<see cref="ItemExecutor"/>). A worker
/// runs at most one batch ahead of the reporting, so the server runs the next group while this one is
/// reported; after a batch with a failure it waits until the coordinator has decided whether the run
/// goes on (-MaxFailures). When the run stops itself, what the other workers finish is still
/// reported; when the pipeline stops (Ctrl+C, Select-Object -First) it is recorded in the run's files.
/// </summary>
internal sealed class Scheduler(BackfillRunState run, Throttle throttle, ItemExecutor items, GroupExecutor? groups, int width, DataOpsConnection connection, TimeSpan lockTimeout)
{
    /// <summary>Items a worker claims at once from a run's queue when unthrottled (one while throttled, so a slow rate holds no claims).</summary>
    internal const int ClaimBatch = 4;

    private readonly object _gate = new();
    private readonly int _width = Math.Max(1, width);

    /// <summary>The keys this process's workers ran, for a run with a queue: the coordinator records the others' from the ledger at the end.</summary>
    private readonly HashSet<string> _mine = new(StringComparer.Ordinal);

    private readonly Polly.ResiliencePipeline _queueRetry = Retry.Pipeline(items.Log);

    /// <summary>The items this process's workers have claimed and not finished.</summary>
    private readonly HashSet<string> _inFlight = new(StringComparer.Ordinal);

    /// <summary>Workers of this process whose claim statement is under way (guarded by _inFlight's lock).</summary>
    private int _claiming;
    private int _next;
    private volatile bool _halted;

    private bool Halted => _halted || run.Stopped;

    public async IAsyncEnumerable<IReadOnlyList<ItemOutcome>> RunAsync([EnumeratorCancellation] CancellationToken ct)
    {
        var channel = Channel.CreateBounded<Batch>(new BoundedChannelOptions(1) { SingleReader = true });
        _ = Task.Run(() => ProduceAsync(channel.Writer, ct), CancellationToken.None);
        Batch? reporting = null;
        try
        {
            if (run.Queue is { Coordinator: true } && run.Keys.Where(run.Applied.Contains).ToList() is { Count: > 0 } applied)
            {
                // Keys applied before this run are not in the queue: they are reported skipped here, once.
                yield return [.. applied.Select(k => ItemOutcome.Skipped(run.RunId, run.Name, k))];
            }

            await foreach (var batch in channel.Reader.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
            {
                reporting = batch;
                yield return batch.Items;
                reporting = null;
                if (run.Stopped)
                {
                    // The run stopped itself (-MaxFailures, a lost database): no worker takes more
                    // keys, and what the others still finish is reported too, as it happened.
                    _halted = true;
                }

                batch.Reviewed.TrySetResult();
            }
        }
        finally
        {
            _halted = true;
            reporting?.Reviewed.TrySetResult();
            await DrainAsync(channel.Reader).ConfigureAwait(false);
            if (run.Queue is { Coordinator: true } queue)
            {
                // However the run ends: no process claims more, the others finish what they hold, and what
                // they ran goes into this run's files and its one rollback script.
                await queue.CloseAsync(OthersPatience).ConfigureAwait(false);
                await RecordOthersAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// After the run stopped: waits for the workers (each ends its item or group) and records what they
    /// finished, so the run's files and rollback script have every committed item.
    /// </summary>
    private async Task DrainAsync(ChannelReader<Batch> reader)
    {
        try
        {
            await foreach (var batch in reader.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
            {
                batch.Reviewed.TrySetResult();
                run.Record(batch.Items);
            }
        }
        catch (Exception)
        {
            // The run is already ending with its own outcome; the ledger has every committed item.
        }
    }

    private async Task ProduceAsync(ChannelWriter<Batch> writer, CancellationToken ct)
    {
        try
        {
            await Task.WhenAll(Enumerable.Range(0, _width).Select(_ => Task.Run(() => WorkAsync(writer, ct), CancellationToken.None))).ConfigureAwait(false);
            writer.TryComplete();
        }
        catch (Exception ex)
        {
            writer.TryComplete(ex);
        }
    }

    private async Task WorkAsync(ChannelWriter<Batch> writer, CancellationToken ct)
    {
        await using var work = new WorkConnection(connection, lockTimeout);
        try
        {
            if (run.Keyset is { } walk)
            {
                await WalkAsync(writer, work, walk, ct).ConfigureAwait(false);
                return;
            }

            if (run.Queue is { } queue)
            {
                await ClaimLoopAsync(writer, work, queue, ct).ConfigureAwait(false);
                return;
            }

            // A worker starts its next keys only when the reporting has room for what they give:
            // so a run that stops has at most one batch waiting and one per worker in flight.
            while (await writer.WaitToWriteAsync(ct).ConfigureAwait(false) && !Halted && Take() is { } keys)
            {
                if (keys.Count == 1 && run.Applied.Contains(keys[0]))
                {
                    await EmitAsync(writer, [ItemOutcome.Skipped(run.RunId, run.Name, keys[0])]).ConfigureAwait(false);
                    continue;
                }

                if (!await WaitTurnAsync(work, ct).ConfigureAwait(false))
                {
                    // Stopped while it waited (Stop-Backfill): the keys it took were not started.
                    return;
                }

                if (groups is null)
                {
                    await EmitAsync(writer, [await items.RunAsync(work, keys[0], ct).ConfigureAwait(false)]).ConfigureAwait(false);
                }
                else
                {
                    await RunGroupAsync(writer, work, keys, ct).ConfigureAwait(false);
                }
            }
        }
        catch (Exception)
        {
            // The other workers finish their item or group and take no more.
            _halted = true;
            throw;
        }
    }

    /// <summary>
    /// A keyset job: one chunk at a time, each found right before it runs (after the throttle let it).
    /// A chunk that hits the statement timeout is halved and run again (at the smallest size it fails);
    /// a chunk that fails or is stale ends the walk there, so the committed chunks stay one contiguous
    /// range and the next run resumes at the failed chunk.
    /// </summary>
    private async Task WalkAsync(ChannelWriter<Batch> writer, WorkConnection work, KeysetWalk walk, CancellationToken ct)
    {
        while (await writer.WaitToWriteAsync(ct).ConfigureAwait(false) && !Halted)
        {
            if (!await WaitTurnAsync(work, ct).ConfigureAwait(false))
            {
                return;
            }

            var conn = await work.GetAsync(ct).ConfigureAwait(false);
            if (await walk.NextAsync(conn, ct).ConfigureAwait(false) is not var (chunk, rows))
            {
                return;
            }

            ItemOutcome outcome;
            try
            {
                outcome = await items.RunAsync(work, chunk.Key, ct).ConfigureAwait(false);
            }
            catch (ItemExecutor.ChunkTimedOutException timedOut)
            {
                if (walk.Halve())
                {
                    items.Log.Warning("Chunk {Key} ({Rows} rows): {Reason} (statement timeout {Timeout}); halved to {Size} rows and run again", chunk.Key, rows, timedOut.Message, walk.Spec.StatementTimeout, walk.Size);
                    continue;
                }

                outcome = new ItemOutcome(chunk.Key, await items.FailedAsync(timedOut.InnerException!, chunk.Key, ct).ConfigureAwait(false), null);
            }

            if (outcome.Result.Status is BackfillItemStatus.Applied or BackfillItemStatus.WouldApply)
            {
                walk.Done(chunk, rows, outcome.Result.Duration);
            }
            else
            {
                // A gap would make "resume after the last committed chunk" skip rows: the walk stops here.
                _halted = true;
                items.Log.Warning("The keyset walk stops at chunk {Key} ({Status}); the next run of the job resumes there", chunk.Key, outcome.Result.Status);
            }

            await EmitAsync(writer, [outcome]).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// A run worked by several workers (<see cref="RunQueue"/>): claim the next items from the database
    /// (a few at a time when unthrottled, one while throttled), run each on the one-item path (an applied
    /// item marks its claim done in its own transaction, any other outcome right after), and when nothing
    /// is left to claim, wait while other processes still hold items, to take them over if their process
    /// dies; then end.
    /// </summary>
    private async Task ClaimLoopAsync(ChannelWriter<Batch> writer, WorkConnection work, RunQueue queue, CancellationToken ct)
    {
        var sinceCheck = System.Diagnostics.Stopwatch.StartNew();
        while (await writer.WaitToWriteAsync(ct).ConfigureAwait(false) && !Halted)
        {
            if (sinceCheck.Elapsed > RunQueue.RenewEvery)
            {
                // A process of this host that died: its claims are free now, not after its lease's 15 s.
                await OnQueueAsync(work, queue.OthersHoldItemsAsync, ct).ConfigureAwait(false);
                sinceCheck.Restart();
            }

            // The gates first (a suspend, a signal: they may hold for long), then the claim, then the rate's slot
            // (a wait of at most the workers' share of the rate, with one item held while throttled): a worker
            // that waits for nothing to claim takes no slot from those that have items.
            if (!await WaitTurnAsync(work, ct, gatesOnly: true).ConfigureAwait(false))
            {
                return;
            }

            var size = groups is null ? ClaimBatch : Math.Clamp(GroupExecutor.GroupSize / _width, 1, ClaimBatch * 8);
            var claimed = await ClaimAsync(work, queue, throttle.GroupSize(size), ct).ConfigureAwait(false);
            if (claimed.Count == 0)
            {
                if (!queue.Coordinator && await OnQueueAsync(work, queue.StoppedEarlyAsync, ct).ConfigureAwait(false))
                {
                    run.RequestStop("stopped: the process that started the run stopped it; this process's items in flight finished, no new item started", abort: false);
                    return;
                }

                if (await OnQueueAsync(work, queue.OthersHoldItemsAsync, ct).ConfigureAwait(false) || await ReleaseOrphansAsync(work, queue, ct).ConfigureAwait(false))
                {
                    await Task.Delay(RunQueue.PollEvery, ct).ConfigureAwait(false);
                    continue;
                }

                // Nobody else holds an item: one more claim catches a holder that went away between the two
                // statements; nothing then means every item is done, or closed.
                claimed = await ClaimAsync(work, queue, throttle.GroupSize(size), ct).ConfigureAwait(false);
                if (claimed.Count == 0)
                {
                    return;
                }
            }

            foreach (var claim in claimed.Where(c => c.Claims > 1))
            {
                items.Log.Information("Item {Key} is claimed again: the worker process that held it went away or left the run", claim.Key);
            }

            var keys = claimed.Select(c => c.Key).ToList();

            try
            {
                if (!await WaitTurnAsync(work, ct).ConfigureAwait(false))
                {
                    return;
                }

                if (groups is not null)
                {
                    await RunGroupAsync(writer, work, keys, ct).ConfigureAwait(false);
                    continue;
                }

                for (var i = 0; i < keys.Count && !Halted; i++)
                {
                    if (i > 0 && !await WaitTurnAsync(work, ct).ConfigureAwait(false))
                    {
                        return;
                    }

                    if (await RunItemAsync(work, keys[i], ct).ConfigureAwait(false) is { } outcome)
                    {
                        await EmitAsync(writer, [outcome]).ConfigureAwait(false);
                    }
                }
            }
            finally
            {
                lock (_inFlight)
                {
                    _inFlight.ExceptWith(keys);
                }
            }
        }
    }

    /// <summary>Claims items and puts them in flight in one step, as far as this process's other workers can see.</summary>
    private async Task<IReadOnlyList<RunQueue.Claim>> ClaimAsync(WorkConnection work, RunQueue queue, int count, CancellationToken ct)
    {
        lock (_inFlight)
        {
            _claiming++;
        }

        IReadOnlyList<RunQueue.Claim> claimed = [];
        try
        {
            claimed = await OnQueueAsync(work, (conn, token) => queue.ClaimAsync(conn, count, token), ct).ConfigureAwait(false);
            return claimed;
        }
        finally
        {
            lock (_inFlight)
            {
                _inFlight.UnionWith(claimed.Select(c => c.Key));
                _claiming--;
            }
        }
    }

    /// <summary>
    /// Items this process holds that none of its workers is running (a claim whose answer was lost and that
    /// was retried): freed so that a worker claims them again. True when there were some.
    /// </summary>
    private async Task<bool> ReleaseOrphansAsync(WorkConnection work, RunQueue queue, CancellationToken ct)
    {
        string[] inFlight;
        lock (_inFlight)
        {
            if (_claiming > 0)
            {
                // Another worker of this process is between its claim and _inFlight: its items are not orphans.
                return false;
            }

            inFlight = [.. _inFlight];
        }

        return await OnQueueAsync(work, (conn, token) => queue.ReleaseIdleAsync(conn, inFlight, token), ct).ConfigureAwait(false) > 0;
    }

    /// <summary>
    /// A statement on the run's queue, on the worker's connection: a transient failure (a dropped connection,
    /// a restart) is retried on a new connection as an item's would be, so a short outage does not end the run.
    /// </summary>
    private Task<T> OnQueueAsync<T>(WorkConnection work, Func<Npgsql.NpgsqlConnection, CancellationToken, Task<T>> call, CancellationToken ct) =>
        _queueRetry.ExecuteAsync(async token =>
        {
            try
            {
                return await call(await work.GetAsync(token).ConfigureAwait(false), token).ConfigureAwait(false);
            }
            catch (Exception ex) when (Retry.IsTransient(ex))
            {
                await work.ResetAsync().ConfigureAwait(false);
                throw;
            }
        }, ct).AsTask();

    /// <summary>
    /// One item on the one-item path; null when a run's queue says another worker process took its claim
    /// over while it ran here (it rolled back here and runs there: not an outcome of this process).
    /// </summary>
    private async Task<ItemOutcome?> RunItemAsync(WorkConnection work, string key, CancellationToken ct, Npgsql.PostgresException? lockTimedOut = null)
    {
        try
        {
            return await items.RunAsync(work, key, ct, lockTimedOut).ConfigureAwait(false);
        }
        catch (RunQueue.ClaimLostException lost)
        {
            items.Log.Warning("Item {Key} was taken over by another worker process while it ran here; rolled back here: {Detail}", key, lost.Message);
            return null;
        }
    }

    /// <summary>How long the starting process waits at the run's end for the items other processes hold (an item's statement timeout and then some).</summary>
    internal static readonly TimeSpan OthersPatience = TimeSpan.FromSeconds(WorkConnection.StatementTimeoutSeconds + 15);

    /// <summary>Records what the other processes ran; a failure to read it is logged (the ledger has them, Export-BackfillRollback writes the whole script).</summary>
    private async Task RecordOthersAsync()
    {
        try
        {
            run.Record(await OthersAsync(CancellationToken.None).ConfigureAwait(false));
        }
        catch (Exception ex) when (ex is Npgsql.NpgsqlException or DataOpsException or IOException or TimeoutException)
        {
            items.Log.Warning("Run {RunId}: the items other processes ran could not be read for the run's files ({Error}); Export-BackfillRollback -RunId {RunId} writes the whole rollback script from the ledger", run.RunId, ex.Message, run.RunId);
        }
    }

    /// <summary>The items other processes ran in this run, from the ledger (with the images that restore them).</summary>
    private async Task<IReadOnlyList<ItemOutcome>> OthersAsync(CancellationToken ct)
    {
        string[] mine;
        lock (_mine)
        {
            mine = [.. _mine];
        }

        var others = await LedgerStore.RunItemsExceptAsync(connection, run.RunId, mine, ct).ConfigureAwait(false);
        if (others.Count > 0)
        {
            items.Log.Information("Run {RunId}: {Items} items were run by the processes that joined it; added to this run's files", run.RunId, others.Count);
        }

        return [.. others.Select(o => o.Status == "applied"
            ? ItemOutcome.Committed(items.Job, run.RunId, o.Key, o.Before!, o.After!, o.Rows ?? 0, TimeSpan.FromMilliseconds(o.Ms ?? 0))
            : new ItemOutcome(o.Key, new BackfillItemResult
            {
                RunId = run.RunId, Job = run.Name, Key = o.Key, Attempts = o.Attempts ?? 1, Duration = TimeSpan.FromMilliseconds(o.Ms ?? 0), Error = o.Error,
                Status = o.Status == "stale" ? BackfillItemStatus.Stale : BackfillItemStatus.Failed,
                ErrorCategory = o.Category ?? BackfillErrorCategory.Other,
            }, null))];
    }

    /// <summary>
    /// Waits for the throttle; false when the run stopped meanwhile (an operator's stop also ends a
    /// wait for a slow rate's next token). One linked token per item or group, no statement.
    /// </summary>
    private async Task<bool> WaitTurnAsync(WorkConnection work, CancellationToken ct, bool gatesOnly = false)
    {
        using var turn = CancellationTokenSource.CreateLinkedTokenSource(ct, run.StopToken);
        try
        {
            // A run worked by several workers takes its rate from the database (for every worker of every
            // process), on the worker's own connection: no connection more per worker.
            var waiting = gatesOnly ? throttle.WaitForGatesAsync(turn.Token) : throttle.WaitAsync(turn.Token, run.Queue is { } queue
                ? (perMinute, token) => OnQueueAsync(work, (conn, t) => queue.SlotAsync(conn, perMinute, t), token)
                : null);
            await waiting.ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested && run.StopToken.IsCancellationRequested)
        {
            return false;
        }

        return !Halted;
    }

    /// <summary>
    /// The next keys for a worker: a key the ledger shows applied on its own (skipped), else the
    /// contiguous unapplied keys up to the group size (one while throttled or on the one-item path;
    /// split evenly between the workers when there are several).
    /// </summary>
    private List<string>? Take()
    {
        lock (_gate)
        {
            var keys = run.Keys;
            if (_next >= keys.Count)
            {
                return null;
            }

            if (run.Applied.Contains(keys[_next]))
            {
                return [keys[_next++]];
            }

            // Several workers share the group size, so together they have no more items in flight than one.
            var size = groups is null ? 1 : throttle.GroupSize(Math.Clamp((keys.Count - _next) / _width, 1, GroupExecutor.GroupSize / _width));
            var taken = new List<string>(size);
            while (_next < keys.Count && taken.Count < size && !run.Applied.Contains(keys[_next]))
            {
                taken.Add(keys[_next++]);
            }

            return taken;
        }
    }

    /// <summary>
    /// A group on the server. The items before a failure committed; an item the server names as failing
    /// is recorded and the group goes on after it (an item that timed out waiting for a lock first gets
    /// its lock retries on the one-item path); anything else (a lost connection, a transient error)
    /// sends the rest through the one-item path, which reconnects and retries.
    /// </summary>
    private async Task RunGroupAsync(ChannelWriter<Batch> writer, WorkConnection work, List<string> keys, CancellationToken ct)
    {
        IReadOnlyList<string> rest = keys;
        while (rest.Count > 0 && !Halted)
        {
            var outcome = await groups!.ApplyAsync(work, rest, ct).ConfigureAwait(false);
            if (outcome.Committed.Count > 0)
            {
                await EmitAsync(writer, outcome.Committed).ConfigureAwait(false);
            }

            if (outcome.LeaseLost is { } lost)
            {
                // What committed before is reported above; nothing after it runs.
                throw lost;
            }

            if (outcome.Cancelled)
            {
                throw new OperationCanceledException(ct);
            }

            var done = outcome.Committed.Count;
            if (outcome.LockTimedOut is { } locked)
            {
                // The item's lock retries run here, in order, so a job's items are still one at a time
                // per worker; the backoff is bounded (about lockRetries x (lockTimeout + backoff)).
                if (await RunItemAsync(work, rest[done], ct, locked).ConfigureAwait(false) is { } retried)
                {
                    await EmitAsync(writer, [retried]).ConfigureAwait(false);
                }

                rest = [.. rest.Skip(done + 1)];
                continue;
            }

            if (outcome.ClaimLost)
            {
                // Another worker process took this item over (this one's lease lapsed): it rolled back here.
                items.Log.Warning("Item {Key} was taken over by another worker process while it ran here; rolled back here", rest[done]);
                rest = [.. rest.Skip(done + 1)];
                continue;
            }

            if (outcome.Failed is { } failed)
            {
                await EmitAsync(writer, [new ItemOutcome(failed.Key, failed, null)]).ConfigureAwait(false);
                rest = [.. rest.Skip(done + 1)];
                continue;
            }

            foreach (var key in rest.Skip(done))
            {
                if (Halted)
                {
                    return;
                }

                if (await RunItemAsync(work, key, ct).ConfigureAwait(false) is { } single)
                {
                    await EmitAsync(writer, [single]).ConfigureAwait(false);
                }
            }

            return;
        }
    }

    /// <summary>
    /// Hands a batch to the reporting; after a failure, waits until the coordinator has reviewed it. In a run
    /// with a queue, the items that did not commit (failed, stale, a dry run's) are marked done first (an
    /// applied item did so in its own transaction), and the keys are remembered as this process's.
    /// </summary>
    private async Task EmitAsync(ChannelWriter<Batch> writer, IReadOnlyList<ItemOutcome> outcomes)
    {
        if (run.Queue is { } queue)
        {
            await queue.DoneAsync([.. outcomes.Where(o => o.Result.Status is not (BackfillItemStatus.Applied or BackfillItemStatus.Skipped)).Select(o => o.Key)]).ConfigureAwait(false);
            lock (_mine)
            {
                _mine.UnionWith(outcomes.Select(o => o.Key));
            }
        }

        var batch = new Batch(outcomes);
        await writer.WriteAsync(batch, CancellationToken.None).ConfigureAwait(false);
        if (outcomes.Any(o => o.Result.Status == BackfillItemStatus.Failed))
        {
            await batch.Reviewed.Task.ConfigureAwait(false);
        }
    }

    private sealed record Batch(IReadOnlyList<ItemOutcome> Items)
    {
        public TaskCompletionSource Reviewed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
