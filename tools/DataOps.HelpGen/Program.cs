using System.Management.Automation;
using System.Management.Automation.Runspaces;
using System.Text;
using System.Xml;
using System.Xml.Linq;

// Usage: DataOps.HelpGen <module folder> [--markdown <file>]. Imports <folder>/DataOps.psd1, reads
// DataOps.PowerShell.xml (the doc comments) and writes <folder>/en-US/DataOps.PowerShell.dll-help.xml,
// and with --markdown also the cmdlet reference (docs/cmdlets.md).
if (args.Length is not (1 or 3) || (args.Length == 3 && args[1] != "--markdown"))
{
    Console.Error.WriteLine("Usage: DataOps.HelpGen <module folder> [--markdown <file>]");
    return 64;
}

var markdown = args.Length == 3 ? new StringBuilder() : null;
markdown?.AppendLine("# DataOps cmdlet reference").AppendLine()
    .AppendLine("Generated from the cmdlets' doc comments by `dotnet run --project tools/DataOps.HelpGen -- out/DataOps --markdown docs/cmdlets.md`; the same text is what `Get-Help` shows.").AppendLine();

var moduleDir = Path.GetFullPath(args[0]);
var docs = DocComments.Load(Path.Combine(moduleDir, "DataOps.PowerShell.xml"), Path.Combine(moduleDir, "Dependencies", "DataOps.Engine.xml"));
var state = InitialSessionState.CreateDefault2();
state.ImportPSModule(Path.Combine(moduleDir, "DataOps.psd1"));
using var runspace = RunspaceFactory.CreateRunspace(state);
runspace.Open();
using var ps = PowerShell.Create(runspace);
var commands = ps.AddCommand("Get-Command").AddParameter("Module", "DataOps").Invoke<CmdletInfo>()
    .OrderBy(c => c.Name, StringComparer.Ordinal).ToList();

XNamespace msh = "http://msh";
XNamespace maml = "http://schemas.microsoft.com/maml/2004/10";
XNamespace command = "http://schemas.microsoft.com/maml/dev/command/2004/10";
XNamespace dev = "http://schemas.microsoft.com/maml/dev/2004/10";
var common = new HashSet<string>(Cmdlet.CommonParameters, StringComparer.OrdinalIgnoreCase);
var shouldProcessText = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
{
    ["WhatIf"] = "Shows what would happen if the cmdlet runs. The cmdlet is not run and nothing is changed.",
    ["Confirm"] = "Prompts you for confirmation before running the cmdlet. -Confirm:$false also skips the extra confirmation for production connections.",
    ["First"] = "Returns only the first N objects (applied in SQL).",
    ["Skip"] = "Skips the first N objects, then returns the rest (applied in SQL).",
    ["IncludeTotalCount"] = "Writes the total number of matching objects first, then the objects.",
};

XElement Paras(IEnumerable<string> paras) => new(maml + "description", paras.Select(p => new XElement(maml + "para", p)));

string PipelineInput(ParameterMetadataView p) =>
    (p.ByValue, p.ByPropertyName) switch
    {
        (true, true) => "True (ByValue, ByPropertyName)",
        (true, false) => "True (ByValue)",
        (false, true) => "True (ByPropertyName)",
        _ => "False",
    };

