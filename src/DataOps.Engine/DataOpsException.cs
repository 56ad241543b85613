namespace DataOps.Engine;

/// <summary>What went wrong, in terms the cmdlet layer maps onto a PowerShell ErrorCategory.</summary>
public enum DataOpsErrorKind
{
    InvalidArgument,
    InvalidData,
    ObjectNotFound,
    ConnectionError,
    AuthenticationError,
    PermissionDenied,
    ResourceUnavailable,
    NotInstalled,
    InvalidOperation,
    OperationStopped,
    WriteError,
    OperationTimeout,
}

/// <summary>
/// The one exception type the engine lets escape. It carries a stable ErrorId, a kind and the
/// offending value, and its message is already free of secrets.
/// </summary>
public sealed class DataOpsException : Exception
{
    public DataOpsException(string errorId, DataOpsErrorKind kind, string message, object? target = null, Exception? inner = null)
        : base(message, inner)
    {
        ErrorId = errorId;
        Kind = kind;
        Target = target;
    }

    /// <summary>Stable identifier such as ConnectionMissing or JobFileInvalid.</summary>
    public string ErrorId { get; }

    public DataOpsErrorKind Kind { get; }

    /// <summary>The offending value, never a secret.</summary>
    public object? Target { get; }

    /// <summary>What the user can do about it, when the engine knows.</summary>
    public string? RecommendedAction { get; init; }
}
