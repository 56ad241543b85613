using System.Collections;
using System.Management.Automation;
using DataOps.Engine.Logging;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>Turns -Secret @{ NAME = $credential } into name -> secret, registering each value with the redactor.</summary>
internal static class SecretArgument
{
    public static IReadOnlyDictionary<string, string> ToDictionary(Hashtable? secrets, SecretRedactor redactor)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (DictionaryEntry e in secrets ?? [])
        {
            var value = e.Value is PSObject ps ? ps.BaseObject : e.Value;
            var text = value switch
            {
                PSCredential c => c.GetNetworkCredential().Password,
                System.Security.SecureString s => new System.Net.NetworkCredential(string.Empty, s).Password,
                string s => s,
                _ => throw new PSArgumentException($"-Secret {e.Key}: give a PSCredential, a SecureString or a string, not {value?.GetType().Name ?? "null"}."),
            };
            redactor.Add(text);
            result[e.Key.ToString()!] = text;
        }

        return result;
    }
}
