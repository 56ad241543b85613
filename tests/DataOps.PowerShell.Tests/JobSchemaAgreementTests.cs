using System.Collections;
using System.Text.Json;
using Json.Schema;

namespace DataOps.PowerShell.Tests;

/// <summary>
/// module/schemas/backfill-job.schema.json (what editors check a job file against) and the module's
/// validator (what Invoke-Backfill, Watch-StagingSoak and Test-ProdHealth check) are two sources of
/// truth; these tests hold them together. Every job the module accepts, the schema accepts; every
/// bad job the tests refuse, the schema refuses too unless BadJobs names why only the validator can.
/// </summary>
public sealed class JobSchemaAgreementTests
{
    private static readonly Lazy<JsonSchema> Schema = new(() =>
        JsonSchema.FromText(File.ReadAllText(Path.Combine(Repo.Root, "module", "schemas", "backfill-job.schema.json"))));

    private static bool SchemaAccepts(string json)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException)
        {
            return false;
        }

        using (document)
        {
            return Schema.Value.Evaluate(document.RootElement).IsValid;
        }
    }

    public static TheoryData<string> ExampleJobs { get; } = new(Directory.GetFiles(Path.Combine(Repo.Root, "examples"), "*.job.json", SearchOption.AllDirectories));

    [Theory]
    [MemberData(nameof(ExampleJobs))]
    public void Every_example_job_is_valid_for_the_schema_and_the_validator(string path)
    {
        Assert.True(SchemaAccepts(File.ReadAllText(path)), $"{path}: the schema refuses it");
        // A job whose HTTP steps name {env:NAME} secrets (an endpoint's URL and key) is valid without them; the run needs
        // them set, so they get placeholders here for the ones the environment lacks.
        var unset = System.Text.RegularExpressions.Regex.Matches(File.ReadAllText(path), @"\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
            .Select(m => m.Groups[1].Value).Distinct().Where(n => string.IsNullOrEmpty(Environment.GetEnvironmentVariable(n))).ToList();
        unset.ForEach(n => Environment.SetEnvironmentVariable(n, n.Contains("URL", StringComparison.Ordinal) ? "http://127.0.0.1:9" : "placeholder"));
        try
        {
            AssertValidatorAccepts(path);
        }
        finally
        {
            unset.ForEach(n => Environment.SetEnvironmentVariable(n, null));
        }
    }

    [Fact]
    public void A_job_with_every_notify_and_metrics_field_is_valid_for_the_schema_and_the_validator()
    {
        var variable = "DATAOPS_TEST_HOOK_" + Guid.NewGuid().ToString("N")[..8].ToUpperInvariant();
        var path = SampleJobs.With(job =>
        {
            job["notify"] = System.Text.Json.Nodes.JsonNode.Parse($$"""
                [ { "url": "https://hooks.example/backfill", "on": ["start", "throttled", "halt", "success", "failure"],
                    "headers": { "Authorization": "Bearer {env:{{variable}}}", "X-Team": "data" }, "required": true, "timeout": "2500ms" },
                  { "url": "{env:{{variable}}}/path", "on": ["failure"] } ]
                """);
            job["metrics"] = new System.Text.Json.Nodes.JsonObject { ["path"] = "metrics/dataops_backfill.prom" };
        });
        Assert.True(SchemaAccepts(File.ReadAllText(path)), $"{path}: the schema refuses it");
        Environment.SetEnvironmentVariable(variable, "http://127.0.0.1:9");
        try
        {
            AssertValidatorAccepts(path);
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, null);
        }
    }

    [Fact]
    public void A_keyset_job_naming_its_table_and_key_double_quoted_is_valid_for_the_schema_and_the_validator()
    {
        var path = Path.Combine(Directory.CreateTempSubdirectory("dataops-schema-").FullName, "quoted.job.json");
        File.WriteAllText(path, """
            {"version":1,"name":"quoted","items":{"keyset":{"table":"\"prism\".\"sessions\"","key":"\"id\""}},
             "capture":[{"table":"prism.\"sessions\"","where":"id BETWEEN @lo::uuid AND @hi::uuid"}],
             "steps":[{"sql":"UPDATE prism.sessions SET fc_kind = 'functions' WHERE id BETWEEN @lo::uuid AND @hi::uuid"}],
             "verify":"SELECT @lo <= @hi"}
            """);

        Assert.True(SchemaAccepts(File.ReadAllText(path)), $"{path}: the schema refuses it");
        AssertValidatorAccepts(path);
    }

    /// <summary>The validator's verdict: Invoke-Backfill -WhatIf of the job on a Prism database raises no error.</summary>
    private static void AssertValidatorAccepts(string path)
    {
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null", new Hashtable { ["cs"] = TestCluster.CreateDatabaseWith("Prism") });
        var r = s.Run("Invoke-Backfill -Job $job -WhatIf", new Hashtable { ["job"] = path });
        Assert.False(r.HadErrors, string.Join("\n", r.Errors));
    }

    [Fact]
    public void A_plan_written_by_Test_ProdHealth_is_valid_for_the_schema()
    {
        using var s = new PsSession();
        s.Run("Connect-DataOps -ConnectionString $cs | Out-Null; New-PrismSampleData -Sessions 10 -Seed 3 -PendingShare 0.5 | Out-Null", new Hashtable { ["cs"] = TestCluster.CreateDatabaseWith("Prism") });
        var report = s.Run("Test-ProdHealth -Job $job -OutputDirectory $out", new Hashtable { ["job"] = SampleJobs.Path, ["out"] = Directory.CreateTempSubdirectory("dataops-schema-").FullName });
        var plan = (string)report.Output.Single().Properties["PlanPath"].Value;

        Assert.True(SchemaAccepts(File.ReadAllText(plan)), $"{plan}: the schema refuses the plan");
    }

    [Theory]
    [MemberData(nameof(BadJobs.Files), MemberType = typeof(BadJobs))]
    public void Each_bad_job_file_is_refused_by_the_schema_unless_only_the_validator_can_know(string json, string expected, string? validatorOnly)
    {
        Assert.True(SchemaAccepts(json) == (validatorOnly is not null),
            validatorOnly is null
                ? $"the validator refuses it ({expected}) but the schema accepts it: {json}"
                : $"the schema refuses it, so BadJobs should not say only the validator can ({validatorOnly}): {json}");
    }

    [Theory]
    [MemberData(nameof(BadJobs.Changes), MemberType = typeof(BadJobs))]
    public void Each_bad_change_to_the_sample_job_is_refused_by_the_schema_unless_only_the_validator_can_know(string what, string expected, string? validatorOnly)
    {
        var json = File.ReadAllText(BadJobs.Changed(what));

        Assert.True(SchemaAccepts(json) == (validatorOnly is not null),
            validatorOnly is null
                ? $"the validator refuses '{what}' ({expected}) but the schema accepts it"
                : $"the schema refuses '{what}', so BadJobs should not say only the validator can ({validatorOnly})");
    }
}
