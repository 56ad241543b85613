using System.Management.Automation;
using DataOps.Engine.Logging;
using DataOps.Engine.Schema;
using DataOps.PowerShell.Infrastructure;

namespace DataOps.PowerShell.Cmdlets;

/// <summary>
/// <para type="synopsis">Installs or upgrades the DataOps schema components in a database.</para>
/// <para type="description">Install-DataOpsSchema applies the module's migrations with DbUp: each script once, journaled in
/// dataops.schema_versions, all of one run in a single transaction, while an advisory lock makes a concurrent installer
/// wait. Running it again applies only what is new. Core (the module's bookkeeping) is always included. Without
/// -Component every component is installed. It returns one object per script with its status: Applied or AlreadyApplied
/// (Pending with -WhatIf).</para>
/// <para type="link">Connect-DataOps</para>
/// <para type="link">Start-DataOpsSandbox</para>
/// <para type="link">about_DataOps</para>
/// </summary>
/// <example>
///   <code>Install-DataOpsSchema</code>
///   <para>Installs every component into the session's default database.</para>
/// </example>
/// <example>
///   <code>Install-DataOpsSchema -Component ScriptExecution -Connection $stg -WhatIf</code>
///   <para>Shows which ScriptExecution (and Core) scripts would be applied on $stg, without applying them.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Install, "DataOpsSchema", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(SchemaMigration))]
public sealed class InstallDataOpsSchemaCommand : DatabaseCmdlet
{
    /// <summary>The components to install: Core, ScriptExecution, WorkflowExecution, Prism. Default: all.</summary>
    /// <default>every component: Core, ScriptExecution, WorkflowExecution, Prism</default>
    [Parameter(Position = 0)]
    public SchemaComponent[]? Component { get; set; }

    /// <summary>Skips confirmation prompts, including the one production connections ask for.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        var connection = ResolveConnection();
        var plan = RunEngine((_, ct) => SchemaInstaller.PlanAsync(connection, Component, ct));
        var pending = plan.Where(m => m.Status == MigrationStatus.Pending).ToList();
        var components = string.Join(", ", SchemaInstaller.Resolve(Component));
        var description = pending.Count == 0
            ? $"Check components {components} (nothing to apply)"
            : $"Apply {pending.Count} migration(s): {string.Join(", ", pending.Select(p => p.Script))}";

        if (!ShouldWrite(connection, $"database {connection}", description, Force))
        {
            if (WhatIfRequested)
            {
                WriteObject(plan, enumerateCollection: true);
            }

            return;
        }

        var applied = RunEngineLogged("Install-DataOpsSchema", (log, observer, ct) =>
            Heartbeat.Track(SchemaInstaller.InstallAsync(connection, Component, log, ct), observer, "Install-DataOpsSchema", description));
        WriteObject(applied, enumerateCollection: true);
    }
}
