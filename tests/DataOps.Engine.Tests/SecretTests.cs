using System.Net;
using DataOps.Engine.Connections;
using DataOps.Engine.Logging;
using DataOps.Tests;

namespace DataOps.Engine.Tests;

public sealed class SecretTests
{
    // Each character changes under some encoding: '@' '/' ' ' '"' '\'' '<' '&' '|' '\\' 'é' '😀', and letters of both cases.
    public static TheoryData<string> Secrets => new()
    {
        "p@ss/w rd\"'<é",
        "Tok3n+&|\\Zq>😀",
        "a'b\"c;d",
    };

    [Theory]
    [MemberData(nameof(Secrets))]
    public void Redactor_masks_a_secret_in_every_encoding_it_can_take(string secret)
    {
        var r = new SecretRedactor();
        r.Add(secret);

        foreach (var (encoding, form) in Encodings.Of(secret))
        {
            var text = $"before {form} after";
            Assert.True($"before {SecretRedactor.Mask} after" == r.Redact(text), $"{encoding}: '{form}' became '{r.Redact(text)}'");
        }
    }

    [Fact]
    public void Redactor_masks_the_longest_secret_whole_and_leaves_other_text_alone()
    {
        var r = new SecretRedactor();
        r.Add("abc");
        r.Add("abcdef");
        r.Add("xy");

        Assert.Equal($"1 {SecretRedactor.Mask} 2 {SecretRedactor.Mask} 3 xy", r.Redact("1 abcdef 2 ABC 3 xy"));
        Assert.Equal("nothing to hide: 100% {\"a\": \"b\\\"\"} x+y", r.Redact("nothing to hide: 100% {\"a\": \"b\\\"\"} x+y"));
    }

    [Theory]
    [InlineData("Password")]
    [InlineData("Pwd")]
    [InlineData("PSW")]
    [InlineData("psw")]
    [InlineData("SSL Password")]
    public void Every_password_keyword_is_masked_in_SafeConnectionString_and_in_ConnectionStringInvalid(string keyword)
    {
        const string secret = "Kw-s3cret-77";
        var c = DataOpsConnection.FromConnectionString($"Host=db1;Username=ops;{keyword}={secret}");
        var invalid = Assert.Throws<DataOpsException>(() => DataOpsConnection.FromConnectionString($"Host=db1;{keyword}={secret};Bogus=1"));

        Assert.Equal("ConnectionStringInvalid", invalid.ErrorId);
        AssertNowhere(secret, c.SafeConnectionString, c.ToString(), invalid.Message, invalid.Target?.ToString(), invalid.ToString());
        Assert.Contains($"={SecretRedactor.Mask}", c.SafeConnectionString);
    }

    [Theory]
    [InlineData("a'b\"c;d")]
    [InlineData("x\"\"y''z;Port=1")]
    [InlineData("'quo\"ted")]
    public void A_password_with_both_quote_kinds_is_masked_whole(string password)
    {
        var quoted = "\"" + password.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
        var c = DataOpsConnection.FromConnectionString($"Host=db1;Username=ops;Password={quoted}");
        var invalid = Assert.Throws<DataOpsException>(() => DataOpsConnection.FromConnectionString($"Host=db1;Password={quoted};Bogus=1"));
        var unterminated = Assert.Throws<DataOpsException>(() => DataOpsConnection.FromConnectionString($"Host=db1;Password=\"{password}"));

        Assert.Equal(password, new Npgsql.NpgsqlConnectionStringBuilder(c.ConnectionString).Password);
        Assert.Equal($"Host=db1;Username=ops;Password={SecretRedactor.Mask};Application Name=DataOps.PowerShell", c.SafeConnectionString);
        Assert.Equal($"Host=db1;Password={SecretRedactor.Mask};Bogus=1", invalid.Target);
        Assert.Equal($"Host=db1;Password={SecretRedactor.Mask}", unterminated.Target);
        Assert.Equal("ConnectionStringInvalid", invalid.ErrorId);
        Assert.Equal("ConnectionStringInvalid", unterminated.ErrorId);
        foreach (var tail in new[] { password, password[2..], password[^5..] })
        {
            AssertNowhere(tail, c.SafeConnectionString, invalid.Message, invalid.Target?.ToString(), unterminated.Message, unterminated.Target?.ToString());
        }
    }

    [Fact]
    public void A_URI_is_read_like_libpq_reads_it()
    {
        var c = DataOpsConnection.FromConnectionString(
            "postgresql://app%20user:p%40ss%2Fw%20rd%22%27%3C%C3%A9@db1.example:6432/my%20db?sslmode=verify-full&application_name=nightly&connect_timeout=7&options=-c%20statement_timeout%3D5s&target_session_attrs=read-write");
        var b = new Npgsql.NpgsqlConnectionStringBuilder(c.ConnectionString);

        Assert.Equal(("app user", "db1.example", 6432, "my db"), (c.Username, c.Host, c.Port, c.Database));
        Assert.Equal("p@ss/w rd\"'<é", b.Password);
        Assert.Equal(Npgsql.SslMode.VerifyFull, b.SslMode);
        Assert.Equal("nightly", b.ApplicationName);
        Assert.Equal(7, b.Timeout);
        Assert.Equal("-c statement_timeout=5s", b.Options);
        Assert.Equal("read-write", b.TargetSessionAttributes);
        Assert.True(c.HasPassword);
        AssertNowhere("p@ss/w rd\"'<é", c.SafeConnectionString, c.ToString(), c.Name);

        var many = DataOpsConnection.FromConnectionString("postgres://ops@db1:5433,[::1]:5434,db3/app");
        Assert.Equal("db1:5433,[::1]:5434,db3", many.Host);
        Assert.Equal("ops", many.Username);
        Assert.False(many.HasPassword);

        var v6 = DataOpsConnection.FromConnectionString("postgres://[::1]:5439");
        Assert.Equal(("::1", 5439), (v6.Host, v6.Port));

        var inQuery = DataOpsConnection.FromConnectionString("postgresql:///app?host=db9&port=5999&user=u&password=pw%3Dx&dbname=other");
        Assert.Equal(("db9", 5999, "u", "other"), (inQuery.Host, inQuery.Port, inQuery.Username, inQuery.Database));
        Assert.Equal("pw=x", new Npgsql.NpgsqlConnectionStringBuilder(inQuery.ConnectionString).Password);
    }

