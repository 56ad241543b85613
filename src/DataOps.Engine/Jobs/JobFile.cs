using System.Text.Json;
using System.Text.RegularExpressions;

namespace DataOps.Engine.Jobs;

/// <summary>
/// Reads a job file and checks its structure: every problem is collected with its JSON path
/// ($.steps[1].sql ...), and the whole list is reported at once as JobFileInvalid.
/// </summary>
public static partial class JobFile
{
    private static readonly string[] TopLevel = ["$schema", "version", "name", "description", "parameters", "items", "throttle", "lockTimeout", "lockRetries", "capture", "steps", "verify", "soak", "health", "fingerprint", "notify", "metrics"];

    public static BackfillJob Load(string path)
    {
        var text = JobPaths.ReadJobFile(path);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(text, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException ex)
        {
            throw Invalid(path, [$"$: not valid JSON (line {ex.LineNumber + 1}, position {ex.BytePositionInLine + 1}): {ex.Message}"]);
        }

        using (doc)
        {
            var problems = new List<string>();
            Duplicates(doc.RootElement, "$", problems);
            var job = Parse(doc.RootElement, Path.GetFullPath(path), problems);
            if (problems.Count > 0 || job is null)
            {
                throw Invalid(path, problems);
            }

            return job;
        }
    }

    internal static DataOpsException Invalid(string path, IReadOnlyList<string> problems) =>
        new("JobFileInvalid", DataOpsErrorKind.InvalidData,
            $"The job file '{path}' is not valid ({problems.Count} problem{(problems.Count == 1 ? string.Empty : "s")}):{Environment.NewLine}  " +
            string.Join(Environment.NewLine + "  ", problems),
            path)
        { RecommendedAction = "Fix each listed JSON path; Get-Help about_DataOps_JobFile describes the format." };

