using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Numerics.Tensors;

namespace Scout.Kernels;

/// <summary>The elementwise and normalisation kernels of the forward pass (SIMD through TensorPrimitives).</summary>
public static class Ops
{
    /// <summary>y = x / sqrt(mean(x²) + eps) · w (w may be empty for the weightless QK-norm).</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y)
    {
        float ss = TensorPrimitives.SumOfSquares(x);
        float inv = 1f / MathF.Sqrt(ss / x.Length + eps);
        if (weight.IsEmpty)
        {
            TensorPrimitives.Multiply(x, inv, y);
        }
        else
        {
            TensorPrimitives.Multiply(x, inv, y);
            TensorPrimitives.Multiply(y, weight, y);
        }
    }

    /// <summary>In-place softmax.</summary>
    public static void Softmax(Span<float> x)
    {
        if (x.IsEmpty) return;
        float max = TensorPrimitives.Max(x);
        TensorPrimitives.Subtract(x, max, x);
        TensorPrimitives.Exp(x, x);
        float sum = TensorPrimitives.Sum(x);
        TensorPrimitives.Multiply(x, 1f / sum, x);
    }

    /// <summary>gate = silu(gate) · up, in place in <paramref name="gate"/>.</summary>
    public static void SwiGlu(Span<float> gate, ReadOnlySpan<float> up)
    {
        // silu(g) = g·sigmoid(g)
        Span<float> tmp = gate.Length <= 4096 ? stackalloc float[gate.Length] : new float[gate.Length];
        TensorPrimitives.Sigmoid(gate, tmp);
        TensorPrimitives.Multiply(gate, tmp, gate);
        TensorPrimitives.Multiply(gate, up, gate);
    }

    /// <summary>
    /// Rotates adjacent pairs (x[2j], x[2j+1]) of one head by angle pos·freq[j] (Meta's complex formulation).
    /// </summary>
    public static void Rope(Span<float> head, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        for (int j = 0; j < cos.Length; j++)
        {
            float a = head[2 * j], b = head[2 * j + 1];
            head[2 * j] = a * cos[j] - b * sin[j];
            head[2 * j + 1] = a * sin[j] + b * cos[j];
        }
    }

    public static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));

    /// <summary>Σ a·b for short vectors (a head's 64–128 values): inlined FMA loop without TensorPrimitives' call overhead.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (b.Length < a.Length) throw new ArgumentException("vectors differ in length");
        ref float ra = ref MemoryMarshal.GetReference(a), rb = ref MemoryMarshal.GetReference(b);
        int n = a.Length, i = 0;
        float sum = 0;
        if (Vector256.IsHardwareAccelerated && n >= 16)
        {
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            for (; i + 16 <= n; i += 16)
            {
                acc0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref ra, (nuint)i), Vector256.LoadUnsafe(ref rb, (nuint)i), acc0);
                acc1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref ra, (nuint)i + 8), Vector256.LoadUnsafe(ref rb, (nuint)i + 8), acc1);
            }
            sum = Vector256.Sum(acc0 + acc1);
        }
        for (; i < n; i++) sum += Unsafe.Add(ref ra, i) * Unsafe.Add(ref rb, i);
        return sum;
    }

    /// <summary>dst += w·src for short vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void AddScaled(Span<float> dst, ReadOnlySpan<float> src, float w)
    {
        if (src.Length < dst.Length) throw new ArgumentException("vectors differ in length");
        ref float rd = ref MemoryMarshal.GetReference(dst), rs = ref MemoryMarshal.GetReference(src);
        int n = dst.Length, i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var vw = Vector256.Create(w);
            for (; i + 8 <= n; i += 8)
                Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref rs, (nuint)i), vw, Vector256.LoadUnsafe(ref rd, (nuint)i)).StoreUnsafe(ref rd, (nuint)i);
        }
        for (; i < n; i++) Unsafe.Add(ref rd, i) += w * Unsafe.Add(ref rs, i);
    }
}

/// <summary>Plain scalar versions of the kernels: the reference the SIMD code is tested against.</summary>
public static class ScalarReference
{
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y)
    {
        double ss = 0;
        foreach (var v in x) ss += (double)v * v;
        double inv = 1.0 / Math.Sqrt(ss / x.Length + eps);
        for (int i = 0; i < x.Length; i++) y[i] = (float)(x[i] * inv * (weight.IsEmpty ? 1.0 : weight[i]));
    }

    public static void Softmax(Span<float> x)
    {
        double max = double.NegativeInfinity;
        foreach (var v in x) max = Math.Max(max, v);
        double sum = 0;
        for (int i = 0; i < x.Length; i++) sum += Math.Exp(x[i] - max);
        for (int i = 0; i < x.Length; i++) x[i] = (float)(Math.Exp(x[i] - max) / sum);
    }

    public static void SwiGlu(Span<float> gate, ReadOnlySpan<float> up)
    {
        for (int i = 0; i < gate.Length; i++)
        {
            double g = gate[i];
            gate[i] = (float)(g / (1 + Math.Exp(-g)) * up[i]);
        }
    }

    /// <summary>y[n, rows] = x[n, cols] · W[rows, cols]ᵀ in double.</summary>
    public static void MatMul(ReadOnlySpan<float> w, int rows, int cols, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        for (int t = 0; t < n; t++)
            for (int r = 0; r < rows; r++)
            {
                double acc = 0;
                for (int c = 0; c < cols; c++) acc += (double)w[r * cols + c] * x[t * cols + c];
                y[t * rows + r] = (float)acc;
            }
    }

    public static void Rope(Span<float> head, int pos, ReadOnlySpan<double> freqs)
    {
        for (int j = 0; j < freqs.Length; j++)
        {
            double angle = pos * freqs[j];
            double a = head[2 * j], b = head[2 * j + 1];
            head[2 * j] = (float)(a * Math.Cos(angle) - b * Math.Sin(angle));
            head[2 * j + 1] = (float)(a * Math.Sin(angle) + b * Math.Cos(angle));
        }
    }
}
