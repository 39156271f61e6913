using System.Numerics.Tensors;
using Scout.Formats;
using Scout.Kernels;
using Scout.Model;
using Scout.Tensors;

namespace Scout.Vision;

/// <summary>Intermediate values of one tile's encoding, for checking against the reference.</summary>
public sealed class VisionTrace
{
    /// <summary>[patches, D]: the patch embedding before the class token and positions.</summary>
    public float[]? PatchEmbeds { get; set; }
    /// <summary>[0]: the encoder input after positions and layernorm_pre; [i]: after layer i. [patches+1, D], class token last.</summary>
    public List<float[]> Hidden { get; } = new();
}

/// <summary>
/// Llama 4's image path after preprocessing (Meta <c>vision/encoder.py</c> + <c>embedding.py</c>, HF names):
///
///   x = [patch_embedding(unfold(tile)); class_embedding] + positional_embedding_vlm;  x = layernorm_pre(x)
///   for each layer:  x += o_proj(attn(rope2d(q,k), v)) of input_layernorm(x);  x += fc2(gelu(fc1(post_attention_layernorm(x))))
///   x = layernorm_post(x), class token (last) dropped
///   s = pixel_shuffle(x, 0.5);  a = gelu(fc2(gelu(fc1(s))));  e = multi_modal_projector(a)
///
/// Tiles are encoded independently; matrix products run on the shared worker pool.
/// </summary>
public sealed unsafe class VisionEncoder
{
    private sealed class Layer
    {
        public required float[] Norm1W, Norm1B, Norm2W, Norm2B, QB, KB, VB, OB, Fc1B, Fc2B;
        public required IWeightMatrix Q, K, V, O, Fc1, Fc2;
    }

    private readonly WorkerPool _pool;
    private readonly IWeightMatrix _patchEmbedding;
    private readonly float[] _classEmbedding, _positions, _preW, _preB, _postW, _postB;
    private readonly Layer[] _layers;
    private readonly IWeightMatrix _adapterFc1, _adapterFc2, _projector;
    private readonly float[]? _projectorBias;
    private readonly float[] _ropeCos, _ropeSin; // [patches+1, headDim/2]

    public VisionConfig Config { get; }
    /// <summary>Width of the projected embeddings (the text model's hidden size).</summary>
    public int OutputDim => _projector.Rows;
    public int AdapterDim => _adapterFc2.Rows;
    /// <summary>Bytes of vision weights (for memory planning).</summary>
    public long WeightBytes { get; }

    /// <summary>Bytes of the vision tensors in a checkpoint (vision_model.*, multi_modal_projector.*), without loading them.</summary>
    public static long CountWeightBytes(Checkpoint ckpt)
        => ckpt.Tensors.Where(kv => kv.Key.StartsWith("vision_model.", StringComparison.Ordinal) || kv.Key.StartsWith("multi_modal_projector.", StringComparison.Ordinal))
            .Sum(kv => kv.Value.ByteLength);

    /// <summary>Peak scratch memory of encoding one tile (float32 activations), for memory planning.</summary>
    public long ScratchBytesPerTile => ScratchBytesPerTileFor(Config);

    /// <summary>
    /// Float32 scratch <see cref="EncodeTile"/> allocates for one tile. <see cref="Run"/> encodes tiles one after another,
    /// so one tile's worth is live at a time whatever the image's size.
    /// </summary>
    public static long ScratchBytesPerTileFor(VisionConfig c)
    {
        long n = c.PatchesPerTile + 1, d = c.HiddenSize;
        // x, normed, q, k, v, attn, packed keys and values, MLP hidden, unfolded patches
        return 4 * (n * d * 8 + n * c.IntermediateSize + c.PatchesPerTile * (long)c.PatchValues);
    }

    /// <summary>
    /// Float32 buffers that live for a whole image of <paramref name="tiles"/> tiles (thumbnail included): its pixels
    /// and what <see cref="Run"/> allocates — encoder output, pixel-shuffled rows, adapter hidden and output, and the
    /// projected rows of width <paramref name="textHidden"/> that replace the prompt's patch tokens.
    /// </summary>
    public static long ImageBufferBytes(VisionConfig c, int tiles, int textHidden)
    {
        long rows = (long)tiles * c.TokensPerTile;
        long shuffledWidth = (long)c.HiddenSize * c.ShuffleFactor * c.ShuffleFactor;
        return 4 * ((long)tiles * 3 * c.ImageSize * c.ImageSize + (long)tiles * c.PatchesPerTile * c.HiddenSize
                    + rows * (shuffledWidth + c.ProjectorInputDim + c.ProjectorOutputDim + textHidden));
    }

