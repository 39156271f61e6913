using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace Scout.Evaluation;

/// <summary>How a KL-divergence base file stores each scored row's log-probabilities.</summary>
public enum KlBaseFormat
{
    /// <summary>
    /// llama.cpp's layout (<c>_logits_</c>, read and written by <c>llama-perplexity --kl-divergence[-base]</c>): per row a
    /// float scale s and offset m, then one uint16 q per vocabulary entry, ln p ≈ m + s·q. Logits below max − 16 are
    /// clamped to q = 0, s = (max − clamped min) / 65535 ≤ 16/65535, so each stored ln p is off by at most s/2 ≤ 1.23e-4
    /// (entries below the clamp are stored as the clamp). 2 bytes per entry: 404 KB per row at Llama 4's 202,048 vocab.
    /// </summary>
    U16,

    /// <summary>Exact float32 log-softmax (Scout's own layout, <c>_scoutlp</c>): 4 bytes per entry, no storage error.</summary>
    F32,
}

/// <summary>The header both formats share: context, vocabulary, chunk count and the evaluated tokens.</summary>
public sealed record KlBaseHeader(KlBaseFormat Format, int Context, int VocabSize, int Chunks, int[] Tokens)
{
    public int FirstScored => Context / 2;
    public int RowsPerChunk => Context - 1 - Context / 2;
    public long Rows => (long)Chunks * RowsPerChunk;

    internal static readonly byte[] LlamaMagic = "_logits_"u8.ToArray();
    internal static readonly byte[] ScoutMagic = "_scoutlp"u8.ToArray();

    /// <summary>uint16 slots per row in the U16 layout: 4 for the two floats, then the vocabulary rounded up to even.</summary>
    public int U16Slots => 2 * ((VocabSize + 1) / 2) + 4;
    public long RowBytes => Format == KlBaseFormat.U16 ? 2L * U16Slots : 4L * VocabSize;
    public long HeaderBytes => 8 + 4 + 4 + 4 + (Format == KlBaseFormat.F32 ? 4 : 0) + 4L * Tokens.Length;
}

/// <summary>Streams the reference model's log-probabilities to disk, one scored row at a time.</summary>
public sealed class KlBaseWriter : IDisposable
{
    private readonly FileStream _file;
    private readonly byte[] _row;
    private long _written;

    public KlBaseHeader Header { get; }
    public string Path { get; }

    public KlBaseWriter(string path, KlBaseHeader header)
    {
        if (header.Tokens.Length != (long)header.Context * header.Chunks)
            throw new ArgumentException($"{header.Tokens.Length} tokens for {header.Chunks} chunks of {header.Context}");
        Header = header;
        Path = path;
        _row = new byte[header.RowBytes];
        _file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        var head = new byte[header.HeaderBytes];
        var span = head.AsSpan();
        (header.Format == KlBaseFormat.U16 ? KlBaseHeader.LlamaMagic : KlBaseHeader.ScoutMagic).CopyTo(span);
        int at = 8;
        if (header.Format == KlBaseFormat.F32) { BinaryPrimitives.WriteUInt32LittleEndian(span[at..], 1); at += 4; }
        BinaryPrimitives.WriteUInt32LittleEndian(span[at..], (uint)header.Context); at += 4;
        BinaryPrimitives.WriteInt32LittleEndian(span[at..], header.VocabSize); at += 4;
        BinaryPrimitives.WriteInt32LittleEndian(span[at..], header.Chunks); at += 4;
        foreach (int t in header.Tokens) { BinaryPrimitives.WriteInt32LittleEndian(span[at..], t); at += 4; }
        _file.Write(head);
    }

    /// <summary>Appends one row, given its logits and their <see cref="RowStats"/>.</summary>
    public void Write(ReadOnlySpan<float> logits, RowStats stats)
    {
        if (_written >= Header.Rows) throw new InvalidOperationException($"{Path}: all {Header.Rows} rows are already written");
        if (Header.Format == KlBaseFormat.F32)
        {
            var dst = MemoryMarshal.Cast<byte, float>(_row.AsSpan());
            for (int i = 0; i < logits.Length; i++) dst[i] = (float)(logits[i] - stats.LogSumExp);
        }
        else
        {
            EncodeU16(logits, stats, _row);
        }
        _file.Write(_row);
        _written++;
    }

    internal static void EncodeU16(ReadOnlySpan<float> logits, RowStats stats, Span<byte> row)
    {
        float max = stats.Max;
        float min = Math.Max(System.Numerics.Tensors.TensorPrimitives.Min(logits), max - 16);
        float scale = (max - min) / 65535f;
        var head = MemoryMarshal.Cast<byte, float>(row[..8]); // the row's first 4 uint16 slots hold these two floats
        head[0] = scale;
        head[1] = (float)(min - stats.LogSumExp);
        var q = MemoryMarshal.Cast<byte, ushort>(row[8..]);
        q.Clear();
        if (scale == 0) return;
        float inv = 1 / scale;
        for (int i = 0; i < logits.Length; i++)
            q[i] = logits[i] > min ? (ushort)Math.Min(65535f, MathF.Round(inv * (logits[i] - min), MidpointRounding.ToEven)) : (ushort)0;
    }

