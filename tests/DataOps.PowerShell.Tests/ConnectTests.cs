using System.Collections;
using System.Management.Automation;
using System.Net;
using System.Net.Sockets;
using System.Security;
using DataOps.Tests;

namespace DataOps.PowerShell.Tests;

public sealed class ConnectTests
{
    private const string Secret = "Wr0ng-Pa55-zq9";

    private static PSCredential Credential(string user, string password)
    {
        var secure = new SecureString();
        foreach (var c in password)
        {
            secure.AppendChar(c);
        }

        return new PSCredential(user, secure);
    }

    private static void AssertNoSecret(ErrorRecord error, string secret)
    {
        Assert.DoesNotContain(secret, error.ToString());
        Assert.DoesNotContain(secret, error.Exception.ToString());
        Assert.DoesNotContain(secret, error.TargetObject?.ToString() ?? string.Empty);
        Assert.DoesNotContain(secret, error.ErrorDetails?.Message ?? string.Empty);
    }

    /// <summary>No encoding of the secret in any text of the error record.</summary>
    private static void AssertNoSecretInAnyEncoding(string secret, params string?[] texts)
    {
        foreach (var text in texts)
        {
            var found = Encodings.FoundIn(text ?? string.Empty, secret).ToList();
            Assert.True(found.Count == 0, $"'{text}' shows the secret as {string.Join("; ", found)}");
        }
    }

    private static string?[] Texts(ErrorRecord e) =>
        [e.ToString(), e.Exception.ToString(), e.TargetObject?.ToString(), e.ErrorDetails?.Message, e.FullyQualifiedErrorId];

    [Fact]
    public void A_URI_connection_string_connects_and_its_password_shows_nowhere()
    {
        using var s = new PsSession();
        var uri = $"postgresql://postgres:{Uri.EscapeDataString(TestCluster.Password)}@127.0.0.1:{TestCluster.Port}/dataops?application_name=uri-test&connect_timeout=5";
        var result = s.Run("Connect-DataOps -ConnectionString $uri -Verbose | Out-Null; Get-DataOpsConnection", new Hashtable { ["uri"] = uri });

        Assert.False(result.HadErrors, string.Join("\n", result.Errors));
        var c = result.Output.Single();
        Assert.Equal(("127.0.0.1", TestCluster.Port, "dataops", "postgres"), ((string)c.Properties["Host"].Value, (int)c.Properties["Port"].Value, (string)c.Properties["Database"].Value, (string)c.Properties["Username"].Value));
        Assert.NotNull(c.Properties["ServerVersion"].Value);
        Assert.Contains("Application Name=uri-test", (string)c.Properties["SafeConnectionString"].Value);
        Assert.Contains("Password=********", (string)c.Properties["SafeConnectionString"].Value);
        AssertNoSecretInAnyEncoding(TestCluster.Password, [.. c.Properties.Select(p => p.Value?.ToString()), c.ToString(), .. result.Verbose]);

        // The form cloud consoles hand out works from an environment variable too.
        var name = "uri" + Guid.NewGuid().ToString("N")[..6];
        Environment.SetEnvironmentVariable($"DATAOPS_{name.ToUpperInvariant()}_CONNECTION", uri.Replace("postgresql://", "postgres://", StringComparison.Ordinal));
        try
        {
            var fromEnvironment = s.Run($"Connect-DataOps -Environment {name} -NoDefault -Verbose");
            Assert.False(fromEnvironment.HadErrors, string.Join("\n", fromEnvironment.Errors));
            Assert.Equal("Environment", fromEnvironment.Output.Single().Properties["Source"].Value.ToString());
            AssertNoSecretInAnyEncoding(TestCluster.Password, [.. fromEnvironment.Output.Single().Properties.Select(p => p.Value?.ToString()), .. fromEnvironment.Verbose]);
        }
        finally
        {
            Environment.SetEnvironmentVariable($"DATAOPS_{name.ToUpperInvariant()}_CONNECTION", null);
        }
    }