    [Theory]
    [InlineData("postgresql://ops:{0}@db1/app?sslmode=sometimes", "sslmode")]
    [InlineData("postgresql://ops:{0}@db1/app?fancy_option=1", "fancy_option")]
    [InlineData("postgres://ops:{0}@db1:notaport/app", "port")]
    [InlineData("postgres://ops:{0}@db1:5432:2/app", "port")]
    [InlineData("postgres://ops:{0}@/app", "no host")]
    [InlineData("postgres://ops:{0}%zz@db1/app", "percent-encoding")]
    [InlineData("postgres://ops:{0}@[::1/app", "IPv6")]
    [InlineData("POSTGRES://OPS:{0}@db1/app?sslmode=require&Bogus", "'='")]
    public void A_bad_URI_is_refused_without_the_password_in_any_encoding(string template, string reason)
    {
        const string password = "Pa55:w/rd?\"'<é";
        foreach (var written in new[] { Uri.EscapeDataString(password), WebUtility.UrlEncode(password).Replace("+", "%20", StringComparison.Ordinal), "Pa55-Plain-Text" })
        {
            var uri = string.Format(System.Globalization.CultureInfo.InvariantCulture, template, written);
            var ex = Assert.Throws<DataOpsException>(() => DataOpsConnection.FromConnectionString(uri));

            Assert.Equal("ConnectionStringInvalid", ex.ErrorId);
            Assert.Equal(DataOpsErrorKind.InvalidArgument, ex.Kind);
            Assert.Contains(reason, ex.Message, StringComparison.OrdinalIgnoreCase);
            Assert.Contains("URI", ex.Message, StringComparison.Ordinal);
            AssertNowhere(password, ex.Message, ex.Target?.ToString(), ex.ToString());
            AssertNowhere("Pa55-Plain-Text", ex.Message, ex.Target?.ToString(), ex.ToString());
            Assert.Contains(SecretRedactor.Mask, ex.Target?.ToString());
        }
    }

    [Fact]
    public void A_URI_password_pasted_without_percent_encoding_is_still_a_secret()
    {
        var c = DataOpsConnection.FromConnectionString("postgresql://ops:raw@pass/word@db1:5432/app");

        Assert.Equal(("db1", 5432, "app"), (c.Host, c.Port, c.Database));
        Assert.Equal("raw@pass/word", new Npgsql.NpgsqlConnectionStringBuilder(c.ConnectionString).Password);
        AssertNowhere("raw@pass/word", c.SafeConnectionString, c.ToString(), c.Name);
    }

    [Fact]
    public async Task A_URI_with_its_password_connects_and_a_wrong_one_is_refused_without_it()
    {
        var admin = TestCluster.Admin;
        const string password = "p@ss/w rd\"'<é:?#%";
        var role = "uri_" + Guid.NewGuid().ToString("N")[..8];
        Sql.Execute(admin, $"CREATE ROLE {role} LOGIN PASSWORD '{password.Replace("'", "''", StringComparison.Ordinal)}'");
        try
        {
            var good = DataOpsConnection.FromConnectionString($"postgresql://{role}:{Uri.EscapeDataString(password)}@127.0.0.1:{admin.Port}/dataops?application_name=uri-test&connect_timeout=5");
            var probe = await ConnectionTester.ProbeAsync(good);

            Assert.Equal((role, "dataops"), (probe.User, probe.Database));
            AssertNowhere(password, good.SafeConnectionString, good.ToString());

            const string wrong = "Wr0ng/P@ss \"'<ü";
            var bad = DataOpsConnection.FromConnectionString($"postgres://{role}:{Uri.EscapeDataString(wrong)}@127.0.0.1:{admin.Port}/dataops");
            var ex = await Assert.ThrowsAsync<DataOpsException>(() => ConnectionTester.ProbeAsync(bad));

            Assert.Equal("AuthenticationFailed", ex.ErrorId);
            AssertNowhere(wrong, ex.Message, ex.Target?.ToString(), ex.ToString(), bad.SafeConnectionString, bad.ToString());
        }
        finally
        {
            Sql.Execute(admin, $"DROP ROLE {role}");
        }
    }

    private static void AssertNowhere(string secret, params string?[] texts)
    {
        foreach (var text in texts)
        {
            var found = Encodings.FoundIn(text ?? string.Empty, secret).ToList();
            Assert.True(found.Count == 0, $"'{text}' shows the secret as {string.Join("; ", found)}");
        }
    }
}
