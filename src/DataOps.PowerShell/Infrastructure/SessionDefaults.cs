using System.Management.Automation;
using System.Management.Automation.Runspaces;
using System.Runtime.CompilerServices;
using DataOps.Engine.Connections;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>
/// The session's connections, one set per runspace, so parallel runspaces never share them: the
/// default (what a cmdlet uses without -Connection) and those Connect-DataOps -Name stored by name.
/// A named connection can also be the default; disconnecting it removes it from both.
/// </summary>
internal static class SessionDefaults
{
    private static readonly ConditionalWeakTable<Runspace, Holder> Table = new();

    public static DataOpsConnection? Connection
    {
        get => Current?.Connection;
        set
        {
            if (Writable is { } holder)
            {
                lock (holder)
                {
                    holder.Connection = value;
                }
            }
        }
    }

    /// <summary>The named connections, by name.</summary>
    public static IReadOnlyList<DataOpsConnection> Named
    {
        get
        {
            if (Current is not { } holder)
            {
                return [];
            }

            lock (holder)
            {
                return [.. holder.Named.Values.OrderBy(c => c.Name, StringComparer.OrdinalIgnoreCase)];
            }
        }
    }

    /// <summary>The connection stored under this name (case-insensitive), or null.</summary>
    public static DataOpsConnection? Find(string name)
    {
        if (Current is not { } holder)
        {
            return null;
        }

        lock (holder)
        {
            return holder.Named.GetValueOrDefault(name);
        }
    }

    /// <summary>The named connections whose names match the wildcard pattern.</summary>
    public static IReadOnlyList<DataOpsConnection> Matching(string pattern)
    {
        var wildcard = WildcardPattern.Get(pattern, WildcardOptions.IgnoreCase);
        return [.. Named.Where(c => wildcard.IsMatch(c.Name))];
    }

    /// <summary>Stores a connection under its name, replacing (and returning) one stored under that name before.</summary>
    public static DataOpsConnection? Store(DataOpsConnection connection)
    {
        if (Writable is not { } holder)
        {
            return null;
        }

        lock (holder)
        {
            var replaced = holder.Named.GetValueOrDefault(connection.Name);
            holder.Named.Remove(connection.Name);
            holder.Named.Add(connection.Name, connection);
            return replaced;
        }
    }

    /// <summary>
    /// Takes the connection out of the session: from the names it is stored under and, if it is the
    /// default, from the default. False when the session does not hold it.
    /// </summary>
    public static bool Remove(DataOpsConnection connection)
    {
        if (Current is not { } holder)
        {
            return false;
        }

        lock (holder)
        {
            var found = false;
            foreach (var name in holder.Named.Where(p => ReferenceEquals(p.Value, connection)).Select(p => p.Key).ToList())
            {
                found |= holder.Named.Remove(name);
            }

            if (ReferenceEquals(holder.Connection, connection))
            {
                holder.Connection = null;
                found = true;
            }

            return found;
        }
    }

    private static Holder? Current =>
        Runspace.DefaultRunspace is { } r && Table.TryGetValue(r, out var h) ? h : null;

    private static Holder? Writable =>
        Runspace.DefaultRunspace is { } r ? Table.GetOrCreateValue(r) : null;

    private sealed class Holder
    {
        public DataOpsConnection? Connection { get; set; }

        public Dictionary<string, DataOpsConnection> Named { get; } = new(StringComparer.OrdinalIgnoreCase);
    }
}
