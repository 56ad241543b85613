using System.Text.Json;
using DataOps.Engine.Logging;

namespace DataOps.Engine.Tests;

public sealed class RunLogTests
{
    [Fact]
    public void Writes_json_events_mirrors_them_and_redacts_secrets()
    {
        var dir = Directory.CreateTempSubdirectory("dataops-log-").FullName;
        var observer = new RecordingObserver();
        var redactor = new SecretRedactor();
        redactor.Add("hunter2-secret");
        string path;
        using (var log = RunLog.Open("Test-Op", observer, redactor, dir))
        {
            path = log.Path!;
            log.Information("Connecting with {Text}", "Host=x;Password=hunter2-secret");
            log.Error(new InvalidOperationException("failed with hunter2-secret"), "Item {Key} failed", 7);
        }

        var lines = File.ReadAllLines(path);
        Assert.StartsWith(dir, path);
        Assert.Equal(3, lines.Length);
        var events = lines.Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.All(events, e => Assert.Equal("Test-Op", e.GetProperty("Operation").GetString()));
        Assert.Equal(7, events[2].GetProperty("Key").GetInt32());
        Assert.Equal("Error", events[2].GetProperty("@l").GetString());
        Assert.DoesNotContain("hunter2-secret", File.ReadAllText(path));
        Assert.Contains(observer.Verbose, v => v.Contains("Password=********"));
        Assert.DoesNotContain(observer.Verbose, v => v.Contains("hunter2-secret"));
        Directory.Delete(dir, recursive: true);
    }

    [Fact]
    public void Old_run_logs_are_pruned_and_nothing_else_is_touched()
    {
        var dir = Directory.CreateTempSubdirectory("dataops-log-prune-").FullName;
        var now = DateTime.UtcNow;
        string File_(string name, int daysOld)
        {
            var path = Path.Combine(dir, name);
            File.WriteAllText(path, "{}");
            File.SetLastWriteTimeUtc(path, now.AddDays(-daysOld));
            return path;
        }

        var old = File_("Invoke-Backfill-20261001-101500-0123456789ab.json", 40);
        var young = File_("Invoke-Backfill-20261125-101500-0123456789ab.json", 5);
        var notOurs = File_("plan-20261001.json", 400);
        var lookalike = File_("Invoke-Backfill-20261001-101500-0123456789AB.json", 400);
        var text = File_("Undo-Backfill-20261001-101500-0123456789ab.txt", 400);

        Assert.Equal(0, RunLog.Prune(dir, 0, now));
        Assert.True(File.Exists(old));
        Assert.Equal(1, RunLog.Prune(dir, 30, now));
        Assert.False(File.Exists(old));
        Assert.All(new[] { young, notOurs, lookalike, text }, f => Assert.True(File.Exists(f), f));
        Assert.Equal(1, RunLog.Prune(dir, 1, now));
        Assert.False(File.Exists(young));
        Directory.Delete(dir, recursive: true);
    }

    [Theory]
    [InlineData(null, 30)]
    [InlineData("", 30)]
    [InlineData(" 7 ", 7)]
    [InlineData("0", 0)]
    [InlineData("36500", 36500)]
    public void Retention_days_come_from_the_environment_variable(string? value, int days)
    {
        Assert.Equal(days, RunLog.ParseRetention(value));
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("abc")]
    [InlineData("1.5")]
    [InlineData("36501")]
    [InlineData("99999999999")]
    public void A_bad_retention_is_a_clear_error_naming_the_value(string value)
    {
        var ex = Assert.Throws<DataOpsException>(() => RunLog.ParseRetention(value));
        Assert.Equal(("LogRetentionInvalid", DataOpsErrorKind.InvalidArgument, (object)value), (ex.ErrorId, ex.Kind, ex.Target));
        Assert.Contains($"'{value}'", ex.Message);
    }

    [Fact]
    public void A_log_without_a_file_only_reaches_the_observer()
    {
        var dir = Directory.CreateTempSubdirectory("dataops-log-nofile-").FullName;
        var observer = new RecordingObserver();
        using (var log = RunLog.Open("Test-ProdHealth", observer, directory: dir, file: false))
        {
            Assert.Null(log.Path);
            log.Information("Sampled {Check}", "rows");
        }

        Assert.Empty(Directory.GetFiles(dir));
        Assert.Contains(observer.Verbose, v => v.StartsWith("Sampled", StringComparison.Ordinal) && v.Contains("rows", StringComparison.Ordinal));
        Directory.Delete(dir, recursive: true);
    }
}
