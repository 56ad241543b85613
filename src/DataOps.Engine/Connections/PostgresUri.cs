using System.Globalization;
using System.Text;
using DataOps.Engine.Logging;
using Npgsql;

namespace DataOps.Engine.Connections;

/// <summary>
/// libpq's connection URI, the form cloud consoles hand out:
/// postgresql://[user[:password]@][host][:port][,host[:port]...][/dbname][?param=value&amp;...]
/// (or postgres://), each part percent-decoded, turned into Npgsql's key=value connection string.
/// Npgsql does not read URIs itself.
/// </summary>
/// <remarks>
/// The password is a secret from the moment it is read: no error quotes it, in any encoding.
/// Where libpq stops the user part at the first '@', the last '@' before the query is taken here,
/// so a password pasted with a raw '@' or '/' still parses instead of leaking into a host name.
/// </remarks>
internal static class PostgresUri
{
    private static readonly string[] Schemes = ["postgresql://", "postgres://"];

    /// <summary>libpq's query parameters that have an Npgsql equivalent, with how each is set.</summary>
    private static readonly Dictionary<string, Action<NpgsqlConnectionStringBuilder, string>> Parameters = new(StringComparer.Ordinal)
    {
        ["host"] = (b, v) => b.Host = v,
        ["port"] = (b, v) => b.Port = Number("port", v),
        ["dbname"] = (b, v) => b.Database = v,
        ["user"] = (b, v) => b.Username = v,
        ["password"] = (b, v) => b.Password = v,
        ["passfile"] = (b, v) => b.Passfile = v,
        ["application_name"] = (b, v) => b.ApplicationName = v,
        ["fallback_application_name"] = (b, v) => b.ApplicationName ??= v,
        ["connect_timeout"] = (b, v) => b.Timeout = int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds)
            ? seconds
            : throw Invalid("connect_timeout is not a whole number of seconds"),
        ["options"] = (b, v) => b.Options = v,
        ["client_encoding"] = (b, v) => b.ClientEncoding = v,
        ["sslmode"] = (b, v) => b.SslMode = OneOf("sslmode", v, new Dictionary<string, SslMode>
        {
            ["disable"] = SslMode.Disable, ["allow"] = SslMode.Allow, ["prefer"] = SslMode.Prefer,
            ["require"] = SslMode.Require, ["verify-ca"] = SslMode.VerifyCA, ["verify-full"] = SslMode.VerifyFull,
        }),
        ["ssl"] = (b, v) => b.SslMode = OneOf("ssl", v, new Dictionary<string, SslMode> { ["true"] = SslMode.Require, ["false"] = SslMode.Disable }),
        ["sslrootcert"] = (b, v) => b.RootCertificate = v,
        ["sslcert"] = (b, v) => b.SslCertificate = v,
        ["sslkey"] = (b, v) => b.SslKey = v,
        ["sslpassword"] = (b, v) => b.SslPassword = v,
        ["channel_binding"] = (b, v) => b.ChannelBinding = OneOf("channel_binding", v, new Dictionary<string, ChannelBinding>
        {
            ["disable"] = ChannelBinding.Disable, ["prefer"] = ChannelBinding.Prefer, ["require"] = ChannelBinding.Require,
        }),
        ["gssencmode"] = (b, v) => b.GssEncryptionMode = OneOf("gssencmode", v, new Dictionary<string, GssEncryptionMode>
        {
            ["disable"] = GssEncryptionMode.Disable, ["prefer"] = GssEncryptionMode.Prefer, ["require"] = GssEncryptionMode.Require,
        }),
        ["krbsrvname"] = (b, v) => b.KerberosServiceName = v,
        ["target_session_attrs"] = (b, v) => b.TargetSessionAttributes = OneOf("target_session_attrs", v,
            new[] { "any", "read-write", "read-only", "primary", "standby", "prefer-standby" }.ToDictionary(x => x, x => x)),
        ["load_balance_hosts"] = (b, v) => b.LoadBalanceHosts = OneOf("load_balance_hosts", v, new Dictionary<string, bool> { ["disable"] = false, ["random"] = true }),
    };

    public static bool IsUri(string text) =>
        Schemes.Any(s => text.TrimStart().StartsWith(s, StringComparison.OrdinalIgnoreCase));

    /// <summary>
    /// Parses the URI. Every secret it holds (the password and SSL key password, as written and
    /// decoded) is registered with <paramref name="redactor"/> before anything can fail.
    /// </summary>
    public static NpgsqlConnectionStringBuilder Parse(string uri, SecretRedactor redactor)
    {
        var text = uri.Trim();
        var rest = text[Schemes.First(s => text.StartsWith(s, StringComparison.OrdinalIgnoreCase)).Length..];
        RegisterSecrets(rest, redactor);

        var builder = new NpgsqlConnectionStringBuilder();
        var query = rest.IndexOf('?', StringComparison.Ordinal);
        var path = query < 0 ? rest : rest[..query];
        var at = path.LastIndexOf('@');
        if (at >= 0)
        {
            var userInfo = path[..at];
            path = path[(at + 1)..];
            var colon = userInfo.IndexOf(':', StringComparison.Ordinal);
            var user = Decode("user name", colon < 0 ? userInfo : userInfo[..colon]);
            if (user.Length > 0)
            {
                builder.Username = user;
            }

            if (colon >= 0)
            {
                builder.Password = Decode("password", userInfo[(colon + 1)..]);
            }
        }

        var slash = path.IndexOf('/', StringComparison.Ordinal);
        var hosts = slash < 0 ? path : path[..slash];
        if (slash >= 0 && slash + 1 < path.Length)
        {
            builder.Database = Decode("database name", path[(slash + 1)..]);
        }

        SetHosts(builder, hosts);

        if (query >= 0)
        {
            foreach (var pair in rest[(query + 1)..].Split('&', StringSplitOptions.RemoveEmptyEntries))
            {
                var eq = pair.IndexOf('=', StringComparison.Ordinal);
                if (eq <= 0)
                {
                    throw Invalid("a part of the query has no '=': write name=value pairs separated by '&'");
                }

                var name = Decode("parameter name", pair[..eq]);
                if (!Parameters.TryGetValue(name, out var set))
                {
                    throw Invalid($"the parameter '{name}' is not supported (supported: {string.Join(", ", Parameters.Keys.Order(StringComparer.Ordinal))})");
                }

                set(builder, Decode($"value of {name}", pair[(eq + 1)..]));
            }
        }

        if (string.IsNullOrEmpty(builder.Host))
        {
            throw Invalid("it names no host: give one after '//', as in postgresql://user@db1:5432/app");
        }

        return builder;
    }

    /// <summary>Host list "h1:5432,[::1]:5433,h2" as Npgsql's Host (one host keeps its port in Port).</summary>
    private static void SetHosts(NpgsqlConnectionStringBuilder builder, string hosts)
    {
        if (hosts.Length == 0)
        {
            return;
        }

        var parsed = new List<(string Host, int? Port)>();
        foreach (var spec in hosts.Split(','))
        {
            string host;
            string? port = null;
            if (spec.StartsWith('['))
            {
                var close = spec.IndexOf(']', StringComparison.Ordinal);
                if (close < 0 || (close + 1 < spec.Length && spec[close + 1] != ':'))
                {
                    throw Invalid("an IPv6 host needs its closing ']', as in postgresql://[::1]:5432/app");
                }

                host = spec[1..close];
                port = close + 1 < spec.Length ? spec[(close + 2)..] : null;
            }
            else
            {
                // The first ':' ends the host, as in libpq: an IPv6 address needs its brackets.
                var colon = spec.IndexOf(':', StringComparison.Ordinal);
                host = colon < 0 ? spec : spec[..colon];
                port = colon < 0 ? null : spec[(colon + 1)..];
            }

            host = Decode("host", host);
            if (host.Length == 0)
            {
                throw Invalid("the host list has an empty entry: separate hosts with single commas, as in db1:5432,db2:5432");
            }

            parsed.Add((host, port is null || port.Length == 0 ? null : Number("port", port)));
        }

        if (parsed.Count == 1)
        {
            builder.Host = parsed[0].Host;
            if (parsed[0].Port is { } p)
            {
                builder.Port = p;
            }

            return;
        }

        builder.Host = string.Join(",", parsed.Select(h =>
        {
            var host = h.Host.Contains(':', StringComparison.Ordinal) ? $"[{h.Host}]" : h.Host;
            return h.Port is { } p ? $"{host}:{p.ToString(CultureInfo.InvariantCulture)}" : host;
        }));
    }

    private static void RegisterSecrets(string rest, SecretRedactor redactor)
    {
        var query = rest.IndexOf('?', StringComparison.Ordinal);
        var path = query < 0 ? rest : rest[..query];

        // The password as parsed, and as it would be if a raw '?' or '#' in it had been taken for the query.
        foreach (var at in new[] { path.LastIndexOf('@'), rest.LastIndexOf('@') }.Distinct())
        {
            var colon = at < 0 ? -1 : rest.IndexOf(':', StringComparison.Ordinal);
            if (colon >= 0 && colon < at)
            {
                AddBoth(rest[(colon + 1)..at]);
            }
        }

        if (query >= 0)
        {
            foreach (var pair in rest[(query + 1)..].Split('&'))
            {
                var eq = pair.IndexOf('=', StringComparison.Ordinal);
                var name = eq < 0 ? string.Empty : TryDecode(pair[..eq]) ?? string.Empty;
                if (name is "password" or "sslpassword")
                {
                    AddBoth(pair[(eq + 1)..]);
                }
            }
        }

        void AddBoth(string written)
        {
            redactor.Add(written);
            redactor.Add(TryDecode(written));
        }
    }

    // The value is not quoted: a password pasted with a raw '?' or '/' in it can end up here.
    private static int Number(string what, string value) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is > 0 and <= 65535
            ? n
            : throw Invalid($"a {what} is not a whole number from 1 to 65535");

    private static T OneOf<T>(string name, string value, IReadOnlyDictionary<string, T> allowed) =>
        allowed.TryGetValue(value, out var v)
            ? v
            : throw Invalid($"{name}={value} is not one of {string.Join(", ", allowed.Keys)}");

    private static string Decode(string what, string text) =>
        TryDecode(text) ?? throw Invalid($"the {what} has an invalid percent-encoding (write %XX with two hex digits, %25 for '%')");

    /// <summary>RFC 3986 percent-decoding as libpq does it ('+' stays '+'); null when malformed.</summary>
    private static string? TryDecode(string text)
    {
        if (!text.Contains('%', StringComparison.Ordinal))
        {
            return text;
        }

        var decoded = new StringBuilder(text.Length);
        var bytes = new List<byte>();
        var strict = new UTF8Encoding(false, throwOnInvalidBytes: true);
        for (var i = 0; i < text.Length; i++)
        {
            if (text[i] == '%')
            {
                if (i + 2 >= text.Length || !byte.TryParse(text.AsSpan(i + 1, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var b) || b == 0)
                {
                    return null;
                }

                bytes.Add(b);
                i += 2;
                continue;
            }

            if (!Flush())
            {
                return null;
            }

            decoded.Append(text[i]);
        }

        return Flush() ? decoded.ToString() : null;

        // A run of %XX is one UTF-8 sequence: 'é' is %C3%A9.
        bool Flush()
        {
            if (bytes.Count == 0)
            {
                return true;
            }

            try
            {
                decoded.Append(strict.GetString([.. bytes]));
                bytes.Clear();
                return true;
            }
            catch (DecoderFallbackException)
            {
                return false;
            }
        }
    }

    private static FormatException Invalid(string reason) => new(reason);
}
