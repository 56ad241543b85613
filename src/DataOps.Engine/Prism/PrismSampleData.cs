using Dapper;
using DataOps.Engine.Connections;
using DataOps.Engine.Schema;

namespace DataOps.Engine.Prism;

/// <summary>What New-PrismSampleData wrote.</summary>
public sealed class PrismSampleResult
{
    public int Sessions { get; init; }

    public int Completed { get; init; }

    /// <summary>Completed sessions that still need the results-v1.2.1 backfill.</summary>
    public int Pending { get; init; }

    public int Profiles { get; init; }

    public int TelemetryEvents { get; init; }

    public int ResultAccesses { get; init; }

    public int Seed { get; init; }

    public override string ToString() => $"{Sessions} sessions, {Completed} completed, {Pending} need the backfill";
}

/// <summary>
/// Realistic data for the Prism sample schema: sessions (80% completed), their profiles, telemetry
/// and tokenized result access. A known share of completed sessions still needs the backfill: no
/// profile yet, a profile stamped with an old results_version, and/or the legacy FC pipeline.
/// </summary>
public static class PrismSampleData
{
    public const string CurrentVersion = "v1.2.1";

    /// <summary>
    /// Writes the sample in one transaction. With <paramref name="reset"/> the Prism tables are emptied
    /// first (same transaction), so the same seed gives the same state again; without it, a sample that
    /// collides with rows already there (the same seed twice) is refused with SampleDataExists.
    /// </summary>
    public static async Task<PrismSampleResult> CreateAsync(DataOpsConnection connection, int sessions, double pendingShare, int? seed, CancellationToken ct, bool reset = false)
    {
        if (sessions < 1)
        {
            throw new DataOpsException("SampleSizeInvalid", DataOpsErrorKind.InvalidArgument, $"-Sessions must be at least 1; got {sessions}.", sessions);
        }

        if (double.IsNaN(pendingShare) || pendingShare is < 0 or > 1)
        {
            throw new DataOpsException("SampleShareInvalid", DataOpsErrorKind.InvalidArgument, $"-PendingShare must be between 0 and 1; got {pendingShare}.", pendingShare);
        }

        await SchemaInstaller.RequireAsync(connection, ct, SchemaComponent.Prism).ConfigureAwait(false);

        var actualSeed = seed ?? Random.Shared.Next();
        var random = new Random(actualSeed);
        var now = DateTime.UtcNow;
        var ids = new List<Guid>();
        var users = new List<string>();
        var statuses = new List<string>();
        var kinds = new List<string>();
        var created = new List<DateTime>();
        var completedAt = new List<DateTime?>();
        var profileSessions = new List<Guid>();
        var profileVersions = new List<string>();
        var eventSessions = new List<Guid>();
        var eventTypes = new List<string>();
        var eventTimes = new List<DateTime>();
        var accessSessions = new List<Guid>();
        var accessTimes = new List<DateTime>();
        var completedCount = 0;
        var pending = 0;
        for (var i = 0; i < sessions; i++)
        {
            var bytes = new byte[16];
            random.NextBytes(bytes);
            bytes[7] = (byte)((bytes[7] & 0x0F) | 0x40);
            var id = new Guid(bytes);
            var roll = random.NextDouble();
            var status = roll < 0.8 ? "completed" : roll < 0.95 ? "started" : "abandoned";
            var start = now.AddDays(-30).AddMinutes(random.Next(0, 29 * 24 * 60));
            var isPending = status == "completed" && random.NextDouble() < pendingShare;
            ids.Add(id);
            users.Add($"user-{random.Next(1, 51)}");
            statuses.Add(status);
            created.Add(start);
            completedAt.Add(status == "completed" ? start.AddMinutes(random.Next(5, 90)) : null);
            eventSessions.Add(id);
            eventTypes.Add("session_started");
            eventTimes.Add(start);
            var legacy = false;
            if (status == "completed")
            {
                completedCount++;
                eventSessions.Add(id);
                eventTypes.Add("session_completed");
                eventTimes.Add(completedAt[^1]!.Value);
                var shape = random.Next(3);
                if (isPending)
                {
                    pending++;
                    legacy = shape != 1;
                    if (shape != 0)
                    {
                        profileSessions.Add(id);
                        profileVersions.Add("v1.1.0");
                    }

                    // The bug the backfill fixes showed up as version overrides; they are in the past.
                    eventSessions.Add(id);
                    eventTypes.Add("engine_version_override");
                    eventTimes.Add(completedAt[^1]!.Value.AddSeconds(1));
                }
                else
                {
                    profileSessions.Add(id);
                    profileVersions.Add(CurrentVersion);
                }

                for (var a = random.Next(1, 4); a > 0; a--)
                {
                    accessSessions.Add(id);
                    accessTimes.Add(completedAt[^1]!.Value.AddMinutes(random.Next(1, 600)));
                }
            }

            kinds.Add(legacy ? "legacy" : "functions");
        }

        await using var conn = await Database.OpenAsync(connection, ct).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
        if (reset)
        {
            await conn.ExecuteAsync(new CommandDefinition("TRUNCATE prism.result_access, prism.telemetry_events, prism.profiles, prism.sessions", transaction: tx, cancellationToken: ct)).ConfigureAwait(false);
        }

        try
        {
            await InsertAsync();
        }
        catch (Npgsql.PostgresException ex) when (ex.SqlState == "23505")
        {
            throw new DataOpsException("SampleDataExists", DataOpsErrorKind.InvalidOperation,
                $"The Prism tables in {connection} already hold sessions this sample would write (seed {actualSeed}; {ex.ConstraintName}). Nothing was written. Pass -Reset to replace the sample data, or use another -Seed.",
                actualSeed) { RecommendedAction = "New-PrismSampleData -Reset" };
        }

        await tx.CommitAsync(ct).ConfigureAwait(false);
        return new PrismSampleResult
        {
            Sessions = sessions, Completed = completedCount, Pending = pending, Profiles = profileSessions.Count,
            TelemetryEvents = eventSessions.Count, ResultAccesses = accessSessions.Count, Seed = actualSeed,
        };

        Task InsertAsync() => conn.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO prism.sessions (id, user_id, status, fc_kind, created_at, completed_at)
            SELECT * FROM unnest(@ids::uuid[], @users::text[], @statuses::text[], @kinds::text[], @created::timestamptz[], @completedAt::timestamptz[]);
            INSERT INTO prism.profiles (session_id, results_version, scores, created_at, updated_at)
            SELECT s, v, jsonb_build_object('openness', (abs(hashtext(s::text)) % 100)), now(), now() FROM unnest(@profileSessions::uuid[], @profileVersions::text[]) AS t(s, v);
            INSERT INTO prism.telemetry_events (session_id, event_type, payload, created_at)
            SELECT s, e, jsonb_build_object('source', 'sample'), t FROM unnest(@eventSessions::uuid[], @eventTypes::text[], @eventTimes::timestamptz[]) AS x(s, e, t);
            INSERT INTO prism.result_access (session_id, token_hash, succeeded, status_code, accessed_at)
            SELECT s, md5(s::text || t::text), true, 200, t FROM unnest(@accessSessions::uuid[], @accessTimes::timestamptz[]) AS x(s, t);
            """,
            new
            {
                ids = ids.ToArray(), users = users.ToArray(), statuses = statuses.ToArray(), kinds = kinds.ToArray(), created = created.ToArray(), completedAt = completedAt.ToArray(),
                profileSessions = profileSessions.ToArray(), profileVersions = profileVersions.ToArray(),
                eventSessions = eventSessions.ToArray(), eventTypes = eventTypes.ToArray(), eventTimes = eventTimes.ToArray(),
                accessSessions = accessSessions.ToArray(), accessTimes = accessTimes.ToArray(),
            }, tx, cancellationToken: ct));
    }
}
