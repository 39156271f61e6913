using System.Buffers.Binary;
using System.Numerics;
using Scout.Kernels;
using Scout.Tensors;

namespace Scout.Model;

/// <summary>Weights or activations hold NaN or infinity: the file is corrupt (or the model diverged). The message names where.</summary>
public sealed class NonFiniteException(string message) : Scout.Formats.ModelLoadException(message);

/// <summary>One non-finite value found by <see cref="TensorScan.Scan"/>.</summary>
public sealed record TensorProblem(string Tensor, string Source, long Element, string What)
{
    public override string ToString() => $"{Source}: tensor '{Tensor}' {What}";
}

/// <summary>
/// Finds NaN and infinity in weights: every value of float tensors, and every block scale (and, after decoding,
/// every weight) of quantized ones. A full scan reads the whole checkpoint once (opt-in: <c>--check-tensors</c>).
/// </summary>
public static unsafe class TensorScan
{
    /// <summary>Index of the first NaN/±infinity in <paramref name="values"/>, or -1.</summary>
    public static int FirstNonFinite(ReadOnlySpan<float> values)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && values.Length >= Vector<float>.Count)
        {
            // x - x is 0 for finite x and NaN for NaN/±inf: one compare per vector finds both.
            var acc = Vector<float>.Zero;
            for (; i <= values.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                var v = new Vector<float>(values[i..]);
                acc += v - v;
            }
            if (Vector.EqualsAll(acc, Vector<float>.Zero)) i = values.Length - values.Length % Vector<float>.Count;
            else i = 0;
        }
        for (; i < values.Length; i++)
            if (!float.IsFinite(values[i])) return i;
        return -1;
    }

    /// <summary>Byte offsets (within a block) of the f16 scales of each block type; Q8_K's is an f32.</summary>
    private static int[] HalfScaleOffsets(TensorType t) => t switch
    {
        TensorType.Q4_0 or TensorType.Q5_0 or TensorType.Q8_0 => [0],
        TensorType.Q4_1 or TensorType.Q5_1 or TensorType.Q8_1 or TensorType.Q4_K or TensorType.Q5_K => [0, 2],
        TensorType.Q2_K => [80, 82],
        TensorType.Q3_K => [108],
        TensorType.Q6_K => [208],
        _ => [],
    };

    /// <summary>Checks one tensor; returns the first problem, or null.</summary>
    public static TensorProblem? Check(WeightTensor t, CancellationToken cancel = default)
    {
        var type = t.Type;
        long blocks = t.ByteLength / type.BlockBytes();
        int bb = type.BlockBytes(), be = type.BlockElements();
        var offsets = type.IsFloat() ? [] : HalfScaleOffsets(type);
        if (offsets.Length > 0 || type == TensorType.Q8_K)
        {
            for (long b = 0; b < blocks; b++)
            {
                byte* blk = t.Data + b * bb;
                foreach (int o in offsets)
                {
                    var h = BinaryPrimitives.ReadHalfLittleEndian(new ReadOnlySpan<byte>(blk + o, 2));
                    if (!Half.IsFinite(h))
                        return new TensorProblem(t.Name, t.Source, b * be, $"block {b} (weights {b * be}..{b * be + be - 1}) has a non-finite {type} scale ({h})");
                }
                if (type == TensorType.Q8_K && !float.IsFinite(*(float*)blk))
                    return new TensorProblem(t.Name, t.Source, b * be, $"block {b} has a non-finite Q8_K scale ({*(float*)blk})");
            }
        }
        if (!type.IsFloat() && !Dequantize.BlockDecoders.ContainsKey(type)) return null;
        // Decode in chunks of whole blocks and look at every value (catches what the scales alone do not, e.g. float tensors).
        const int chunkBlocks = 4096;
        var buffer = new float[chunkBlocks * be];
        for (long b = 0; b < blocks; b += chunkBlocks)
        {
            cancel.ThrowIfCancellationRequested();
            int n = (int)Math.Min(chunkBlocks, blocks - b);
            var dst = buffer.AsSpan(0, n * be);
            Dequantize.ToFloat(type, new ReadOnlySpan<byte>(t.Data + b * bb, n * bb), dst);
            int bad = FirstNonFinite(dst);
            if (bad >= 0)
            {
                long element = b * be + bad;
                return new TensorProblem(t.Name, t.Source, element, $"holds {dst[bad]} at element {element}{ElementPlace(t, element)}");
            }
        }
        return null;
    }

    private static string ElementPlace(WeightTensor t, long element)
    {
        if (t.Shape.Length < 2) return "";
        long cols = t.Shape[^1];
        return $" (row {element / cols}, column {element % cols})";
    }

    /// <summary>Checks every tensor of a checkpoint (all of them, not only the text model's); returns every problem found.</summary>
    public static IReadOnlyList<TensorProblem> Scan(Checkpoint ckpt, Action<int, int>? progress = null, CancellationToken cancel = default)
    {
        var problems = new List<TensorProblem>();
        var all = ckpt.Tensors.Values.ToList();
        for (int i = 0; i < all.Count; i++)
        {
            if (Check(all[i], cancel) is { } p) problems.Add(p);
            progress?.Invoke(i + 1, all.Count);
        }
        return problems;
    }
}
