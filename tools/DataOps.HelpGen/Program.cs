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
            return new ParameterMetadataView(p.Name, p.ParameterType, text,
                sets.Any(s => s.IsMandatory), sets.Select(s => s.Position).FirstOrDefault(x => x >= 0, int.MinValue),
                sets.Any(s => s.ValueFromPipeline), sets.Any(s => s.ValueFromPipelineByPropertyName),
                p.ParameterSets.Keys.ToList(), p.Attributes.OfType<SupportsWildcardsAttribute>().Any());
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
        withType ? new XElement(dev + "type", new XElement(maml + "name", p.Type.FullName)) : null);

    var syntax = cmd.ParameterSets.Select(set => new XElement(command + "syntaxItem",
        new XElement(maml + "name", cmd.Name),
        parameters.Where(p => p.Sets.Contains(set.Name) || p.Sets.Contains(ParameterAttribute.AllParameterSets)).Select(p => ParameterElement(p, false))));

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

        markdown.AppendLine("| parameter | type | description |").AppendLine("| --- | --- | --- |");
        foreach (var p in parameters)
        {
            markdown.AppendLine($"| -{p.Name} | {FriendlyType(p.Type)} | {p.Description.Replace("|", "\\|", StringComparison.Ordinal)} |");
        }

        markdown.AppendLine();
        foreach (var e in doc.Examples)
        {
            markdown.AppendLine("```powershell").AppendLine(e.Code).AppendLine("```").AppendLine(string.Join(" ", e.Remarks)).AppendLine();
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
static string MatchingNote(string typeName) => typeName.StartsWith("DataOps.Engine.", StringComparison.Ordinal)
    ? $"To pick these out of a pipeline, match the PSTypeName: $_.PSTypeNames -contains '{typeName}' (or filter on a property). The type loads in the module's private context, so [{typeName}] does not resolve in the session."
    : string.Empty;

static string FriendlyType(Type t) => t.IsArray ? FriendlyType(t.GetElementType()!) + "[]" : t.Name;

internal sealed record ParameterMetadataView(string Name, Type Type, string Description, bool Mandatory, int Position, bool ByValue, bool ByPropertyName, List<string> Sets, bool Wildcards);

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
            Normalize(e.Element("code")?.Value ?? string.Empty),
            e.Elements("para").Select(Text).ToList())).ToList();
        return new TypeDoc(synopsis, description, examples, links);
    }

    public string ForProperty(System.Reflection.PropertyInfo property) =>
        _members.TryGetValue($"P:{property.DeclaringType!.FullName}.{property.Name}", out var m)
            ? Normalize(m.Element("summary")?.Value ?? string.Empty)
            : string.Empty;

    public string SummaryOfTypeName(string fullName) =>
        _members.TryGetValue("T:" + fullName, out var m) ? Normalize(m.Element("summary")?.Value ?? string.Empty) : string.Empty;

    private static string Normalize(string text) =>
        string.Join(' ', text.Split((char[])[' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries));
}
