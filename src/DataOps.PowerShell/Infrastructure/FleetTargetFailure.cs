namespace DataOps.PowerShell.Infrastructure;

/// <summary>
/// The row a fleet's Test-ProdHealth writes for a target it could not check (a dead port, a refused
/// login, a job that does not fit that database), beside the non-terminating error it also writes: the
/// fleet's table and a runbook see every target, checked or not. Status is the error's ErrorId
/// (ConnectionFailed, AuthenticationFailed, JobFileInvalid, ...).
/// </summary>
public sealed class FleetTargetFailure
{
    internal FleetTargetFailure(string target, string command, string errorId, string message)
    {
        Target = target;
        Command = command;
        ErrorId = errorId;
        Message = message;
    }

    /// <summary>The target's name (the connection's name; never its password).</summary>
    public string Target { get; }

    /// <summary>The error's ErrorId, such as ConnectionFailed.</summary>
    public string Status => ErrorId;

    public string ErrorId { get; }

    public string Command { get; }

    /// <summary>What went wrong, with the target's name in front.</summary>
    public string Message { get; }

    /// <summary>Always false: the target was not found healthy.</summary>
    public bool Healthy => false;

    /// <summary>Always null: the check did not run, so there is no plan. Piped to Invoke-Backfill, the row is skipped.</summary>
    public string? PlanPath => null;

    public override string ToString() => $"{Target}: {ErrorId}";
}
