using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Scout.Kernels.Quant;
using Scout.Model;
using Scout.Planning;

namespace Scout.Kernels.Attention;

/// <summary>
/// The register-blocked tile kernel of the AVX-512 path (head_dim a multiple of 16) and, with 2-query blocks of 8
/// lanes, of the AVX2 path (head_dim a multiple of 8). Per key tile:
/// scores S = Q·Kᵀ with 4 queries × 4 keys of accumulators (each K chunk loaded once for four queries, one
/// 4-way horizontal reduction per 16 scores), an online softmax on whole score rows (vectorised exp), then
/// acc += P·V with 4 queries × 64 output lanes held in registers across the tile's keys (each V chunk loaded once
/// for four queries). f16/bf16 rows are widened in registers as they are loaded (decode); when a tile serves more
/// than four queries (prefill) the tile is widened once into per-thread f32 scratch and shared by every query block.
/// </summary>
public sealed unsafe partial class AttentionKernels
{
    /// <summary>Loads 16 floats of a stored row starting at element <c>e</c>.</summary>
    private interface IRowLoad
    {
        static abstract Vector512<float> Load(byte* row, int e);
        /// <summary>8 floats from element <c>e</c> (the AVX2 path).</summary>
        static abstract Vector256<float> Load8(byte* row, int e);
    }

