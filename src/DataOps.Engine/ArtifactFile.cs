using System.Text;

namespace DataOps.Engine;

/// <summary>
/// The files users open (Markdown reports, JSON results and plans, psql rollback scripts) are the
/// same bytes on every OS: UTF-8 without a byte-order mark, lines ended by "\n". Notepad (since
/// Windows 10 1809), VS Code, Excel's JSON import and psql on Windows all read "\n"; a BOM would
/// show up as a stray character in psql's first statement and breaks some JSON readers.
/// <para>
/// .NET ends lines with Environment.NewLine ("\r\n" on Windows) in StringBuilder.AppendLine and in
/// indented Utf8JsonWriter/JsonSerializer output, so text built that way passes through here. Only
/// text whose "\r" can come from nothing but line ends may: Markdown we compose and JSON, whose
/// strings escape control characters. SQL that holds data in literals must not (a value's own
/// "\r\n" is data): its builders write "\n" themselves (RollbackScriptFile, RowImages).
/// </para>
/// </summary>
internal static class ArtifactFile
{
    public static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false);

    /// <summary>Markdown or JSON text with "\n" line ends, written as UTF-8 without BOM.</summary>
    public static void WriteText(string path, string text) => File.WriteAllText(path, Lf(text), Utf8);

    /// <inheritdoc cref="WriteText"/>
    public static Task WriteTextAsync(string path, string text, CancellationToken ct = default) => File.WriteAllTextAsync(path, Lf(text), Utf8, ct);

    /// <summary>"\r\n" (the Windows line end .NET writes) as "\n"; any other character is left alone.</summary>
    public static string Lf(string text) => text.Replace("\r\n", "\n", StringComparison.Ordinal);

    /// <summary>
    /// A stream for Utf8JsonWriter that drops carriage returns: in UTF-8 JSON a 0x0D byte can only be
    /// the writer's own line end (strings escape it as \r, and no multi-byte sequence holds it).
    /// </summary>
    public static Stream JsonLf(Stream inner) => new CarriageReturnDroppingStream(inner);

    private sealed class CarriageReturnDroppingStream(Stream inner) : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            while (!buffer.IsEmpty)
            {
                var cr = buffer.IndexOf((byte)'\r');
                if (cr < 0)
                {
                    inner.Write(buffer);
                    return;
                }

                inner.Write(buffer[..cr]);
                buffer = buffer[(cr + 1)..];
            }
        }

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