    [Theory]
    [InlineData("postgres://postgres:{0}@127.0.0.1:{1}/dataops", "AuthenticationFailed")]
    [InlineData("postgresql://postgres:{0}@127.0.0.1:{1}/dataops?sslmode=require&no_such_param=1", "ConnectionStringInvalid")]
    [InlineData("postgresql://postgres:{0}@127.0.0.1:{1}/dataops?sslmode=maybe", "ConnectionStringInvalid")]
    [InlineData("postgresql://postgres:{0}%G1@127.0.0.1:{1}/dataops", "ConnectionStringInvalid")]
    [InlineData("POSTGRESQL://POSTGRES:{0}@127.0.0.1:{1}:2/dataops", "ConnectionStringInvalid")]
    public void A_refused_URI_never_shows_its_password(string template, string errorId)
    {
        const string password = "Wr0ng/P@ss w\"'<é";
        using var s = new PsSession();
        var uri = string.Format(System.Globalization.CultureInfo.InvariantCulture, template, Uri.EscapeDataString(password), TestCluster.Port);

        var error = s.Terminating("Connect-DataOps", new Hashtable { ["ConnectionString"] = uri, ["Verbose"] = true });

        Assert.StartsWith(errorId + ",", error.FullyQualifiedErrorId);
        AssertNoSecretInAnyEncoding(password, Texts(error));
        Assert.Empty(s.Run("Get-DataOpsConnection").Output);
    }

