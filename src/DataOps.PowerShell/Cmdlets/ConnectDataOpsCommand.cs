using System.Management.Automation;
using DataOps.Engine.Connections;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Connects to a PostgreSQL database and makes the connection the session's default.</para>
/// <para type="description">Connect-DataOps builds a connection from a connection string or from a named environment, whose
/// connection string is read from $env:DATAOPS_&lt;NAME&gt;_CONNECTION. It opens the connection once to check it and to read the
/// server version. Pass credentials with -Credential; a password never appears in output, logs or errors. A connection
/// marked -Production (and any environment named PROD or PRODUCTION) makes every write ask for confirmation unless -Force
/// or -Confirm:$false is given.</para>
/// <para type="description">A connection string is either Npgsql's key=value pairs (Host, Port, Database, Username, Password or
/// its synonyms Pwd and Psw, SSL Mode...) or libpq's URI, the form cloud consoles hand out:
/// postgresql://[user[:password]@][host][:port][,host2[:port2]...][/database][?param=value&amp;...] (postgres:// too). URI parts are
/// percent-decoded (write %40 for '@' in a password); an IPv6 host goes in brackets ([::1]:5432); the parameters host, port, dbname,
/// user, password, sslmode, application_name, connect_timeout, options, target_session_attrs, load_balance_hosts, channel_binding,
/// gssencmode, client_encoding, passfile, sslcert, sslkey, sslrootcert, sslpassword and krbsrvname are read, and any other is
/// refused (ConnectionStringInvalid). A password in a URI is a secret like one from -Credential.</para>
/// <para type="description">-Name stores the connection in the session under that name, next to the default: any DataOps cmdlet then takes
/// the name for -Connection (-Connection reporting), Get-DataOpsConnection -Name lists the named connections and Disconnect-DataOps -Name
/// removes one. A name given again replaces the connection it named. Without -Name nothing is stored by name: the connection is the session's default (unless -NoDefault), as before.</para>
/// <para type="link">Get-DataOpsConnection</para>
/// <para type="link">Disconnect-DataOps</para>
/// <para type="link">Start-DataOpsSandbox</para>
/// <para type="link">about_DataOps</para>
/// </summary>
/// <example>
///   <code>Connect-DataOps -ConnectionString 'Host=db1;Port=5432;Database=app' -Credential (Get-Credential admin)</code>
///   <para>Connects to the app database on db1 as admin.</para>
/// </example>
/// <example>
///   <code>Connect-DataOps -ConnectionString 'postgresql://admin:s3cr%40t@db1.example.com:5432/app?sslmode=require'</code>
///   <para>Connects with a URI copied from a cloud console; the password (s3cr@t, percent-encoded) is shown nowhere.</para>
/// </example>
/// <example>
///   <code>$env:DATAOPS_STAGING_CONNECTION = 'Host=stg;Database=app;Username=ops'; $stg = Connect-DataOps -Environment staging</code>
///   <para>Connects to the staging environment; $stg can be passed to -Connection of any DataOps cmdlet.</para>
/// </example>
/// <example>
///   <code>Connect-DataOps -Environment reporting -Name reports -NoDefault; Invoke-DataOpsQuery -Connection reports -Query 'SELECT current_database() AS db' -ReadOnly</code>
///   <para>Stores the reporting environment's connection as 'reports' without changing the session's default, then queries it by name.</para>
/// </example>
[Cmdlet(VerbsCommunications.Connect, "DataOps", DefaultParameterSetName = ByConnectionString)]
[OutputType(typeof(DataOpsConnection))]
public sealed class ConnectDataOpsCommand : DataOpsCmdlet
{
    private const string ByConnectionString = "ConnectionString";
    private const string ByEnvironment = "Environment";

    /// <summary>A PostgreSQL connection string: key=value pairs separated by ';', or a URI postgresql://user:password@host:port/database?sslmode=require.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ByConnectionString, ValueFromPipelineByPropertyName = true)]
    public string ConnectionString { get; set; } = string.Empty;

    /// <summary>An environment name; its connection string is read from $env:DATAOPS_&lt;NAME&gt;_CONNECTION.</summary>
    [Parameter(Mandatory = true, ParameterSetName = ByEnvironment, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(EnvironmentNameCompleter))]
    public string Environment { get; set; } = string.Empty;

    /// <summary>User name and password; they replace any in the connection string.</summary>
    [Parameter]
    [Credential]
    public PSCredential? Credential { get; set; }

    /// <summary>Marks the connection as production: every write asks for confirmation.</summary>
    [Parameter]
    public SwitchParameter Production { get; set; }

    /// <summary>Stores the connection in the session under this name, so -Connection takes the name (Get-DataOpsConnection -Name lists them, Disconnect-DataOps -Name removes one). A name given again replaces its connection. No wildcard characters.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string? Name { get; set; }

    /// <summary>Do not make this connection the session's default.</summary>
    [Parameter]
    public SwitchParameter NoDefault { get; set; }

    protected override void ProcessRecord()
    {
        if (Name is not null && (WildcardPattern.ContainsWildcardCharacters(Name) || Name.Trim().Length == 0))
        {
            ThrowTerminating("ConnectionNameInvalid", Engine.DataOpsErrorKind.InvalidArgument,
                $"'{Name}' cannot name a connection: a name holds no wildcard characters (* ? [ ]) and is not blank, since Get-DataOpsConnection and Disconnect-DataOps take patterns. Choose a plain name such as 'reports'.",
                Name);
        }

        var user = Credential?.UserName;
        var password = Credential?.GetNetworkCredential().Password;
        var connection = RunEngine(async (observer, ct) =>
        {
            var c = ParameterSetName == ByEnvironment
                ? DataOpsConnection.FromEnvironment(Environment, user, password, Production)
                : DataOpsConnection.FromConnectionString(ConnectionString, user, password, Production);
            observer.Verbose($"Connecting to {c}{(c.IsProduction ? " (production)" : string.Empty)}.");
            var probe = await ConnectionTester.ProbeAsync(c, ct).ConfigureAwait(false);
            observer.Verbose($"Connected: PostgreSQL {probe.ServerVersion}, database {probe.Database}, user {probe.User}, {probe.Latency.TotalMilliseconds:0} ms.");
            return Name is null ? c : c.WithName(Name);
        });

        if (Name is not null && SessionDefaults.Store(connection) is { } replaced)
        {
            WriteVerbose($"The name '{Name}' now means {connection}; it meant {replaced} before.");
        }

        if (!NoDefault)
        {
            SessionDefaults.Connection = connection;
        }

        WriteObject(connection);
    }
}