    /// <summary>Rows written so far.</summary>
    public long RowsWritten => _written;

    public void Dispose()
    {
        _file.Dispose();
    }
}

/// <summary>Reads a base file written by <see cref="KlBaseWriter"/> or by llama.cpp's <c>--kl-divergence-base</c>.</summary>
public sealed class KlBaseReader : IDisposable
{
    private readonly FileStream _file;
    private readonly byte[] _row;
    private long _read;

    public KlBaseHeader Header { get; }
    public string Path { get; }

    public KlBaseReader(string path)
    {
        Path = path;
        if (!File.Exists(path)) throw new FileNotFoundException($"KL-divergence base file not found: {path}");
        _file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        try
        {
            Header = ReadHeader(path, _file);
            _row = new byte[Header.RowBytes];
        }
        catch
        {
            _file.Dispose();
            throw;
        }
    }

    private static KlBaseHeader ReadHeader(string path, FileStream f)
    {
        Span<byte> head = stackalloc byte[24];
        if (f.Read(head[..8]) != 8) throw new InvalidDataException($"{path}: too short for a KL-divergence base file");
        KlBaseFormat format = head[..8].SequenceEqual(KlBaseHeader.LlamaMagic) ? KlBaseFormat.U16
            : head[..8].SequenceEqual(KlBaseHeader.ScoutMagic) ? KlBaseFormat.F32
            : throw new InvalidDataException($"{path}: not a KL-divergence base file (magic '{Encoding.ASCII.GetString(head[..8]).Replace('\0', '.')}', expected _logits_ or _scoutlp)");
        int fields = format == KlBaseFormat.F32 ? 16 : 12;
        if (f.Read(head[..fields]) != fields) throw new InvalidDataException($"{path}: truncated header");
        int at = 0;
        if (format == KlBaseFormat.F32)
        {
            uint version = BinaryPrimitives.ReadUInt32LittleEndian(head);
            if (version != 1) throw new InvalidDataException($"{path}: unsupported _scoutlp version {version} (expected 1)");
            at = 4;
        }
        uint ctx = BinaryPrimitives.ReadUInt32LittleEndian(head[at..]);
        int vocab = BinaryPrimitives.ReadInt32LittleEndian(head[(at + 4)..]);
        int chunks = BinaryPrimitives.ReadInt32LittleEndian(head[(at + 8)..]);
        if (ctx < 2 || ctx > 1 << 24) throw new InvalidDataException($"{path}: header field n_ctx = {ctx} is out of range (2..16M)");
        if (vocab < 1 || vocab > 1 << 24) throw new InvalidDataException($"{path}: header field n_vocab = {vocab} is out of range");
        if (chunks < 1) throw new InvalidDataException($"{path}: header field n_chunk = {chunks} is out of range");
        var probe = new KlBaseHeader(format, (int)ctx, vocab, chunks, []);
        long tokenBytes = 4L * ctx * chunks;
        long expected = probe.HeaderBytes + tokenBytes + probe.Rows * probe.RowBytes;
        if (f.Length != expected)
            throw new InvalidDataException($"{path}: {f.Length:N0} bytes, but a {format} file of {chunks} chunks x {ctx} tokens over {vocab} entries has {expected:N0}");
        var tokens = new int[ctx * chunks];
        var raw = MemoryMarshal.AsBytes(tokens.AsSpan());
        f.ReadExactly(raw);
        if (!BitConverter.IsLittleEndian) for (int i = 0; i < tokens.Length; i++) tokens[i] = BinaryPrimitives.ReverseEndianness(tokens[i]);
        for (int i = 0; i < tokens.Length; i++)
            if ((uint)tokens[i] >= (uint)vocab) throw new InvalidDataException($"{path}: token {i} = {tokens[i]} is outside the vocabulary (0..{vocab - 1})");
        return probe with { Tokens = tokens };
    }

    /// <summary>
    /// Reads the next row as natural-log probabilities into <paramref name="logProbs"/> (vocabulary length). Returns
    /// the cut below which entries do not count (−16 for U16, as llama.cpp counts; −∞ for F32).
    /// </summary>
    public float ReadRow(Span<float> logProbs)
    {
        if (_read >= Header.Rows) throw new InvalidDataException($"{Path}: read past the last of {Header.Rows} rows");
        _file.ReadExactly(_row);
        _read++;
        int v = Header.VocabSize;
        if (Header.Format == KlBaseFormat.F32)
        {
            MemoryMarshal.Cast<byte, float>(_row.AsSpan())[..v].CopyTo(logProbs);
            return float.NegativeInfinity;
        }
        var head = MemoryMarshal.Cast<byte, float>(_row.AsSpan(0, 8));
        float scale = head[0], min = head[1];
        if (!float.IsFinite(scale) || !float.IsFinite(min) || scale < 0)
            throw new InvalidDataException($"{Path}: row {_read - 1} has an invalid scale/offset ({scale}, {min})");
        var q = MemoryMarshal.Cast<byte, ushort>(_row.AsSpan(8));
        for (int i = 0; i < v; i++) logProbs[i] = scale * q[i] + min;
        return -16f;
    }

    public void Dispose() => _file.Dispose();
}
