using System.Text;
using System.Text.Json;
using DataOps.Engine.Backfill;

namespace DataOps.Engine.Tests;

/// <summary>
/// Files users open are UTF-8 without BOM with "\n" line ends on every OS. .NET writes
/// Environment.NewLine, which is "\n" here, so the Windows behaviour is made visible on Linux by
/// writing the Windows line end ourselves (JsonWriterOptions.NewLine, "\r\n" in the text), and the
/// source is checked for writers that would take Environment.NewLine on Windows.
/// </summary>
public sealed class ArtifactFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("dataops-artifacts-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Text_built_with_windows_line_ends_is_written_with_lf_and_no_bom()
    {
        var path = Path.Combine(_dir, "report.md");

        ArtifactFile.WriteText(path, "# Zürich ✓\r\n\r\n| a | b |\r\n");

        var bytes = File.ReadAllBytes(path);
        Assert.False(bytes.AsSpan().StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]), "no BOM");
        Assert.DoesNotContain((byte)'\r', bytes);
        Assert.Equal("# Zürich ✓\n\n| a | b |\n", new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes));
    }

    [Fact]
    public void A_tail_file_appends_a_buffer_whose_chunks_split_a_surrogate_pair_byte_for_byte()
    {
        var path = Path.Combine(_dir, "rollback.sql");
        const string tail = "\n-- end\nCOMMIT;\n";
        StringBuilder Entry(string text)
        {
            // A builder of 16 characters per chunk: the emoji's two halves land in two chunks.
            var sb = new StringBuilder(16).Append(text);
            var chunks = sb.GetChunks();
            Assert.True(chunks.MoveNext() && char.IsHighSurrogate(chunks.Current.Span[^1]), "the first chunk ends in half a pair");
            return sb;
        }

        using (var file = new TailFile(path, "-- head\n", tail))
        {
            file.Append(Entry(new string('a', 15) + "\U0001F44D row one\n"), tail);
            file.Append(Entry(new string('b', 15) + "\U0001F600 row two\n"), tail);
        }

        Assert.Equal("-- head\n" + new string('a', 15) + "\U0001F44D row one\n" + new string('b', 15) + "\U0001F600 row two\n" + tail,
            new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(File.ReadAllBytes(path)));
    }

    [Fact]
    public void Indented_json_with_windows_line_ends_is_written_with_lf_and_its_strings_keep_their_own()
    {
        var path = Path.Combine(_dir, "results.json");
        using (var stream = ArtifactFile.JsonLf(File.Create(path)))
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, NewLine = "\r\n" }))
        {
            writer.WriteStartObject();
            writer.WriteString("error", "line one\r\nline two");
            writer.WriteString("city", "Zürich");
            writer.WriteEndObject();
        }

        var bytes = File.ReadAllBytes(path);
        Assert.DoesNotContain((byte)'\r', bytes);
        Assert.Contains((byte)'\n', bytes);
        var doc = JsonDocument.Parse(bytes).RootElement;
        Assert.Equal("line one\r\nline two", doc.GetProperty("error").GetString());
        Assert.Equal("Zürich", doc.GetProperty("city").GetString());
    }

    [Fact]
    public void Rollback_entry_ends_its_lines_with_lf_and_keeps_a_value_s_own_line_ends()
    {
        var entry = RollbackScriptFile.Entry(7, Guid.Empty.ToString(), "key\r\nwith a windows line end", []);

        // The only CR is the key's own, inside its literal: the data is restored byte for byte.
        Assert.Equal(1, entry.Count(c => c == '\r'));
        Assert.Contains("'key\r\nwith a windows line end'", entry);
        Assert.Equal("\n-- applied item \"key\\r\\nwith a windows line end\": no row changed, nothing to restore\nINSERT INTO pg_temp.dataops_rollback VALUES (7, 'key\r\nwith a windows line end', 0, NULL);\n", entry);
    }

    [Fact]
    public void Writers_of_user_files_do_not_take_the_platform_line_end()
    {
        var engine = Path.Combine(RepoRoot(), "src", "DataOps.Engine");
        var offenders = new List<string>();
        foreach (var file in Directory.GetFiles(engine, "*.cs", SearchOption.AllDirectories).Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)))
        {
            var name = Path.GetRelativePath(engine, file);
            var text = File.ReadAllText(file);
            if (name == "ArtifactFile.cs")
            {
                continue;
            }

            // Every file write goes through ArtifactFile, except the sandbox's own files for PostgreSQL, written with "\n".
            foreach (var call in new[] { "File.WriteAllText", "File.AppendAllText", "File.WriteAllLines", "new StreamWriter" })
            {
                if (text.Contains(call, StringComparison.Ordinal) && !name.StartsWith("Sandbox", StringComparison.Ordinal))
                {
                    offenders.Add($"{name}: {call}");
                }
            }

            // Indented JSON takes Environment.NewLine: only onto a stream that drops the CR.
            if (text.Contains("new Utf8JsonWriter(", StringComparison.Ordinal) && !text.Contains("ArtifactFile.JsonLf(", StringComparison.Ordinal))
            {
                offenders.Add($"{name}: Utf8JsonWriter without ArtifactFile.JsonLf");
            }
        }

        // SQL that carries data in literals writes "\n" itself (normalising afterwards would change the data).
        Assert.DoesNotContain("AppendLine", File.ReadAllText(Path.Combine(engine, "Jobs", "RowImages.cs")));
        Assert.DoesNotContain("AppendLine", File.ReadAllText(Path.Combine(engine, "Backfill", "RestoreOp.cs")));
        var rollback = File.ReadAllText(Path.Combine(engine, "Backfill", "RollbackScriptFile.cs"));
        var entry = rollback[rollback.IndexOf("public static string Entry(", StringComparison.Ordinal)..rollback.IndexOf("private static string Head(", StringComparison.Ordinal)];
        Assert.DoesNotContain("AppendLine", entry);
        Assert.Empty(offenders);
    }

    private static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "DataOps.PowerShell.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("The repository root (DataOps.PowerShell.sln) is not above " + AppContext.BaseDirectory);
    }
}
