using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using DataOps.Engine.Connections;
using DataOps.Engine.Sandbox;

namespace DataOps.PowerShell.Infrastructure;

/// <summary>Completes -Environment with the names that have a DATAOPS_&lt;NAME&gt;_CONNECTION variable.</summary>
public sealed class EnvironmentNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters) =>
        DataOpsConnection.AvailableEnvironments()
            .Where(n => n.StartsWith(wordToComplete ?? string.Empty, StringComparison.OrdinalIgnoreCase))
            .Select(n => new CompletionResult(n, n, CompletionResultType.ParameterValue, DataOpsConnection.EnvironmentVariableName(n)));
}

/// <summary>Completes -Name with the sandboxes under the sandbox root.</summary>
public sealed class SandboxNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var root = fakeBoundParameters["Root"] as string;
        return new SandboxManager(root).List()
            .Where(s => s.Name.StartsWith(wordToComplete ?? string.Empty, StringComparison.OrdinalIgnoreCase))
            .Select(s => new CompletionResult(s.Name, s.Name, CompletionResultType.ParameterValue, $"{s.Name} ({s.Status})"));
    }
}

/// <summary>
/// Completes -Job: the job files (and mini plans) under the folder typed so far first, then PowerShell's
/// own path completion (CompletionCompleters.CompleteFilename), so ../, absolute paths, ~/ and quoting behave
/// as for any path parameter. JSON files that are not jobs (the job schema, package.json) are left out of both.
/// </summary>
public sealed class JobFileCompleter : IArgumentCompleter
{
    /// <summary>
    /// The search for job files stops after this long (or at <see cref="MaxDepth"/> folders down): Tab on a
    /// large tree (~/ or /) must stay instant, and plain path completion below still lists the folder typed.
    /// Within the budget every JSON file is looked at; there is no cap on the count.
    /// </summary>
    internal static readonly TimeSpan SearchBudget = TimeSpan.FromMilliseconds(750);

    internal const int MaxDepth = 4;

    private static readonly HashSet<string> SkippedFolders = new(StringComparer.OrdinalIgnoreCase) { "bin", "obj", "node_modules", ".git" };

    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var typed = wordToComplete ?? string.Empty;
        var word = typed.Trim('\'', '"');
        var cut = word.LastIndexOfAny(['/', '\\']);
        var folderTyped = cut < 0 ? string.Empty : word[..(cut + 1)];
        var fragment = word[(cut + 1)..];
        var folder = SessionPath(folderTyped);
        var results = new List<CompletionResult>();
        var offered = new HashSet<string>(PathComparer);
        if (folder is not null && Directory.Exists(folder))
        {
            var display = folderTyped.Length == 0 ? "./" : folderTyped;
            foreach (var file in JobFiles(folder))
            {
                var relative = Path.GetRelativePath(folder, file).Replace(Path.DirectorySeparatorChar, '/');
                if (!relative.Contains(fragment, StringComparison.OrdinalIgnoreCase))
                {
                    continue;
                }

                var text = display + relative;
                offered.Add(file);
                results.Add(new CompletionResult(Quoted(text), text, CompletionResultType.ProviderItem, file));
            }
        }

        try
        {
            foreach (var result in CompletionCompleters.CompleteFilename(typed))
            {
                // The tool tip of a path completion is the full path.
                var full = result.ToolTip;
                if (offered.Contains(full) ||
                    (result.ResultType == CompletionResultType.ProviderItem && full.EndsWith(".json", StringComparison.OrdinalIgnoreCase) && !LooksLikeJob(full)))
                {
                    continue;
                }

                results.Add(result);
            }
        }
        catch (Exception ex) when (ex is PSInvalidOperationException or IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            // No path completion outside a runspace or on a path the provider refuses: the job files above stand.
        }

