using System.Diagnostics;
using System.Globalization;
using DataOps.Engine.Connections;
using DataOps.Engine.Logging;
using DbUp;
using DbUp.Engine;
using DbUp.Engine.Output;
using Npgsql;

namespace DataOps.Engine.Schema;

/// <summary>The parts of the schema the module can install. Core is always installed first.</summary>
public enum SchemaComponent
{
    /// <summary>The dataops schema: runs, the backfill ledger, seed runs.</summary>
    Core,

    /// <summary>script_reference, script_version, task_schedule, event_trigger, script_execution (V97).</summary>
    ScriptExecution,

    /// <summary>users, workflows, workflow_executions.</summary>
    WorkflowExecution,

    /// <summary>The prism sample application schema used by the backfill demo.</summary>
    Prism,
}

/// <summary>What happened to a migration (SchemaMigration.Status): names, not an enum, so that ConvertTo-Json writes the name.</summary>
public static class MigrationStatus
{
    public const string Applied = nameof(Applied);
    public const string AlreadyApplied = nameof(AlreadyApplied);
    public const string Pending = nameof(Pending);
}

/// <summary>One migration script and what happened to it.</summary>
public sealed record SchemaMigration(string Component, string Script, string Status, string Database)
{
    public override string ToString() => $"{Script} ({Status})";
}

/// <summary>
/// Journaled, idempotent migrations with DbUp: scripts are embedded in this assembly under
/// Migrations/&lt;Component&gt;/, journaled in dataops.schema_versions, applied in one transaction while
/// an advisory lock keeps a second installer waiting.
/// </summary>
public static class SchemaInstaller
{
    internal const long AdvisoryLockKey = 0x44_61_74_61_4F_70_01; // "DataOp" + 1
    private const string JournalSchema = "dataops";
    private const string JournalTable = "schema_versions";

    /// <summary>The components to install, in order, with Core first.</summary>
    public static IReadOnlyList<SchemaComponent> Resolve(IEnumerable<SchemaComponent>? requested)
    {
        var list = requested?.ToList() ?? [];
        if (list.Count == 0)
        {
            list = [.. Enum.GetValues<SchemaComponent>()];
        }

        foreach (var c in list.Where(c => !Enum.IsDefined(c)))
        {
            throw new DataOpsException("SchemaComponentUnknown", DataOpsErrorKind.InvalidArgument,
                $"'{c}' is not a schema component. Valid components: {string.Join(", ", Enum.GetNames<SchemaComponent>())}.", c);
        }

        list.Add(SchemaComponent.Core);
        return [.. list.Distinct().OrderBy(c => (int)c)];
    }

    /// <summary>What installing would do, without changing anything (for -WhatIf).</summary>
    public static async Task<IReadOnlyList<SchemaMigration>> PlanAsync(DataOpsConnection connection, IEnumerable<SchemaComponent>? components, CancellationToken ct = default)
    {
        var selected = Resolve(components);
        var executed = await ReadJournalAsync(connection, ct).ConfigureAwait(false);
        return [.. Scripts(selected).Select(s => new SchemaMigration(s.Component.ToString(), s.Script.Name,
            executed.Contains(s.Script.Name) ? MigrationStatus.AlreadyApplied : MigrationStatus.Pending, connection.Database))];
    }

