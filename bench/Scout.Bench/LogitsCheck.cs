using LLama;
using LLama.Common;
using LLama.Native;
using Scout.Diagnostics;
using Scout.Kernels;
using Scout.Model;

namespace Scout.Bench;

/// <summary>
/// Scout's logits against llama.cpp's on the same quantized file and token ids: per-position max |Δ|, KL(llama‖scout)
/// of the softmax, and top-1 agreement. Both engines quantize activations to 8 bits, with different rounding.
/// </summary>
internal static class LogitsCheck
{
    public static int Run(Options o)
    {
        string path = o.Get("model", "");
        int n = o.GetInt("tokens", 24), threads = o.GetInt("threads", Environment.ProcessorCount);
        NativeLibraryConfig.All.WithAvx(o.Get("avx", "avx512") == "avx2" ? AvxLevel.Avx2 : AvxLevel.Avx512)
            .WithLogCallback((level, message) => { if (level == LLamaLogLevel.Error) Console.Error.Write(message); });
        using var backend = new Scout.Backends.CpuBackend(threads);
        using var scout = Llama4Model.Load(path, backend: backend);
        int vocab = scout.Config.VocabSize;
        var ids = ModelBenchmark.Tokens(n, vocab - 3, seed: 5);
        var mine = new float[n * vocab];
        scout.Forward(ids, scout.CreateCache(n), mine, LogitsMode.All);

        var mp = new ModelParams(path) { ContextSize = (uint)(n + 8), BatchSize = (uint)n, UBatchSize = (uint)n, Threads = threads, GpuLayerCount = 0 };
        using var weights = LLamaWeights.LoadFromFile(mp);
        using var ctx = weights.CreateContext(mp);
        var batch = new LLamaBatch();
        for (int i = 0; i < n; i++) batch.Add(ids[i], i, LLamaSeqId.Zero, true);
        if (ctx.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama.cpp decode failed");

        double worstKl = 0, worstDelta = 0, maxLogit = 0, sumKl = 0;
        int agree = 0;
        for (int t = 0; t < n; t++)
        {
            var theirs = ctx.NativeHandle.GetLogitsIth(t);
            var ours = mine.AsSpan(t * vocab, vocab);
            double delta = 0;
            for (int v = 0; v < vocab; v++)
            {
                delta = Math.Max(delta, Math.Abs(ours[v] - theirs[v]));
                maxLogit = Math.Max(maxLogit, Math.Abs(theirs[v]));
            }
            double kl = Kl(theirs, ours);
            sumKl += kl;
            worstKl = Math.Max(worstKl, kl);
            worstDelta = Math.Max(worstDelta, delta);
            if (ArgMax(theirs) == ArgMax(ours)) agree++;
        }
        Console.WriteLine($"{Path.GetFileName(path)}: {n} positions, max |Δlogit| {worstDelta:G4} (max |logit| {maxLogit:G4}), " +
                          $"KL(llama.cpp‖Scout) mean {sumKl / n:G4} max {worstKl:G4}, top-1 agreement {agree}/{n}");
        return 0;
    }

    private static int ArgMax(ReadOnlySpan<float> v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }

    private static double Kl(ReadOnlySpan<float> p, ReadOnlySpan<float> q)
    {
        double mp = double.MinValue, mq = double.MinValue;
        foreach (var x in p) mp = Math.Max(mp, x);
        foreach (var x in q) mq = Math.Max(mq, x);
        double zp = 0, zq = 0;
        for (int i = 0; i < p.Length; i++) { zp += Math.Exp(p[i] - mp); zq += Math.Exp(q[i] - mq); }
        double kl = 0;
        for (int i = 0; i < p.Length; i++)
        {
            double lp = p[i] - mp - Math.Log(zp), lq = q[i] - mq - Math.Log(zq);
            kl += Math.Exp(lp) * (lp - lq);
        }
        return kl;
    }
}