    private static BackfillJob? Parse(JsonElement root, string path, List<string> problems)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            problems.Add("$: the job must be a JSON object.");
            return null;
        }

        Unknown(root, "$", TopLevel, problems);
        if (!root.TryGetProperty("version", out var version) || version.ValueKind != JsonValueKind.Number || !version.TryGetInt32(out var v) || v != BackfillJob.CurrentVersion)
        {
            problems.Add($"$.version: required, and must be {BackfillJob.CurrentVersion}.");
        }

        var name = String(root, "name", "$", problems, required: true);
        if (name is not null && !JobName().IsMatch(name))
        {
            problems.Add($"$.name: '{name}' must be 1-100 letters, digits, '.', '-' or '_', starting with a letter or digit (it names the run folders).");
        }

        var description = String(root, "description", "$", problems, required: false);

        var parameters = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (root.TryGetProperty("parameters", out var ps))
        {
            if (ps.ValueKind != JsonValueKind.Object)
            {
                problems.Add("$.parameters: must be an object of name: value.");
            }
            else
            {
                foreach (var p in ps.EnumerateObject())
                {
                    var at = $"$.parameters.{p.Name}";
                    if (!Identifier().IsMatch(p.Name) || p.Name == "key")
                    {
                        problems.Add($"{at}: '{p.Name}' is not a usable parameter name (letters, digits and '_', not 'key').");
                        continue;
                    }

                    parameters[p.Name] = p.Value.ValueKind switch
                    {
                        JsonValueKind.String => p.Value.GetString(),
                        JsonValueKind.Number => p.Value.TryGetInt64(out var l) ? l : p.Value.GetDecimal(),
                        JsonValueKind.True => true,
                        JsonValueKind.False => false,
                        JsonValueKind.Null => null,
                        _ => Problem<object?>(problems, $"{at}: must be a string, number, boolean or null."),
                    };
                }
            }
        }

        IReadOnlyList<string>? keys = null;
        string? discover = null;
        KeysetSpec? keyset = null;
        if (!root.TryGetProperty("items", out var items) || items.ValueKind != JsonValueKind.Object)
        {
            problems.Add("$.items: required: an object with \"keys\" (a list), \"discover\" (a query returning a column named key) or \"keyset\" (a table walked in key ranges).");
        }
        else
        {
            Unknown(items, "$.items", ["keys", "discover", "keyset"], problems);
            var hasKeys = items.TryGetProperty("keys", out var k);
            var hasDiscover = items.TryGetProperty("discover", out _);
            var hasKeyset = items.TryGetProperty("keyset", out var ks);
            if ((hasKeys ? 1 : 0) + (hasDiscover ? 1 : 0) + (hasKeyset ? 1 : 0) != 1)
            {
                problems.Add("$.items: give exactly one of \"keys\", \"discover\" or \"keyset\".");
            }
            else if (hasKeyset)
            {
                keyset = ParseKeyset(ks, parameters, problems);
            }
            else if (hasKeys)
            {
                if (k.ValueKind != JsonValueKind.Array)
                {
                    problems.Add("$.items.keys: must be a list of strings or numbers.");
                }
                else
                {
                    var list = new List<string>();
                    var i = 0;
                    foreach (var e in k.EnumerateArray())
                    {
                        if (e.ValueKind is JsonValueKind.String or JsonValueKind.Number)
                        {
                            list.Add(e.ValueKind == JsonValueKind.String ? e.GetString()! : e.GetRawText());
                        }
                        else
                        {
                            problems.Add($"$.items.keys[{i}]: must be a string or a number.");
                        }

                        i++;
                    }

                    if (list.Count != list.Distinct(StringComparer.Ordinal).Count())
                    {
                        problems.Add("$.items.keys: contains duplicates.");
                    }

                    keys = list;
                }
            }
            else
            {
                discover = String(items, "discover", "$.items", problems, required: true);
            }
        }

        var itemsPerMinute = 20;
        var batchSize = 10;
        var maxConcurrency = 1;
        IReadOnlyList<ThrottleSignal> signals = [];
        if (root.TryGetProperty("throttle", out var throttle))
        {
            Unknown(throttle, "$.throttle", ["itemsPerMinute", "batchSize", "maxConcurrency", "signals"], problems);
            itemsPerMinute = Int(throttle, "itemsPerMinute", "$.throttle", 0, 1_000_000, 20, problems);
            batchSize = Int(throttle, "batchSize", "$.throttle", 1, 100_000, 10, problems);
            maxConcurrency = Int(throttle, "maxConcurrency", "$.throttle", 1, 64, 1, problems);
            if (throttle.ValueKind == JsonValueKind.Object && throttle.TryGetProperty("signals", out var signalList))
            {
                signals = ThrottleSignals.Parse(signalList, problems);
            }
        }

        if (keyset is not null && !(throttle.ValueKind == JsonValueKind.Object && throttle.TryGetProperty("itemsPerMinute", out _)))
        {
            // A keyset job's chunks are sized by time (chunkTime): no rate unless the job gives one.
            itemsPerMinute = 0;
        }

        if (keyset is not null && maxConcurrency > 1)
        {
            problems.Add($"$.throttle.maxConcurrency: {maxConcurrency}: a keyset walk runs one chunk at a time (each chunk is found after the last one); give 1 or leave it out.");
        }

        var (lockTimeout, lockRetries) = LockSettings(root, problems);
        var notify = ParseNotify(root, problems);
        string? metricsPath = null;
        if (root.TryGetProperty("metrics", out var metrics))
        {
            Unknown(metrics, "$.metrics", ["path"], problems);
            var given = String(metrics, "path", "$.metrics", problems, required: true);
            if (given is not null)
            {
                try
                {
                    metricsPath = Path.GetFullPath(given, Path.GetDirectoryName(path) ?? Directory.GetCurrentDirectory());
                }
                catch (Exception ex) when (ex is ArgumentException or NotSupportedException or PathTooLongException)
                {
                    problems.Add($"$.metrics.path: '{given}' is not a usable file path: {ex.Message}");
                }
            }
        }

        var capture = new List<CaptureSpec>();
        if (!root.TryGetProperty("capture", out var cs) || cs.ValueKind != JsonValueKind.Array || cs.GetArrayLength() == 0)
        {
            problems.Add("$.capture: required: a non-empty list of { \"table\": ..., \"where\": ... } that selects the rows an item may touch.");
        }
        else
        {
            var i = 0;
            foreach (var c in cs.EnumerateArray())
            {
                var at = $"$.capture[{i++}]";
                Unknown(c, at, ["table", "where"], problems);
                var table = String(c, "table", at, problems, required: true);
                var where = String(c, "where", at, problems, required: true);
                if (table is not null && !TableName().IsMatch(table))
                {
                    problems.Add($"{at}.table: '{table}' is not a table name (schema.table or table; double-quote a name with capitals or other characters: \"\\\"Accounts\\\"\" or \"public.\\\"Accounts\\\"\").");
                }
                else if (table is not null && where is not null)
                {
                    capture.Add(new CaptureSpec(table, where, at));
                }
            }
        }

        var steps = new List<StepSpec>();
        if (!root.TryGetProperty("steps", out var ss) || ss.ValueKind != JsonValueKind.Array || ss.GetArrayLength() == 0)
        {
            problems.Add("$.steps: required: a non-empty list of { \"name\": ..., \"sql\": ... }.");
        }
        else
        {
            var i = 0;
            foreach (var s in ss.EnumerateArray())
            {
                var at = $"$.steps[{i++}]";
                var kind = s.ValueKind == JsonValueKind.Object && s.TryGetProperty("kind", out var k2) ? (k2.ValueKind == JsonValueKind.String ? k2.GetString() : k2.GetRawText()) : "sql";
                var stepName = String(s, "name", at, problems, required: false) ?? $"step {i}";
                if (kind == "http")
                {
                    Unknown(s, at, ["name", "kind", "method", "url", "headers", "body", "expectStatus", "timeoutSeconds", "retries"], problems);
                    var http = ParseHttp(s, at, parameters, problems);
                    if (http is not null)
                    {
                        steps.Add(new StepSpec(stepName, null, at, http));
                    }

                    continue;
                }

                Unknown(s, at, ["name", "sql", "kind"], problems);
                if (kind != "sql")
                {
                    problems.Add($"{at}.kind: '{kind}' is not a step kind (sql or http).");
                }

                var sql = String(s, "sql", at, problems, required: true);
                if (sql is not null)
                {
                    steps.Add(new StepSpec(stepName, sql, at));
                }
            }
        }

        var verify = String(root, "verify", "$", problems, required: true);

        if (problems.Count > 0)
        {
            return null;
        }

        var job = new BackfillJob
        {
            Name = name!, Description = description, SourcePath = path, Parameters = parameters, Keys = keys, DiscoverSql = discover, Keyset = keyset,
            ItemsPerMinute = itemsPerMinute, BatchSize = batchSize, MaxConcurrency = maxConcurrency, Signals = signals, LockTimeout = lockTimeout, LockRetries = lockRetries, Notify = notify, MetricsPath = metricsPath, Capture = capture, Steps = steps, VerifySql = SqlText.WithoutTrailingSemicolon(verify!),
            Soak = root.TryGetProperty("soak", out var soak) ? soak.Clone() : null,
            Health = root.TryGetProperty("health", out var health) ? health.Clone() : null,
            Fingerprint = root.TryGetProperty("fingerprint", out var fp) ? fp.Clone() : null,
        };

        // Each SQL field is one statement (a where condition none at all): "COMMIT; DELETE ..." must never reach a server.
        problems.AddRange(new[] { SqlText.MoreThanOneStatement("$.items.discover", discover), SqlText.MoreThanOneStatement("$.verify", verify), keyset?.Where is { } kw ? SqlText.NotAFragment("$.items.keyset.where", kw) : null }
            .Concat(steps.Where(st => st.Sql is not null).Select(st => SqlText.MoreThanOneStatement(st.Path + ".sql", st.Sql)))
            .Concat(capture.Select(c => SqlText.NotAFragment(c.Path + ".where", c.Where)))
            .OfType<string>());

        // Every @name must be @key (@lo and @hi in a keyset job) or a defined parameter; the discover
        // query and the keyset's where have no item, so no @key there.
        string[] itemNames = keyset is null ? ["key"] : ["key", "lo", "hi"];
        foreach (var (at, sql) in job.AllSql())
        {
            foreach (var used in BackfillJob.ParameterNames(sql))
            {
                if (itemNames.Contains(used) && at is "$.items.discover" or "$.items.keyset.where")
                {
                    problems.Add($"{at}: @{used} is not available here (this query finds the items).");
                }
                else if (!itemNames.Contains(used) && !parameters.ContainsKey(used))
                {
                    problems.Add($"{at}: uses @{used}, which $.parameters does not define.");
                }
            }
        }

        foreach (var signal in signals.Where(s => s.Query is not null))
        {
            foreach (var used in BackfillJob.ParameterNames(signal.Query!).Where(u => u != "key" && !parameters.ContainsKey(u)))
            {
                problems.Add($"{signal.Source}.query: uses @{used}, which $.parameters does not define.");
            }
        }

        foreach (var (at, sql) in job.AllSql().Where(x => x.Path is not "$.items.discover" and not "$.items.keyset.where"))
        {
            var names = BackfillJob.ParameterNames(sql);
            if (keyset is null && !names.Contains("key"))
            {
                problems.Add($"{at}: does not use @key, so it would act on every item's rows at once.");
            }
            else if (keyset is not null && !(names.Contains("lo") && names.Contains("hi")))
            {
                problems.Add($"{at}: does not use both @lo and @hi (the chunk's first and last key), so it would act on rows outside the chunk.");
            }
        }

        return job;
    }

    /// <summary>
    /// $.lockTimeout (a duration, 1ms to 60s: an item's statement timeout) and $.lockRetries (0 to 20):
    /// how long an item waits for rows another session holds, and how often it tries again.
    /// Invoke-Backfill -LockTimeout and -LockRetries override them.
    /// </summary>
    private static (TimeSpan? Timeout, int? Retries) LockSettings(JsonElement root, List<string> problems)
    {
        TimeSpan? timeout = null;
        if (root.TryGetProperty("lockTimeout", out var t))
        {
            timeout = Duration(t, "$.lockTimeout", BackfillJob.MinLockTimeout, BackfillJob.MaxLockTimeout, "1ms to 60s", problems, outOfRangeNote: " (an item's statement timeout)");
        }

        int? retries = root.TryGetProperty("lockRetries", out _)
            ? Int(root, "lockRetries", "$", BackfillJob.MinLockRetries, BackfillJob.MaxLockRetries, BackfillJob.DefaultLockRetries, problems)
            : null;
        return (timeout, retries);
    }

    /// <summary>
    /// $.items.keyset: { table, key, where, chunkTime, minChunkSize, maxChunkSize, statementTimeout }.
    /// The key is one column (a name, not an expression); lo and hi become item parameters, so the
    /// job's own parameters may not use those names.
    /// </summary>
    private static KeysetSpec? ParseKeyset(JsonElement ks, Dictionary<string, object?> parameters, List<string> problems)
    {
        const string at = "$.items.keyset";
        if (ks.ValueKind != JsonValueKind.Object)
        {
            problems.Add($"{at}: must be an object {{ \"table\": ..., \"key\": ... }}.");
            return null;
        }

        var before = problems.Count;
        Unknown(ks, at, ["table", "key", "where", "chunkTime", "minChunkSize", "maxChunkSize", "statementTimeout"], problems);
        var table = String(ks, "table", at, problems, required: true);
        if (table is not null && !TableName().IsMatch(table))
        {
            problems.Add($"{at}.table: '{table}' is not a table name (schema.table or table; double-quote a name with capitals or other characters: \"\\\"Accounts\\\"\" or \"public.\\\"Accounts\\\"\").");
        }

        string? key = null;
        if (ks.TryGetProperty("key", out var keyElement) && keyElement.ValueKind == JsonValueKind.Array)
        {
            problems.Add($"{at}.key: {keyElement.GetRawText()}: give one column; a keyset walk over several key columns is not supported.");
        }
        else
        {
            key = String(ks, "key", at, problems, required: true);
            if (key is not null && !ColumnName().IsMatch(key))
            {
                problems.Add($"{at}.key: '{key}' is not a column name (letters, digits and '_', or a double-quoted name: \"\\\"Account Id\\\"\").");
            }
        }

        var where = String(ks, "where", at, problems, required: false);
        var chunkTime = KeysetDuration(ks, "chunkTime", KeysetSpec.DefaultChunkTime, KeysetSpec.MinChunkTime, KeysetSpec.MaxChunkTime, "10ms to 30s", problems);
        var statementTimeout = KeysetDuration(ks, "statementTimeout", KeysetSpec.DefaultStatementTimeout, KeysetSpec.MinStatementTimeout, KeysetSpec.MaxStatementTimeout, "100ms to 60s", problems);
        var min = Int(ks, "minChunkSize", at, 1, KeysetSpec.MaxChunkSizeLimit, KeysetSpec.DefaultMinChunkSize, problems);
        var max = Int(ks, "maxChunkSize", at, 1, KeysetSpec.MaxChunkSizeLimit, Math.Max(KeysetSpec.DefaultMaxChunkSize, min), problems);
        if (min > max)
        {
            problems.Add($"{at}: minChunkSize {min} is larger than maxChunkSize {max}.");
        }

        foreach (var reserved in new[] { "lo", "hi" }.Where(parameters.ContainsKey))
        {
            problems.Add($"$.parameters.{reserved}: '{reserved}' is the chunk's {(reserved == "lo" ? "first" : "last")} key in a keyset job; name the parameter otherwise.");
        }

        return problems.Count > before ? null : new KeysetSpec(table!, key!, where, chunkTime, min, max, statementTimeout);

        static TimeSpan KeysetDuration(JsonElement ks, string name, TimeSpan fallback, TimeSpan min, TimeSpan max, string range, List<string> problems)
        {
            if (!ks.TryGetProperty(name, out var t))
            {
                return fallback;
            }

            return Duration(t, $"$.items.keyset.{name}", min, max, range, problems) ?? fallback;
        }
    }

    /// <summary>
    /// $.notify: a list of { url, on, headers, required, timeout }. The url is an absolute http:// or
    /// https:// URL (or starts with an {env:NAME} secret); on lists known event names; headers may name
    /// secrets; timeout is a duration from 100ms to 60s (default 5s).
    /// </summary>
    private static List<NotifyHook> ParseNotify(JsonElement root, List<string> problems)
    {
        var hooks = new List<NotifyHook>();
        if (!root.TryGetProperty("notify", out var list))
        {
            return hooks;
        }

        if (list.ValueKind != JsonValueKind.Array)
        {
            problems.Add("$.notify: must be a list of { \"url\": ..., \"on\": [...] }.");
            return hooks;
        }

        var i = 0;
        foreach (var n in list.EnumerateArray())
        {
            var at = $"$.notify[{i++}]";
            Unknown(n, at, ["url", "on", "headers", "required", "timeout"], problems);
            if (n.ValueKind != JsonValueKind.Object)
            {
                continue;
            }

            var url = String(n, "url", at, problems, required: true);
            if (url is not null && !(url.StartsWith("{env:", StringComparison.Ordinal)
                || (Uri.TryCreate(url, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps))))
            {
                problems.Add($"{at}.url: '{url}' must be an absolute http:// or https:// URL (or start with an {{env:NAME}} secret).");
            }

            var events = new List<string>();
            if (!n.TryGetProperty("on", out var on) || on.ValueKind != JsonValueKind.Array || on.GetArrayLength() == 0)
            {
                problems.Add($"{at}.on: required: a non-empty list of events ({string.Join(", ", NotifyHook.EventNames)}).");
            }
            else
            {
                foreach (var e in on.EnumerateArray())
                {
                    var name = e.ValueKind == JsonValueKind.String ? e.GetString()! : e.GetRawText();
                    if (!NotifyHook.EventNames.Contains(name, StringComparer.Ordinal))
                    {
                        problems.Add($"{at}.on: '{name}' is not an event (known: {string.Join(", ", NotifyHook.EventNames)}).");
                    }
                    else if (events.Contains(name, StringComparer.Ordinal))
                    {
                        problems.Add($"{at}.on: '{name}' is given more than once.");
                    }
                    else
                    {
                        events.Add(name);
                    }
                }
            }

            var headers = Headers(n, at, problems);

            var required = false;
            if (n.TryGetProperty("required", out var r))
            {
                if (r.ValueKind is JsonValueKind.True or JsonValueKind.False)
                {
                    required = r.GetBoolean();
                }
                else
                {
                    problems.Add($"{at}.required: must be true or false; got {r.GetRawText()}.");
                }
            }

            var timeout = NotifyHook.DefaultTimeout;
            if (n.TryGetProperty("timeout", out var t))
            {
                timeout = Duration(t, $"{at}.timeout", NotifyHook.MinTimeout, NotifyHook.MaxTimeout, "100ms to 60s", problems, examples: "5s, 500ms") ?? timeout;
            }

            if (url is not null)
            {
                hooks.Add(new NotifyHook(url, events, headers, required, timeout, at));
            }
        }

        return hooks;
    }

    /// <summary>An HTTP step's or a hook's "headers": an object of name: string value (names compared ignoring case).</summary>
    private static Dictionary<string, string> Headers(JsonElement owner, string at, List<string> problems)
    {
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        if (!owner.TryGetProperty("headers", out var h))
        {
            return headers;
        }

        if (h.ValueKind != JsonValueKind.Object)
        {
            problems.Add($"{at}.headers: must be an object of name: value.");
            return headers;
        }

        foreach (var p in h.EnumerateObject())
        {
            if (p.Value.ValueKind == JsonValueKind.String)
            {
                headers[p.Name] = p.Value.GetString()!;
            }
            else
            {
                problems.Add($"{at}.headers.{p.Name}: must be a string.");
            }
        }

        return headers;
    }

    private static HttpStep? ParseHttp(JsonElement s, string at, Dictionary<string, object?> parameters, List<string> problems)
    {
        var method = String(s, "method", at, problems, required: false)?.ToUpperInvariant() ?? "POST";
        if (method is not ("GET" or "POST" or "PUT" or "PATCH" or "DELETE"))
        {
            problems.Add($"{at}.method: '{method}' is not one of GET, POST, PUT, PATCH, DELETE.");
        }

        var url = String(s, "url", at, problems, required: true);
        if (url is not null && !(url.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || url.StartsWith("https://", StringComparison.OrdinalIgnoreCase) || url.StartsWith("{env:", StringComparison.Ordinal)))
        {
            problems.Add($"{at}.url: '{url}' must be an absolute http:// or https:// URL (or start with an {{env:NAME}} secret).");
        }

        var headers = Headers(s, at, problems);

        var body = s.TryGetProperty("body", out var b) ? b.GetRawText() : null;
        var expect = new List<int>();
        if (s.TryGetProperty("expectStatus", out var es))
        {
            if (es.ValueKind != JsonValueKind.Array || es.EnumerateArray().Any(x => !x.TryGetInt32(out var code) || code is < 100 or > 599))
            {
                problems.Add($"{at}.expectStatus: must be a list of HTTP status codes.");
            }
            else
            {
                expect.AddRange(es.EnumerateArray().Select(x => x.GetInt32()));
            }
        }

        if (expect.Count == 0)
        {
            expect.AddRange(Enumerable.Range(200, 100));
        }

        var timeout = Int(s, "timeoutSeconds", at, 1, 3600, 30, problems);
        var retries = Int(s, "retries", at, 0, 20, 3, problems);
        foreach (var text in new[] { url ?? string.Empty, body ?? string.Empty }.Concat(headers.Values))
        {
            foreach (var used in BackfillJob.ParameterNames(text).Where(n => n != "key" && !parameters.ContainsKey(n)))
            {
                problems.Add($"{at}: uses @{used}, which $.parameters does not define.");
            }
        }

        return url is null ? null : new HttpStep(method, url, headers, body, expect, TimeSpan.FromSeconds(timeout), retries);
    }

    /// <summary>A property given twice in one object: the JSON reader would silently keep the last one.</summary>
    private static void Duplicates(JsonElement e, string at, List<string> problems)
    {
        if (e.ValueKind == JsonValueKind.Object)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in e.EnumerateObject())
            {
                if (!seen.Add(p.Name))
                {
                    problems.Add($"{at}.{p.Name}: given more than once; give each field once.");
                }

                Duplicates(p.Value, $"{at}.{p.Name}", problems);
            }
        }
        else if (e.ValueKind == JsonValueKind.Array)
        {
            var i = 0;
            foreach (var item in e.EnumerateArray())
            {
                Duplicates(item, $"{at}[{i++}]", problems);
            }
        }
    }

    /// <summary>Reports every field of <paramref name="e"/> not in <paramref name="known"/>, with its JSON path.</summary>
    internal static void Unknown(JsonElement e, string at, string[] known, List<string> problems)
    {
        if (e.ValueKind != JsonValueKind.Object)
        {
            problems.Add($"{at}: must be an object.");
            return;
        }

        foreach (var p in e.EnumerateObject().Where(p => !known.Contains(p.Name)))
        {
            problems.Add($"{at}.{p.Name}: unknown field (known: {string.Join(", ", known)}).");
        }
    }

    /// <summary>A duration field (500ms, 2s, 1h30m ...) within [<paramref name="min"/>, <paramref name="max"/>]; null, with the problem said, otherwise.</summary>
    private static TimeSpan? Duration(JsonElement t, string at, TimeSpan min, TimeSpan max, string range, List<string> problems, string examples = "500ms, 2s", string outOfRangeNote = "")
    {
        if (t.ValueKind != JsonValueKind.String || !JobDuration.TryParse(t.GetString()!, out var parsed))
        {
            problems.Add($"{at}: {t.GetRawText()} is not a duration (for example {examples}); give {range}.");
            return null;
        }

        if (parsed < min || parsed > max)
        {
            problems.Add($"{at}: {t.GetRawText()} is out of range: give {range}{outOfRangeNote}.");
            return null;
        }

        return parsed;
    }

    private static string? String(JsonElement e, string name, string at, List<string> problems, bool required)
    {
        if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty(name, out var v))
        {
            if (required)
            {
                problems.Add($"{at}.{name}: required.");
            }

            return null;
        }

        if (v.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(v.GetString()))
        {
            problems.Add($"{at}.{name}: must be a non-empty string.");
            return null;
        }

        return v.GetString();
    }

    private static int Int(JsonElement e, string name, string at, int min, int max, int fallback, List<string> problems)
    {
        if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty(name, out var v))
        {
            return fallback;
        }

        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var i) || i < min || i > max)
        {
            problems.Add($"{at}.{name}: must be a whole number from {min} to {max}; got {v.GetRawText()}.");
            return fallback;
        }

        return i;
    }

    private static T? Problem<T>(List<string> problems, string message)
    {
        problems.Add(message);
        return default;
    }

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
    private static partial Regex JobName();

    [GeneratedRegex(@"^[A-Za-z_][A-Za-z0-9_]*$")]
    private static partial Regex Identifier();

    /// <summary>A table as SQL names it: [schema.]table, each part a plain name (PostgreSQL folds it to lower case) or a double-quoted one ("Accounts", any character, "" for a quote).</summary>
    [GeneratedRegex("""^(?:(?:"(?:[^"\x00]|"")+"|[A-Za-z_][A-Za-z0-9_]*)\.)?(?:"(?:[^"\x00]|"")+"|[A-Za-z_][A-Za-z0-9_]*)$""")]
    private static partial Regex TableName();

    /// <summary>A column: its name as the catalog holds it (letters, digits and '_', case kept) or as SQL writes it, double-quoted.</summary>
    [GeneratedRegex("""^(?:"(?:[^"\x00]|"")+"|[A-Za-z_][A-Za-z0-9_]*)$""")]
    private static partial Regex ColumnName();
}