    /// <summary>Applies every pending script of the selected components in one transaction.</summary>
    public static async Task<IReadOnlyList<SchemaMigration>> InstallAsync(DataOpsConnection connection, IEnumerable<SchemaComponent>? components, RunLog log, CancellationToken ct = default)
    {
        var selected = Resolve(components);
        var scripts = Scripts(selected).ToList();
        await using var lockConnection = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        try
        {
            log.Information("Waiting for the schema advisory lock on {Database}", connection.Database);
            await using (var cmd = new NpgsqlCommand("SELECT pg_advisory_lock(@key)", lockConnection))
            {
                cmd.Parameters.AddWithValue("key", AdvisoryLockKey);
                cmd.CommandTimeout = 300;
                await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            }

            // DbUp's journal lives in the dataops schema; it must exist before DbUp reads the journal.
            await using (var cmd = new NpgsqlCommand("CREATE SCHEMA IF NOT EXISTS dataops", lockConnection))
            {
                await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            }

            var upgrader = DeployChanges.To
                .PostgresqlDatabase(connection.ConnectionString)
                .JournalToPostgresqlTable(JournalSchema, JournalTable)
                .WithScripts(scripts.Select(s => s.Script))
                .WithVariablesDisabled()
                .WithTransaction()
                .LogTo(new DbUpLog(log))
                .Build();

            var pending = upgrader.GetScriptsToExecute().Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
            log.Information("{Pending} of {Total} migration scripts to apply for {Components}", pending.Count, scripts.Count, string.Join(",", selected));
            var watch = Stopwatch.StartNew();
            var result = upgrader.PerformUpgrade();
            if (!result.Successful)
            {
                var failed = result.ErrorScript?.Name ?? "(unknown script)";
                var message = result.Error is PostgresException pg ? $"{pg.SqlState}: {pg.MessageText}" : result.Error?.Message;
                log.Error(result.Error, "Migration {Script} failed; nothing was applied", failed);
                throw new DataOpsException("SchemaMigrationFailed", DataOpsErrorKind.InvalidOperation,
                    $"Migration '{failed}' failed on {connection}: {message}. The transaction was rolled back; no script of this run was applied.",
                    failed, null);
            }

            log.Information("Applied {Count} scripts in {ElapsedMs} ms", result.Scripts.Count(), watch.ElapsedMilliseconds);
            return [.. scripts.Select(s => new SchemaMigration(s.Component.ToString(), s.Script.Name,
                pending.Contains(s.Script.Name) ? MigrationStatus.Applied : MigrationStatus.AlreadyApplied, connection.Database))];
        }
        catch (Exception ex) when (ex is not DataOpsException and not OperationCanceledException)
        {
            throw Database.Translate(ex, connection);
        }
        finally
        {
            if (lockConnection.State == System.Data.ConnectionState.Open)
            {
                await using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock(@key)", lockConnection);
                unlock.Parameters.AddWithValue("key", AdvisoryLockKey);
                await unlock.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// SchemaMissing: the database lacks these components (or has older versions of them); the
    /// error says what to install and recommends the command. <paramref name="detail"/> says what was found missing.
    /// </summary>
    public static DataOpsException Missing(DataOpsConnection connection, IReadOnlyCollection<SchemaComponent> components, string? detail = null)
    {
        var list = string.Join(",", components);
        return new DataOpsException("SchemaMissing", DataOpsErrorKind.NotInstalled,
            $"The database {connection} lacks the schema component{(components.Count > 1 ? "s" : string.Empty)} {list}{(detail is null ? string.Empty : $" ({detail})")}, or has an older version of it. " +
            $"Install or upgrade it first: Install-DataOpsSchema -Component {list}",
            list) { RecommendedAction = $"Install-DataOpsSchema -Component {list}" };
    }

    /// <summary>Every one of <paramref name="components"/> installed at this module's version, or <see cref="Missing"/>.</summary>
    public static async Task RequireAsync(DataOpsConnection connection, CancellationToken ct, params SchemaComponent[] components)
    {
        var installed = await InstalledComponentsAsync(connection, ct).ConfigureAwait(false);
        var missing = components.Where(c => !installed.Contains(c)).ToList();
        if (missing.Count > 0)
        {
            throw Missing(connection, missing);
        }
    }

    /// <summary>The components whose every script is journaled in the database.</summary>
    public static async Task<IReadOnlyList<SchemaComponent>> InstalledComponentsAsync(DataOpsConnection connection, CancellationToken ct = default)
    {
        var executed = await ReadJournalAsync(connection, ct).ConfigureAwait(false);
        return [.. Scripts(Enum.GetValues<SchemaComponent>())
            .GroupBy(s => s.Component)
            .Where(g => g.All(s => executed.Contains(s.Script.Name)))
            .Select(g => g.Key)];
    }

    private static async Task<HashSet<string>> ReadJournalAsync(DataOpsConnection connection, CancellationToken ct)
    {
        await using var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        try
        {
            await using var exists = new NpgsqlCommand("SELECT to_regclass('dataops.schema_versions') IS NOT NULL", conn);
            if (!(bool)(await exists.ExecuteScalarAsync(ct).ConfigureAwait(false))!)
            {
                return [];
            }

            var names = new HashSet<string>(StringComparer.Ordinal);
            await using var cmd = new NpgsqlCommand("SELECT scriptname FROM dataops.schema_versions", conn);
            await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
            while (await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                names.Add(reader.GetString(0));
            }

            return names;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            throw Database.Translate(ex, connection);
        }
    }

    private sealed record ComponentScript(SchemaComponent Component, SqlScript Script);

    private static IEnumerable<ComponentScript> Scripts(IEnumerable<SchemaComponent> components)
    {
        var assembly = typeof(SchemaInstaller).Assembly;
        var all = assembly.GetManifestResourceNames().Where(n => n.StartsWith("Migrations/", StringComparison.Ordinal)).ToList();
        foreach (var component in components)
        {
            var prefix = $"Migrations/{component}/";
            foreach (var resource in all.Where(n => n.StartsWith(prefix, StringComparison.Ordinal)).OrderBy(n => n, StringComparer.Ordinal))
            {
                using var stream = assembly.GetManifestResourceStream(resource)!;
                using var reader = new StreamReader(stream);
                var name = resource["Migrations/".Length..];
                yield return new ComponentScript(component, new SqlScript(name, reader.ReadToEnd(), new SqlScriptOptions { RunGroupOrder = (int)component }));
            }
        }
    }

    /// <summary>DbUp's own log goes into the run log, never to the console.</summary>
    private sealed class DbUpLog(RunLog log) : IUpgradeLog
    {
        public void LogTrace(string format, params object[] args) => log.Debug("{DbUp}", Format(format, args));

        public void LogDebug(string format, params object[] args) => log.Debug("{DbUp}", Format(format, args));

        public void LogInformation(string format, params object[] args) => log.Information("{DbUp}", Format(format, args));

        public void LogWarning(string format, params object[] args) => log.Warning("{DbUp}", Format(format, args));

        public void LogError(string format, params object[] args) => log.Error(null, "{DbUp}", Format(format, args));

        public void LogError(Exception ex, string format, params object[] args) => log.Error(ex, "{DbUp}", Format(format, args));

        private static string Format(string format, object[] args) =>
            args.Length == 0 ? format : string.Format(CultureInfo.InvariantCulture, format, args);
    }
}
