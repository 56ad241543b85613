using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace DataOps.Tests;

/// <summary>A real HTTP endpoint on 127.0.0.1 that keeps every hook payload it receives and answers <see cref="Status"/>.</summary>
internal sealed class HookReceiver : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly ConcurrentQueue<(JsonElement Payload, string Body, string? Authorization)> _received = new();

    public HookReceiver(int status = 200)
    {
        Status = status;
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        Port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
        _listener.Start();
        _ = Task.Run(LoopAsync);
    }

    public int Port { get; }

    public string Url => $"http://127.0.0.1:{Port}/hook";

    public int Status { get; set; }

    /// <summary>The payloads in the order they arrived.</summary>
    public IReadOnlyList<JsonElement> Payloads => [.. _received.Select(r => r.Payload)];

    public IReadOnlyList<string> Bodies => [.. _received.Select(r => r.Body)];

    public IReadOnlyList<string?> Authorizations => [.. _received.Select(r => r.Authorization)];

    private async Task LoopAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext ctx;
            try
            {
                ctx = await _listener.GetContextAsync();
            }
            catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }

            using var reader = new StreamReader(ctx.Request.InputStream);
            var body = await reader.ReadToEndAsync();
            _received.Enqueue((JsonDocument.Parse(body).RootElement.Clone(), body, ctx.Request.Headers["Authorization"]));
            ctx.Response.StatusCode = Status;
            ctx.Response.Close();
        }
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
    }
}
