using System.Net;
using System.Net.Sockets;
using DataOps.Engine.Connections;
using DataOps.Engine.Logging;

namespace DataOps.Engine.Tests;

public sealed class ConnectionTests
{
    private const string Secret = "s3cr3t-Pa55word";

    [Fact]
    public void Profile_never_shows_the_password()
    {
        var c = DataOpsConnection.FromConnectionString($"Host=db1;Port=5433;Database=app;Username=ops;Password={Secret}");

        Assert.Equal("ops@db1:5433/app", c.ToString());
        Assert.True(c.HasPassword);
        Assert.DoesNotContain(Secret, c.SafeConnectionString);
        Assert.Contains("Password=********", c.SafeConnectionString);
        foreach (var p in typeof(DataOpsConnection).GetProperties().Where(p => p.GetMethod!.IsPublic))
        {
            Assert.DoesNotContain(Secret, p.GetValue(c)?.ToString() ?? string.Empty);
        }
    }

    [Fact]
    public void Credential_overrides_the_connection_string_user_and_password()
    {
        var c = DataOpsConnection.FromConnectionString("Host=db1;Username=ignored;Password=old", "admin", Secret);

        Assert.Equal("admin", c.Username);
        Assert.Contains(Secret, c.ConnectionString);
        Assert.DoesNotContain(Secret, c.SafeConnectionString);
    }

    [Theory]
    [InlineData("Host=db1;NoSuchKey=1;Password=" + Secret)]
    [InlineData("Password=" + Secret + ";Port=notanumber;Host=db1")]
    [InlineData("Database=app;Password=" + Secret)]
    public void Bad_connection_string_is_a_clear_error_without_the_password(string text)
    {
        var ex = Assert.Throws<DataOpsException>(() => DataOpsConnection.FromConnectionString(text));

        Assert.Equal("ConnectionStringInvalid", ex.ErrorId);
        Assert.Equal(DataOpsErrorKind.InvalidArgument, ex.Kind);
        Assert.DoesNotContain(Secret, ex.Message);
        Assert.DoesNotContain(Secret, ex.Target?.ToString() ?? string.Empty);
        Assert.Contains("not valid", ex.Message);
    }

    [Fact]
    public void Empty_connection_string_is_rejected()
    {
        var ex = Assert.Throws<DataOpsException>(() => DataOpsConnection.FromConnectionString("  "));
        Assert.Equal("ConnectionStringInvalid", ex.ErrorId);
    }

    [Fact]
    public void Environment_reads_its_variable_and_prod_names_are_production()
    {
        var name = "EnvTest" + Guid.NewGuid().ToString("N")[..6];
        var variable = DataOpsConnection.EnvironmentVariableName(name);
        Environment.SetEnvironmentVariable(variable, "Host=stg.example;Database=app;Username=ops");
        try
        {
            var c = DataOpsConnection.FromEnvironment(name);
            Assert.Equal("stg.example", c.Host);
            Assert.Equal(ConnectionSource.Environment, c.Source);
            Assert.False(c.IsProduction);
            Assert.Contains(name.ToUpperInvariant(), DataOpsConnection.AvailableEnvironments().Select(n => n.ToUpperInvariant()));
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, null);
        }

        Assert.Equal("DATAOPS_PROD_CONNECTION", DataOpsConnection.EnvironmentVariableName("prod"));
        Assert.Equal("DATAOPS_EU_WEST_CONNECTION", DataOpsConnection.EnvironmentVariableName("eu-west"));
    }

    [Fact]
    public void Missing_environment_names_the_variable_to_set()
    {
        var ex = Assert.Throws<DataOpsException>(() => DataOpsConnection.FromEnvironment("nowhere-" + Guid.NewGuid().ToString("N")[..6]));

        Assert.Equal("EnvironmentNotFound", ex.ErrorId);
        Assert.Equal(DataOpsErrorKind.ObjectNotFound, ex.Kind);
        Assert.Contains("DATAOPS_NOWHERE_", ex.Message);
    }

    [Fact]
    public async Task Unreachable_server_is_a_connection_error()
    {
        var port = ClosedPort();
        var c = DataOpsConnection.FromConnectionString($"Host=127.0.0.1;Port={port};Username=x;Password={Secret};Timeout=3");

        var ex = await Assert.ThrowsAsync<DataOpsException>(() => ConnectionTester.ProbeAsync(c));

        Assert.Equal("ConnectionFailed", ex.ErrorId);
        Assert.Equal(DataOpsErrorKind.ConnectionError, ex.Kind);
        Assert.Contains($"127.0.0.1:{port}", ex.Message);
        Assert.DoesNotContain(Secret, ex.ToString());
    }

    [Fact]
    public async Task Wrong_password_is_an_authentication_error_without_the_password()
    {
        var admin = TestCluster.Admin;
        var c = DataOpsConnection.FromConnectionString($"Host=127.0.0.1;Port={admin.Port};Database=dataops", "postgres", Secret);

        var ex = await Assert.ThrowsAsync<DataOpsException>(() => ConnectionTester.ProbeAsync(c));

        Assert.Equal("AuthenticationFailed", ex.ErrorId);
        Assert.Equal(DataOpsErrorKind.AuthenticationError, ex.Kind);
        Assert.Contains("postgres", ex.Message);
        Assert.DoesNotContain(Secret, ex.ToString());
    }

    [Fact]
    public async Task Missing_database_is_object_not_found()
    {
        var c = TestCluster.Admin.WithDatabase("no_such_db");

        var ex = await Assert.ThrowsAsync<DataOpsException>(() => ConnectionTester.ProbeAsync(c));

        Assert.Equal("DatabaseNotFound", ex.ErrorId);
        Assert.Equal("no_such_db", ex.Target);
    }

    [Fact]
    public async Task Probe_reads_server_facts()
    {
        var c = TestCluster.Admin.WithDatabase("dataops");
        var probe = await ConnectionTester.ProbeAsync(c);

        Assert.Equal("dataops", probe.Database);
        Assert.Equal("postgres", probe.User);
        Assert.False(probe.IsReadOnly);
        Assert.Equal(probe.ServerVersion, c.ServerVersion);
        Assert.StartsWith(TestCluster.Sandbox.PostgresVersion!.Split('.')[0], probe.ServerVersion);
    }

    [Fact]
    public void Redactor_masks_registered_secrets_and_password_pairs()
    {
        var r = new SecretRedactor();
        r.Add(Secret);

        Assert.Equal("token ******** here", r.Redact($"token {Secret} here"));
        Assert.Equal("Host=a;Password=********;Port=1", r.Redact("Host=a;Password=xyz;Port=1"));
        Assert.Equal("pwd = ********", r.Redact("pwd = 'a;b'"));
    }

    private static int ClosedPort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
