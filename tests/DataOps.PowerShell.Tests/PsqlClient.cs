using System.Diagnostics;
using System.Globalization;

namespace DataOps.PowerShell.Tests;

/// <summary>The real psql of the test cluster's PostgreSQL, run as an operator would run a script.</summary>
internal static class PsqlClient
{
    /// <summary>The bin folder of the test cluster's PostgreSQL (psql lives beside the server).</summary>
    public static string BinDirectory => (string)System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(TestCluster.Root, "pstests", "sandbox.json"))).RootElement.GetProperty("BinDirectory").GetString()!;

    /// <summary>Runs <c>psql -X -v ON_ERROR_STOP=1 -f script</c>; <paramref name="environment"/> adds variables such as PGCLIENTENCODING.</summary>
    public static (int Code, string Out, string Err) RunFile(string cs, string script, IReadOnlyDictionary<string, string>? environment = null)
    {
        var b = new Npgsql.NpgsqlConnectionStringBuilder(cs);
        var psi = new ProcessStartInfo(Path.Combine(BinDirectory, "psql")) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in new[] { "-X", "-v", "ON_ERROR_STOP=1", "-h", b.Host!, "-p", b.Port.ToString(CultureInfo.InvariantCulture), "-U", b.Username!, "-d", b.Database!, "-f", script })
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["PGPASSWORD"] = b.Password;
        foreach (var (k, v) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[k] = v;
        }

        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException("psql did not finish in 60 s");
        }

        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}

/// <summary>Reads a rollback script the way a reviewer would.</summary>
internal static class RollbackScript
{
    /// <summary>The item keys of the script's restore operations, one per operation, from the "-- item "KEY": ..." comment lines.</summary>
    public static List<string> ItemKeys(string script) =>
        [.. File.ReadLines(script)
            .Where(l => l.StartsWith("-- item ", StringComparison.Ordinal))
            .Select(l => KeyOf(l["-- item ".Length..]))];

    /// <summary>The JSON string at the start of <paramref name="text"/>.</summary>
    private static string KeyOf(string text)
    {
        var reader = new System.Text.Json.Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(text), new System.Text.Json.JsonReaderOptions { AllowMultipleValues = true });
        reader.Read();
        return reader.GetString()!;
    }
}
