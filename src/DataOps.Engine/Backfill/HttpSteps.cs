using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;
using Polly;
using Polly.Retry;

namespace DataOps.Engine.Backfill;

/// <summary>
/// Fills @key, @parameters and {env:NAME} / {credential:NAME} secrets into an HTTP step, and calls
/// it with retries (backoff with jitter on connection errors, 429 and 5xx, honouring Retry-After).
/// Secret values are registered with the redactor before any use, so no log, error or artifact shows them.
/// </summary>
public static partial class HttpSteps
{
    private static readonly HttpClient Client = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) }) { Timeout = Timeout.InfiniteTimeSpan };

    /// <summary>The secret names a text uses, as (kind, name).</summary>
    public static IEnumerable<(string Kind, string Name)> SecretNames(string text) =>
        SecretPattern().Matches(text).Select(m => (m.Groups[1].Value, m.Groups[2].Value));

    /// <summary>Every text of the step that may hold placeholders.</summary>
    public static IEnumerable<string> Texts(HttpStep step) => [step.Url, .. step.Headers.Values, step.BodyTemplate ?? string.Empty];

    /// <summary>Resolves every secret the job names; missing ones are listed with their JSON paths.</summary>
    public static IReadOnlyDictionary<string, string> ResolveSecrets(BackfillJob job, IReadOnlyDictionary<string, string> credentials, SecretRedactor redactor)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        var missing = new List<string>();
        // The job's HTTP steps and its $.notify hooks (url and headers) may name secrets.
        var users = job.Steps.Where(s => s.Http is not null).Select(s => (s.Path, Texts: Texts(s.Http!)))
            .Concat(job.Notify.Select(h => (h.Path, Texts: (IEnumerable<string>)[h.Url, .. h.Headers.Values])));
        foreach (var step in users)
        {
            foreach (var (kind, name) in step.Texts.SelectMany(SecretNames).Distinct())
            {
                var token = $"{{{kind}:{name}}}";
                var value = kind == "env" ? Environment.GetEnvironmentVariable(name) : credentials.GetValueOrDefault(name);
                if (string.IsNullOrEmpty(value))
                {
                    missing.Add(kind == "env"
                        ? $"{step.Path}: the secret {token} is not set: set the environment variable {name}."
                        : $"{step.Path}: the secret {token} is not set: pass -Secret @{{ {name} = (Get-Credential) }}.");
                    continue;
                }

                redactor.Add(value);
                values[token] = value;
            }
        }

        if (missing.Count > 0)
        {
            throw new DataOpsException("SecretMissing", DataOpsErrorKind.InvalidArgument,
                $"The job '{job.SourcePath}' names secrets that are not set:{Environment.NewLine}  {string.Join(Environment.NewLine + "  ", missing.Distinct())}", job.SourcePath);
        }

        return values;
    }

    /// <summary>Calls the step for one item; returns the status code or throws HttpStepException with a redacted message.</summary>
    public static async Task<int> CallAsync(HttpStep step, string stepName, string key, IReadOnlyDictionary<string, object?> parameters, IReadOnlyDictionary<string, string> secrets, SecretRedactor redactor, RunLog log, CancellationToken ct)
    {
        // The URL's parts are escaped, except an {env:NAME} secret that starts it: that is its base (scheme, host, port,
        // path), as the job file allows, so a job can name one endpoint per environment.
        var url = Fill(step.Url, key, parameters, secrets, Uri.EscapeDataString, leadingSecretAsIs: true);
        var body = step.BodyTemplate is null ? null : FillJson(step.BodyTemplate, key, parameters, secrets);
        var headers = step.Headers.ToDictionary(h => h.Key, h => Fill(h.Value, key, parameters, secrets, v => v));
        foreach (var (name, value) in headers.Where(h => h.Key.Equals("Authorization", StringComparison.OrdinalIgnoreCase)))
        {
            redactor.Add(value);
            redactor.Add(value.Split(' ', 2).Last());
        }

        var pipeline = step.Retries < 1 ? ResiliencePipeline<HttpResponseMessage>.Empty : new ResiliencePipelineBuilder<HttpResponseMessage>()
            .AddRetry(new RetryStrategyOptions<HttpResponseMessage>
            {
                MaxRetryAttempts = step.Retries,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = TimeSpan.FromMilliseconds(200),
                ShouldHandle = new PredicateBuilder<HttpResponseMessage>()
                    .Handle<HttpRequestException>()
                    .Handle<TimeoutRejected>()
                    .HandleResult(r => r.StatusCode == HttpStatusCode.TooManyRequests || (int)r.StatusCode >= 500),
                DelayGenerator = args =>
                {
                    var retryAfter = args.Outcome.Result?.Headers.RetryAfter;
                    TimeSpan? delay = retryAfter?.Delta ?? (retryAfter?.Date is { } date ? date - DateTimeOffset.UtcNow : null);
                    return ValueTask.FromResult(delay is { } d && d > TimeSpan.Zero ? (TimeSpan?)(d < TimeSpan.FromMinutes(2) ? d : TimeSpan.FromMinutes(2)) : null);
                },
                OnRetry = args =>
                {
                    var why = args.Outcome.Result is { } r ? $"HTTP {(int)r.StatusCode}" : redactor.Redact(args.Outcome.Exception?.Message);
                    log.Warning("{Step} for item {Key}: {Why}; retry {Attempt} in {DelayMs} ms", stepName, key, why, args.AttemptNumber + 1, (int)args.RetryDelay.TotalMilliseconds);
                    args.Outcome.Result?.Dispose();
                    return default;
                },
            })
            .Build();

        HttpResponseMessage response;
        try
        {
            response = await pipeline.ExecuteAsync(async token =>
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(token);
                timeout.CancelAfter(step.Timeout);
                using var request = new HttpRequestMessage(new HttpMethod(step.Method), url);
                foreach (var (name, value) in headers)
                {
                    request.Headers.TryAddWithoutValidation(name, value);
                }

                if (body is not null)
                {
                    request.Content = new StringContent(body, Encoding.UTF8, new MediaTypeHeaderValue("application/json"));
                }

                try
                {
                    return await Client.SendAsync(request, timeout.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!token.IsCancellationRequested)
                {
                    throw new TimeoutRejected($"no answer within {step.Timeout.TotalSeconds:0.#} s");
                }
            }, ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is HttpRequestException or TimeoutRejected)
        {
            throw new HttpStepException($"{stepName}: {step.Method} {redactor.Redact(RedactQuery(url))} failed after {step.Retries + 1} attempts: {redactor.Redact(ex.Message)}",
                ex is TimeoutRejected ? BackfillErrorCategory.Timeout : BackfillErrorCategory.ConnectionLost);
        }

        using (response)
        {
            var status = (int)response.StatusCode;
            if (step.ExpectStatus.Contains(status))
            {
                return status;
            }

            // Redacted before it is cut: a secret echoed across the cut would otherwise show its start.
            var answer = await response.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
            var excerpt = redactor.Redact(answer.Length > 64 * 1024 ? answer[..(64 * 1024)] : answer).ReplaceLineEndings(" ");
            excerpt = excerpt.Length > 200 ? excerpt[..200] + "..." : excerpt;
            throw new HttpStepException($"{stepName}: {step.Method} {redactor.Redact(RedactQuery(url))} answered {status} {response.ReasonPhrase} (expected {string.Join(", ", step.ExpectStatus.Count > 6 ? ["2xx"] : step.ExpectStatus.Select(s => s.ToString(System.Globalization.CultureInfo.InvariantCulture)))}): {excerpt}", BackfillErrorCategory.Other);
        }
    }

    /// <summary>A hook's URL or header with its secrets filled in (no @key or @parameters: a hook belongs to no item).</summary>
    internal static string FillSecrets(string template, IReadOnlyDictionary<string, string> secrets, bool url) =>
        Fill(template, string.Empty, new Dictionary<string, object?>(), secrets, url ? Uri.EscapeDataString : v => v, leadingSecretAsIs: url);

    internal static string RedactQuery(string url) => url.Contains('?', StringComparison.Ordinal) ? url[..url.IndexOf('?', StringComparison.Ordinal)] + "?..." : url;

    private static string Fill(string template, string key, IReadOnlyDictionary<string, object?> parameters, IReadOnlyDictionary<string, string> secrets, Func<string, string> encode, bool leadingSecretAsIs = false)
    {
        var text = SecretPattern().Replace(template, m => leadingSecretAsIs && m.Index == 0 ? secrets[m.Value] : encode(secrets[m.Value]));
        return Token().Replace(text, m => m.Groups[1].Value == "key"
            ? encode(key)
            : parameters.TryGetValue(m.Groups[1].Value, out var v) ? encode(Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) ?? string.Empty) : m.Value);
    }

    /// <summary>Fills a JSON body: string values are filled, and a value that is exactly "@name" takes the parameter's own type.</summary>
    private static string FillJson(string template, string key, IReadOnlyDictionary<string, object?> parameters, IReadOnlyDictionary<string, string> secrets)
    {
        JsonNode? Walk(JsonNode? node)
        {
            switch (node)
            {
                case JsonObject o:
                    foreach (var p in o.ToList())
                    {
                        o[p.Key] = Walk(p.Value?.DeepClone());
                    }

                    return o;
                case JsonArray a:
                    return new JsonArray([.. a.Select(x => Walk(x?.DeepClone()))]);
                case JsonValue v when v.TryGetValue<string>(out var s):
                    var whole = Token().Match(s);
                    if (whole.Success && whole.Length == s.Length && whole.Groups[1].Value != "key" && parameters.TryGetValue(whole.Groups[1].Value, out var typed))
                    {
                        return JsonSerializer.SerializeToNode(typed);
                    }

                    return JsonValue.Create(Fill(s, key, parameters, secrets, x => x));
                default:
                    return node;
            }
        }

        return Walk(JsonNode.Parse(template))?.ToJsonString() ?? "null";
    }

    [GeneratedRegex(@"\{(env|credential):([A-Za-z_][A-Za-z0-9_]*)\}")]
    private static partial Regex SecretPattern();

    [GeneratedRegex(@"(?<![\w@])@([A-Za-z_][A-Za-z0-9_]*)")]
    private static partial Regex Token();

    private sealed class TimeoutRejected(string message) : Exception(message);
}

/// <summary>An HTTP step failed (after its own retries); the message is already redacted.</summary>
public sealed class HttpStepException(string message, string category) : Exception(message)
{
    public string Category { get; } = category;
}
