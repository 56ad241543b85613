using System.Globalization;
using System.Text;

namespace DataOps.Tests;

/// <summary>One sample of a Prometheus text-format file.</summary>
internal sealed record PrometheusSample(string Name, IReadOnlyDictionary<string, string> Labels, double Value);

/// <summary>
/// A strict reader of the Prometheus text exposition format, as far as the module writes it: every
/// line is a comment (# HELP name text, # TYPE name counter|gauge) or a sample `name{labels} value`;
/// a metric's HELP and TYPE come before its first sample, once each; label values are quoted with
/// \\, \" and \n escaped. Anything else throws FormatException naming the line.
/// </summary>
internal static class PrometheusText
{
    public static IReadOnlyList<PrometheusSample> Parse(string text)
    {
        Assert.True(text.EndsWith('\n'), "the exposition ends with a line feed");
        Assert.DoesNotContain('\r', text);
        var (help, type, sampled) = (new HashSet<string>(), new HashSet<string>(), new HashSet<string>());
        var samples = new List<PrometheusSample>();
        var number = 0;
        foreach (var line in text[..^1].Split('\n'))
        {
            number++;
            if (line.StartsWith('#'))
            {
                var parts = line.Split(' ', 4);
                if (parts.Length < 4 || parts[1] is not ("HELP" or "TYPE") || !IsName(parts[2]))
                {
                    throw new FormatException($"line {number}: not a HELP or TYPE comment: {line}");
                }

                if (sampled.Contains(parts[2]) || !(parts[1] == "HELP" ? help : type).Add(parts[2]))
                {
                    throw new FormatException($"line {number}: {parts[1]} of {parts[2]} after its samples or twice: {line}");
                }

                if (parts[1] == "TYPE" && parts[3] is not ("counter" or "gauge" or "untyped" or "histogram" or "summary"))
                {
                    throw new FormatException($"line {number}: unknown type: {line}");
                }

                continue;
            }

            var i = 0;
            while (i < line.Length && (char.IsAsciiLetterOrDigit(line[i]) || line[i] is '_' or ':'))
            {
                i++;
            }

            var name = line[..i];
            if (!IsName(name) || !help.Contains(name) || !type.Contains(name))
            {
                throw new FormatException($"line {number}: sample of '{name}' without HELP and TYPE before it: {line}");
            }

            sampled.Add(name);
            var labels = new Dictionary<string, string>(StringComparer.Ordinal);
            if (i < line.Length && line[i] == '{')
            {
                i++;
                while (line[i] != '}')
                {
                    var start = i;
                    while (char.IsAsciiLetterOrDigit(line[i]) || line[i] == '_')
                    {
                        i++;
                    }

                    var label = line[start..i];
                    if (label.Length == 0 || line[i] != '=' || line[i + 1] != '"')
                    {
                        throw new FormatException($"line {number}: bad label at {start}: {line}");
                    }

                    i += 2;
                    var value = new StringBuilder();
                    while (line[i] != '"')
                    {
                        if (line[i] == '\\')
                        {
                            value.Append(line[i + 1] switch
                            {
                                '\\' => '\\',
                                '"' => '"',
                                'n' => '\n',
                                _ => throw new FormatException($"line {number}: bad escape at {i}: {line}"),
                            });
                            i += 2;
                        }
                        else
                        {
                            value.Append(line[i++]);
                        }
                    }

                    i++;
                    if (!labels.TryAdd(label, value.ToString()))
                    {
                        throw new FormatException($"line {number}: label {label} twice: {line}");
                    }

                    if (line[i] == ',')
                    {
                        i++;
                    }
                }

                i++;
            }

            var rest = line[i..].Split(' ', StringSplitOptions.None);
            if (rest.Length is < 2 or > 3 || rest[0] != string.Empty)
            {
                throw new FormatException($"line {number}: expected ' value': {line}");
            }

            var sample = rest[1] switch
            {
                "NaN" => double.NaN,
                "+Inf" => double.PositiveInfinity,
                "-Inf" => double.NegativeInfinity,
                var v => double.Parse(v, NumberStyles.Float, CultureInfo.InvariantCulture),
            };
            samples.Add(new PrometheusSample(name, labels, sample));
        }

        return samples;
    }

    private static bool IsName(string name) =>
        name.Length > 0 && !char.IsAsciiDigit(name[0]) && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or ':');
}
