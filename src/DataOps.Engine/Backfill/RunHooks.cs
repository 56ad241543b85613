using System.Net.Http.Headers;
using System.Text;
using System.Threading.Channels;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;

namespace DataOps.Engine.Backfill;

/// <summary>
/// Sends a run's events to its $.notify hooks. Events the run must not wait for (throttled) go through
/// a small queue that one background task empties, so a slow or dead endpoint never slows an item;
/// the start event is sent before the first item and the closing events (halt, success, failure)
/// before the run ends, after the queue is drained. A failing hook (no answer within its timeout, a
/// refused connection, an answer other than 2xx) is reported as a warning and in the run log and the
/// summary; a required one also stops the run with BackfillHookFailed. Every text that leaves here
/// (payload, error, log line) has gone through the run's redactor; secret values are only in the
/// request's URL and headers.
/// </summary>
internal sealed class RunHooks
{
    /// <summary>Throttled events waiting for the background sender; a flapping gate drops the oldest rather than piling up.</summary>
    private const int QueueLimit = 64;

    private static readonly HttpClient Client = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) }) { Timeout = Timeout.InfiniteTimeSpan };

    private readonly IReadOnlyList<NotifyHook> _hooks;
    private readonly IReadOnlyDictionary<string, string> _secrets;
    private readonly SecretRedactor _redactor;
    private readonly RunLog _log;
    private readonly IOperationObserver _observer;
    private readonly Channel<(string Event, string Payload)> _queue =
        Channel.CreateBounded<(string, string)>(new BoundedChannelOptions(QueueLimit) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });

    private readonly List<string> _failures = [];
    private Task? _sender;
    private DataOpsException? _requiredFailure;

    public RunHooks(IReadOnlyList<NotifyHook> hooks, IReadOnlyDictionary<string, string> secrets, SecretRedactor redactor, RunLog log, IOperationObserver observer)
    {
        (_hooks, _secrets, _redactor, _log, _observer) = (hooks, secrets, redactor, log, observer);
        foreach (var hook in hooks)
        {
            // A header's whole value (a bearer token with its scheme) is as secret as the token it holds.
            foreach (var (name, value) in hook.Headers.Where(h => h.Key.Equals("Authorization", StringComparison.OrdinalIgnoreCase)))
            {
                var filled = HttpSteps.FillSecrets(value, secrets, url: false);
                redactor.Add(filled);
                redactor.Add(filled.Split(' ', 2).Last());
            }
        }
    }

    /// <summary>Raised (on the sender's thread) when a required hook fails: the run stops.</summary>
    public event Action<DataOpsException>? RequiredFailed;

    /// <summary>The first required hook that failed, if one did.</summary>
    public DataOpsException? RequiredFailure
    {
        get
        {
            lock (_failures)
            {
                return _requiredFailure;
            }
        }
    }

    /// <summary>Every hook failure so far, redacted, for the summary.</summary>
    public IReadOnlyList<string> Failures
    {
        get
        {
            lock (_failures)
            {
                return [.. _failures];
            }
        }
    }

    /// <summary>Whether any hook listens for <paramref name="eventName"/>.</summary>
    public bool Wants(string eventName) => _hooks.Any(h => h.Events.Contains(eventName, StringComparer.Ordinal));

    /// <summary>Sends <paramref name="eventName"/> to its hooks now (side by side) and returns when each answered, failed or timed out.</summary>
    public Task SendAsync(string eventName, string payload) =>
        Task.WhenAll(_hooks.Where(h => h.Events.Contains(eventName, StringComparer.Ordinal)).Select(h => SendOneAsync(h, eventName, payload)));

    /// <summary>Queues <paramref name="eventName"/> for the background sender; returns at once.</summary>
    public void Enqueue(string eventName, string payload)
    {
        if (!Wants(eventName))
        {
            return;
        }

        lock (_queue)
        {
            _sender ??= Task.Run(SendQueuedAsync);
        }

        _queue.Writer.TryWrite((eventName, payload));
    }

    /// <summary>Sends what is still queued, then stops the background sender.</summary>
    public async Task DrainAsync()
    {
        Task? sender;
        lock (_queue)
        {
            _queue.Writer.TryComplete();
            sender = _sender;
        }

        if (sender is not null)
        {
            await sender.ConfigureAwait(false);
        }
    }

    private async Task SendQueuedAsync()
    {
        await foreach (var (eventName, payload) in _queue.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            await SendAsync(eventName, payload).ConfigureAwait(false);
        }
    }

    private async Task SendOneAsync(NotifyHook hook, string eventName, string payload)
    {
        var url = HttpSteps.FillSecrets(hook.Url, _secrets, url: true);
        var shown = _redactor.Redact(HttpSteps.RedactQuery(url));
        string? problem;
        try
        {
            using var timeout = new CancellationTokenSource(hook.Timeout);
            using var request = new HttpRequestMessage(HttpMethod.Post, url)
            {
                Content = new StringContent(payload, Encoding.UTF8, new MediaTypeHeaderValue("application/json")),
            };
            foreach (var (name, value) in hook.Headers)
            {
                if (!request.Headers.TryAddWithoutValidation(name, HttpSteps.FillSecrets(value, _secrets, url: false)))
                {
                    request.Content.Headers.TryAddWithoutValidation(name, HttpSteps.FillSecrets(value, _secrets, url: false));
                }
            }

            try
            {
                using var response = await Client.SendAsync(request, timeout.Token).ConfigureAwait(false);
                if (response.IsSuccessStatusCode)
                {
                    _log.Debug("Hook {Hook} ({Event}): POST {Url} answered {Status}", hook.Path, eventName, shown, (int)response.StatusCode);
                    return;
                }

                problem = $"answered {(int)response.StatusCode} {response.ReasonPhrase}";
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested)
            {
                problem = $"no answer within {hook.Timeout.TotalSeconds:0.###} s";
            }
        }
        catch (Exception ex) when (ex is HttpRequestException or InvalidOperationException or UriFormatException or NotSupportedException or ArgumentException)
        {
            problem = "failed: " + ex.Message;
        }

        var message = _redactor.Redact(
            $"The {(hook.Required ? "required " : string.Empty)}hook {hook.Path} ({eventName}): POST {shown} {problem}." +
            (hook.Required ? " It is required: the run stops (BackfillHookFailed)." : " The run goes on."));
        _log.Warning("{Message}", message);
        _observer.Warning(message);
        DataOpsException? stop = null;
        lock (_failures)
        {
            _failures.Add(message);
            if (hook.Required && _requiredFailure is null)
            {
                stop = _requiredFailure = new DataOpsException("BackfillHookFailed", DataOpsErrorKind.ResourceUnavailable, message, hook.Path)
                {
                    RecommendedAction = $"Make the endpoint of {hook.Path} answer 2xx within {hook.Timeout.TotalSeconds:0.###} s, or set \"required\": false, then run the job again (applied items are skipped).",
                };
            }
        }

        if (stop is not null)
        {
            RequiredFailed?.Invoke(stop);
        }
    }
}
