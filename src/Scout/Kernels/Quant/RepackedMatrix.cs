using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using Scout.Tensors;

namespace Scout.Kernels.Quant;

/// <summary>
/// A Q4_0 / Q8_0 / Q4_K / Q6_K matrix repacked into 8-row interleaved groups (<see cref="RepackLayouts"/>) and
/// multiplied 8 rows per pass (<see cref="RepackedKernels"/>): one 32-byte weight load feeds 8 rows (and, in
/// prefill, 4 tokens), the sums land in per-row lanes, and one FMA applies 8 rows' scales.
///
/// Memory: the matrix is repacked when the model loads it (<see cref="Pack"/>; a matrix made directly is repacked on its
/// first product) into native memory of the same size as the
/// source (Q4_K +2.8 %); the source pages are then unmapped with madvise(MADV_DONTNEED) (Linux, read-only file
/// mappings only: they would be re-read from the file if touched again), so the process holds each weight once.
/// </summary>
public sealed unsafe partial class RepackedMatrix : IWeightMatrix
{
    /// <summary>Tokens per pass over a row range in prefill (the weights of a chunk stay in L1/L2 across the tile).</summary>
    internal const int TokenTile = 32;

    private readonly byte* _source;
    private readonly long _sourceRowBytes;
    private readonly bool _releaseSource;
    private readonly int _blocks, _groups, _groupBlockBytes;
    private readonly ActivationFormat _format;
    private readonly object _packLock = new();
    private readonly WorkerPool _pool;
    private nint _packedAddress;
    private byte* _packed => (byte*)Volatile.Read(ref _packedAddress);

    public int Rows { get; }
    public int Cols { get; }
    public TensorType Type { get; }
    public long ByteSize => (long)_groups * _blocks * _groupBlockBytes;
    internal RepackPath Path { get; }

    /// <summary>The fastest repacked path on this CPU (AVX-VNNI, else AVX2), or null where there is none (the row-major
    /// <see cref="QuantizedMatrix"/> kernels are used then). SCOUT_REPACK=off disables repacking, =avx2 forces the
    /// non-VNNI kernels.</summary>
    internal static RepackPath? BestPath { get; } = ChooseBest();

    private static RepackPath? ChooseBest()
    {
        if (!Avx2.IsSupported || !Fma.IsSupported) return null;
        var env = Environment.GetEnvironmentVariable("SCOUT_REPACK")?.Trim().ToLowerInvariant();
        if (env is "off" or "0" or "no") return null;
        if (env == "avx2") return RepackPath.Avx2;
        return AvxVnni.IsSupported ? RepackPath.AvxVnni : RepackPath.Avx2;
    }

    internal static bool IsAvailable(RepackPath path) => path switch
    {
        RepackPath.Scalar => true,
        RepackPath.Avx2 => Avx2.IsSupported && Fma.IsSupported,
        RepackPath.AvxVnni => Avx2.IsSupported && Fma.IsSupported && AvxVnni.IsSupported,
        _ => false,
    };

    internal static IEnumerable<RepackPath> AvailablePaths() => Enum.GetValues<RepackPath>().Where(IsAvailable);

    public static bool Supports(TensorType type) => RepackLayouts.Supports(type);

    /// <param name="releaseSource">Hand the source pages back after repacking (for weights in a file mapping).</param>
    internal RepackedMatrix(TensorType type, byte* data, int rows, int cols, WorkerPool pool, RepackPath path, bool releaseSource)
    {
        if (!Supports(type)) throw new NotSupportedException($"no repacked layout for tensor type {type}");
        if (rows <= 0 || cols <= 0) throw new ArgumentException($"matrix shape [{rows}, {cols}] must be positive");
        int blockElements = type.BlockElements();
        if (cols % blockElements != 0)
            throw new ArgumentException($"a {type} row needs a multiple of {blockElements} columns, got {cols}");
        if (!IsAvailable(path)) throw new PlatformNotSupportedException($"repacked kernel path {path} is not supported on this CPU");
        _source = data;
        _pool = pool;
        Type = type;
        Rows = rows;
        Cols = cols;
        Path = path;
        _releaseSource = releaseSource;
        _sourceRowBytes = type.RowBytes(cols);
        _blocks = cols / blockElements;
        _groups = (rows + RepackLayouts.Group - 1) / RepackLayouts.Group;
        _groupBlockBytes = RepackLayouts.GroupBlockBytes(type);
        _format = blockElements == 32 ? ActivationFormat.Blocks32 : ActivationFormat.Blocks256;
    }