    /// <summary>True when the checkpoint carries Llama 4 vision weights (<c>vision_model.*</c>).</summary>
    public static bool IsPresent(Checkpoint ckpt) => ckpt.Find("vision_model.patch_embedding.linear.weight") is not null;

    /// <summary>Loads the vision tower, adapter and projector from a Hugging Face checkpoint opened with <see cref="Checkpoint.Open"/>;
    /// its products run on <paramref name="pool"/> (the text model's backend threads).</summary>
    public static VisionEncoder Load(Checkpoint ckpt, WorkerPool pool)
    {
        if (!IsPresent(ckpt))
            throw new ModelLoadException(ckpt.Format == CheckpointFormat.Gguf
                ? $"{string.Join(", ", ckpt.Files.Select(Path.GetFileName))}: GGUF files carry no Llama 4 vision weights here (llama.cpp keeps them in a separate mmproj file, which Scout does not read); use the Hugging Face folder for images"
                : $"{ckpt.Folder}: the checkpoint has no vision weights (vision_model.*); it is a text-only model");
        if (ckpt.Config.VisionConfig is not { } json)
            throw new ModelLoadException($"{ckpt.Folder}: config.json has no vision_config, but the checkpoint has vision weights");
        return new VisionEncoder(VisionConfig.FromJson(json, "config.json vision_config"), ckpt, pool);
    }

    private VisionEncoder(VisionConfig config, Checkpoint ckpt, WorkerPool pool)
    {
        Config = config;
        _pool = pool;
        int d = config.HiddenSize, p = config.PatchesPerTile;
        long bytes = 0;
        WeightTensor Get(string name) { var t = ckpt.Get(name); bytes += t.ByteLength; return t; }
        IWeightMatrix Matrix(string name, int rows, int cols)
        {
            var t = Get(name);
            Expect(t, rows, cols);
            return TiledFloatMatrix.Create(t.Type, t.Data, rows, cols, pool);
        }
        IWeightMatrix MatrixAnyRows(string name, int cols)
        {
            var t = Get(name);
            if (t.Rank != 2 || t.Shape[1] != cols)
                throw new ModelLoadException($"tensor '{name}' in {t.Source} has shape {t.ShapeText}, expected [*, {cols}]");
            return TiledFloatMatrix.Create(t.Type, t.Data, (int)t.Shape[0], cols, pool);
        }
        float[] Vec(string name, params long[] shape)
        {
            var t = Get(name);
            Expect(t, shape);
            return t.ToFloatArray();
        }

        const string v = "vision_model.";
        _patchEmbedding = Matrix(v + "patch_embedding.linear.weight", d, config.PatchValues);
        _classEmbedding = Vec(v + "class_embedding", d);
        _positions = Vec(v + "positional_embedding_vlm", p + 1, d);
        _preW = Vec(v + "layernorm_pre.weight", d);
        _preB = Vec(v + "layernorm_pre.bias", d);
        _postW = Vec(v + "layernorm_post.weight", d);
        _postB = Vec(v + "layernorm_post.bias", d);
        _layers = new Layer[config.NumLayers];
        int f = config.IntermediateSize;
        for (int i = 0; i < config.NumLayers; i++)
        {
            string l = $"{v}model.layers.{i}.";
            _layers[i] = new Layer
            {
                Norm1W = Vec(l + "input_layernorm.weight", d), Norm1B = Vec(l + "input_layernorm.bias", d),
                Norm2W = Vec(l + "post_attention_layernorm.weight", d), Norm2B = Vec(l + "post_attention_layernorm.bias", d),
                Q = Matrix(l + "self_attn.q_proj.weight", d, d), QB = Vec(l + "self_attn.q_proj.bias", d),
                K = Matrix(l + "self_attn.k_proj.weight", d, d), KB = Vec(l + "self_attn.k_proj.bias", d),
                V = Matrix(l + "self_attn.v_proj.weight", d, d), VB = Vec(l + "self_attn.v_proj.bias", d),
                O = Matrix(l + "self_attn.o_proj.weight", d, d), OB = Vec(l + "self_attn.o_proj.bias", d),
                Fc1 = Matrix(l + "mlp.fc1.weight", f, d), Fc1B = Vec(l + "mlp.fc1.bias", f),
                Fc2 = Matrix(l + "mlp.fc2.weight", d, f), Fc2B = Vec(l + "mlp.fc2.bias", d),
            };
        }
        int shuffled = d * config.ShuffleFactor * config.ShuffleFactor;
        _adapterFc1 = MatrixAnyRows(v + "vision_adapter.mlp.fc1.weight", shuffled);
        _adapterFc2 = MatrixAnyRows(v + "vision_adapter.mlp.fc2.weight", _adapterFc1.Rows);
        _projector = MatrixAnyRows("multi_modal_projector.linear_1.weight", _adapterFc2.Rows);
        if (_projector.Rows != ckpt.Config.HiddenSize)
            throw new ModelLoadException($"multi_modal_projector.linear_1.weight maps to {_projector.Rows} features, but the text model's hidden size is {ckpt.Config.HiddenSize}");
        if (ckpt.Find("multi_modal_projector.linear_1.bias") is not null)
            _projectorBias = Vec("multi_modal_projector.linear_1.bias", _projector.Rows);
        WeightBytes = bytes;
        (_ropeCos, _ropeSin) = RopeTables(config);
    }

