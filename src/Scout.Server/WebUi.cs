using Microsoft.AspNetCore.Http;

namespace Scout.Server;

/// <summary>
/// The chat page at GET /: one self-contained HTML file (its CSS and JavaScript inline, embedded in this assembly).
/// It talks to this server's own /v1 routes and fetches nothing from anywhere else — the Content-Security-Policy says so
/// to the browser too.
/// </summary>
internal static class WebUi
{
    private static readonly Lazy<byte[]> Page = new(() =>
    {
        using var stream = typeof(WebUi).Assembly.GetManifestResourceStream("Scout.Server.Page.index.html")
            ?? throw new InvalidOperationException("the chat page is missing from Scout.Server's resources");
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        return buffer.ToArray();
    });

    public static async Task Serve(HttpContext ctx)
    {
        var h = ctx.Response.Headers;
        ctx.Response.ContentType = "text/html; charset=utf-8";
        h.CacheControl = "no-cache";
        h.ContentSecurityPolicy = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'";
        h.XContentTypeOptions = "nosniff";
        await ctx.Response.Body.WriteAsync(Page.Value, ctx.RequestAborted).ConfigureAwait(false);
    }
}
