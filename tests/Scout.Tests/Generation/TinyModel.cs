using Scout.Cli.Commands;
using Scout.Model;

namespace Scout.Tests.Generation;

/// <summary>scout-tiny loaded once per test class that asks for it, with its fixture tokens and Meta's golden logits.</summary>
public sealed class TinyModel : IDisposable
{
    public Llama4Model Model { get; } = Llama4Model.Load(Fixtures.Text("scout-tiny", "model.safetensors"));
    public int[] Tokens { get; } = LogitsCommand.ReadTokens(Fixtures.Text("scout-tiny", "tokens.json"));
    public float[] Golden { get; } = Fixtures.ReadF32(Fixtures.Text("scout-tiny", "logits.f32"));
    public int Vocab => Model.Config.VocabSize;
    public ReadOnlySpan<float> GoldenRow(int t) => Golden.AsSpan(t * Vocab, Vocab);
    public void Dispose() => Model.Dispose();
}
