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
}