    private static void Expect(WeightTensor t, params long[] shape)
    {
        if (!t.Shape.SequenceEqual(shape))
            throw new ModelLoadException($"tensor '{t.Name}' in {t.Source} has shape {t.ShapeText}, but the vision config implies [{string.Join(", ", shape)}]");
    }

    /// <summary>
    /// cos/sin per (token, pair): pairs below hd/4 turn by (col+1)·f, the rest by (row+1)·f, f_k = θ^(−4k/hd) in float32
    /// as Meta computes it; the class token (last) is not rotated.
    /// </summary>
    private static (float[] Cos, float[] Sin) RopeTables(VisionConfig c)
    {
        int hd = c.HeadDim, pairs = hd / 2, quarter = hd / 4, grid = c.GridSize, n = c.PatchesPerTile + 1;
        int freqDim = hd / 2;
        var freqs = new float[quarter];
        for (int k = 0; k < quarter; k++)
            freqs[k] = 1f / (float)Math.Pow(c.RopeTheta, (float)(2 * k) / freqDim);
        var cos = new float[n * pairs];
        var sin = new float[n * pairs];
        for (int t = 0; t < n; t++)
        {
            for (int j = 0; j < pairs; j++)
            {
                float angle = 0;
                if (t < c.PatchesPerTile)
                {
                    int row = t / grid, col = t % grid;
                    angle = j < quarter ? (col + 1) * freqs[j] : (row + 1) * freqs[j - quarter];
                }
                cos[t * pairs + j] = MathF.Cos(angle);
                sin[t * pairs + j] = MathF.Sin(angle);
            }
        }
        return (cos, sin);
    }

