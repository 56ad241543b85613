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
/// <example>
///   <code>Install-DataOpsSchema -Connection eu, us, apac -ThrottleLimit 3 -Confirm:$false</code>
///   <para>Installs every component into three databases at once. ShouldProcess is asked per database, before any is changed; each
///   database installs in its own transaction with its own run log, every result names its Target, and a database that fails is a
///   non-terminating error that leaves the others installed.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Install, "DataOpsSchema", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(SchemaMigration))]
public sealed class InstallDataOpsSchemaCommand : FleetCmdlet
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
        if (IsFleet)
        {
            ProcessFleet();
            return;
        }

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

    /// <summary>
    /// Several databases: every plan is read at once, then ShouldProcess is asked per database on this
    /// thread (so a prompt or -WhatIf names each one), then the confirmed ones install at once.
    /// </summary>
    private void ProcessFleet()
    {
        if (!TryResolveFleet(out var targets))
        {
            return;
        }

        var components = string.Join(", ", SchemaInstaller.Resolve(Component));
        var component = Component;
        var plans = RunFleet(targets, $"Install-DataOpsSchema: plans of {targets.Count} targets", (target, _, ct) => SchemaInstaller.PlanAsync(target.Connection, component, ct));
        var confirmed = new List<(FleetTarget Target, string Description)>();
        foreach (var outcome in plans.Where(o => o.Succeeded))
        {
            var connection = outcome.Target.Connection;
            var pending = outcome.Result!.Where(m => m.Status == MigrationStatus.Pending).ToList();
            var description = pending.Count == 0
                ? $"Check components {components} (nothing to apply)"
                : $"Apply {pending.Count} migration(s): {string.Join(", ", pending.Select(p => p.Script))}";
            if (ShouldWrite(connection, $"database {connection} ({outcome.Target.Name})", description, Force))
            {
                confirmed.Add((outcome.Target, description));
            }
            else if (WhatIfRequested)
            {
                foreach (var migration in outcome.Result!)
                {
                    WriteObject(FleetCmdlet.Tag(migration, outcome.Target.Name));
                }
            }
        }

        if (confirmed.Count == 0)
        {
            return;
        }

        var descriptions = confirmed.ToDictionary(c => c.Target.Index, c => c.Description);
        RunFleet([.. confirmed.Select(c => c.Target)], $"Install-DataOpsSchema on {confirmed.Count} targets", async (target, scope, ct) =>
        {
            using var log = OpenLog("Install-DataOpsSchema", scope, null);
            var applied = await Heartbeat.Track(SchemaInstaller.InstallAsync(target.Connection, component, log, ct), scope, "Install-DataOpsSchema", descriptions[target.Index]).ConfigureAwait(false);
            foreach (var migration in applied)
            {
                scope.Write(migration);
            }

            return true;
        });
    }
}