        return results;
    }

    /// <summary>The job files under the folder, nearest first, within the time and depth budget.</summary>
    internal static List<string> JobFiles(string folder)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var found = new List<string>();
        var level = new List<string> { folder };
        for (var depth = 0; depth <= MaxDepth && level.Count > 0; depth++)
        {
            var next = new List<string>();
            foreach (var dir in level)
            {
                if (clock.Elapsed > SearchBudget)
                {
                    return found;
                }

                try
                {
                    found.AddRange(Directory.EnumerateFiles(dir, "*.json").Order(StringComparer.OrdinalIgnoreCase).Where(LooksLikeJob));
                    next.AddRange(Directory.EnumerateDirectories(dir).Where(d => !SkippedFolders.Contains(Path.GetFileName(d)) && !Path.GetFileName(d).StartsWith('.')).Order(StringComparer.OrdinalIgnoreCase));
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                }
            }

            level = next;
        }

        return found;
    }

    /// <summary>
    /// The cheap test: the file starts as a JSON object whose top level has a numeric "version" and a "steps"
    /// property, read from the first 64 KB only (a long items list may push "steps" further: then a numeric
    /// "version" and no sign of a schema is enough). The job schema has "version" only under "properties",
    /// and package.json has a string version.
    /// </summary>
    [ThreadStatic]
    private static byte[]? JobProbeBuffer;

    internal static bool LooksLikeJob(string file)
    {
        try
        {
            // One buffer per thread: a folder of hundreds of JSON files is read in one Tab press.
            var buffer = JobProbeBuffer ??= new byte[64 * 1024];
            int length;
            using (var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 1))
            {
                length = stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
            }

            var complete = length < buffer.Length;
            var reader = new System.Text.Json.Utf8JsonReader(buffer.AsSpan(0, length), complete,
                new System.Text.Json.JsonReaderState(new System.Text.Json.JsonReaderOptions { CommentHandling = System.Text.Json.JsonCommentHandling.Skip, AllowTrailingCommas = true }));
            bool version = false, steps = false;
            if (!reader.Read() || reader.TokenType != System.Text.Json.JsonTokenType.StartObject)
            {
                return false;
            }

            while (reader.Read())
            {
                if (reader.CurrentDepth == 1 && reader.TokenType == System.Text.Json.JsonTokenType.PropertyName)
                {
                    var name = reader.GetString();
                    if (!reader.Read())
                    {
                        break;
                    }

                    version |= name == "version" && reader.TokenType == System.Text.Json.JsonTokenType.Number;
                    steps |= name == "steps";
                    if (reader.TokenType is System.Text.Json.JsonTokenType.StartObject or System.Text.Json.JsonTokenType.StartArray && !reader.TrySkip())
                    {
                        break;
                    }
                }
                else if (reader.TokenType == System.Text.Json.JsonTokenType.EndObject && reader.CurrentDepth == 0)
                {
                    return version && steps;
                }
            }

            return version && (steps || !complete);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Text.Json.JsonException)
        {
            return false;
        }
    }

    private static StringComparer PathComparer => OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal;

    private static string Quoted(string text) =>
        text.Any(ch => char.IsWhiteSpace(ch) || ch is '\'' or '"' or '`' or '$' or '&' or '(' or ')' or '{' or '}' or ';' or ',' or '@' or '#')
            ? $"'{CodeGeneration.EscapeSingleQuotedStringContent(text)}'"
            : text;

    /// <summary>
    /// A folder as the session sees it: relative to its location (not the process's, they differ after
    /// Set-Location), with ~ expanded. Null outside a runspace or for a path the provider cannot resolve.
    /// </summary>
    private static string? SessionPath(string folder)
    {
        try
        {
            using var ps = System.Management.Automation.PowerShell.Create(RunspaceMode.CurrentRunspace);
            ps.AddScript("param($Folder) $p = $ExecutionContext.SessionState.Path; if ($Folder) { $p.GetUnresolvedProviderPathFromPSPath($Folder) } else { $p.CurrentFileSystemLocation.ProviderPath }")
                .AddArgument(folder);
            return ps.Invoke<string>().FirstOrDefault();
        }
        catch (Exception ex) when (ex is PSInvalidOperationException or RuntimeException)
        {
            return null;
        }
    }
}

