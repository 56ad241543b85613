using System.Globalization;
using System.Text;
using DataOps.Engine.Logging;

namespace DataOps.Engine.Backfill;

/// <summary>What the metrics file shows at one moment.</summary>
internal sealed record MetricsSnapshot(
    string Job, Guid RunId, long Applied, long Failed, long Skipped, long Planned, double Rate,
    IReadOnlyDictionary<string, TimeSpan> Throttled, bool Running)
{
    /// <summary>The run's throttle signals, each with the largest value seen so far (replica lag, retained WAL ...).</summary>
    public IReadOnlyList<BackfillSignalPeak> Signals { get; init; } = [];
}

/// <summary>
/// A run's Prometheus text-format file for node_exporter's textfile collector: rewritten about once a
/// second by a background timer (never on the item path) and once more at the end, each time into a
/// temporary file in the same folder and then renamed over the old one, so the collector never reads
/// half a file. A file that cannot be written is a warning, once; the run goes on.
/// </summary>
internal sealed class RunMetrics : IAsyncDisposable
{
    /// <summary>How often the file is rewritten while the run goes on.</summary>
    internal static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    private readonly string _path;
    private readonly Func<MetricsSnapshot> _snapshot;
    private readonly RunLog _log;
    private readonly IOperationObserver _observer;
    private readonly CancellationTokenSource _stop = new();
    private readonly object _gate = new();
    private readonly Task _loop;
    private bool _warned;

    public RunMetrics(string path, Func<MetricsSnapshot> snapshot, RunLog log, IOperationObserver observer)
    {
        (_path, _snapshot, _log, _observer) = (Path.GetFullPath(path), snapshot, log, observer);
        Write();
        _loop = Task.Run(LoopAsync);
    }

    /// <summary>Stops the timer and writes the file a last time (the run's final counts, running 0).</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _loop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        Write();
        _stop.Dispose();
    }

    private async Task LoopAsync()
    {
        using var timer = new PeriodicTimer(Interval);
        while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false))
        {
            Write();
        }
    }

    private void Write()
    {
        lock (_gate)
        {
            var temp = _path + ".tmp";
            try
            {
                Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
                ArtifactFile.WriteText(temp, Format(_snapshot()));
                File.Move(temp, _path, overwrite: true);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                if (!_warned)
                {
                    _warned = true;
                    var message = $"The metrics file '{_path}' cannot be written: {ex.Message}. The run goes on without it.";
                    _log.Warning("{Message}", message);
                    _observer.Warning(message);
                }
            }
        }
    }

    /// <summary>The exposition text: HELP and TYPE before each metric's samples, label values escaped.</summary>
    internal static string Format(MetricsSnapshot s)
    {
        var sb = new StringBuilder();
        var run = $"job=\"{Escape(s.Job)}\",run_id=\"{s.RunId}\"";
        void Metric(string name, string type, string help, IEnumerable<(string Labels, double Value)> samples)
        {
            sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            sb.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
            foreach (var (labels, value) in samples)
            {
                sb.Append(name).Append('{').Append(labels).Append("} ").Append(Number(value)).Append('\n');
            }
        }

        Metric("dataops_backfill_items_total", "counter", "Items the run has finished, by status.",
            [($"{run},status=\"applied\"", s.Applied), ($"{run},status=\"failed\"", s.Failed), ($"{run},status=\"skipped\"", s.Skipped)]);
        Metric("dataops_backfill_items_planned", "gauge", "Items the run was started with.", [(run, s.Planned)]);
        Metric("dataops_backfill_rate_items_per_second", "gauge", "Items applied or failed per second since the run started.", [(run, s.Rate)]);
        Metric("dataops_backfill_throttled_seconds_total", "counter", "Seconds the run waited before an item, by reason (the rate limit's own spacing not counted).",
            s.Throttled.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => ($"{run},reason=\"{Escape(t.Key)}\"", t.Value.TotalSeconds)));
        if (s.Signals.Any(p => p.MaxValue is not null))
        {
            Metric("dataops_backfill_signal_max", "gauge", "The largest value each throttle signal has shown during the run (bytes for replica lag and retained WAL, seconds for replay_lag, a count otherwise).",
                s.Signals.Where(p => p.MaxValue is not null).Select(p => ($"{run},reason=\"{Escape(p.Reason)}\",kind=\"{Escape(p.Kind)}\"", p.MaxValue!.Value)));
        }

        Metric("dataops_backfill_running", "gauge", "1 while the run goes on, 0 once it ended.", [(run, s.Running ? 1 : 0)]);
        Metric("dataops_backfill_last_update_timestamp_seconds", "gauge", "When this file was written (Unix time).",
            [(run, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0)]);
        return sb.ToString();
    }

    /// <summary>A label value as the exposition format wants it: backslash, double quote and line feed escaped.</summary>
    internal static string Escape(string value) =>
        value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    private static string Number(double value) =>
        double.IsNaN(value) ? "NaN" : double.IsPositiveInfinity(value) ? "+Inf" : double.IsNegativeInfinity(value) ? "-Inf" : value.ToString("R", CultureInfo.InvariantCulture);
}
