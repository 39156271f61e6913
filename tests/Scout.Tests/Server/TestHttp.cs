namespace Scout.Tests.Server;

/// <summary>
/// The tests' HTTP client for a Scout server on loopback: one connection per request ("Connection: close"). A pooled
/// keep-alive connection can be closed by the server at the moment the client reuses it (the server ends connections
/// after a refused oversized body, a hostile client, …), which a client reports as "the response ended prematurely";
/// real clients retry that, the tests would instead fail at random under load.
/// </summary>
public static class TestHttp
{
    public static HttpClient Client(Uri baseAddress, TimeSpan? timeout = null)
    {
        var http = new HttpClient { BaseAddress = baseAddress, Timeout = timeout ?? TimeSpan.FromSeconds(100) };
        http.DefaultRequestHeaders.ConnectionClose = true;
        return http;
    }
}
