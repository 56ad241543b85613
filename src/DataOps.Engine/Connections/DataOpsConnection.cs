using System.Text.RegularExpressions;
using DataOps.Engine.Logging;
using Npgsql;

namespace DataOps.Engine.Connections;

/// <summary>Where a connection came from (DataOpsConnection.Source): names, not an enum, so that ConvertTo-Json and Export-Csv write the name (an enum property is written as a number).</summary>
public static class ConnectionSource
{
    public const string ConnectionString = nameof(ConnectionString);
    public const string Environment = nameof(Environment);
    public const string Sandbox = nameof(Sandbox);

    /// <summary>Every name, in order.</summary>
    public static readonly string[] All = [ConnectionString, Environment, Sandbox];
}

/// <summary>
/// A PostgreSQL connection profile. The password is held privately and handed only to the driver;
/// no property, ToString() or error carries it.
/// </summary>
public sealed partial class DataOpsConnection
{
    private readonly string _connectionString;

    // Every connection the engine opens starts from a DataOpsConnection, so Npgsql's command log is
    // routed (for -Debug) before its first pool is built.
    static DataOpsConnection() => SqlTrace.Install();

    private DataOpsConnection(string connectionString, string name, string source, bool isProduction)
    {
        _connectionString = connectionString;
        var b = new NpgsqlConnectionStringBuilder(connectionString);
        Name = name;
        Source = source;
        IsProduction = isProduction;
        Host = b.Host ?? "localhost";
        Port = b.Port;
        Database = b.Database ?? b.Username ?? "postgres";
        Username = b.Username ?? Environment.UserName;
        HasPassword = !string.IsNullOrEmpty(b.Password);
    }

    public string Name { get; }

    public string Source { get; }

    /// <summary>Writes through a production connection always ask for confirmation unless -Force or -Confirm:$false.</summary>
    public bool IsProduction { get; }

    public string Host { get; }

    public int Port { get; }

    public string Database { get; }

    public string Username { get; }

    public bool HasPassword { get; }

    /// <summary>Server version, filled in once the connection has been tested.</summary>
    public string? ServerVersion { get; internal set; }

    /// <summary>The connection string with the password masked.</summary>
    /// <remarks>
    /// Rebuilt from the parsed keys rather than pattern-matched: a password holding both quote
    /// kinds is written quoted with doubled quotes, which a text pattern can cut short.
    /// </remarks>
    public string SafeConnectionString
    {
        get
        {
            var b = new NpgsqlConnectionStringBuilder(_connectionString);
            if (!string.IsNullOrEmpty(b.Password))
            {
                b.Password = SecretRedactor.Mask;
            }

            if (!string.IsNullOrEmpty(b.SslPassword))
            {
                b.SslPassword = SecretRedactor.Mask;
            }

            return b.ConnectionString;
        }
    }

    /// <summary>Registers this connection's passwords (login and SSL key) with a redactor.</summary>
    /// <summary>Any failure while working on this database as a DataOpsException with a stable ErrorId and no secret in its message.</summary>
    public DataOpsException Explain(Exception ex) => Connections.Database.Translate(ex, this);

    internal void AddSecretsTo(SecretRedactor redactor)
    {
        var b = new NpgsqlConnectionStringBuilder(_connectionString);
        redactor.Add(b.Password);
        redactor.Add(b.SslPassword);
    }

    internal string ConnectionString => _connectionString;

    /// <summary>
    /// The same connection with Npgsql's automatic preparation on: statements that run again and
    /// again (execution tracking from runbooks) skip parsing after their second use. Plans stay
    /// custom (planned with the actual values): a generic plan for "created_by = $1" cannot see how
    /// selective the user is. Kept off the default string because prepared statements and the DDL
    /// of migrations or backfills do not mix.
    /// </summary>
    internal string PreparedConnectionString => _prepared ??= new NpgsqlConnectionStringBuilder(_connectionString)
    {
        MaxAutoPrepare = 32,
        AutoPrepareMinUsages = 2,
        Options = "-c plan_cache_mode=force_custom_plan",
    }.ConnectionString;