    ~RepackedMatrix()
    {
        if (_packed != null) NativeMemory.AlignedFree(_packed);
    }

    /// <summary>Whether the repacked copy exists yet (built by <see cref="Pack"/> or else on the first product).</summary>
    internal bool IsPacked => _packed != null;

    /// <summary>Builds the repacked copy now (at load, so no timed product pays for it) and releases the source pages.</summary>
    internal void Pack() => EnsurePacked();

    private byte* EnsurePacked()
    {
        byte* p = _packed;
        if (p != null) return p;
        lock (_packLock)
        {
            if (_packed != null) return _packed;
            long groupBytes = (long)_blocks * _groupBlockBytes;
            byte* dst = (byte*)NativeMemory.AlignedAlloc((nuint)(groupBytes * _groups), 64);
            try
            {
                byte* src = _source;
                _pool.ForRange(_groups, 8, (g0, g1) =>
                {
                    for (int g = g0; g < g1; g++)
                        RepackLayouts.PackGroup(Type, src, _sourceRowBytes, Rows, g, _blocks, dst + g * groupBytes);
                });
            }
            catch
            {
                NativeMemory.AlignedFree(dst);
                throw;
            }
            if (_releaseSource) ReleasePages(_source, _sourceRowBytes * Rows);
            Volatile.Write(ref _packedAddress, (nint)dst);
            return dst;
        }
    }

    public void Multiply(ReadOnlySpan<float> x, int n, Span<float> y) => Multiply(x, n, y, Path);

    /// <summary>As <see cref="Multiply(ReadOnlySpan{float}, int, Span{float})"/> on a chosen path (tests, benchmarks).</summary>
    internal void Multiply(ReadOnlySpan<float> x, int n, Span<float> y, RepackPath path)
    {
        if (n <= 0) return;
        if (!IsAvailable(path)) throw new PlatformNotSupportedException($"repacked kernel path {path} is not supported on this CPU");
        if (x.Length < (long)n * Cols || y.Length < (long)n * Rows)
            throw new ArgumentException($"matmul shape mismatch: x {x.Length}, y {y.Length}, W [{Rows}, {Cols}], n {n}");
        byte* packed = EnsurePacked();
        var act = Q8Activations.ForCurrentThread();
        act.Quantize(x, n, Cols, _format, _pool);
        fixed (float* py = y)
        fixed (sbyte* pq = act.Quants)
        fixed (float* pd = act.Scales)
        fixed (int* ps = act.BlockSums)
        fixed (short* ps16 = act.Sums16)
        {
            var view = new ActView(pq, pd, ps, ps16, Cols, act.BlocksPerRow);
            var job = RepackJob.ForCurrentThread();
            var pool = _pool;
            int chunkGroups = pool.ChunkSize(_groups, n == 1 ? 2 : 4, n == 1 ? 8 : 4);
            job.Set(this, packed, view, py, n, chunkGroups, path);
            try { pool.Run(job, (_groups + chunkGroups - 1) / chunkGroups); }
            finally { job.Clear(); }
        }
    }

    /// <summary>y[t, 8g + r] for groups [g0, g1) and every token t.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void MultiplyGroups(byte* packed, in ActView act, float* y, int n, int g0, int g1, RepackPath path)
    {
        float* o = stackalloc float[8 * TokenTile];
        long groupBytes = (long)_blocks * _groupBlockBytes;
        for (int t0 = 0; t0 < n; t0 += TokenTile)
        {
            int count = Math.Min(TokenTile, n - t0);
            for (int g = g0; g < g1; g++)
            {
                RepackedKernels.Run(Type, path, packed + g * groupBytes, _blocks, act, t0, count, o);
                int r0 = g * RepackLayouts.Group, rows = Math.Min(RepackLayouts.Group, Rows - r0);
                for (int i = 0; i < count; i++)
                {
                    float* dst = y + (long)(t0 + i) * Rows + r0;
                    float* src = o + 8 * i;
                    if (rows == 8) System.Runtime.Intrinsics.Vector256.Store(System.Runtime.Intrinsics.Vector256.Load(src), dst);
                    else for (int r = 0; r < rows; r++) dst[r] = src[r];
                }
            }
        }
    }

