using DataOps.Engine.Connections;

namespace DataOps.Engine.Seeding;

/// <summary>What to seed into script_execution. Defaults follow the original plan: 1M rows, half scheduled.</summary>
public sealed record ScriptExecutionSeedOptions
{
    public long Count { get; init; } = 1_000_000;

    /// <summary>A billion rows (about an hour and 100 GB); larger counts are mistakes, and would overflow the id range's arithmetic.</summary>
    public const long MaxCount = 1_000_000_000;

    /// <summary>Share of scheduled rows in [0, 1]; exactly round(Count x ratio) rows are scheduled.</summary>
    public double ScheduledRatio { get; init; } = 0.5;

    /// <summary>Seed of the row generator; the same seed and options give the same rows. Null picks one (recorded in the result).</summary>
    public int? Seed { get; init; }

    /// <summary>Start of the time window (inclusive). Default: Until minus 365 days.</summary>
    public DateTimeOffset? Since { get; init; }

    /// <summary>End of the time window (exclusive). Default: now.</summary>
    public DateTimeOffset? Until { get; init; }

    public int ScriptReferences { get; init; } = 10;

    public int ScriptVersions { get; init; } = 10;

    public int TaskSchedules { get; init; } = 100;

    public int EventTriggers { get; init; } = 100;

    /// <summary>Also count violating rows by query after the validations (which already prove there are none): one more scan of the load.</summary>
    public bool Verify { get; init; }
}

/// <summary>What one seed run did.</summary>
public sealed record ScriptExecutionSeedResult
{
    /// <summary>The database this came from; a cmdlet it is piped to acts there (binds to -Connection).</summary>
    public DataOpsConnection? Connection { get; init; }

    public long SeedRunId { get; init; }

    public long Count { get; init; }

    public long Scheduled { get; init; }

    public long Triggered { get; init; }

    /// <summary>
    /// Rows of this run that break chk_execution_source or a foreign key. Always 0 on success: the CHECK constraint
    /// is checked for every copied row and each foreign key is re-added with validation, which fails the seed
    /// (SeedConstraintViolation) on any violating row; with -Verify the rows are also counted by query.
    /// </summary>
    public long ConstraintViolations { get; init; }

    public TimeSpan Elapsed { get; init; }

    public double RowsPerSecond { get; init; }

    public int Seed { get; init; }

    public long FirstId { get; init; }

    public long LastId { get; init; }

    public DateTimeOffset Since { get; init; }

    public DateTimeOffset Until { get; init; }

    public required string Database { get; init; }

    public override string ToString() => $"Seed run {SeedRunId}: {Count:N0} rows ({Scheduled:N0} scheduled, {Triggered:N0} triggered) in {Elapsed.TotalSeconds:0.0} s";
}

/// <summary>A recorded seed run, as listed or removed.</summary>
public sealed record SeedRun
{
    /// <summary>The database this came from; a cmdlet it is piped to acts there (binds to -Connection).</summary>
    public DataOpsConnection? Connection { get; init; }

    public long SeedRunId { get; init; }

    public required string Status { get; init; }

    public long RequestedCount { get; init; }

    public long? InsertedCount { get; init; }

    public long? FirstId { get; init; }

    public long? LastId { get; init; }

    public int? Seed { get; init; }

    public DateTimeOffset StartedAt { get; init; }

    public DateTimeOffset? FinishedAt { get; init; }

    /// <summary>Rows deleted by Remove-ScriptExecutionSeed (null until removed; with -WhatIf, the rows that would be).</summary>
    public long? Removed { get; init; }

    public override string ToString() => $"Seed run {SeedRunId} ({Status})";
}
