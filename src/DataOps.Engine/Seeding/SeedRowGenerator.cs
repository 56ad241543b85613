namespace DataOps.Engine.Seeding;

/// <summary>The parents a generated row may point at.</summary>
internal sealed record SeedParents(
    IReadOnlyList<(long Id, long ReferenceId)> Schedules,
    IReadOnlyList<(long Id, long ReferenceId)> Triggers,
    IReadOnlyDictionary<long, long[]> VersionsByReference);

/// <summary>One script_execution row; times are microseconds since the Unix epoch.</summary>
internal readonly record struct SeedRow(long ReferenceId, long VersionId, long? ScheduleId, long? PlannedMicros, long? TriggerId, long CreatedMicros);

/// <summary>
/// Streams rows one at a time (nothing proportional to Count is held). Row k is scheduled when
/// floor((k+1)S/N) &gt; floor(kS/N), which spreads exactly S scheduled rows evenly through the N.
/// Parents are taken round-robin, times from a SplitMix64 stream, so a seed fixes every row.
/// Times come out in ascending order, as in a real table whose ids follow insertion time: the N
/// uniform order statistics are drawn one by one in O(1) memory (Bentley and Saxe, "Generating
/// sorted lists of random numbers"), which also lets the created_at index be built from sorted input.
/// </summary>
internal sealed class SeedRowGenerator(long count, long scheduled, int seed, long sinceMicros, long untilMicros, SeedParents parents)
{
    private const long MinDelayMicros = 1_000_000;
    private const long MaxDelayMicros = 300_000_000;
    private ulong _state = unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + 0xD1B54A32D192ED03UL);
    private long _k;
    private long _scheduledSoFar;
    private long _triggeredSoFar;
    private double _runningMax = 1.0;

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public bool TryNext(out SeedRow row)
    {
        if (_k >= count)
        {
            row = default;
            return false;
        }

        var span = untilMicros - sinceMicros;
        var isScheduled = (_k + 1) * scheduled / count > _k * scheduled / count;
        _k++;
        if (isScheduled)
        {
            var (scheduleId, referenceId) = parents.Schedules[(int)(_scheduledSoFar % parents.Schedules.Count)];
            var version = Version(referenceId, _scheduledSoFar / parents.Schedules.Count);
            _scheduledSoFar++;
            var planned = Math.Min(sinceMicros + (long)(NextSortedPosition() * (span - 1)), untilMicros - 2);
            var created = planned + MinDelayMicros + (long)(NextDouble() * (MaxDelayMicros - MinDelayMicros));
            if (created >= untilMicros)
            {
                created = untilMicros - 1; // still after planned: planned <= until - 2
            }

            row = new SeedRow(referenceId, version, scheduleId, planned, null, created);
        }
        else
        {
            var (triggerId, referenceId) = parents.Triggers[(int)(_triggeredSoFar % parents.Triggers.Count)];
            var version = Version(referenceId, _triggeredSoFar / parents.Triggers.Count);
            _triggeredSoFar++;
            var created = Math.Min(sinceMicros + (long)(NextSortedPosition() * span), untilMicros - 1);
            row = new SeedRow(referenceId, version, null, null, triggerId, created);
        }

        return true;
    }

    /// <summary>Each pass over the parents moves to the reference's next version.</summary>
    private long Version(long referenceId, long pass)
    {
        var versions = parents.VersionsByReference[referenceId];
        return versions[(int)(pass % versions.Length)];
    }

    /// <summary>
    /// The next of N sorted uniforms in [0, 1), ascending: the maximum of the remaining i uniforms is
    /// the previous maximum times U^(1/i), so 1 - that maximum walks upwards through the sample.
    /// </summary>
    private double NextSortedPosition()
    {
        var remaining = count - _k + 1;
        _runningMax *= Math.Exp(Math.Log(1.0 - NextDouble()) / remaining);
        return 1.0 - _runningMax;
    }

    private double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    private ulong NextUInt64()
    {
        var z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