    // ------------------------------------------------------------------ page release

    private const int MadvDontNeed = 4, MadvPageout = 21;

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint addr, nuint length, int advice);

    /// <summary>
    /// Hands the whole pages of [p, p + bytes) back to the kernel. Inside a read-only file mapping (the GGUF) the pages
    /// are unmapped with MADV_DONTNEED (they are re-read from the file if touched again, so the mapping stays valid);
    /// anywhere else MADV_PAGEOUT is only a hint that keeps the contents (DONTNEED would zero anonymous memory).
    /// Best effort: errors are ignored.
    /// </summary>
    internal static void ReleasePages(byte* p, long bytes)
    {
        if (!OperatingSystem.IsLinux() || bytes <= 0) return;
        long page = Environment.SystemPageSize;
        long start = ((long)p + page - 1) / page * page, end = ((long)p + bytes) / page * page;
        if (end <= start) return;
        try { Madvise((nint)start, (nuint)(end - start), FileMappings.IsReadOnlyFileMapping(start, end) ? MadvDontNeed : MadvPageout); }
        catch (DllNotFoundException) { }
        catch (EntryPointNotFoundException) { }
    }

    /// <summary>The read-only file-backed ranges of this process (/proc/self/maps), re-read when a lookup misses.</summary>
    private static class FileMappings
    {
        private static readonly object Gate = new();
        private static (long Start, long End)[] _ranges = [];

        public static bool IsReadOnlyFileMapping(long start, long end)
        {
            lock (Gate)
            {
                if (Contains(_ranges, start, end)) return true;
                _ranges = Read();
                return Contains(_ranges, start, end);
            }
        }

        private static bool Contains((long Start, long End)[] ranges, long start, long end)
        {
            foreach (var (s, e) in ranges)
                if (start >= s && end <= e) return true;
            return false;
        }

        private static (long, long)[] Read()
        {
            var list = new List<(long, long)>();
            try
            {
                foreach (var line in File.ReadLines("/proc/self/maps"))
                {
                    // "start-end perms offset dev inode path": read-only (r--), with an inode and a path
                    var f = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
                    if (f.Length < 6 || !f[1].StartsWith("r-") || f[1][2] == 'x' || f[4] == "0" || !f[5].StartsWith('/')) continue;
                    int dash = f[0].IndexOf('-');
                    list.Add((Convert.ToInt64(f[0][..dash], 16), Convert.ToInt64(f[0][(dash + 1)..], 16)));
                }
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            return list.ToArray();
        }
    }

    /// <summary>Per-calling-thread job object, so a product allocates no closure.</summary>
    private sealed class RepackJob : IParallelJob
    {
        [ThreadStatic] private static RepackJob? _current;
        public static RepackJob ForCurrentThread() => _current ??= new RepackJob();

        private RepackedMatrix? _matrix;
        private byte* _packed;
        private ActView _act;
        private float* _y;
        private int _n, _chunkGroups;
        private RepackPath _path;

        public void Set(RepackedMatrix m, byte* packed, ActView act, float* y, int n, int chunkGroups, RepackPath path)
        {
            _matrix = m; _packed = packed; _act = act; _y = y; _n = n; _chunkGroups = chunkGroups; _path = path;
        }

        public void Clear() { _matrix = null; _packed = null; _y = null; _act = default; }

        public void Execute(int index)
        {
            var m = _matrix!;
            int g0 = index * _chunkGroups;
            m.MultiplyGroups(_packed, _act, _y, _n, g0, Math.Min(m._groups, g0 + _chunkGroups), _path);
        }
    }
}