    private struct F32Load : IRowLoad
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(byte* row, int e) => Vector512.Load((float*)row + e);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(byte* row, int e) => Vector256.Load((float*)row + e);
    }

    /// <summary>
    /// IEEE half → float without F16C (not exposed by .NET): sign-extend to 32 bits, shift exponent and mantissa into
    /// the float's place (the sign bit lands in bit 31), rescale by 2^112 (exact for normals and subnormals); an
    /// all-ones exponent (inf/NaN) gets the float's all-ones exponent, so every half decodes exactly as
    /// <see cref="KvRowCodec"/> decodes it.
    /// </summary>
    private struct F16Load : IRowLoad
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(byte* row, int e)
        {
            var h = Avx512F.ConvertToVector512Int32(Vector256.Load((short*)row + e));
            var x = Vector512.ShiftLeft(h, 13) & Vector512.Create(unchecked((int)0x8FFFE000));
            var f = x.AsSingle() * Vector512.Create(HalfRescale);
            var special = Vector512.Equals(x & Vector512.Create(0x0F800000), Vector512.Create(0x0F800000));
            return (f.AsInt32() | (special & Vector512.Create(0x7F800000))).AsSingle();
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(byte* row, int e)
        {
            var h = Avx2.ConvertToVector256Int32((short*)row + e);
            var x = Vector256.ShiftLeft(h, 13) & Vector256.Create(unchecked((int)0x8FFFE000));
            var f = x.AsSingle() * Vector256.Create(HalfRescale);
            var special = Vector256.Equals(x & Vector256.Create(0x0F800000), Vector256.Create(0x0F800000));
            return (f.AsInt32() | (special & Vector256.Create(0x7F800000))).AsSingle();
        }
    }

    /// <summary>
    /// f16 → float for finite halves in four instructions: sign-extend, shift, mask — which leaves value·2^-112 (exact,
    /// subnormal in float for the smaller halves) — then one multiply by 2^112.
    /// </summary>
    private struct F16FiniteLoad : IRowLoad
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(byte* row, int e) => F16RawLoad.Load(row, e) * Vector512.Create(HalfRescale);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(byte* row, int e) => F16RawLoad.Load8(row, e) * Vector256.Create(HalfRescale);
    }

    /// <summary>
    /// f16 → value·2^-112 in three instructions (no multiply). The caller folds 2^112 into the other factor (the
    /// query for scores, the softmax weight for values): the product is then exactly the product with the decoded
    /// half, so the sums are the same as with <see cref="F16Load"/> — for finite halves, and while the scaled factor
    /// stays below float's range (the kernel checks |q| &lt; 2^15 per tile).
    /// </summary>
    private struct F16RawLoad : IRowLoad
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(byte* row, int e)
        {
            var h = Avx512F.ConvertToVector512Int32(Vector256.Load((short*)row + e));
            return (Vector512.ShiftLeft(h, 13) & Vector512.Create(unchecked((int)0x8FFFE000))).AsSingle();
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(byte* row, int e)
        {
            var h = Avx2.ConvertToVector256Int32((short*)row + e);
            return (Vector256.ShiftLeft(h, 13) & Vector256.Create(unchecked((int)0x8FFFE000))).AsSingle();
        }
    }

    private const float HalfRescale = 5.192296858534828e33f; // 2^112
    private const float RawQueryLimit = 32768f; // 2^15: |q|·2^112 stays far below float's 2^128

    private struct Bf16Load : IRowLoad
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(byte* row, int e) =>
            Vector512.ShiftLeft(Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)row + e)), 16).AsSingle();
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(byte* row, int e) => Vector256.ShiftLeft(Avx2.ConvertToVector256Int32((ushort*)row + e), 16).AsSingle();
    }

    private static bool BlockedApplies(AttentionPath path, int headDim) =>
        (path == AttentionPath.Avx512 && headDim % 16 == 0) || (path == AttentionPath.Avx2 && headDim % 8 == 0);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RunTileBlocked(Job job, int tile, int kvHead, int split, int jobIndex)
    {
        ref readonly var rows = ref job.Rows;
        int r0 = job.TileStart[tile], tr = job.TileStart[tile + 1] - r0;
        int hd = job.HeadDim, group = job.Group, queries = tr * group;
        var layer = rows.Layers[rows.RowSequence[r0]];
        float scale = 1f / MathF.Sqrt(hd);

        int lo = int.MaxValue, hi = 0, loLast = int.MaxValue, hiFirst = 0;
        for (int i = 0; i < tr; i++)
        {
            lo = Math.Min(lo, rows.RowFirstKey[r0 + i]); hi = Math.Max(hi, rows.RowPosition[r0 + i]);
            hiFirst = Math.Max(hiFirst, rows.RowFirstKey[r0 + i]); loLast = Math.Min(loLast, rows.RowPosition[r0 + i]);
        }
        var (from, to) = SplitRange(lo, hi, split, job.Splits);

        var sc = Scratch.ForCurrentThread();
        sc.Ensure(queries, hd);
        var kKind = layer.KeyType.Kind;
        var vKind = layer.ValueType.Kind;
        bool quantKeys = kKind is KvKind.Q8_0 or KvKind.Q4_0;
        bool wide = queries > 4; // enough queries per tile to widen each K/V row once into scratch
        int blocks = hd / 32;
        var qpath = QuantPath;

        bool v512 = Path == AttentionPath.Avx512; // else AVX2 (8 lanes)
        bool exactHalves = layer.MayHoldNonFiniteHalves; // an inf/NaN half was stored: decode every half exactly
        fixed (float* scores = sc.Scores, acc = sc.Acc, mrow = sc.Max, lrow = sc.Sum, ktile = sc.KeyTileRows, vtile = sc.ValueTileRows, qd = sc.QScale, qscaled = sc.QueryScaled)
        fixed (sbyte* qq = sc.QQuant)
        fixed (int* qs = sc.QSums)
        {
            float** qv = stackalloc float*[queries];
            // Row pointers of this key tile and the next (double-buffered: the next tile's rows are prefetched while
            // this one is computed, and Widen may repoint this tile's entries at scratch).
            byte** kptr = stackalloc byte*[KeyTile];
            byte** vptr = stackalloc byte*[KeyTile];
            byte** knext = stackalloc byte*[KeyTile];
            byte** vnext = stackalloc byte*[KeyTile];
            StartTile(job, r0, kvHead, queries, quantKeys, qv, mrow, lrow, acc, qq, qd, qs);
            if (from < to) layer.RowPointers(from, Math.Min(KeyTile, to - from), knext, vnext, kvHead);

            // Decode with f16 keys: the queries pre-scaled by 2^112 for F16RawLoad (when every |q| allows it).
            float** qraw = stackalloc float*[queries];
            bool rawKeys = kKind == KvKind.F16 && !wide && !exactHalves;
            for (int qi = 0; rawKeys && qi < queries; qi++)
            {
                var src = new ReadOnlySpan<float>(qv[qi], hd);
                if (!(MathF.Abs(TensorPrimitives.MaxMagnitude(src)) < RawQueryLimit)) rawKeys = false;
                TensorPrimitives.Multiply(src, HalfRescale, new Span<float>(qscaled + qi * hd, hd));
                qraw[qi] = qscaled + qi * hd;
            }
            bool rawValues = vKind == KvKind.F16 && !wide && !exactHalves;

            for (int k0 = from; k0 < to; k0 += KeyTile)
            {
                int kn = Math.Min(KeyTile, to - k0);
                byte** swap = kptr; kptr = knext; knext = swap;
                swap = vptr; vptr = vnext; vnext = swap;
                if (k0 + KeyTile < to)
                {
                    // Software prefetch of the next tile's K and V rows into L2: the rows of one head are contiguous
                    // only within a page, and the hardware prefetcher stalls at every page (and 4 KiB) boundary.
                    int nn = Math.Min(KeyTile, to - k0 - KeyTile);
                    layer.RowPointers(k0 + KeyTile, nn, knext, vnext, kvHead);
                    PrefetchRows(knext, nn, layer.KeyHeadBytes);
                    PrefetchRows(vnext, nn, layer.ValueHeadBytes);
                }

                // Scores of the tile (scaled).
                if (quantKeys)
                {
                    for (int j = 0; j < kn; j++)
                        for (int qi = 0; qi < queries; qi++)
                            scores[qi * KeyTile + j] = scale * (kKind == KvKind.Q8_0
                                ? DotKernels.DotQ8_0(qpath, kptr[j], qq + qi * hd, qd + qi * blocks, blocks)
                                : DotKernels.DotQ4_0(qpath, kptr[j], qq + qi * hd, qd + qi * blocks, qs + qi * blocks, blocks));
                }
                else if (kKind == KvKind.F32) Scores<F32Load>(v512, qv, queries, kptr, kn, hd, scale, scores);
                else if (wide)
                {
                    Widen(v512, kKind, kptr, kn, hd, ktile, exactHalves);
                    Scores<F32Load>(v512, qv, queries, kptr, kn, hd, scale, scores);
                }
                else if (rawKeys) Scores<F16RawLoad>(v512, qraw, queries, kptr, kn, hd, scale, scores);
                else if (kKind == KvKind.F16) Scores<F16Load>(v512, qv, queries, kptr, kn, hd, scale, scores);
                else Scores<Bf16Load>(v512, qv, queries, kptr, kn, hd, scale, scores);

                // Masks: only tiles that reach outside some row's window (the diagonal and chunk edges) pay for them.
                if (k0 < hiFirst || k0 + kn - 1 > loLast)
                    for (int i = 0; i < tr; i++)
                    {
                        int first = rows.RowFirstKey[r0 + i], last = rows.RowPosition[r0 + i];
                        for (int g = 0; g < group; g++)
                        {
                            float* srow = scores + (i * group + g) * KeyTile;
                            for (int j = 0; j < kn; j++)
                                if (k0 + j < first || k0 + j > last) srow[j] = float.NegativeInfinity;
                        }
                    }

                // Online softmax over whole score rows: rescale each accumulator once per tile.
                for (int qi = 0; qi < queries; qi++)
                {
                    var srow = new Span<float>(scores + qi * KeyTile, kn);
                    float tmax = TensorPrimitives.Max(srow);
                    if (tmax == float.NegativeInfinity)
                    {
                        srow.Clear(); // nothing visible in this tile: zero weights
                        continue;
                    }
                    float mNew = MathF.Max(mrow[qi], tmax);
                    RaiseMax(qi, mNew, mrow, lrow, acc, hd);
                    TensorPrimitives.Subtract(srow, mNew, srow);
                    TensorPrimitives.Exp(srow, srow);
                    lrow[qi] += TensorPrimitives.Sum(srow);
                }

                // acc += P·V.
                if (vKind == KvKind.F32) Values<F32Load>(v512, scores, queries, vptr, kn, hd, acc, 1f);
                else if (wide || vKind is KvKind.Q8_0 or KvKind.Q4_0)
                {
                    Widen(v512, vKind, vptr, kn, hd, vtile, exactHalves, layer.ValueType);
                    Values<F32Load>(v512, scores, queries, vptr, kn, hd, acc, 1f);
                }
                else if (rawValues) Values<F16RawLoad>(v512, scores, queries, vptr, kn, hd, acc, HalfRescale);
                else if (vKind == KvKind.F16) Values<F16Load>(v512, scores, queries, vptr, kn, hd, acc, 1f);
                else Values<Bf16Load>(v512, scores, queries, vptr, kn, hd, acc, 1f);
            }

            WriteTileResult(job, qv, queries, hd, acc, mrow, lrow, jobIndex);
        }
    }

    /// <summary>Prefetches (into L2) every cache line of rows[0..n), each <paramref name="rowBytes"/> long.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchRows(byte** rows, int n, int rowBytes)
    {
        if (!Sse.IsSupported) return;
        for (int j = 0; j < n; j++)
        {
            byte* r = rows[j];
            for (int b = 0; b < rowBytes; b += 64) Sse.Prefetch1(r + b);
        }
    }

    /// <summary>Widens rows[0..n) into <paramref name="dst"/> (n × hd floats) and points rows[j] at the widened copies.</summary>
    private static void Widen(bool v512, KvKind kind, byte** rows, int n, int hd, float* dst, bool exactHalves, KvType? quantType = null)
    {
        for (int j = 0; j < n; j++)
        {
            float* d = dst + j * hd;
            byte* src = rows[j];
            switch (kind)
            {
                case KvKind.F16 when exactHalves:
                    WidenRow<F16Load>(v512, src, d, hd);
                    break;
                case KvKind.F16:
                    WidenRow<F16FiniteLoad>(v512, src, d, hd);
                    break;
                case KvKind.BF16:
                    WidenRow<Bf16Load>(v512, src, d, hd);
                    break;
                default:
                    KvRowCodec.Decode(quantType!, src, new Span<float>(d, hd));
                    break;
            }
            rows[j] = (byte*)d;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WidenRow<L>(bool v512, byte* src, float* d, int hd) where L : struct, IRowLoad
    {
        if (v512) for (int e = 0; e < hd; e += 16) L.Load(src, e).Store(d + e);
        else for (int e = 0; e < hd; e += 8) L.Load8(src, e).Store(d + e);
    }

    // ------------------------------------------------------------------ scores: S[q][j] = scale · q·k_j

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scores<L>(bool v512, float** qv, int queries, byte** k, int kn, int hd, float scale, float* s) where L : struct, IRowLoad
    {
        int qi = 0;
        if (!v512)
        {
            for (; qi + 2 <= queries; qi += 2) Scores8Q2<L>(qv + qi, k, kn, hd, scale, s + qi * KeyTile);
            if (qi < queries) Scores8Q1<L>(qv[qi], k, kn, hd, scale, s + qi * KeyTile);
            return;
        }
        for (; qi + 4 <= queries; qi += 4) ScoresQ4<L>(qv + qi, k, kn, hd, scale, s + qi * KeyTile);
        for (; qi + 2 <= queries; qi += 2) ScoresQ2<L>(qv + qi, k, kn, hd, scale, s + qi * KeyTile);
        if (qi < queries) ScoresQ1<L>(qv[qi], k, kn, hd, scale, s + qi * KeyTile);
    }

    /// <summary>[Σa, Σb, Σc, Σd] · scale stored at dst[0..4).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store4(float* dst, Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d, float scale)
    {
        var a2 = a.GetLower() + a.GetUpper();
        var b2 = b.GetLower() + b.GetUpper();
        var c2 = c.GetLower() + c.GetUpper();
        var d2 = d.GetLower() + d.GetUpper();
        var a4 = a2.GetLower() + a2.GetUpper();
        var b4 = b2.GetLower() + b2.GetUpper();
        var c4 = c2.GetLower() + c2.GetUpper();
        var d4 = d2.GetLower() + d2.GetUpper();
        var h = Sse3.HorizontalAdd(Sse3.HorizontalAdd(a4, b4), Sse3.HorizontalAdd(c4, d4));
        (h * Vector128.Create(scale)).Store(dst);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Fma3(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Avx512F.FusedMultiplyAdd(a, b, c);

    private static void ScoresQ4<L>(float** q, byte** k, int kn, int hd, float scale, float* s) where L : struct, IRowLoad
    {
        float* q0 = q[0], q1 = q[1], q2 = q[2], q3 = q[3];
        int j = 0;
        for (; j + 4 <= kn; j += 4)
        {
            byte* k0 = k[j], k1 = k[j + 1], k2 = k[j + 2], k3 = k[j + 3];
            Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
            Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
            for (int e = 0; e < hd; e += 16)
            {
                var x0 = L.Load(k0, e); var x1 = L.Load(k1, e); var x2 = L.Load(k2, e); var x3 = L.Load(k3, e);
                var y = Vector512.Load(q0 + e);
                a00 = Fma3(y, x0, a00); a01 = Fma3(y, x1, a01); a02 = Fma3(y, x2, a02); a03 = Fma3(y, x3, a03);
                y = Vector512.Load(q1 + e);
                a10 = Fma3(y, x0, a10); a11 = Fma3(y, x1, a11); a12 = Fma3(y, x2, a12); a13 = Fma3(y, x3, a13);
                y = Vector512.Load(q2 + e);
                a20 = Fma3(y, x0, a20); a21 = Fma3(y, x1, a21); a22 = Fma3(y, x2, a22); a23 = Fma3(y, x3, a23);
                y = Vector512.Load(q3 + e);
                a30 = Fma3(y, x0, a30); a31 = Fma3(y, x1, a31); a32 = Fma3(y, x2, a32); a33 = Fma3(y, x3, a33);
            }
            Store4(s + j, a00, a01, a02, a03, scale);
            Store4(s + KeyTile + j, a10, a11, a12, a13, scale);
            Store4(s + 2 * KeyTile + j, a20, a21, a22, a23, scale);
            Store4(s + 3 * KeyTile + j, a30, a31, a32, a33, scale);
        }
        for (; j < kn; j++)
        {
            byte* k0 = k[j];
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int e = 0; e < hd; e += 16)
            {
                var x = L.Load(k0, e);
                a0 = Fma3(Vector512.Load(q0 + e), x, a0); a1 = Fma3(Vector512.Load(q1 + e), x, a1);
                a2 = Fma3(Vector512.Load(q2 + e), x, a2); a3 = Fma3(Vector512.Load(q3 + e), x, a3);
            }
            s[j] = Vector512.Sum(a0) * scale; s[KeyTile + j] = Vector512.Sum(a1) * scale;
            s[2 * KeyTile + j] = Vector512.Sum(a2) * scale; s[3 * KeyTile + j] = Vector512.Sum(a3) * scale;
        }
    }

    private static void ScoresQ2<L>(float** q, byte** k, int kn, int hd, float scale, float* s) where L : struct, IRowLoad
    {
        float* q0 = q[0], q1 = q[1];
        int j = 0;
        for (; j + 4 <= kn; j += 4)
        {
            byte* k0 = k[j], k1 = k[j + 1], k2 = k[j + 2], k3 = k[j + 3];
            Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
            for (int e = 0; e < hd; e += 16)
            {
                var x0 = L.Load(k0, e); var x1 = L.Load(k1, e); var x2 = L.Load(k2, e); var x3 = L.Load(k3, e);
                var y = Vector512.Load(q0 + e);
                a00 = Fma3(y, x0, a00); a01 = Fma3(y, x1, a01); a02 = Fma3(y, x2, a02); a03 = Fma3(y, x3, a03);
                y = Vector512.Load(q1 + e);
                a10 = Fma3(y, x0, a10); a11 = Fma3(y, x1, a11); a12 = Fma3(y, x2, a12); a13 = Fma3(y, x3, a13);
            }
            Store4(s + j, a00, a01, a02, a03, scale);
            Store4(s + KeyTile + j, a10, a11, a12, a13, scale);
        }
        for (; j < kn; j++)
        {
            byte* k0 = k[j];
            Vector512<float> a0 = default, a1 = default;
            for (int e = 0; e < hd; e += 16)
            {
                var x = L.Load(k0, e);
                a0 = Fma3(Vector512.Load(q0 + e), x, a0); a1 = Fma3(Vector512.Load(q1 + e), x, a1);
            }
            s[j] = Vector512.Sum(a0) * scale; s[KeyTile + j] = Vector512.Sum(a1) * scale;
        }
    }

    private static void ScoresQ1<L>(float* q0, byte** k, int kn, int hd, float scale, float* s) where L : struct, IRowLoad
    {
        int j = 0;
        for (; j + 4 <= kn; j += 4)
        {
            byte* k0 = k[j], k1 = k[j + 1], k2 = k[j + 2], k3 = k[j + 3];
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int e = 0; e < hd; e += 16)
            {
                var y = Vector512.Load(q0 + e);
                a0 = Fma3(y, L.Load(k0, e), a0); a1 = Fma3(y, L.Load(k1, e), a1); a2 = Fma3(y, L.Load(k2, e), a2); a3 = Fma3(y, L.Load(k3, e), a3);
            }
            Store4(s + j, a0, a1, a2, a3, scale);
        }
        for (; j < kn; j++)
        {
            byte* k0 = k[j];
            Vector512<float> a0 = default;
            for (int e = 0; e < hd; e += 16) a0 = Fma3(Vector512.Load(q0 + e), L.Load(k0, e), a0);
            s[j] = Vector512.Sum(a0) * scale;
        }
    }

    // ------------------------------------------------------------------ values: acc[q] += Σ_j P[q][j] · v_j

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Values<L>(bool v512, float* p, int queries, byte** v, int kn, int hd, float* acc, float ps) where L : struct, IRowLoad
    {
        int qi = 0;
        if (!v512)
        {
            for (; qi + 2 <= queries; qi += 2) Values8Q2<L>(p + qi * KeyTile, v, kn, hd, acc + qi * hd, ps);
            if (qi < queries) Values8Q1<L>(p + qi * KeyTile, v, kn, hd, acc + qi * hd, ps);
            return;
        }
        for (; qi + 4 <= queries; qi += 4) ValuesQ4<L>(p + qi * KeyTile, v, kn, hd, acc + qi * hd, ps);
        for (; qi + 2 <= queries; qi += 2) ValuesQ2<L>(p + qi * KeyTile, v, kn, hd, acc + qi * hd, ps);
        if (qi < queries) ValuesQ1<L>(p + qi * KeyTile, v, kn, hd, acc + qi * hd, ps);
    }

    private static void ValuesQ4<L>(float* p, byte** v, int kn, int hd, float* acc, float ps) where L : struct, IRowLoad
    {
        float* p0 = p, p1 = p + KeyTile, p2 = p + 2 * KeyTile, p3 = p + 3 * KeyTile;
        float* o0 = acc, o1 = acc + hd, o2 = acc + 2 * hd, o3 = acc + 3 * hd;
        int d = 0;
        for (; d + 64 <= hd; d += 64)
        {
            var c00 = Vector512.Load(o0 + d); var c01 = Vector512.Load(o0 + d + 16); var c02 = Vector512.Load(o0 + d + 32); var c03 = Vector512.Load(o0 + d + 48);
            var c10 = Vector512.Load(o1 + d); var c11 = Vector512.Load(o1 + d + 16); var c12 = Vector512.Load(o1 + d + 32); var c13 = Vector512.Load(o1 + d + 48);
            var c20 = Vector512.Load(o2 + d); var c21 = Vector512.Load(o2 + d + 16); var c22 = Vector512.Load(o2 + d + 32); var c23 = Vector512.Load(o2 + d + 48);
            var c30 = Vector512.Load(o3 + d); var c31 = Vector512.Load(o3 + d + 16); var c32 = Vector512.Load(o3 + d + 32); var c33 = Vector512.Load(o3 + d + 48);
            for (int j = 0; j < kn; j++)
            {
                byte* row = v[j];
                var x0 = L.Load(row, d); var x1 = L.Load(row, d + 16); var x2 = L.Load(row, d + 32); var x3 = L.Load(row, d + 48);
                var w = Vector512.Create(p0[j] * ps);
                c00 = Fma3(x0, w, c00); c01 = Fma3(x1, w, c01); c02 = Fma3(x2, w, c02); c03 = Fma3(x3, w, c03);
                w = Vector512.Create(p1[j] * ps);
                c10 = Fma3(x0, w, c10); c11 = Fma3(x1, w, c11); c12 = Fma3(x2, w, c12); c13 = Fma3(x3, w, c13);
                w = Vector512.Create(p2[j] * ps);
                c20 = Fma3(x0, w, c20); c21 = Fma3(x1, w, c21); c22 = Fma3(x2, w, c22); c23 = Fma3(x3, w, c23);
                w = Vector512.Create(p3[j] * ps);
                c30 = Fma3(x0, w, c30); c31 = Fma3(x1, w, c31); c32 = Fma3(x2, w, c32); c33 = Fma3(x3, w, c33);
            }
            c00.Store(o0 + d); c01.Store(o0 + d + 16); c02.Store(o0 + d + 32); c03.Store(o0 + d + 48);
            c10.Store(o1 + d); c11.Store(o1 + d + 16); c12.Store(o1 + d + 32); c13.Store(o1 + d + 48);
            c20.Store(o2 + d); c21.Store(o2 + d + 16); c22.Store(o2 + d + 32); c23.Store(o2 + d + 48);
            c30.Store(o3 + d); c31.Store(o3 + d + 16); c32.Store(o3 + d + 32); c33.Store(o3 + d + 48);
        }
        for (; d < hd; d += 16)
        {
            var c0 = Vector512.Load(o0 + d); var c1 = Vector512.Load(o1 + d); var c2 = Vector512.Load(o2 + d); var c3 = Vector512.Load(o3 + d);
            for (int j = 0; j < kn; j++)
            {
                var x = L.Load(v[j], d);
                c0 = Fma3(x, Vector512.Create(p0[j] * ps), c0); c1 = Fma3(x, Vector512.Create(p1[j] * ps), c1);
                c2 = Fma3(x, Vector512.Create(p2[j] * ps), c2); c3 = Fma3(x, Vector512.Create(p3[j] * ps), c3);
            }
            c0.Store(o0 + d); c1.Store(o1 + d); c2.Store(o2 + d); c3.Store(o3 + d);
        }
    }

    private static void ValuesQ2<L>(float* p, byte** v, int kn, int hd, float* acc, float ps) where L : struct, IRowLoad
    {
        float* p0 = p, p1 = p + KeyTile;
        float* o0 = acc, o1 = acc + hd;
        int d = 0;
        for (; d + 64 <= hd; d += 64)
        {
            var c00 = Vector512.Load(o0 + d); var c01 = Vector512.Load(o0 + d + 16); var c02 = Vector512.Load(o0 + d + 32); var c03 = Vector512.Load(o0 + d + 48);
            var c10 = Vector512.Load(o1 + d); var c11 = Vector512.Load(o1 + d + 16); var c12 = Vector512.Load(o1 + d + 32); var c13 = Vector512.Load(o1 + d + 48);
            for (int j = 0; j < kn; j++)
            {
                byte* row = v[j];
                var x0 = L.Load(row, d); var x1 = L.Load(row, d + 16); var x2 = L.Load(row, d + 32); var x3 = L.Load(row, d + 48);
                var w = Vector512.Create(p0[j] * ps);
                c00 = Fma3(x0, w, c00); c01 = Fma3(x1, w, c01); c02 = Fma3(x2, w, c02); c03 = Fma3(x3, w, c03);
                w = Vector512.Create(p1[j] * ps);
                c10 = Fma3(x0, w, c10); c11 = Fma3(x1, w, c11); c12 = Fma3(x2, w, c12); c13 = Fma3(x3, w, c13);
            }
            c00.Store(o0 + d); c01.Store(o0 + d + 16); c02.Store(o0 + d + 32); c03.Store(o0 + d + 48);
            c10.Store(o1 + d); c11.Store(o1 + d + 16); c12.Store(o1 + d + 32); c13.Store(o1 + d + 48);
        }
        for (; d < hd; d += 16)
        {
            var c0 = Vector512.Load(o0 + d); var c1 = Vector512.Load(o1 + d);
            for (int j = 0; j < kn; j++)
            {
                var x = L.Load(v[j], d);
                c0 = Fma3(x, Vector512.Create(p0[j] * ps), c0); c1 = Fma3(x, Vector512.Create(p1[j] * ps), c1);
            }
            c0.Store(o0 + d); c1.Store(o1 + d);
        }
    }

    private static void ValuesQ1<L>(float* p0, byte** v, int kn, int hd, float* o0, float ps) where L : struct, IRowLoad
    {
        int d = 0;
        for (; d + 64 <= hd; d += 64)
        {
            var c0 = Vector512.Load(o0 + d); var c1 = Vector512.Load(o0 + d + 16); var c2 = Vector512.Load(o0 + d + 32); var c3 = Vector512.Load(o0 + d + 48);
            for (int j = 0; j < kn; j++)
            {
                byte* row = v[j];
                var w = Vector512.Create(p0[j] * ps);
                c0 = Fma3(L.Load(row, d), w, c0); c1 = Fma3(L.Load(row, d + 16), w, c1); c2 = Fma3(L.Load(row, d + 32), w, c2); c3 = Fma3(L.Load(row, d + 48), w, c3);
            }
            c0.Store(o0 + d); c1.Store(o0 + d + 16); c2.Store(o0 + d + 32); c3.Store(o0 + d + 48);
        }
        for (; d < hd; d += 16)
        {
            var c0 = Vector512.Load(o0 + d);
            for (int j = 0; j < kn; j++) c0 = Fma3(L.Load(v[j], d), Vector512.Create(p0[j] * ps), c0);
            c0.Store(o0 + d);
        }
    }

    // ------------------------------------------------------------------ the AVX2 twins (16 ymm registers: 2 queries per block)

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fma8(Vector256<float> a, Vector256<float> b, Vector256<float> c) => System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store4(float* dst, Vector256<float> a, Vector256<float> b, Vector256<float> c, Vector256<float> d, float scale)
    {
        var a4 = a.GetLower() + a.GetUpper();
        var b4 = b.GetLower() + b.GetUpper();
        var c4 = c.GetLower() + c.GetUpper();
        var d4 = d.GetLower() + d.GetUpper();
        var h = Sse3.HorizontalAdd(Sse3.HorizontalAdd(a4, b4), Sse3.HorizontalAdd(c4, d4));
        (h * Vector128.Create(scale)).Store(dst);
    }

    private static void Scores8Q2<L>(float** q, byte** k, int kn, int hd, float scale, float* s) where L : struct, IRowLoad
    {
        float* q0 = q[0], q1 = q[1];
        int j = 0;
        for (; j + 4 <= kn; j += 4)
        {
            byte* k0 = k[j], k1 = k[j + 1], k2 = k[j + 2], k3 = k[j + 3];
            Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
            for (int e = 0; e < hd; e += 8)
            {
                var x0 = L.Load8(k0, e); var x1 = L.Load8(k1, e); var x2 = L.Load8(k2, e); var x3 = L.Load8(k3, e);
                var y = Vector256.Load(q0 + e);
                a00 = Fma8(y, x0, a00); a01 = Fma8(y, x1, a01); a02 = Fma8(y, x2, a02); a03 = Fma8(y, x3, a03);
                y = Vector256.Load(q1 + e);
                a10 = Fma8(y, x0, a10); a11 = Fma8(y, x1, a11); a12 = Fma8(y, x2, a12); a13 = Fma8(y, x3, a13);
            }
            Store4(s + j, a00, a01, a02, a03, scale);
            Store4(s + KeyTile + j, a10, a11, a12, a13, scale);
        }
        for (; j < kn; j++)
        {
            byte* k0 = k[j];
            Vector256<float> a0 = default, a1 = default;
            for (int e = 0; e < hd; e += 8)
            {
                var x = L.Load8(k0, e);
                a0 = Fma8(Vector256.Load(q0 + e), x, a0); a1 = Fma8(Vector256.Load(q1 + e), x, a1);
            }
            s[j] = Vector256.Sum(a0) * scale; s[KeyTile + j] = Vector256.Sum(a1) * scale;
        }
    }

    private static void Scores8Q1<L>(float* q0, byte** k, int kn, int hd, float scale, float* s) where L : struct, IRowLoad
    {
        int j = 0;
        for (; j + 4 <= kn; j += 4)
        {
            byte* k0 = k[j], k1 = k[j + 1], k2 = k[j + 2], k3 = k[j + 3];
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int e = 0; e < hd; e += 8)
            {
                var y = Vector256.Load(q0 + e);
                a0 = Fma8(y, L.Load8(k0, e), a0); a1 = Fma8(y, L.Load8(k1, e), a1); a2 = Fma8(y, L.Load8(k2, e), a2); a3 = Fma8(y, L.Load8(k3, e), a3);
            }
            Store4(s + j, a0, a1, a2, a3, scale);
        }
        for (; j < kn; j++)
        {
            byte* k0 = k[j];
            Vector256<float> a0 = default;
            for (int e = 0; e < hd; e += 8) a0 = Fma8(Vector256.Load(q0 + e), L.Load8(k0, e), a0);
            s[j] = Vector256.Sum(a0) * scale;
        }
    }

    private static void Values8Q2<L>(float* p, byte** v, int kn, int hd, float* acc, float ps) where L : struct, IRowLoad
    {
        float* p0 = p, p1 = p + KeyTile;
        float* o0 = acc, o1 = acc + hd;
        int d = 0;
        for (; d + 32 <= hd; d += 32)
        {
            var c00 = Vector256.Load(o0 + d); var c01 = Vector256.Load(o0 + d + 8); var c02 = Vector256.Load(o0 + d + 16); var c03 = Vector256.Load(o0 + d + 24);
            var c10 = Vector256.Load(o1 + d); var c11 = Vector256.Load(o1 + d + 8); var c12 = Vector256.Load(o1 + d + 16); var c13 = Vector256.Load(o1 + d + 24);
            for (int j = 0; j < kn; j++)
            {
                byte* row = v[j];
                var x0 = L.Load8(row, d); var x1 = L.Load8(row, d + 8); var x2 = L.Load8(row, d + 16); var x3 = L.Load8(row, d + 24);
                var w = Vector256.Create(p0[j] * ps);
                c00 = Fma8(x0, w, c00); c01 = Fma8(x1, w, c01); c02 = Fma8(x2, w, c02); c03 = Fma8(x3, w, c03);
                w = Vector256.Create(p1[j] * ps);
                c10 = Fma8(x0, w, c10); c11 = Fma8(x1, w, c11); c12 = Fma8(x2, w, c12); c13 = Fma8(x3, w, c13);
            }
            c00.Store(o0 + d); c01.Store(o0 + d + 8); c02.Store(o0 + d + 16); c03.Store(o0 + d + 24);
            c10.Store(o1 + d); c11.Store(o1 + d + 8); c12.Store(o1 + d + 16); c13.Store(o1 + d + 24);
        }
        for (; d < hd; d += 8)
        {
            var c0 = Vector256.Load(o0 + d); var c1 = Vector256.Load(o1 + d);
            for (int j = 0; j < kn; j++)
            {
                var x = L.Load8(v[j], d);
                c0 = Fma8(x, Vector256.Create(p0[j] * ps), c0); c1 = Fma8(x, Vector256.Create(p1[j] * ps), c1);
            }
            c0.Store(o0 + d); c1.Store(o1 + d);
        }
    }

    private static void Values8Q1<L>(float* p0, byte** v, int kn, int hd, float* o0, float ps) where L : struct, IRowLoad
    {
        int d = 0;
        for (; d + 32 <= hd; d += 32)
        {
            var c0 = Vector256.Load(o0 + d); var c1 = Vector256.Load(o0 + d + 8); var c2 = Vector256.Load(o0 + d + 16); var c3 = Vector256.Load(o0 + d + 24);
            for (int j = 0; j < kn; j++)
            {
                byte* row = v[j];
                var w = Vector256.Create(p0[j] * ps);
                c0 = Fma8(L.Load8(row, d), w, c0); c1 = Fma8(L.Load8(row, d + 8), w, c1); c2 = Fma8(L.Load8(row, d + 16), w, c2); c3 = Fma8(L.Load8(row, d + 24), w, c3);
            }
            c0.Store(o0 + d); c1.Store(o0 + d + 8); c2.Store(o0 + d + 16); c3.Store(o0 + d + 24);
        }
        for (; d < hd; d += 8)
        {
            var c0 = Vector256.Load(o0 + d);
            for (int j = 0; j < kn; j++) c0 = Fma8(L.Load8(v[j], d), Vector256.Create(p0[j] * ps), c0);
            c0.Store(o0 + d);
        }
    }
}
