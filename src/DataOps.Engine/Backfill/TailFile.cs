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

    /// <summary>The same from a buffer, encoded chunk by chunk (never copied into one string first).</summary>
    public void Append(StringBuilder entries, string tail)
    {
        var entryBytes = 0;
        foreach (var chunk in entries.GetChunks())
        {
            entryBytes += Utf8.GetByteCount(chunk.Span);
        }

        var length = entryBytes + Utf8.GetByteCount(tail);
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            // One encoder across the chunks: a surrogate pair split between two chunks stays one character.
            var encoder = Utf8.GetEncoder();
            var at = 0;
            foreach (var chunk in entries.GetChunks())
            {
                at += encoder.GetBytes(chunk.Span, buffer.AsSpan(at), flush: false);
            }

            encoder.GetBytes(tail, buffer.AsSpan(at), flush: true);
            WriteBytes(buffer.AsSpan(0, length), entryBytes);
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