    private string? _prepared;

    /// <summary>
    /// For a backfill's item work: the same statements run once per item, so they are prepared
    /// (generic plans are right for key lookups), and the one connection is kept for the run.
    /// </summary>
    internal string BatchConnectionString => _batch ??= new NpgsqlConnectionStringBuilder(_connectionString)
    {
        MaxAutoPrepare = 64,
        AutoPrepareMinUsages = 2,
    }.ConnectionString;

    private string? _batch;

    /// <summary>
    /// For read-only work (soak, health): the session itself refuses writes
    /// (default_transaction_read_only), whatever the queries try.
    /// </summary>
    internal string ReadOnlyConnectionString => _readOnly ??= new NpgsqlConnectionStringBuilder(_connectionString)
    {
        Options = "-c default_transaction_read_only=on",
    }.ConnectionString;

    private string? _readOnly;

    public override string ToString() => $"{Username}@{Host}:{Port}/{Database}";

    /// <summary>
    /// Whether two connections reach the same database: the same host (case-insensitive, as
    /// written: 'localhost' and '127.0.0.1' count as different, the safe side), port and database
    /// name. The user is left out on purpose: the same data reached under another role (an admin
    /// removing what a reader listed) is the same database, and the connection the user typed is
    /// the one that does the work.
    /// </summary>
    public bool IsSameDatabase(DataOpsConnection other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return ReferenceEquals(this, other) ||
            (string.Equals(Host, other.Host, StringComparison.OrdinalIgnoreCase) && Port == other.Port &&
             string.Equals(Database, other.Database, StringComparison.Ordinal));
    }

    /// <summary>
    /// Builds a profile from a connection string, with an optional user name and password that
    /// override the string's own (they come from a PSCredential).
    /// </summary>
    public static DataOpsConnection FromConnectionString(
        string connectionString,
        string? userName = null,
        string? password = null,
        bool isProduction = false,
        string? name = null,
        string source = ConnectionSource.ConnectionString)
    {
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            throw new DataOpsException("ConnectionStringInvalid", DataOpsErrorKind.InvalidArgument,
                "The connection string is empty. Pass a PostgreSQL connection string such as 'Host=db1;Port=5432;Database=app;Username=admin'.");
        }

        NpgsqlConnectionStringBuilder builder;
        var secrets = new SecretRedactor();
        var isUri = PostgresUri.IsUri(connectionString);
        try
        {
            if (isUri)
            {
                builder = PostgresUri.Parse(connectionString, secrets);
            }
            else
            {
                foreach (var written in SecretRedactor.PasswordValues(connectionString))
                {
                    secrets.Add(written);
                }

                builder = new NpgsqlConnectionStringBuilder(connectionString);
                if (string.IsNullOrWhiteSpace(builder.Host))
                {
                    throw new ArgumentException("it names no Host");
                }
            }
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or InvalidCastException or KeyNotFoundException or OverflowException)
        {
            // The driver's messages quote the text they choke on (lower-cased): they pass the same redactor as the text itself.
            var safe = secrets.Redact(connectionString.Trim());
            var reason = secrets.Redact(ex.Message);
            throw new DataOpsException("ConnectionStringInvalid", DataOpsErrorKind.InvalidArgument,
                isUri
                    ? $"The connection URI '{safe}' is not valid: {reason}. Use postgresql://user:password@host:port/database?sslmode=require (percent-encode special characters, %40 for '@'), or key=value pairs."
                    : $"The connection string '{safe}' is not valid: {reason}. Use key=value pairs separated by ';', for example 'Host=db1;Port=5432;Database=app;Username=admin', or a URI such as postgresql://admin@db1:5432/app.",
                safe, null);
        }

        if (!string.IsNullOrEmpty(userName))
        {
            builder.Username = userName;
        }

        if (password is not null)
        {
            builder.Password = password;
        }

