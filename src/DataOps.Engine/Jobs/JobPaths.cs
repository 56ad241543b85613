using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace DataOps.Engine.Jobs;

/// <summary>
/// Where job files are read from and run folders are made. A job file is read only if it is a
/// regular file of at most <see cref="MaxJobFileBytes"/> (a FIFO would block the read forever, a
/// device would never end); a run folder is made only inside the output directory.
/// </summary>
public static partial class JobPaths
{
    /// <summary>Job files and mini plans are small; a plan of 200,000 keys is about 8 MB.</summary>
    public const int MaxJobFileBytes = 64 * 1024 * 1024;

    /// <summary>Reads a job file's text, refusing anything that is not a readable regular file of a sane size.</summary>
    public static string ReadJobFile(string path)
    {
        string full;
        try
        {
            full = Path.GetFullPath(path);
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new DataOpsException("JobFileNotFound", DataOpsErrorKind.ObjectNotFound, $"'{path}' is not a usable path for a job file: {ex.Message}", path);
        }

        if (Directory.Exists(full))
        {
            throw new DataOpsException("JobFileNotRegular", DataOpsErrorKind.InvalidArgument, $"The job file '{path}' is a directory; give the path of a .json job file.", path);
        }

        if (!File.Exists(full))
        {
            throw new DataOpsException("JobFileNotFound", DataOpsErrorKind.ObjectNotFound, $"The job file '{path}' does not exist.", path);
        }

        try
        {
            using var stream = OpenRegular(full, path);
            if (stream.Length > MaxJobFileBytes)
            {
                throw TooLarge(path, stream.Length);
            }

            // Read one byte more than allowed: a file that grows, or reports a wrong length (/proc), is still bounded.
            var buffer = new byte[Math.Min(MaxJobFileBytes + 1L, Math.Max(stream.Length, 4096) + 1)];
            var total = 0;
            var chunks = new MemoryStream();
            int read;
            while ((read = stream.Read(buffer, 0, buffer.Length)) > 0)
            {
                total += read;
                if (total > MaxJobFileBytes)
                {
                    throw TooLarge(path, total);
                }

                chunks.Write(buffer, 0, read);
            }

            return new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetString(StripBom(chunks.GetBuffer().AsSpan(0, (int)chunks.Length)));
        }
        catch (DecoderFallbackException)
        {
            throw new DataOpsException("JobFileInvalid", DataOpsErrorKind.InvalidData, $"The job file '{path}' is not UTF-8 text.", path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new DataOpsException("JobFileUnreadable", DataOpsErrorKind.PermissionDenied, $"The job file '{path}' cannot be read: {ex.Message}", path);
        }
    }

    /// <summary>
    /// The folder for one run's files, OutputDirectory/&lt;job&gt;/&lt;leaf&gt;, created; refused if it
    /// would not be inside the output directory, and a clear error if it cannot be made.
    /// </summary>
    public static string RunFolder(string outputDirectory, string jobName, string leaf)
    {
        string root;
        string folder;
        try
        {
            root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(outputDirectory));
            folder = Path.GetFullPath(Path.Combine(root, jobName, leaf));
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new DataOpsException("OutputDirectoryUnusable", DataOpsErrorKind.InvalidArgument, $"-OutputDirectory '{outputDirectory}' is not a usable path: {ex.Message}", outputDirectory);
        }

        // Job names are validated as names; this is the second guard, for any name that slips through.
        if (!folder.StartsWith(root + Path.DirectorySeparatorChar, OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal))
        {
            throw new DataOpsException("OutputDirectoryUnusable", DataOpsErrorKind.InvalidArgument, $"The run folder for job '{jobName}' would be '{folder}', outside -OutputDirectory '{root}'.", jobName);
        }

        try
        {
            Directory.CreateDirectory(folder);
            return folder;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new DataOpsException("OutputDirectoryUnusable", DataOpsErrorKind.WriteError,
                $"Cannot create the run folder '{folder}' under -OutputDirectory '{outputDirectory}': {ex.Message}. Pass an -OutputDirectory you can write to.", outputDirectory);
        }
    }

    private static DataOpsException TooLarge(string path, long bytes) =>
        new("JobFileTooLarge", DataOpsErrorKind.InvalidData, $"The job file '{path}' is {bytes:N0} bytes or more; job files are at most {MaxJobFileBytes:N0} bytes.", path);

    private static ReadOnlySpan<byte> StripBom(ReadOnlySpan<byte> bytes) => bytes.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]) ? bytes[3..] : bytes;

    /// <summary>
    /// Opens the file for reading and refuses it unless it is seekable (a regular file). On Unix the
    /// open is non-blocking: opening a FIFO with no writer would otherwise block forever, beyond Ctrl+C.
    /// </summary>
    private static FileStream OpenRegular(string full, string path)
    {
        FileStream stream;
        if (OperatingSystem.IsWindows())
        {
            stream = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        }
        else
        {
            var flags = OperatingSystem.IsLinux() ? LinuxReadNonBlocking : MacReadNonBlocking;
            var fd = Open(full, flags);
            if (fd < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                throw new IOException($"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
            }

            stream = new FileStream(new SafeFileHandle(fd, ownsHandle: true), FileAccess.Read);
        }

        if (!stream.CanSeek)
        {
            stream.Dispose();
            throw new DataOpsException("JobFileNotRegular", DataOpsErrorKind.InvalidArgument, $"The job file '{path}' is not a regular file (a pipe, socket or device); give the path of a .json job file.", path);
        }

        return stream;
    }

    // O_RDONLY | O_NONBLOCK | O_CLOEXEC
    private const int LinuxReadNonBlocking = 0x800 | 0x80000;
    private const int MacReadNonBlocking = 0x4 | 0x1000000;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);
}
