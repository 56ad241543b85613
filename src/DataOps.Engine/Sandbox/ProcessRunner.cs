using System.Diagnostics;
using System.Runtime.InteropServices;

namespace DataOps.Engine.Sandbox;

internal sealed record ProcessResult(int ExitCode, string StandardOutput, string StandardError)
{
    public string Combined => (StandardOutput + Environment.NewLine + StandardError).Trim();
}

/// <summary>Runs the PostgreSQL tools, as the postgres OS user when we are root (initdb refuses root).</summary>
internal static partial class ProcessRunner
{
    public const string ServiceUser = "postgres";

    public static bool IsRoot => !OperatingSystem.IsWindows() && geteuid() == 0;

    public static ProcessResult Run(string file, IEnumerable<string> arguments, bool asServiceUser, TimeSpan timeout, CancellationToken ct = default)
    {
        var psi = new ProcessStartInfo
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        if (asServiceUser && IsRoot)
        {
            psi.FileName = "runuser";
            psi.ArgumentList.Add("-u");
            psi.ArgumentList.Add(ServiceUser);
            psi.ArgumentList.Add("--");
            psi.ArgumentList.Add(file);
        }
        else
        {
            psi.FileName = file;
        }

        foreach (var a in arguments)
        {
            psi.ArgumentList.Add(a);
        }

        // The tools must not pick up a caller's PG* settings or locale surprises.
        foreach (var key in new[] { "PGDATA", "PGPORT", "PGHOST", "PGUSER", "PGPASSWORD", "PGDATABASE" })
        {
            psi.Environment.Remove(key);
        }

        psi.Environment["LC_ALL"] = "C";

        using var process = new Process { StartInfo = psi };
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new DataOpsException("ProcessStartFailed", DataOpsErrorKind.ResourceUnavailable,
                $"Could not start '{psi.FileName}': {ex.Message}.", psi.FileName, ex);
        }

        process.StandardInput.Close();
        var stdout = new PipeText(process.StandardOutput, ct);
        var stderr = new PipeText(process.StandardError, ct);
        if (!process.WaitForExit((int)timeout.TotalMilliseconds))
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
            }

            throw new DataOpsException("ProcessTimeout", DataOpsErrorKind.OperationStopped,
                $"'{Path.GetFileName(file)}' did not finish within {timeout.TotalSeconds:0} s.", file);
        }

        process.WaitForExit();

        // A tool that leaves a process behind may hand it our pipes: pg_ctl start does on Windows (the
        // server inherits them), and the pipes then stay open as long as the server runs. So the
        // output is what arrived by a moment after the tool exited, not what arrives by end of file.
        try
        {
            Task.WhenAll(stdout.Done, stderr.Done).Wait(PipeGrace, CancellationToken.None);
        }
        catch (AggregateException)
        {
        }

        return new ProcessResult(process.ExitCode, stdout.Text, stderr.Text);
    }

    private static readonly TimeSpan PipeGrace = TimeSpan.FromSeconds(2);

    /// <summary>A pipe read to its end in the background; <see cref="Text"/> is what has arrived so far.</summary>
    private sealed class PipeText
    {
        private readonly System.Text.StringBuilder _text = new();

        public PipeText(StreamReader reader, CancellationToken ct)
        {
            Done = Task.Run(async () =>
            {
                var buffer = new char[4096];
                int n;
                while ((n = await reader.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
                {
                    lock (_text)
                    {
                        _text.Append(buffer, 0, n);
                    }
                }
            }, CancellationToken.None);
        }

        public Task Done { get; }

        public string Text
        {
            get
            {
                lock (_text)
                {
                    return _text.ToString();
                }
            }
        }
    }

    /// <summary>Gives a path (recursively) to the service user when we are root, so the server can use it.</summary>
    public static void GiveToServiceUser(string path)
    {
        if (!IsRoot)
        {
            return;
        }

        var r = Run("chown", ["-R", $"{ServiceUser}:", path], asServiceUser: false, TimeSpan.FromSeconds(60));
        if (r.ExitCode != 0)
        {
            throw new DataOpsException("SandboxPermission", DataOpsErrorKind.PermissionDenied,
                $"Could not give '{path}' to the '{ServiceUser}' OS user: {r.Combined}. As root the sandbox runs PostgreSQL as '{ServiceUser}'; create that user (the postgresql package does).",
                path);
        }
    }

    public static bool ServiceUserExists()
    {
        if (!File.Exists("/etc/passwd"))
        {
            return false;
        }

        return File.ReadLines("/etc/passwd").Any(l => l.StartsWith(ServiceUser + ":", StringComparison.Ordinal));
    }

    public static bool IsProcessAlive(int pid)
    {
        if (pid <= 0)
        {
            return false;
        }

        if (OperatingSystem.IsLinux())
        {
            return Directory.Exists($"/proc/{pid}");
        }

        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial uint geteuid();
}