        builder.ApplicationName ??= "DataOps.PowerShell";
        var full = builder.ConnectionString;
        return new DataOpsConnection(full, name ?? $"{builder.Host}:{builder.Port}/{builder.Database}", source, isProduction);
    }

    /// <summary>The variable that holds an environment's connection string: DATAOPS_&lt;NAME&gt;_CONNECTION.</summary>
    public static string EnvironmentVariableName(string environment) =>
        $"DATAOPS_{NonWord().Replace(environment.Trim().ToUpperInvariant(), "_")}_CONNECTION";

    /// <summary>Environment names that have a DATAOPS_&lt;NAME&gt;_CONNECTION variable set.</summary>
    public static IReadOnlyList<string> AvailableEnvironments()
    {
        var names = new List<string>();
        foreach (System.Collections.DictionaryEntry e in Environment.GetEnvironmentVariables())
        {
            var m = EnvVar().Match((string)e.Key);
            if (m.Success && !string.IsNullOrWhiteSpace(e.Value as string))
            {
                names.Add(m.Groups[1].Value);
            }
        }

        names.Sort(StringComparer.OrdinalIgnoreCase);
        return names;
    }

    /// <summary>
    /// Reads an environment's profile from DATAOPS_&lt;NAME&gt;_CONNECTION. Environments named PROD or
    /// PRODUCTION are production even without <paramref name="isProduction"/>.
    /// </summary>
    public static DataOpsConnection FromEnvironment(string environment, string? userName = null, string? password = null, bool isProduction = false)
    {
        var variable = EnvironmentVariableName(environment);
        var value = Environment.GetEnvironmentVariable(variable);
        if (string.IsNullOrWhiteSpace(value))
        {
            var known = AvailableEnvironments();
            var hint = known.Count == 0 ? "No DATAOPS_<NAME>_CONNECTION variables are set." : $"Environments that are set: {string.Join(", ", known)}.";
            throw new DataOpsException("EnvironmentNotFound", DataOpsErrorKind.ObjectNotFound,
                $"The environment '{environment}' has no connection: the variable {variable} is not set. {hint} Set {variable} to a PostgreSQL connection string.",
                environment);
        }

        var upper = environment.Trim().ToUpperInvariant();
        var production = isProduction || upper is "PROD" or "PRODUCTION";
        return FromConnectionString(value, userName, password, production, environment, ConnectionSource.Environment);
    }

    /// <summary>The same server and credentials, another database.</summary>
    public DataOpsConnection WithDatabase(string database)
    {
        var b = new NpgsqlConnectionStringBuilder(_connectionString) { Database = database };
        return new DataOpsConnection(b.ConnectionString, Name, Source, IsProduction) { ServerVersion = ServerVersion };
    }

    /// <summary>The same connection under another name (Connect-DataOps -Name).</summary>
    public DataOpsConnection WithName(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        return new DataOpsConnection(_connectionString, name, Source, IsProduction) { ServerVersion = ServerVersion };
    }

    /// <summary>
    /// Closes the idle server sessions the driver keeps pooled for this connection (each of its
    /// variants: plain, prepared, batch, read-only), so the server sees them go when the session
    /// disconnects. A session in use closes when it is returned.
    /// </summary>
    public void ClearPools()
    {
        foreach (var cs in new[] { _connectionString, _prepared, _batch, _readOnly })
        {
            if (cs is not null)
            {
                using var c = new NpgsqlConnection(cs);
                NpgsqlConnection.ClearPool(c);
            }
        }
    }

    internal static DataOpsConnection ForSandbox(string connectionString, string sandboxName) =>
        new(connectionString, sandboxName, ConnectionSource.Sandbox, false);

    [GeneratedRegex(@"[^A-Za-z0-9]+")]
    private static partial Regex NonWord();

    [GeneratedRegex(@"^DATAOPS_(.+)_CONNECTION$", RegexOptions.IgnoreCase)]
    private static partial Regex EnvVar();
}