/// <summary>Completes -Connection and -Name with the names of the session's named connections (Connect-DataOps -Name).</summary>
public sealed class ConnectionNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters) =>
        SessionDefaults.Named
            .Where(c => c.Name.StartsWith((wordToComplete ?? string.Empty).Trim('\'', '"'), StringComparison.OrdinalIgnoreCase))
            .Select(c => new CompletionResult(Quoted(c.Name), c.Name, CompletionResultType.ParameterValue, c.ToString()));

    private static string Quoted(string name) =>
        name.All(ch => char.IsLetterOrDigit(ch) || ch is '-' or '_' or '.') ? name : $"'{CodeGeneration.EscapeSingleQuotedStringContent(name)}'";
}

/// <summary>
/// Completes a value read from the database the command will use: the -Connection already typed (a
/// connection object or a stored name), else the session's default. Tab waits at most
/// <see cref="CompletionValues.Budget"/> for connect and query, and offers nothing on any failure: completion
/// never prints an error in the shell.
/// </summary>
public abstract class DatabaseValueCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var word = (wordToComplete ?? string.Empty).Trim('\'', '"');
        try
        {
            if (Connection(fakeBoundParameters) is not { } connection)
            {
                return [];
            }

            return [.. Values(connection, word).Select(v => new CompletionResult(Quoted(v.Value), v.Value, CompletionResultType.ParameterValue, v.Description))];
        }
        catch (Exception ex) when (ex is not OutOfMemoryException and not StackOverflowException)
        {
            return [];
        }
    }

    internal abstract IReadOnlyList<CompletionValue> Values(DataOpsConnection connection, string prefix);

    private static DataOpsConnection? Connection(IDictionary? bound)
    {
        var typed = bound?.Contains("Connection") == true ? bound["Connection"] : null;
        return (typed is PSObject ps ? ps.BaseObject : typed) switch
        {
            DataOpsConnection c => c,
            string name => SessionDefaults.Find(name),
            _ => SessionDefaults.Connection,
        };
    }

    private static string Quoted(string value) =>
        value.All(ch => char.IsLetterOrDigit(ch) || ch is '-' or '_' or '.' or '@') ? value : $"'{CodeGeneration.EscapeSingleQuotedStringContent(value)}'";
}

/// <summary>Completes -RunId with the backfill, dry-run and undo runs recorded in the database, newest first.</summary>
public sealed class RunIdCompleter : DatabaseValueCompleter
{
    internal override IReadOnlyList<CompletionValue> Values(DataOpsConnection connection, string prefix) => CompletionValues.RunIds(connection, prefix);
}

/// <summary>Completes -SeedRunId with the seed runs recorded in the database, newest first.</summary>
public sealed class SeedRunIdCompleter : DatabaseValueCompleter
{
    internal override IReadOnlyList<CompletionValue> Values(DataOpsConnection connection, string prefix) => CompletionValues.SeedRunIds(connection, prefix);
}

/// <summary>Completes -CreatedBy with the users in the database.</summary>
public sealed class UserIdCompleter : DatabaseValueCompleter
{
    internal override IReadOnlyList<CompletionValue> Values(DataOpsConnection connection, string prefix) => CompletionValues.Users(connection, prefix);
}

/// <summary>Completes -WorkflowId with the workflows in the database (by id or name; the id is inserted).</summary>
public sealed class WorkflowIdCompleter : DatabaseValueCompleter
{
    internal override IReadOnlyList<CompletionValue> Values(DataOpsConnection connection, string prefix) => CompletionValues.WorkflowIds(connection, prefix);
}

/// <summary>Completes -TemporalWorkflowId with the Temporal workflow ids of recent executions.</summary>
public sealed class TemporalWorkflowIdCompleter : DatabaseValueCompleter
{
    internal override IReadOnlyList<CompletionValue> Values(DataOpsConnection connection, string prefix) => CompletionValues.TemporalWorkflowIds(connection, prefix);
}

/// <summary>Completes -JobName with the names of jobs that have runs recorded in the database.</summary>
public sealed class JobNameCompleter : DatabaseValueCompleter
{
    internal override IReadOnlyList<CompletionValue> Values(DataOpsConnection connection, string prefix) => CompletionValues.JobNames(connection, prefix);
}