    [Theory]
    [InlineData("Password")]
    [InlineData("PSW")]
    [InlineData("Pwd")]
    public void Every_password_keyword_connects_and_is_masked(string keyword)
    {
        using var s = new PsSession();
        var result = s.Run("(Connect-DataOps -ConnectionString $cs).SafeConnectionString", new Hashtable
        {
            ["cs"] = $"Host=127.0.0.1;Port={TestCluster.Port};Database=dataops;Username=postgres;{keyword}={TestCluster.Password}",
        });

        Assert.False(result.HadErrors, string.Join("\n", result.Errors));
        Assert.Contains("Password=********", result.Output.Single().ToString());
        AssertNoSecretInAnyEncoding(TestCluster.Password, result.Output.Single().ToString());

        var quoted = "a'b\"c;d-" + keyword;
        var error = s.Terminating("Connect-DataOps", new Hashtable { ["ConnectionString"] = $"Host=x;{keyword}=\"{quoted.Replace("\"", "\"\"", StringComparison.Ordinal)}\";Bogus=1" });
        Assert.StartsWith("ConnectionStringInvalid,", error.FullyQualifiedErrorId);
        AssertNoSecretInAnyEncoding(quoted, Texts(error));
        AssertNoSecretInAnyEncoding(quoted[2..], Texts(error));
    }

    [Fact]
    public void Connects_and_becomes_the_session_default_without_exposing_the_password()
    {
        using var s = new PsSession();
        var result = s.Run("Connect-DataOps -ConnectionString $cs -Verbose; Get-DataOpsConnection", new Hashtable
        {
            ["cs"] = $"Host=127.0.0.1;Port={TestCluster.Port};Database=dataops;Username=postgres;Password={TestCluster.Password}",
        });

        Assert.False(result.HadErrors, string.Join("\n", result.Errors));
        Assert.Equal(2, result.Output.Count);
        var connection = result.Output[0];
        Assert.Same(connection.BaseObject, result.Output[1].BaseObject);
        Assert.Equal("DataOps.Engine.Connections.DataOpsConnection", connection.TypeNames[0]);
        Assert.NotNull(connection.Properties["ServerVersion"].Value);
        Assert.Contains(result.Verbose, v => v.Contains("Connected: PostgreSQL"));
        foreach (var p in connection.Properties)
        {
            Assert.DoesNotContain(TestCluster.Password, p.Value?.ToString() ?? string.Empty);
        }

        Assert.DoesNotContain(TestCluster.Password, connection.ToString());
        Assert.DoesNotContain(result.Verbose, v => v.Contains(TestCluster.Password));
    }

    [Fact]
    public void Wrong_password_is_an_authentication_error_without_the_password()
    {
        using var s = new PsSession();
        var error = s.Terminating("Connect-DataOps", new Hashtable
        {
            ["ConnectionString"] = $"Host=127.0.0.1;Port={TestCluster.Port};Database=dataops",
            ["Credential"] = Credential("postgres", Secret),
        });

        Assert.StartsWith("AuthenticationFailed,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.AuthenticationError, error.CategoryInfo.Category);
        Assert.Contains("postgres", error.Exception.Message);
        AssertNoSecret(error, Secret);
        Assert.Empty(s.Run("Get-DataOpsConnection").Output);
    }

    [Fact]
    public void Bad_connection_string_is_invalid_argument()
    {
        using var s = new PsSession();
        var error = s.Terminating("Connect-DataOps", new Hashtable { ["ConnectionString"] = $"Host=x;Bogus=1;Password={Secret}" });

        Assert.StartsWith("ConnectionStringInvalid,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
        Assert.Contains("Password=********", error.TargetObject?.ToString());
        AssertNoSecret(error, Secret);
    }

    [Fact]
    public void Unreachable_server_is_a_connection_error()
    {
        int port;
        using (var l = new TcpListener(IPAddress.Loopback, 0))
        {
            l.Start();
            port = ((IPEndPoint)l.LocalEndpoint).Port;
        }

        using var s = new PsSession();
        var error = s.Terminating("Connect-DataOps", new Hashtable { ["ConnectionString"] = $"Host=127.0.0.1;Port={port};Username=u;Password={Secret};Timeout=3" });

        Assert.StartsWith("ConnectionFailed,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ConnectionError, error.CategoryInfo.Category);
        Assert.Contains($"127.0.0.1:{port}", error.Exception.Message);
        AssertNoSecret(error, Secret);
    }

    [Fact]
    public void Environment_reads_its_variable_completes_and_reports_a_missing_one()
    {
        var name = "pst" + Guid.NewGuid().ToString("N")[..6];
        var variable = $"DATAOPS_{name.ToUpperInvariant()}_CONNECTION";
        Environment.SetEnvironmentVariable(variable, $"Host=127.0.0.1;Port={TestCluster.Port};Database=dataops;Username=postgres;Password={TestCluster.Password}");
        try
        {
            using var s = new PsSession();
            var result = s.Run($"Connect-DataOps -Environment {name}");
            Assert.False(result.HadErrors, string.Join("\n", result.Errors));
            Assert.Equal("Environment", result.Output.Single().Properties["Source"].Value.ToString());
            Assert.Equal(name, result.Output.Single().Properties["Name"].Value);

            var line = "Connect-DataOps -Environment " + name[..4];
            var completions = s.Run("(TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches | ForEach-Object CompletionText", new Hashtable { ["line"] = line });
            Assert.Contains(completions.Output, c => string.Equals(c.ToString(), name, StringComparison.OrdinalIgnoreCase));
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, null);
        }

        using var s2 = new PsSession();
        var error = s2.Terminating("Connect-DataOps", new Hashtable { ["Environment"] = name });
        Assert.StartsWith("EnvironmentNotFound,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ObjectNotFound, error.CategoryInfo.Category);
        Assert.Contains(variable, error.Exception.Message);
    }

    [Fact]
    public void Job_parameters_complete_job_files_under_the_current_location()
    {
        using var s = new PsSession();
        var line = "Invoke-Backfill -Job ./examples/jo";

        var completions = s.Run("$ExecutionContext.SessionState.Path.SetLocation($root) | Out-Null; (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches | ForEach-Object CompletionText",
            new Hashtable { ["line"] = line, ["root"] = Repo.Root }).Output.Select(o => o.ToString()).ToList();

        Assert.Contains("./examples/jobs/results-v1.2.1.job.json", completions);
        Assert.DoesNotContain(completions, c => c.Contains("/bin/", StringComparison.Ordinal));
    }

    [Fact]
    public void Production_environment_names_are_production()
    {
        Environment.SetEnvironmentVariable("DATAOPS_PRODUCTION_CONNECTION", $"Host=127.0.0.1;Port={TestCluster.Port};Database=dataops;Username=postgres;Password={TestCluster.Password}");
        try
        {
            using var s = new PsSession();
            var c = s.Run("Connect-DataOps -Environment production").Output.Single();
            Assert.True((bool)c.Properties["IsProduction"].Value);
        }
        finally
        {
            Environment.SetEnvironmentVariable("DATAOPS_PRODUCTION_CONNECTION", null);
        }
    }
}
