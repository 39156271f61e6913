using System.ClientModel;
using System.Net.Http.Headers;
using OpenAI;
using OpenAI.Chat;
using Scout.Generation;
using Scout.Model;
using Scout.Server;
using Scout.Tests.Generation;

namespace Scout.Tests.Server;

/// <summary>The real server on a free loopback port, serving scout-tiny with the stand-in tokenizer and an API key.</summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public const string Key = "test-key";
    public Llama4Model Model { get; } = Llama4Model.Load(Fixtures.Text("scout-tiny", "model.safetensors"));
    public ScoutEngine Engine { get; private set; } = null!;
    public ScoutServer Server { get; private set; } = null!;
    public HttpClient Http { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Engine = new ScoutEngine(Model, new TokenizerBundle(StandInTokenizer.Instance, StandInChatFormat.Instance),
            new SchedulerOptions { Parallel = 4, QueueLimit = 32, MaxContext = 256 }, "scout-tiny");
        Server = new ScoutServer(Engine, new ServerOptions
        {
            Port = 0, ApiKey = Key,
            Limits = new RequestLimits { MaxTokens = 200, MaxRequestBytes = 64 << 10 },
        });
        await Server.StartAsync();
        Http = TestHttp.Client(new Uri(Server.Url), TimeSpan.FromSeconds(30));
        Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
    }

    public ChatClient OpenAiChat() => new("scout-tiny", new ApiKeyCredential(Key), new OpenAIClientOptions { Endpoint = new Uri(Server.Url + "/v1") });

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        Engine.Dispose();
        Model.Dispose();
    }
}
