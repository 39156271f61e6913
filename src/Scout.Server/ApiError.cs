using System.Text.Json.Nodes;

namespace Scout.Server;

/// <summary>A request the server refuses, answered with an OpenAI-style error body and a 4xx status.</summary>
public sealed class ApiException(int status, string message, string? param = null, string? code = null, string type = "invalid_request_error")
    : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type;

    public JsonObject Body() => ErrorBody(Message, Type, Param, Code);

    public static JsonObject ErrorBody(string message, string type, string? param, string? code) => new()
    {
        ["error"] = new JsonObject
        {
            ["message"] = message,
            ["type"] = type,
            ["param"] = param,
            ["code"] = code,
        },
    };

    public static ApiException BadRequest(string message, string? param = null, string? code = null) => new(400, message, param, code);
}
