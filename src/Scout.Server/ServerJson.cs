using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Scout.Server;

/// <summary>How the server writes JSON: UTF-8 text as it is (no \uXXXX escapes for non-ASCII), compact.</summary>
internal static class ServerJson
{
    /// <summary>
    /// The relaxed encoder writes non-ASCII characters as UTF-8 instead of \u escapes. Bodies are served as
    /// application/json or text/event-stream, never embedded in HTML, so the HTML-sensitive escapes are not needed.
    /// </summary>
    public static readonly JsonSerializerOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string Write(JsonNode node) => node.ToJsonString(Options);
}