    /// <summary>
    /// Encodes one normalised tile [3, S, S] into <paramref name="output"/> [patches, D] (after layernorm_post, class token dropped).
    /// </summary>
    public void EncodeTile(ReadOnlySpan<float> tile, Span<float> output, VisionTrace? trace = null)
    {
        var c = Config;
        int d = c.HiddenSize, p = c.PatchesPerTile, n = p + 1, ps = c.PatchSize, grid = c.GridSize, size = c.ImageSize;
        if (tile.Length != 3 * size * size) throw new ArgumentException($"a tile holds 3x{size}x{size} = {3 * size * size} values, got {tile.Length}");
        if (output.Length < p * d) throw new ArgumentException($"output holds {output.Length} floats, needs {p * d}");

        // Unfold: patch n = grid·row + col, features ordered (channel, y, x).
        var patches = new float[p * c.PatchValues];
        for (int pr = 0; pr < grid; pr++)
        for (int pc = 0; pc < grid; pc++)
        {
            int o = (pr * grid + pc) * c.PatchValues;
            for (int ch = 0; ch < 3; ch++)
            for (int ky = 0; ky < ps; ky++)
            {
                tile.Slice(ch * size * size + (pr * ps + ky) * size + pc * ps, ps).CopyTo(patches.AsSpan(o, ps));
                o += ps;
            }
        }
        var x = new float[n * d];
        _patchEmbedding.Multiply(patches, p, x.AsSpan(0, p * d));
        if (trace is not null) trace.PatchEmbeds = x.AsSpan(0, p * d).ToArray();
        _classEmbedding.CopyTo(x.AsSpan(p * d, d));
        TensorPrimitives.Add(x, _positions, x);
        float eps = (float)c.NormEps;
        for (int t = 0; t < n; t++) VisionMath.LayerNorm(x.AsSpan(t * d, d), _preW, _preB, eps, x.AsSpan(t * d, d));
        trace?.Hidden.Add((float[])x.Clone());

        var normed = new float[n * d];
        var q = new float[n * d];
        var k = new float[n * d];
        var v = new float[n * d];
        var attn = new float[n * d];
        var mlp = new float[n * c.IntermediateSize];
        foreach (var layer in _layers)
        {
            for (int t = 0; t < n; t++) VisionMath.LayerNorm(x.AsSpan(t * d, d), layer.Norm1W, layer.Norm1B, eps, normed.AsSpan(t * d, d));
            Linear(layer.Q, layer.QB, normed, n, q);
            Linear(layer.K, layer.KB, normed, n, k);
            Linear(layer.V, layer.VB, normed, n, v);
            ApplyRope(q, n);
            ApplyRope(k, n);
            Attend(q, k, v, n, attn);
            Linear(layer.O, layer.OB, attn, n, normed);
            TensorPrimitives.Add(x, normed, x);

            for (int t = 0; t < n; t++) VisionMath.LayerNorm(x.AsSpan(t * d, d), layer.Norm2W, layer.Norm2B, eps, normed.AsSpan(t * d, d));
            Linear(layer.Fc1, layer.Fc1B, normed, n, mlp);
            ParallelGelu(mlp);
            Linear(layer.Fc2, layer.Fc2B, mlp, n, normed);
            TensorPrimitives.Add(x, normed, x);
            trace?.Hidden.Add((float[])x.Clone());
        }
        for (int t = 0; t < p; t++) VisionMath.LayerNorm(x.AsSpan(t * d, d), _postW, _postB, eps, output.Slice(t * d, d));
    }

    /// <summary>
    /// Pixel shuffle of one tile's [patches, D] → [tokens, k²·D]: output token (i, j) concatenates the patches
    /// (k·i + dy, k·j + dx) for dy, dx in 0..k−1 (row-major), k = 1/ratio.
    /// </summary>
    public void PixelShuffle(ReadOnlySpan<float> encoded, Span<float> output)
    {
        int d = Config.HiddenSize, grid = Config.GridSize, f = Config.ShuffleFactor, outGrid = grid / f;
        int width = f * f * d;
        for (int i = 0; i < outGrid; i++)
        for (int j = 0; j < outGrid; j++)
        {
            int o = (i * outGrid + j) * width;
            for (int dy = 0; dy < f; dy++)
            for (int dx = 0; dx < f; dx++)
            {
                encoded.Slice(((f * i + dy) * grid + f * j + dx) * d, d).CopyTo(output.Slice(o, d));
                o += d;
            }
        }
    }

    /// <summary>The adapter MLP on pixel-shuffled rows [n, k²·D] → [n, adapter]: gelu(fc2(gelu(fc1(s)))).</summary>
    public float[] Adapter(ReadOnlySpan<float> shuffled, int n)
    {
        var hidden = new float[n * _adapterFc1.Rows];
        _adapterFc1.Multiply(shuffled, n, hidden);
        ParallelGelu(hidden);
        var result = new float[n * _adapterFc2.Rows];
        _adapterFc2.Multiply(hidden, n, result);
        ParallelGelu(result);
        return result;
    }

    /// <summary>The multi-modal projector: [n, adapter] → [n, text hidden].</summary>
    public float[] Project(ReadOnlySpan<float> adapted, int n)
    {
        var result = new float[n * _projector.Rows];
        _projector.Multiply(adapted, n, result);
        if (_projectorBias is not null)
            for (int t = 0; t < n; t++) TensorPrimitives.Add(result.AsSpan(t * _projector.Rows, _projector.Rows), _projectorBias, result.AsSpan(t * _projector.Rows, _projector.Rows));
        return result;
    }