var items = new List<XElement>();
var missing = new List<string>();
foreach (var cmd in commands)
{
    var type = cmd.ImplementingType;
    var doc = docs.ForType(type);
    if (doc.Synopsis.Length == 0)
    {
        missing.Add($"{cmd.Name}: synopsis");
    }

    var parameters = cmd.Parameters.Values
        .Where(p => !common.Contains(p.Name))
        .Select(p =>
        {
            var text = shouldProcessText.TryGetValue(p.Name, out var fixedText) ? fixedText : docs.ForProperty(type.GetProperty(p.Name)!);
            if (text.Length == 0)
            {
                missing.Add($"{cmd.Name} -{p.Name}");
            }

            var sets = p.ParameterSets.Values.ToList();
            var mandatory = sets.Any(s => s.IsMandatory);
            return new ParameterMetadataView(p.Name, p.ParameterType, text,
                mandatory, sets.Select(s => s.Position).FirstOrDefault(x => x >= 0, int.MinValue),
                sets.Any(s => s.ValueFromPipeline), sets.Any(s => s.ValueFromPipelineByPropertyName),
                p.ParameterSets.Keys.ToList(), p.Attributes.OfType<SupportsWildcardsAttribute>().Any(),
                DefaultValue(type, p.Name, p.ParameterType, mandatory, docs), p.Aliases.ToList());
        })
        .ToList();

    XElement ParameterElement(ParameterMetadataView p, bool withType) => new(command + "parameter",
        new XAttribute("required", p.Mandatory ? "true" : "false"),
        new XAttribute("globbing", p.Wildcards ? "true" : "false"),
        new XAttribute("pipelineInput", PipelineInput(p)),
        new XAttribute("position", p.Position == int.MinValue ? "named" : p.Position.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        new XElement(maml + "name", p.Name),
        Paras([p.Description]),
        p.Type == typeof(SwitchParameter) ? null : new XElement(command + "parameterValue", new XAttribute("required", "true"), FriendlyType(p.Type)),
        withType ? new XElement(dev + "type", new XElement(maml + "name", FullTypeName(p.Type))) : null,
        withType ? new XElement(dev + "defaultValue", p.Default) : null);

    var syntax = cmd.ParameterSets.Select(set => new XElement(command + "syntaxItem",
        new XElement(maml + "name", cmd.Name),
        parameters.Where(p => p.Sets.Contains(set.Name) || p.Sets.Contains(ParameterAttribute.AllParameterSets)).Select(p => ParameterElement(p, false))));

    // INPUTS: what the pipeline can bind, one entry per type, naming the parameters it binds to.
    var pipelineInputs = parameters.Where(p => p.ByValue || p.ByPropertyName)
        .GroupBy(p => FullTypeName(p.Type), StringComparer.Ordinal)
        .Select(g => (Type: g.Key, Notes: g.Select(InputNote).ToList()))
        .ToList();
    var inputs = pipelineInputs.Select(i => new XElement(command + "inputType",
        new XElement(dev + "type", new XElement(maml + "name", i.Type)),
        Paras(i.Notes)));

    var outputs = cmd.OutputType.Select(t => new XElement(command + "returnValue",
        new XElement(dev + "type", new XElement(maml + "name", t.Name)),
        Paras(new[] { docs.SummaryOfTypeName(t.Name), MatchingNote(t.Name) }.Where(p => p.Length > 0))));

    var examples = doc.Examples.Select((e, i) => new XElement(command + "example",
        new XElement(maml + "title", $"-------------------------- Example {i + 1} --------------------------"),
        new XElement(dev + "code", e.Code),
        new XElement(dev + "remarks", e.Remarks.Select(r => new XElement(maml + "para", r)))));

    var links = doc.Links.Select(l => new XElement(maml + "navigationLink", new XElement(maml + "linkText", l), new XElement(maml + "uri")));

    if (markdown is not null)
    {
        markdown.AppendLine($"## {cmd.Name}").AppendLine().AppendLine(doc.Synopsis).AppendLine();
        foreach (var set in cmd.ParameterSets)
        {
            markdown.AppendLine("```powershell").AppendLine($"{cmd.Name} {set}").AppendLine("```");
        }

        markdown.AppendLine();
        foreach (var d in doc.Description)
        {
            markdown.AppendLine(d).AppendLine();
        }

        markdown.AppendLine("| parameter | type | default | pipeline input | description |").AppendLine("| --- | --- | --- | --- | --- |");
        foreach (var p in parameters)
        {
            markdown.AppendLine($"| -{p.Name} | {FriendlyType(p.Type)} | {Cell(p.Default)} | {PipelineInput(p)} | {Cell(p.Description)} |");
        }

        markdown.AppendLine();
        foreach (var e in doc.Examples)
        {
            markdown.AppendLine("```powershell").AppendLine(e.Code).AppendLine("```").AppendLine(string.Join(" ", e.Remarks)).AppendLine();
        }

        if (pipelineInputs.Count > 0)
        {
            markdown.AppendLine("Inputs:").AppendLine();
            foreach (var (inputType, notes) in pipelineInputs)
            {
                markdown.AppendLine($"- `{inputType}`: {string.Join(" ", notes)}");
            }

            markdown.AppendLine();
        }

        if (cmd.OutputType.Count > 0)
        {
            markdown.AppendLine($"Outputs: {string.Join(", ", cmd.OutputType.Select(t => $"`{t.Name}`"))}").AppendLine();
            foreach (var note in cmd.OutputType.Select(t => MatchingNote(t.Name)).Where(n => n.Length > 0))
            {
                markdown.AppendLine(note).AppendLine();
            }
        }
    }

    items.Add(new XElement(command + "command",
        new XAttribute(XNamespace.Xmlns + "maml", maml), new XAttribute(XNamespace.Xmlns + "command", command), new XAttribute(XNamespace.Xmlns + "dev", dev),
        new XElement(command + "details",
            new XElement(command + "name", cmd.Name),
            new XElement(command + "verb", cmd.Verb),
            new XElement(command + "noun", cmd.Noun),
            Paras([doc.Synopsis])),
        Paras(doc.Description),
        new XElement(command + "syntax", syntax),
        new XElement(command + "parameters", parameters.Select(p => ParameterElement(p, true))),
        new XElement(command + "inputTypes", inputs),
        new XElement(command + "returnValues", outputs),
        new XElement(command + "examples", examples),
        new XElement(command + "relatedLinks", links)));
}

var document = new XDocument(new XDeclaration("1.0", "utf-8", null), new XElement(msh + "helpItems", new XAttribute("schema", "maml"), items));
var outDir = Path.Combine(moduleDir, "en-US");
Directory.CreateDirectory(outDir);
var target = Path.Combine(outDir, "DataOps.PowerShell.dll-help.xml");
using (var writer = XmlWriter.Create(target, new XmlWriterSettings { Indent = true, Encoding = new UTF8Encoding(false) }))
{
    document.Save(writer);
}

Console.WriteLine($"DataOps.HelpGen: wrote help for {commands.Count} cmdlets to {target}");
if (markdown is not null)
{
    File.WriteAllText(args[2], markdown.ToString());
    Console.WriteLine($"DataOps.HelpGen: wrote the cmdlet reference to {args[2]}");
}
foreach (var m in missing)
{
    Console.WriteLine($"DataOps.HelpGen: warning: no help text for {m}");
}

return 0;

// The engine loads in the module's private context: its type names are PSTypeNames a user can match as strings, not type literals that resolve.
static string Cell(string text) => text.Replace("|", "\\|", StringComparison.Ordinal);

static string MatchingNote(string typeName) => typeName.StartsWith("DataOps.Engine.", StringComparison.Ordinal)
    ? $"To pick these out of a pipeline, match the PSTypeName: $_.PSTypeNames -contains '{typeName}' (or filter on a property). The type loads in the module's private context, so [{typeName}] does not resolve in the session."
    : string.Empty;

// Nullable<T> is how a cmdlet says "not given"; PowerShell binds and shows it as T (Get-Command -Syntax says <int>), so help does too.
static Type Underlying(Type t) => Nullable.GetUnderlyingType(t) ?? t;

static string FriendlyType(Type t) => t.IsArray ? FriendlyType(t.GetElementType()!) + "[]" : Underlying(t).Name;

static string FullTypeName(Type t) => t.IsArray ? FullTypeName(t.GetElementType()!) + "[]" : Underlying(t).FullName ?? Underlying(t).Name;

// Which parameter a piped object binds to, and how: by value (the object itself) or by property name (its property of that name or alias).
static string InputNote(ParameterMetadataView p)
{
    var names = string.Join(", ", new[] { p.Name }.Concat(p.Aliases).Select(n => $"'{n}'"));
    return (p.ByValue, p.ByPropertyName) switch
    {
        (true, true) => $"-{p.Name}: binds the piped object itself, or its {names} property.",
        (true, false) => $"-{p.Name}: binds the piped object itself.",
        _ => $"-{p.Name}: binds from a piped object's {names} property.",
    };
}

// The value a parameter has when it is not given: a <default> in its doc comment (computed at run time), else the
// property initializer read from a new instance of the cmdlet class; "None" when there is none, as PowerShell's own help shows.
static string DefaultValue(Type cmdlet, string name, Type type, bool mandatory, DocComments docs)
{
    // -WhatIf, -Confirm and the paging parameters (-First, -Skip, -IncludeTotalCount) are PowerShell's, not properties of the class.
    var property = cmdlet.GetProperty(name);
    if (property is null)
    {
        return type == typeof(SwitchParameter) ? "False" : name == "Skip" ? "0" : "None";
    }

    if (docs.DefaultOf(property) is { } documented)
    {
        return documented;
    }

    if (mandatory)
    {
        return "None";
    }

    var value = property.GetValue(Activator.CreateInstance(cmdlet));
    return value switch
    {
        null => "None",
        SwitchParameter s => s.IsPresent ? "True" : "False",
        bool b => b ? "True" : "False",
        string { Length: 0 } => "None",
        string s => s,
        TimeSpan t => Duration(t),
        System.Collections.IEnumerable e when value is not string => e.Cast<object>().Any() ? string.Join(", ", e.Cast<object>().Select(x => Convert.ToString(x, System.Globalization.CultureInfo.InvariantCulture))) : "None",
        IFormattable when type.IsValueType && value.Equals(Activator.CreateInstance(Underlying(type))) && !type.IsEnum => "None",
        IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "None",
    };
}

// A TimeSpan the way the parameters take it (24h, 5m, 30s, 500ms).
static string Duration(TimeSpan t) =>
    t == TimeSpan.Zero ? "0"
    : t.Ticks % TimeSpan.TicksPerHour == 0 ? $"{(long)t.TotalHours}h"
    : t.Ticks % TimeSpan.TicksPerMinute == 0 ? $"{(long)t.TotalMinutes}m"
    : t.Ticks % TimeSpan.TicksPerSecond == 0 ? $"{(long)t.TotalSeconds}s"
    : $"{t.TotalMilliseconds:0.###}ms";

internal sealed record ParameterMetadataView(string Name, Type Type, string Description, bool Mandatory, int Position, bool ByValue, bool ByPropertyName, List<string> Sets, bool Wildcards, string Default, List<string> Aliases);

internal sealed record ExampleDoc(string Code, List<string> Remarks);

internal sealed record TypeDoc(string Synopsis, List<string> Description, List<ExampleDoc> Examples, List<string> Links);

/// <summary>Reads the compiler's XML doc file: para type="synopsis|description|link", example, summary.</summary>
internal sealed class DocComments
{
    private readonly Dictionary<string, XElement> _members;

    private DocComments(Dictionary<string, XElement> members) => _members = members;

    public static DocComments Load(params string[] paths)
    {
        var members = new Dictionary<string, XElement>(StringComparer.Ordinal);
        foreach (var path in paths.Where(File.Exists))
        {
            foreach (var m in XDocument.Load(path).Descendants("member"))
            {
                members[(string)m.Attribute("name")!] = m;
            }
        }

        return new DocComments(members);
    }

    public TypeDoc ForType(Type type)
    {
        if (!_members.TryGetValue("T:" + type.FullName, out var m))
        {
            return new TypeDoc(string.Empty, [], [], []);
        }

        var paras = m.Element("summary")?.Elements("para").ToList() ?? [];
        string Text(XElement e) => Normalize(e.Value);
        var synopsis = paras.Where(p => (string?)p.Attribute("type") == "synopsis").Select(Text).FirstOrDefault() ?? string.Empty;
        var description = paras.Where(p => (string?)p.Attribute("type") == "description").Select(Text).ToList();
        var links = paras.Where(p => (string?)p.Attribute("type") == "link").Select(Text).ToList();
        var examples = m.Elements("example").Select(e => new ExampleDoc(
            CodeBlock(e.Element("code")?.Value ?? string.Empty),
            e.Elements("para").Select(Text).ToList())).ToList();
        return new TypeDoc(synopsis, description, examples, links);
    }

    public string ForProperty(System.Reflection.PropertyInfo property) =>
        _members.TryGetValue($"P:{property.DeclaringType!.FullName}.{property.Name}", out var m)
            ? Normalize(m.Element("summary")?.Value ?? string.Empty)
            : string.Empty;

    public string SummaryOfTypeName(string fullName) =>
        _members.TryGetValue("T:" + fullName, out var m) ? Normalize(m.Element("summary")?.Value ?? string.Empty) : string.Empty;

    /// <summary>The default a property's doc comment states, for defaults computed at run time: &lt;default&gt;the job's, else 20&lt;/default&gt;.</summary>
    public string? DefaultOf(System.Reflection.PropertyInfo property) =>
        _members.TryGetValue($"P:{property.DeclaringType!.FullName}.{property.Name}", out var m) && m.Element("default") is { } d
            ? Normalize(d.Value)
            : null;

    /// <summary>
    /// An example's code as lines: the doc comment's indentation removed, blank lines at either end dropped, inner lines kept,
    /// so a several-line example renders and runs as pasted.
    /// </summary>
    private static string CodeBlock(string text)
    {
        var lines = text.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n').Select(l => l.TrimEnd()).ToList();
        while (lines.Count > 0 && lines[0].Length == 0)
        {
            lines.RemoveAt(0);
        }

        while (lines.Count > 0 && lines[^1].Length == 0)
        {
            lines.RemoveAt(lines.Count - 1);
        }

        // The first line starts right after <code>, so its indentation says nothing: measure the others.
        var indent = lines.Skip(1).Where(l => l.Length > 0).Select(l => l.Length - l.TrimStart().Length).DefaultIfEmpty(0).Min();
        return string.Join('\n', lines.Select((l, i) => i == 0 ? l.Trim() : l.Length >= indent ? l[indent..] : l.TrimStart()));
    }

    private static string Normalize(string text) =>
        string.Join(' ', text.Split((char[])[' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries));
}
