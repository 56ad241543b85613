using System.Buffers;
using System.Text;

namespace DataOps.Engine.Backfill;

/// <summary>
/// A file that is complete at every moment while it grows: a head, entries appended as they come,
/// and a tail that closes it. Each <see cref="Append(string, string)"/> writes the new entries and the tail again
/// over the old tail, in one write at the old tail's offset, so a process killed at any point
/// leaves either the file before the call or the file after it, both well-formed (the new text is
/// always longer than the tail it replaces, so nothing stale is left behind it).
/// </summary>
/// <remarks>
/// Written straight to the operating system (no buffer in the process) and never fsynced: a killed
/// process loses nothing the OS was given, and an fsync per item or group would put a disk flush on
/// the run's critical path. Only a machine crash can lose the last entries; the ledger has every
/// committed item anyway (Export-BackfillRollback writes the script again from it).
/// </remarks>
internal sealed class TailFile : IDisposable
{
    private static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false);
    private readonly FileStream _stream;
    private long _end;

    public TailFile(string path, string head, string tail)
    {
        Path = path;
        _stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, bufferSize: 0);
        var bytes = Utf8.GetBytes(head);
        _stream.Write(bytes);
        _end = bytes.Length;
        Write(string.Empty, tail);
    }

    public string Path { get; }

    /// <summary>Appends <paramref name="entries"/> and writes <paramref name="tail"/> after them.</summary>
    public void Append(string entries, string tail) => Write(entries, tail);

    /// <summary>
    /// The same from a buffer, encoded chunk by chunk (never copied into one string first). A surrogate
    /// pair split between two chunks is one character of four bytes: it is counted so (each half alone
    /// would count as a three-byte replacement character), and one encoder writes across the chunks.
    /// </summary>
    public void Append(StringBuilder entries, string tail)
    {
        var counted = 0;
        var highAtEnd = false;
        foreach (var chunk in entries.GetChunks())
        {
            var span = chunk.Span;
            if (span.IsEmpty)
            {
                continue;
            }

            counted += Utf8.GetByteCount(span) - (highAtEnd && char.IsLowSurrogate(span[0]) ? 2 : 0);
            highAtEnd = char.IsHighSurrogate(span[^1]);
        }

        var tailBytes = Utf8.GetByteCount(tail);
        var buffer = ArrayPool<byte>.Shared.Rent(counted + tailBytes);
        try
        {
            var encoder = Utf8.GetEncoder();
            var at = 0;
            foreach (var chunk in entries.GetChunks())
            {
                at += encoder.GetBytes(chunk.Span, buffer.AsSpan(at), flush: false);
            }

            at += encoder.GetBytes([], buffer.AsSpan(at), flush: true);
            Utf8.GetBytes(tail, buffer.AsSpan(at));
            WriteBytes(buffer.AsSpan(0, at + tailBytes), at);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void Write(string entries, string tail)
    {
        var entryBytes = Utf8.GetByteCount(entries);
        var buffer = new byte[entryBytes + Utf8.GetByteCount(tail)];
        Utf8.GetBytes(entries, buffer);
        Utf8.GetBytes(tail, buffer.AsSpan(entryBytes));
        WriteBytes(buffer, entryBytes);
    }

    /// <summary>Entries and tail in one write at the old tail's offset; the entries are the first <paramref name="entryBytes"/>.</summary>
    private void WriteBytes(ReadOnlySpan<byte> bytes, int entryBytes)
    {
        _stream.Position = _end;
        _stream.Write(bytes);
        _end += entryBytes;
        if (_stream.Length > _stream.Position)
        {
            // Only when a tail got shorter than the one it replaced.
            _stream.SetLength(_stream.Position);
        }
    }

    public void Dispose() => _stream.Dispose();
}