    /// <summary>All stages for a run of tiles [count, 3, S, S]; the projected rows are [count·tokensPerTile, text hidden].</summary>
    public VisionOutputs Run(ReadOnlySpan<float> tiles, int count)
    {
        var c = Config;
        int d = c.HiddenSize, p = c.PatchesPerTile, tokens = c.TokensPerTile, tileValues = 3 * c.ImageSize * c.ImageSize;
        if (count <= 0 || tiles.Length != count * tileValues)
            throw new ArgumentException($"expected {count} tiles of {tileValues} values, got {tiles.Length} values");
        var encoded = new float[count * p * d];
        int shuffledWidth = d * c.ShuffleFactor * c.ShuffleFactor;
        var shuffled = new float[count * tokens * shuffledWidth];
        for (int i = 0; i < count; i++)
        {
            EncodeTile(tiles.Slice(i * tileValues, tileValues), encoded.AsSpan(i * p * d, p * d));
            PixelShuffle(encoded.AsSpan(i * p * d, p * d), shuffled.AsSpan(i * tokens * shuffledWidth, tokens * shuffledWidth));
        }
        var adapted = Adapter(shuffled, count * tokens);
        var embeds = Project(adapted, count * tokens);
        return new VisionOutputs(encoded, shuffled, adapted, embeds, count);
    }

    /// <summary>The projected embeddings of one preprocessed image: [tiles·144, text hidden], tiles row-major then the thumbnail.</summary>
    public float[] EmbedImage(PreprocessedImage image)
    {
        if (image.TileSize != Config.ImageSize)
            throw new ArgumentException($"image was cut into {image.TileSize}-pixel tiles, but the vision encoder expects {Config.ImageSize}");
        return Run(image.Pixels, image.TileCount).Embeddings;
    }

    private static void Linear(IWeightMatrix w, float[] bias, float[] x, int n, float[] y)
    {
        w.Multiply(x.AsSpan(0, n * w.Cols), n, y.AsSpan(0, n * w.Rows));
        int rows = w.Rows;
        for (int t = 0; t < n; t++) TensorPrimitives.Add(y.AsSpan(t * rows, rows), bias, y.AsSpan(t * rows, rows));
    }

    private void ParallelGelu(float[] x)
    {
        const int grain = 4096;
        _pool.For((x.Length + grain - 1) / grain, b => VisionMath.Gelu(x.AsSpan(b * grain, Math.Min(grain, x.Length - b * grain))));
    }

    private void ApplyRope(float[] x, int n)
    {
        int d = Config.HiddenSize, hd = Config.HeadDim, heads = Config.NumHeads, pairs = hd / 2;
        for (int t = 0; t < n; t++)
        {
            var cos = _ropeCos.AsSpan(t * pairs, pairs);
            var sin = _ropeSin.AsSpan(t * pairs, pairs);
            for (int h = 0; h < heads; h++) Ops.Rope(x.AsSpan(t * d + h * hd, hd), cos, sin);
        }
    }

