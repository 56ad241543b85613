using System.Management.Automation.Host;

namespace DataOps.Host;

/// <summary>Just enough raw UI for the formatter: a fixed-width buffer when output is redirected.</summary>
internal sealed class ConsoleRawUserInterface : PSHostRawUserInterface
{
    private static readonly int Width = ReadWidth();

    public override ConsoleColor BackgroundColor { get; set; } = ConsoleColor.Black;

    public override ConsoleColor ForegroundColor { get; set; } = ConsoleColor.Gray;

    public override Size BufferSize { get => new(Width, 9999); set { } }

    public override Coordinates CursorPosition { get; set; }

    public override int CursorSize { get; set; } = 1;

    public override bool KeyAvailable => false;

    public override Size MaxPhysicalWindowSize => new(Width, 100);

    public override Size MaxWindowSize => new(Width, 100);

    public override Coordinates WindowPosition { get; set; }

    public override Size WindowSize { get => new(Width, 50); set { } }

    public override string WindowTitle { get; set; } = "DataOps";

    public override void FlushInputBuffer()
    {
    }

    public override BufferCell[,] GetBufferContents(Rectangle rectangle) => throw new NotSupportedException();

    public override KeyInfo ReadKey(ReadKeyOptions options) => throw new NotSupportedException("DataOps.Host does not read single keys.");

    public override void ScrollBufferContents(Rectangle source, Coordinates destination, Rectangle clip, BufferCell fill)
    {
    }

    public override void SetBufferContents(Coordinates origin, BufferCell[,] contents)
    {
    }

    public override void SetBufferContents(Rectangle rectangle, BufferCell fill)
    {
    }

    private static int ReadWidth()
    {
        if (int.TryParse(Environment.GetEnvironmentVariable("COLUMNS"), out var columns) && columns > 20)
        {
            return columns;
        }

        try
        {
            return Console.IsOutputRedirected ? 160 : Math.Max(80, Console.WindowWidth);
        }
        catch (IOException)
        {
            return 160;
        }
    }
}
