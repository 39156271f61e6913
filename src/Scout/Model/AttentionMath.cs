namespace Scout.Model;

/// <summary>The position-dependent rules of Llama 4 attention (iRoPE), as small pure functions.</summary>
public static class AttentionMath
{
    /// <summary>
    /// RoPE angular frequency per pair j: θ^(-2j/d), divided per llama3 scaling (or by a GGUF's rope_freqs divisors).
    /// Computed in float32 as Meta's reference does.
    /// </summary>
    public static float[] RopeFrequencies(int headDim, double theta, RopeScaling? scaling, float[]? divisors = null)
    {
        int half = headDim / 2;
        var freqs = new float[half];
        for (int j = 0; j < half; j++)
        {
            float exponent = (float)(2 * j) / headDim;
            float f = (float)(1.0 / MathF.Pow((float)theta, exponent));
            if (divisors is not null) f /= divisors[j];
            else if (scaling is not null) f = Llama3Scale(f, scaling);
            freqs[j] = f;
        }
        return freqs;
    }

    /// <summary>llama3 frequency scaling: long wavelengths divided by the factor, a smooth band between.</summary>
    public static float Llama3Scale(float freq, RopeScaling s)
    {
        double lowWavelen = s.OriginalMaxPositions / s.LowFreqFactor;
        double highWavelen = s.OriginalMaxPositions / s.HighFreqFactor;
        double wavelen = 2 * Math.PI / freq;
        if (wavelen < highWavelen) return freq;
        if (wavelen > lowWavelen) return (float)(freq / s.Factor);
        double smooth = (s.OriginalMaxPositions / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
        return (float)((1 - smooth) * freq / s.Factor + smooth * freq);
    }

    /// <summary>First position of the attention chunk holding <paramref name="pos"/>.</summary>
    public static int ChunkStart(int pos, int chunkSize) => pos / chunkSize * chunkSize;

    /// <summary>Whether query position q may attend to key position k.</summary>
    public static bool IsVisible(int q, int k, bool chunked, int chunkSize)
        => k <= q && (!chunked || k / chunkSize == q / chunkSize);

    /// <summary>First key position visible from query position q.</summary>
    public static int FirstVisibleKey(int q, bool chunked, int chunkSize) => chunked ? ChunkStart(q, chunkSize) : 0;

    /// <summary>Inference-time temperature tuning of NoPE layers: 1 + attn_scale·ln(⌊(p+1)/floor_scale⌋ + 1).</summary>
    public static float TemperatureScale(int pos, double floorScale, double attnScale)
    {
        float floored = MathF.Floor((pos + 1f) / (float)floorScale);
        return MathF.Log(floored + 1f) * (float)attnScale + 1f;
    }
}
