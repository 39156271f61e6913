using System.Text.Json;

namespace Scout.Tests.Evaluation;

/// <summary>A fixture's tokens and Meta's golden logits, with the log-softmax computed in double.</summary>
public sealed class Golden
{
    public string Name { get; }
    public int[] Tokens { get; }
    public int Vocab { get; }
    public float[] Logits { get; }
    public float[] LogitsBf16 { get; }
    public int Rows => Tokens.Length;

    public Golden(string name)
    {
        Name = name;
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.Text(name, "tokens.json")));
        Tokens = doc.RootElement.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Logits = Fixtures.ReadF32(Fixtures.Text(name, "logits.f32"));
        LogitsBf16 = Fixtures.ReadF32(Fixtures.Text(name, "logits-bf16.f32"));
        Vocab = Logits.Length / Tokens.Length;
    }

    public ReadOnlySpan<float> Row(float[] logits, int t) => logits.AsSpan(t * Vocab, Vocab);

    /// <summary>ln p over the vocabulary for row t, in double.</summary>
    public double[] LogSoftmax(float[] logits, int t)
    {
        var row = Row(logits, t);
        double max = double.NegativeInfinity;
        foreach (float v in row) max = Math.Max(max, v);
        double sum = 0;
        foreach (float v in row) sum += Math.Exp(v - max);
        double lse = max + Math.Log(sum);
        var result = new double[Vocab];
        for (int i = 0; i < Vocab; i++) result[i] = row[i] - lse;
        return result;
    }

    /// <summary>−ln p(tokens[t+1]) from row t.</summary>
    public double Nll(float[] logits, int t) => -LogSoftmax(logits, t)[Tokens[t + 1]];

    /// <summary>KL(P ‖ Q) of row t, P from <paramref name="p"/>, Q from <paramref name="q"/>.</summary>
    public double Kld(float[] p, float[] q, int t)
    {
        var lp = LogSoftmax(p, t);
        var lq = LogSoftmax(q, t);
        double k = 0;
        for (int i = 0; i < Vocab; i++) k += Math.Exp(lp[i]) * (lp[i] - lq[i]);
        return k;
    }

    /// <summary>The rows llama-perplexity scores in one chunk of the whole sequence: ctx/2 … ctx−2.</summary>
    public IEnumerable<int> ScoredRows => Enumerable.Range(Rows / 2, Rows - 1 - Rows / 2);

    /// <summary>The fixture's tokens repeated: every chunk of --ctx = Rows is the golden sequence (it starts with BOS).</summary>
    public string WriteRepeated(string path, int times)
    {
        var ids = Enumerable.Repeat(Tokens, times).SelectMany(t => t).ToArray();
        File.WriteAllText(path, JsonSerializer.Serialize(new { input_ids = ids }));
        return path;
    }
}
