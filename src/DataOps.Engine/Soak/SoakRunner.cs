using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using DataOps.Engine.Connections;
using DataOps.Engine.Jobs;
using DataOps.Engine.Logging;

namespace DataOps.Engine.Soak;

/// <summary>
/// Watches a job's soak checks, strictly read-only: the session runs with
/// default_transaction_read_only on and every sample is a READ ONLY transaction with a statement
/// timeout. A lost connection is an Error sample; the next sample reconnects.
/// </summary>
public static class SoakRunner
{
    /// <summary>
    /// Streams samples as they are taken; the last object is the SoakReport. Ctrl+C (cancellation)
    /// ends the watch early with a report over what was seen.
    /// </summary>
    public static async IAsyncEnumerable<object> WatchAsync(
        BackfillJob job, SoakSpec spec, DataOpsConnection connection, string outputDirectory, bool failFast, RunLog log, IOperationObserver observer,
        [EnumeratorCancellation] CancellationToken ct)
    {
        var started = DateTimeOffset.UtcNow;
        var watch = Stopwatch.StartNew();
        var state = spec.Checks.ToDictionary(c => c.Name, c => new CheckState(c));
        foreach (var s in state.Values.Where(s => s.Check.BaselineQuery is not null))
        {
            try
            {
                s.Baseline = await CheckSampler.SampleAsync(connection, s.Check.BaselineQuery!, job.Parameters, started, ct).ConfigureAwait(false);
                log.Information("Baseline of {Check}: {Baseline}", s.Check.Name, s.Baseline);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                log.Warning("Baseline query of {Check} failed: {Error}", s.Check.Name, CheckSampler.Describe(ex, connection));
            }
        }

        foreach (var s in state.Values.Where(s => s.Check.BaselineValue is not null))
        {
            s.Baseline = s.Check.BaselineValue;
        }

        var round = 0;
        var consecutiveErrorRounds = 0;
        var endedEarly = false;
        string? stopReason = null;
        var cancelled = false;
        while (!cancelled)
        {
            round++;
            var roundHadError = false;
            foreach (var s in state.Values)
            {
                SoakSample sample;
                try
                {
                    var value = await CheckSampler.SampleAsync(connection, s.Check, job, started, ct).ConfigureAwait(false);
                    sample = new SoakSample
                    {
                        Time = DateTimeOffset.UtcNow, Round = round, Check = s.Check.Name, Value = value, Expectation = s.Check.Expect.ToString(),
                        Outcome = CheckSampler.Judge(s.Check.Expect, value, s.Baseline), DryRun = s.Check.DryRun,
                        Error = s.Check.Expect.Kind == "atLeastBaseline" && s.Baseline is null ? "the baseline has no value" : null,
                    };
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    cancelled = true;
                    break;
                }
                catch (Exception ex)
                {
                    sample = new SoakSample
                    {
                        Time = DateTimeOffset.UtcNow, Round = round, Check = s.Check.Name, Expectation = s.Check.Expect.ToString(),
                        Outcome = SampleOutcome.Error, DryRun = s.Check.DryRun, Error = CheckSampler.Describe(ex, connection),
                    };
                }

                s.Add(sample);
                roundHadError |= sample.Outcome == SampleOutcome.Error && !sample.DryRun;
                if (sample.Outcome is SampleOutcome.Fail or SampleOutcome.Error)
                {
                    if (sample.Error is null)
                    {
                        log.Warning("{Check} round {Round}: {Outcome} (value {Value}; expected {Expectation})", sample.Check, round, sample.Outcome, sample.Value, sample.Expectation);
                    }
                    else
                    {
                        log.Warning("{Check} round {Round}: {Outcome}: {Error}", sample.Check, round, sample.Outcome, sample.Error);
                    }
                }

                yield return sample;
            }

            if (cancelled)
            {
                break;
            }

            consecutiveErrorRounds = roundHadError ? consecutiveErrorRounds + 1 : 0;
            var (verdict, reasons) = Verdict(state.Values, consecutiveErrorRounds, spec.ConsecutiveErrorLimit, final: false);
            var remaining = spec.Duration - watch.Elapsed;
            observer.Progress(new OperationProgress($"Soak {job.Name}", $"round {round}, verdict so far {verdict}, {Format(watch.Elapsed)} elapsed",
                (int)Math.Clamp(watch.Elapsed.TotalMilliseconds * 100 / spec.Duration.TotalMilliseconds, 0, 100), remaining > TimeSpan.Zero ? remaining : TimeSpan.Zero));
            if (failFast && verdict == SoakVerdict.NoGo)
            {
                endedEarly = true;
                stopReason = "-FailFast: a limit was exceeded";
                break;
            }

            if (watch.Elapsed + spec.Interval > spec.Duration)
            {
                break;
            }

            try
            {
                await Task.Delay(spec.Interval, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                cancelled = true;
            }
        }

        if (cancelled)
        {
            endedEarly = true;
            stopReason = "stopped early (Ctrl+C)";
        }

        var (final, why) = Verdict(state.Values, consecutiveErrorRounds, spec.ConsecutiveErrorLimit, final: true);
        if (stopReason is not null)
        {
            why = [.. why, stopReason];
        }

        observer.Progress(new OperationProgress($"Soak {job.Name}", "Done", Completed: true));
        var report = new SoakReport
        {
            Job = job.Name, Verdict = final, Reasons = [.. why], Started = started, Ended = DateTimeOffset.UtcNow, Rounds = round, EndedEarly = endedEarly,
            Checks = [.. state.Values.Select(s => s.Summary())],
        };
        var path = WriteMarkdown(report, job, connection, outputDirectory, spec);
        log.Information("Soak of {Job} ended: {Verdict} ({Reasons}); report {Path}", job.Name, final, string.Join("; ", why), path);
        // Go is the normal end: host output, not a warning that CI flags. NoGo and Inconclusive need attention.
        var ending = $"Soak of '{job.Name}' ended with verdict {final}. The go/no-go decision for production is yours: review {path}.";
        if (final == SoakVerdict.Go)
        {
            observer.Information(ending);
        }
        else
        {
            observer.Warning(ending);
        }

        yield return new SoakReport
        {
            Job = report.Job, Verdict = report.Verdict, Reasons = report.Reasons, Started = report.Started, Ended = report.Ended, Rounds = report.Rounds,
            EndedEarly = report.EndedEarly, Checks = report.Checks, ReportPath = path,
        };
    }

    internal static (string, IReadOnlyList<string>) Verdict(IEnumerable<CheckState> checks, int consecutiveErrorRounds, int errorLimit, bool final)
    {
        var reasons = new List<string>();
        foreach (var s in checks.Where(s => !s.Check.DryRun))
        {
            if (s.Failures > s.Check.FailureLimit)
            {
                reasons.Add($"{s.Check.Name}: {s.Failures} failed samples, more than the failure limit {s.Check.FailureLimit}");
            }
            else if (s.Check.ConsecutiveFailureLimit is { } limit && s.MaxConsecutiveFailures > limit)
            {
                reasons.Add($"{s.Check.Name}: {s.MaxConsecutiveFailures} failures in a row, more than {limit}");
            }
        }

        if (reasons.Count > 0)
        {
            return (SoakVerdict.NoGo, reasons);
        }

        if (consecutiveErrorRounds >= errorLimit)
        {
            return (SoakVerdict.Inconclusive, [$"{consecutiveErrorRounds} rounds in a row with errors (limit {errorLimit}): the database could not be watched"]);
        }

        var blind = checks.Where(s => !s.Check.DryRun && s.Samples.Count > 0 && s.Samples.All(x => x.Outcome is SampleOutcome.NoData or SampleOutcome.Error)).Select(s => s.Check.Name).ToList();
        if (final && blind.Count > 0)
        {
            return (SoakVerdict.Inconclusive, [$"no usable data for: {string.Join(", ", blind)}"]);
        }

        return (SoakVerdict.Go, ["every check stayed within its limits"]);
    }

    /// <summary>A duration as people write it: 6h00m, 1m30s, 0.5s.</summary>
    public static string Format(TimeSpan t) => t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:00}m" : t.TotalMinutes >= 1 ? $"{(int)t.TotalMinutes}m{t.Seconds:00}s" : $"{t.TotalSeconds:0.0}s";

