using System.Management.Automation.Runspaces;
using System.Runtime.CompilerServices;
using DataOps.Engine.Connections;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>The session's default connection, one per runspace, so parallel runspaces never share it.</summary>
internal static class SessionDefaults
{
    private static readonly ConditionalWeakTable<Runspace, Holder> Table = new();

    public static DataOpsConnection? Connection
    {
        get => Current?.Connection;
        set
        {
            var runspace = Runspace.DefaultRunspace;
            if (runspace is not null)
            {
                Table.GetOrCreateValue(runspace).Connection = value;
            }
        }
    }

    private static Holder? Current =>
        Runspace.DefaultRunspace is { } r && Table.TryGetValue(r, out var h) ? h : null;

    private sealed class Holder
    {
        public DataOpsConnection? Connection { get; set; }
    }
}