    /// <summary>
    /// Full bidirectional attention per head, scale 1/√hd. Each head's keys are packed [n, hd] and its values
    /// transposed [hd, n], so a query costs n short SIMD dots for the scores and hd long dots for the output.
    /// Parallel over (head, block of queries).
    /// </summary>
    private void Attend(float[] q, float[] k, float[] v, int n, float[] output)
    {
        int d = Config.HiddenSize, hd = Config.HeadDim, heads = Config.NumHeads;
        float scale = 1f / MathF.Sqrt(hd);
        var keys = new float[heads * n * hd];
        var valuesT = new float[heads * hd * n];
        for (int t = 0; t < n; t++)
        for (int h = 0; h < heads; h++)
        {
            k.AsSpan(t * d + h * hd, hd).CopyTo(keys.AsSpan((h * n + t) * hd, hd));
            for (int c = 0; c < hd; c++) valuesT[(h * hd + c) * n + t] = v[t * d + h * hd + c];
        }
        const int block = 16;
        int blocks = (n + block - 1) / block;
        fixed (float* pq = q, pk = keys, pv = valuesT, po = output)
        {
            float* qp = pq, kp = pk, vp = pv, op = po;
            _pool.For(heads * blocks, job =>
            {
                int h = job / blocks, t0 = job % blocks * block, t1 = Math.Min(n, t0 + block);
                var scores = System.Buffers.ArrayPool<float>.Shared.Rent(4 * n);
                try
                {
                    fixed (float* ps = scores)
                    {
                        float* kh = kp + (long)h * n * hd, vh = vp + (long)h * hd * n;
                        for (int t = t0; t < t1; t += 4)
                        {
                            // Four queries at a time (repeating the last when fewer remain): each key and value row is loaded once for four.
                            int count = Math.Min(4, t1 - t);
                            float* q0 = qp + (long)t * d + h * hd;
                            float* q1 = qp + (long)(t + Math.Min(1, count - 1)) * d + h * hd;
                            float* q2 = qp + (long)(t + Math.Min(2, count - 1)) * d + h * hd;
                            float* q3 = qp + (long)(t + Math.Min(3, count - 1)) * d + h * hd;
                            float* s0 = ps, s1 = ps + n, s2 = ps + 2 * n, s3 = ps + 3 * n;
                            for (int j = 0; j < n; j++)
                            {
                                Dot4(q0, q1, q2, q3, kh + (long)j * hd, hd, out float d0, out float d1, out float d2, out float d3);
                                s0[j] = d0 * scale; s1[j] = d1 * scale; s2[j] = d2 * scale; s3[j] = d3 * scale;
                            }
                            for (int r = 0; r < count; r++) Ops.Softmax(new Span<float>(ps + r * n, n));
                            for (int c = 0; c < hd; c++)
                            {
                                Dot4(s0, s1, s2, s3, vh + (long)c * n, n, out float o0, out float o1, out float o2, out float o3);
                                float* o = op + (long)t * d + h * hd + c;
                                o[0] = o0;
                                if (count > 1) o[d] = o1;
                                if (count > 2) o[2 * d] = o2;
                                if (count > 3) o[3 * d] = o3;
                            }
                        }
                    }
                }
                finally
                {
                    System.Buffers.ArrayPool<float>.Shared.Return(scores);
                }
            });
        }
    }

    /// <summary>Four dot products against one shared vector <paramref name="b"/>: one load of b feeds four FMAs.</summary>
    private static void Dot4(float* a0, float* a1, float* a2, float* a3, float* b, int len, out float d0, out float d1, out float d2, out float d3)
    {
        int i = 0;
        d0 = d1 = d2 = d3 = 0;
        if (System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated)
        {
            var c0 = System.Runtime.Intrinsics.Vector256<float>.Zero; var c1 = c0; var c2 = c0; var c3 = c0;
            for (; i + 8 <= len; i += 8)
            {
                var bv = System.Runtime.Intrinsics.Vector256.Load(b + i);
                c0 = System.Runtime.Intrinsics.Vector256.MultiplyAddEstimate(System.Runtime.Intrinsics.Vector256.Load(a0 + i), bv, c0);
                c1 = System.Runtime.Intrinsics.Vector256.MultiplyAddEstimate(System.Runtime.Intrinsics.Vector256.Load(a1 + i), bv, c1);
                c2 = System.Runtime.Intrinsics.Vector256.MultiplyAddEstimate(System.Runtime.Intrinsics.Vector256.Load(a2 + i), bv, c2);
                c3 = System.Runtime.Intrinsics.Vector256.MultiplyAddEstimate(System.Runtime.Intrinsics.Vector256.Load(a3 + i), bv, c3);
            }
            d0 = System.Runtime.Intrinsics.Vector256.Sum(c0); d1 = System.Runtime.Intrinsics.Vector256.Sum(c1);
            d2 = System.Runtime.Intrinsics.Vector256.Sum(c2); d3 = System.Runtime.Intrinsics.Vector256.Sum(c3);
        }
        for (; i < len; i++)
        {
            float bv = b[i];
            d0 += a0[i] * bv; d1 += a1[i] * bv; d2 += a2[i] * bv; d3 += a3[i] * bv;
        }
    }
}

/// <summary>Every stage's output for a run of tiles.</summary>
public sealed record VisionOutputs(float[] Encoded, float[] Shuffled, float[] Adapted, float[] Embeddings, int TileCount);
