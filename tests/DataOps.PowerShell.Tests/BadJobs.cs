using System.Text.Json.Nodes;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// The bad job files the tests refuse, in one place: the validator's tests run them through the
/// cmdlets, and the schema agreement test through module/schemas/backfill-job.schema.json. Each
/// says why the JSON Schema cannot refuse it too, or null when it must.
/// </summary>
internal static class BadJobs
{
    /// <summary>Whole files: the JSON, the text the validator's error holds, and why only the validator can refuse it (null: the schema must too).</summary>
    public static TheoryData<string, string, string?> Files { get; } = new()
    {
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT true OR @key IS NULL","colour":"blue"}""",
          "$.colour: unknown field", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"verify":"SELECT @key IS NOT NULL"}""",
          "$.steps: required", null },
        { """{"version":2,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL"}""",
          "$.version", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key, @missing"}],"verify":"SELECT @key IS NOT NULL"}""",
          "$.steps[0].sql: uses @missing", "which parameters a statement uses is in its SQL text" },
        { """{"version":1,"name":"j","items":{"keys":["1"],"discover":"SELECT 1 AS key"},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL"}""",
          "$.items: give exactly one", null },
        { """{"version":1,"name":"j","items":{"discover":"SELECT @key AS key"},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL"}""",
          "$.items.discover: @key is not available", "which parameters a statement uses is in its SQL text" },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"UPDATE prism.sessions SET fc_kind = 'functions'"}],"verify":"SELECT @key IS NOT NULL"}""",
          "$.steps[0].sql: does not use @key", "which parameters a statement uses is in its SQL text" },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"nopk","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL"}""",
          "$.capture[0].table: 'nopk' has no primary key", "the database knows which tables have primary keys" },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.nothere","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL"}""",
          "$.capture[0].table: the table 'prism.nothere' does not exist", "the database knows which tables exist" },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"UPDATE prism.sessions SET fc_kind = WHERE id::text = @key"}],"verify":"SELECT @key IS NOT NULL"}""",
          "$.steps[0].sql: PostgreSQL rejects the statement: 42601", "only PostgreSQL parses SQL" },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"UPDATE prism.sessions SET no_such_column = 1 WHERE id::text = @key"}],"verify":"SELECT @key IS NOT NULL"}""",
          "$.steps[0].sql: PostgreSQL rejects the statement: 42703", "only PostgreSQL parses SQL" },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}]}""",
          "$.verify: required", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT count(*) FROM prism.sessions WHERE id::text = @key"}""",
          "$.verify: the query returns bigint; it must return one boolean", "only PostgreSQL knows a query's result type" },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","throttle":{"itemsPerMinute":-1}}""",
          "$.throttle.itemsPerMinute", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","lockTimeout":-1}""",
          "$.lockTimeout: -1 is not a duration", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","lockTimeout":"abc"}""",
          "$.lockTimeout: \"abc\" is not a duration", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","lockTimeout":"90s"}""",
          "$.lockTimeout: \"90s\" is out of range", "a duration's length is in its text (90s)" },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","lockTimeout":"0ms"}""",
          "$.lockTimeout: \"0ms\" is not a duration", "a duration's length is in its text (0ms)" },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","lockRetries":21}""",
          "$.lockRetries: must be a whole number from 0 to 20; got 21", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","lockRetries":"3"}""",
          "$.lockRetries: must be a whole number from 0 to 20", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","notify":[{"url":"ftp://hooks.example/x","on":["start"]}]}""",
          "$.notify[0].url: 'ftp://hooks.example/x' must be an absolute http:// or https:// URL", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","notify":[{"url":"/hook","on":["start"]}]}""",
          "$.notify[0].url: '/hook' must be an absolute", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","notify":[{"url":"http://127.0.0.1:9/hook","on":["start","explode"]}]}""",
          "$.notify[0].on: 'explode' is not an event", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","notify":[{"url":"http://127.0.0.1:9/hook"}]}""",
          "$.notify[0].on: required", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","notify":[{"url":"http://127.0.0.1:9/hook","on":[]}]}""",
          "$.notify[0].on: required", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","notify":[{"url":"http://127.0.0.1:9/hook","on":["halt","halt"]}]}""",
          "$.notify[0].on: 'halt' is given more than once", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","notify":[{"url":"http://127.0.0.1:9/hook","on":["start"],"required":"yes"}]}""",
          "$.notify[0].required: must be true or false", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","notify":[{"url":"http://127.0.0.1:9/hook","on":["start"],"timeout":"soon"}]}""",
          "$.notify[0].timeout: \"soon\" is not a duration", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","notify":[{"url":"http://127.0.0.1:9/hook","on":["start"],"timeout":"90s"}]}""",
          "$.notify[0].timeout: \"90s\" is out of range", "a duration's length is in its text (90s)" },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","notify":[{"url":"http://127.0.0.1:9/hook","on":["start"],"method":"GET"}]}""",
          "$.notify[0].method: unknown field", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","notify":{"url":"http://127.0.0.1:9/hook","on":["start"]}}""",
          "$.notify: must be a list", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","metrics":{}}""",
          "$.metrics.path: required", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","metrics":{"path":"m.prom","every":"1s"}}""",
          "$.metrics.every: unknown field", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","throttle":{"signals":[{"kind":"replicaLeg","limit":"16MB"}]}}""",
          "$.throttle.signals[0].kind: 'replicaLeg' is not a signal kind", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","throttle":{"signals":[{"kind":"replicaLag","limit":-1}]}}""",
          "$.throttle.signals[0].limit: -1 is negative", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","throttle":{"signals":[{"kind":"replicaLag","limit":"-16MB"}]}}""",
          "$.throttle.signals[0].limit: \"-16MB\" is not a size", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","throttle":{"signals":[{"kind":"replicaLag"}]}}""",
          "$.throttle.signals[0].limit: required for a replicaLag signal", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","throttle":{"signals":[{"kind":"retainedWal","limit":"1GB","critical":"512MB"}]}}""",
          "$.throttle.signals[0].critical: \"512MB\" is below the limit", "which of two sizes is larger is in their text (512MB, 1GB)" },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","throttle":{"signals":[{"kind":"replicaLag","limit":"16MB","checkInterval":"50ms"}]}}""",
          "$.throttle.signals[0].checkInterval: \"50ms\" is out of range", "a duration's length is in its text (50ms)" },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","throttle":{"signals":[{"kind":"lockWaiters","limit":3,"criticalHits":2}]}}""",
          "$.throttle.signals[0].criticalHits: given without critical", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","throttle":{"signals":[{"kind":"activeSessions","limit":2.5}]}}""",
          "$.throttle.signals[0].limit: 2.5 is not a whole number", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","throttle":{"signals":[{"kind":"query"}]}}""",
          "$.throttle.signals[0].query: required for a query signal", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","throttle":{"signals":[{"kind":"autovacuum","query":"SELECT true"}]}}""",
          "$.throttle.signals[0].query: only a query signal has a query", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","throttle":{"signals":[{"kind":"retainedWal","limit":"1GB","standbys":["r1"]}]}}""",
          "$.throttle.signals[0]: missing and standbys are for a replicaLag signal only", null },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","throttle":{"signals":[{"kind":"query","query":"SELECT @key = '1'"}]}}""",
          "$.throttle.signals[0].query: @key is not available", "which parameters a statement uses is in its SQL text" },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","throttle":{"signals":[{"kind":"query","query":"SELECT 1, 2"}]}}""",
          "$.throttle.signals[0].query: the query returns integer, integer", "only PostgreSQL knows a query's result type" },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL","throttle":{"signals":[{"kind":"query","query":"SELECT 'x'::text"}]}}""",
          "$.throttle.signals[0].query: the query returns text", "only PostgreSQL knows a query's result type" },
        { """{"version":1,"name":"j","items":{"keyset":{"table":"prism.sessions","key":["id","status"]}},"capture":[{"table":"prism.sessions","where":"id BETWEEN @lo::uuid AND @hi::uuid"}],"steps":[{"sql":"SELECT @lo, @hi"}],"verify":"SELECT @lo <= @hi"}""",
          "$.items.keyset.key: [\"id\",\"status\"]: give one column", null },
        { """{"version":1,"name":"j","items":{"keyset":{"table":"prism.\"sessions","key":"\"id"}},"capture":[{"table":"prism.sessions","where":"id BETWEEN @lo::uuid AND @hi::uuid"}],"steps":[{"sql":"SELECT @lo, @hi"}],"verify":"SELECT @lo <= @hi"}""",
          "$.items.keyset.table: 'prism.\"sessions' is not a table name", null },
        { """{"version":1,"name":"j","items":{"keyset":{"table":"prism.sessions","key":"id"},"discover":"SELECT '1' AS key"},"capture":[{"table":"prism.sessions","where":"id BETWEEN @lo::uuid AND @hi::uuid"}],"steps":[{"sql":"SELECT @lo, @hi"}],"verify":"SELECT @lo <= @hi"}""",
          "$.items: give exactly one", null },
        { """{"version":1,"name":"j","items":{"keyset":{"table":"prism.sessions","key":"user_id"}},"capture":[{"table":"prism.sessions","where":"id BETWEEN @lo::uuid AND @hi::uuid"}],"steps":[{"sql":"SELECT @lo, @hi"}],"verify":"SELECT @lo <= @hi"}""",
          "$.items.keyset.key: no index of 'prism.sessions' starts with 'user_id'", "the database knows which indexes exist" },
        { """{"version":1,"name":"j","items":{"keyset":{"table":"prism.sessions","key":"status"}},"capture":[{"table":"prism.sessions","where":"id BETWEEN @lo::uuid AND @hi::uuid"}],"steps":[{"sql":"SELECT @lo, @hi"}],"verify":"SELECT @lo <= @hi"}""",
          "$.items.keyset.key: the column 'status' of 'prism.sessions' is not unique", "the database knows which indexes are unique" },
        { """{"version":1,"name":"j","items":{"keyset":{"table":"prism.sessions","key":"id"}},"capture":[{"table":"prism.sessions","where":"id BETWEEN @lo::uuid AND @hi::uuid"}],"steps":[{"sql":"UPDATE prism.sessions SET fc_kind = 'functions' WHERE id = @key::uuid"}],"verify":"SELECT @lo <= @hi"}""",
          "$.steps[0].sql: does not use both @lo and @hi", "which parameters a statement uses is in its SQL text" },
        { """{"version":1,"name":"j","items":{"keyset":{"table":"prism.sessions","key":"id","minChunkSize":500,"maxChunkSize":100}},"capture":[{"table":"prism.sessions","where":"id BETWEEN @lo::uuid AND @hi::uuid"}],"steps":[{"sql":"SELECT @lo, @hi"}],"verify":"SELECT @lo <= @hi"}""",
          "$.items.keyset: minChunkSize 500 is larger than maxChunkSize 100", "JSON Schema cannot compare two fields' values" },
        { """{"version":1,"name":"j","items":{"keys":["1"]},"capture":[{"table":"prism.sessions","where":"id::text = @key"}],"steps":[{"sql":"SELECT @key"}],"verify":"SELECT @key IS NOT NULL",}x""",
          "$: not valid JSON", null },
    };

    /// <summary>Changes to the sample job: the change's name, the text the error holds, and why only the validator can refuse it.</summary>
    public static TheoryData<string, string, string?> Changes { get; } = new()
    {
        { "soak-failureLimit", "$.soak.checks[0].failureLimit: '-1' must be a whole number from 0", null },
        { "soak-signal", "$.soak.checks[0].signal: \"query\" is not a signal a check can read", null },
        { "soak-signal-and-query", "$.soak.checks[0].query: unknown field", null },
        { "soak-consecutiveErrorLimit", "$.soak.consecutiveErrorLimit: '0' must be a whole number from 1", null },
        { "soak-interval", "The soak interval must be at least 100 ms", "a duration's length is in its text (50ms)" },
        { "duplicate", "$.name: given more than once", "JSON Schema sees a parsed object, in which a name appears once" },
        { "kind", "$.steps[0].kind: '5' is not a step kind", null },
    };

    /// <summary>The sample job with change <paramref name="what"/> (one of <see cref="Changes"/>), in a file of its own.</summary>
    public static string Changed(string what)
    {
        var path = SampleJobs.With(job =>
        {
            switch (what)
            {
                case "soak-failureLimit": job["soak"]!["checks"]![0]!["failureLimit"] = -1; break;
                case "soak-consecutiveErrorLimit": job["soak"]!["consecutiveErrorLimit"] = 0; break;
                case "soak-interval": job["soak"]!["interval"] = "50ms"; break;
                case "soak-signal": job["soak"]!["checks"]![0] = JsonNode.Parse("""{"name":"lag","signal":"query","expect":{"atMost":1}}"""); break;
                case "soak-signal-and-query": job["soak"]!["checks"]![0] = JsonNode.Parse("""{"name":"lag","signal":"replicaLag","query":"SELECT 1","expect":{"atMost":"1s"}}"""); break;
                case "kind": job["steps"]![0]!["kind"] = 5; break;
                case "duplicate": break;
                default: throw new ArgumentOutOfRangeException(nameof(what), what, "not a change of BadJobs.Changes");
            }
        });
        if (what == "duplicate")
        {
            File.WriteAllText(path, File.ReadAllText(path).Replace("\"name\":\"results-v1.2.1\"", "\"name\":\"results-v1.2.1\",\"name\":\"other\"", StringComparison.Ordinal));
        }

        return path;
    }
}
