namespace DataOps.PowerShell.Infrastructure;

/// <summary>The status names as the cmdlets accept them (ValidateSet needs constants).</summary>
internal static class ExecutionStatusNames
{
    public const string Running = "running";
    public const string Completed = "completed";
    public const string Failed = "failed";
    public const string Cancelled = "cancelled";
    public const string TimedOut = "timed_out";
}