    private static string WriteMarkdown(SoakReport report, BackfillJob job, DataOpsConnection connection, string outputDirectory, SoakSpec spec)
    {
        var dir = JobPaths.RunFolder(outputDirectory, job.Name, $"soak_{report.Started:yyyyMMdd-HHmmss}");
        var path = Path.Combine(dir, "staging_observability.md");
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"# Staging soak: {job.Name}");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"**Verdict: {report.Verdict}**");
        sb.AppendLine();
        foreach (var r in report.Reasons)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"- {r}");
        }

        sb.AppendLine();
        sb.AppendLine("| | |");
        sb.AppendLine("| --- | --- |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Database | {connection} (read-only session) |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Window | {report.Started:u} to {report.Ended:u} ({Format(report.Ended - report.Started)} of {Format(spec.Duration)} planned{(report.EndedEarly ? ", ended early" : string.Empty)}) |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| Interval | {Format(spec.Interval)}, {report.Rounds} rounds |");
        sb.AppendLine();
        sb.AppendLine("| check | expectation | baseline | samples | pass | fail | no data | error | min | max | last |");
        sb.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var c in report.Checks)
        {
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {c.Check}{(c.DryRun ? " (dry run)" : string.Empty)} | {c.Expectation} | {N(c.Baseline)} | {c.Samples} | {c.Passes} | {c.Failures} | {c.NoData} | {c.Errors} | {N(c.Min)} | {N(c.Max)} | {N(c.Last)} |");
        }

        foreach (var c in report.Checks.Where(c => c.Values.Any(v => v is not null)))
        {
            var points = c.Values.Select(v => v ?? double.NaN).ToList();
            sb.AppendLine();
            sb.AppendLine(CultureInfo.InvariantCulture, $"## {c.Check}");
            sb.AppendLine();
            sb.AppendLine("```mermaid");
            sb.AppendLine("xychart-beta");
            sb.AppendLine(CultureInfo.InvariantCulture, $"    title \"{c.Check.Replace("\"", "'", StringComparison.Ordinal)}\"");
            sb.AppendLine(CultureInfo.InvariantCulture, $"    x-axis \"round\" [{string.Join(", ", Enumerable.Range(1, points.Count))}]");
            sb.AppendLine(CultureInfo.InvariantCulture, $"    line [{string.Join(", ", points.Select(p => double.IsNaN(p) ? "0" : p.ToString("0.####", CultureInfo.InvariantCulture)))}]");
            sb.AppendLine("```");
        }

        sb.AppendLine();
        sb.AppendLine("## Next step");
        sb.AppendLine();
        sb.AppendLine("The soak has halted for the production go/no-go decision. Nothing moves to the next phase by itself; run Test-ProdHealth when you decide to go.");
        ArtifactFile.WriteText(path, sb.ToString());
        return path;

        static string N(double? v) => v?.ToString("0.####", CultureInfo.InvariantCulture) ?? "-";
    }

    internal sealed class CheckState(CheckSpec check)
    {
        private int _runOfFailures;

        public CheckSpec Check { get; } = check;

        public double? Baseline { get; set; }

        public List<SoakSample> Samples { get; } = [];

        public int Failures { get; private set; }

        public int MaxConsecutiveFailures { get; private set; }

        public void Add(SoakSample s)
        {
            if (Samples.Count < 10_000)
            {
                Samples.Add(s);
            }

            if (s.Outcome == SampleOutcome.Fail)
            {
                Failures++;
                _runOfFailures++;
                MaxConsecutiveFailures = Math.Max(MaxConsecutiveFailures, _runOfFailures);
            }
            else if (s.Outcome == SampleOutcome.Pass)
            {
                _runOfFailures = 0;
            }
        }

        public SoakCheckSummary Summary()
        {
            var values = Samples.Where(s => s.Value is not null).Select(s => s.Value!.Value).ToList();
            return new SoakCheckSummary
            {
                Check = Check.Name, Expectation = Check.Expect.ToString(), Baseline = Baseline, DryRun = Check.DryRun,
                Samples = Samples.Count, Passes = Samples.Count(s => s.Outcome == SampleOutcome.Pass), Failures = Failures,
                NoData = Samples.Count(s => s.Outcome == SampleOutcome.NoData), Errors = Samples.Count(s => s.Outcome == SampleOutcome.Error),
                Min = values.Count > 0 ? values.Min() : null, Max = values.Count > 0 ? values.Max() : null, Last = Samples.LastOrDefault()?.Value,
                Values = [.. Samples.Select(s => s.Value)],
            };
        }
    }
}
