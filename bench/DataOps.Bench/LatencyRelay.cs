using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;

namespace DataOps.Bench;

/// <summary>
/// A loopback TCP relay in front of a sandbox that holds every chunk of bytes for a fixed delay in each
/// direction, in order: the sandbox then answers like a server on the network (delay 0.5 ms each way is
/// a 1 ms round trip, as within a cloud region). Real sockets and a real server; only the distance is added.
/// </summary>
internal sealed class LatencyRelay : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly int _targetPort;
    private readonly TimeSpan _delay;

    public LatencyRelay(int targetPort, TimeSpan delay)
    {
        _targetPort = targetPort;
        _delay = delay;
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _ = AcceptAsync();
    }

    public int Port { get; }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }

            _ = RelayAsync(client);
        }
    }

    private async Task RelayAsync(TcpClient client)
    {
        using var c = client;
        using var server = new TcpClient { NoDelay = true };
        c.NoDelay = true;
        await server.ConnectAsync(IPAddress.Loopback, _targetPort, _stop.Token).ConfigureAwait(false);
        using var ends = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        await Task.WhenAny(Pipe(c.GetStream(), server.GetStream(), ends.Token), Pipe(server.GetStream(), c.GetStream(), ends.Token)).ConfigureAwait(false);
        ends.Cancel();
    }

    /// <summary>Reads chunks as they come and writes each one delay after it arrived, in order.</summary>
    private async Task Pipe(NetworkStream from, NetworkStream to, CancellationToken ct)
    {
        var queue = Channel.CreateUnbounded<(byte[] Data, long Due)>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var writer = Task.Run(async () =>
        {
            await foreach (var (data, due) in queue.Reader.ReadAllAsync(ct).ConfigureAwait(false))
            {
                var wait = due - Environment.TickCount64;
                if (wait > 0)
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(wait), ct).ConfigureAwait(false);
                }

                await to.WriteAsync(data, ct).ConfigureAwait(false);
            }
        }, ct);
        var buffer = new byte[64 * 1024];
        try
        {
            int n;
            while ((n = await from.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
            {
                queue.Writer.TryWrite((buffer[..n], Environment.TickCount64 + (long)_delay.TotalMilliseconds));
            }
        }
        catch (Exception)
        {
            // Either side closed or the relay stops.
        }

        queue.Writer.TryComplete();
        try
        {
            await writer.ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The other side went away.
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        _stop.Dispose();
    }
}
