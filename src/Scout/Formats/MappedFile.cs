using System.IO.MemoryMappedFiles;

namespace Scout.Formats;

/// <summary>A read-only memory mapping of a whole file. Weights are read in place through <see cref="Pointer"/>.</summary>
public sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile? _mmf;
    private readonly MemoryMappedViewAccessor? _view;
    private bool _disposed;

    public string Path { get; }
    public long Length { get; }
    public byte* Pointer { get; }

    private MappedFile(string path)
    {
        Path = path;
        if (!File.Exists(path))
            throw new ModelLoadException($"file not found: {path}");
        Length = TargetLength(path);
        if (Length == 0)
        {
            Pointer = null;
            return;
        }
        _mmf = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        _view = _mmf.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        Pointer = p + _view.PointerOffset;
    }

    public static MappedFile Open(string path) => new(path);

    /// <summary>
    /// The size of the file a path names, following symbolic links (a Hugging Face cache keeps every weight file as
    /// snapshots/REV/NAME → ../../blobs/HASH; the link's own size is the length of its target path).
    /// </summary>
    public static long TargetLength(string path)
    {
        var info = new FileInfo(path);
        if (info.LinkTarget is null) return info.Length;
        var target = info.ResolveLinkTarget(returnFinalTarget: true)
            ?? throw new ModelLoadException($"{path}: symbolic link to {info.LinkTarget}, which does not exist");
        if (!target.Exists)
            throw new ModelLoadException($"{path}: symbolic link to {target.FullName}, which does not exist");
        return ((FileInfo)target).Length;
    }

    public ReadOnlySpan<byte> Span(long offset, int length)
    {
        if (offset < 0 || length < 0 || offset + length > Length)
            throw new ModelLoadException($"{Path}: read of {length} bytes at {offset} is past the end of the file ({Length} bytes)");
        return new ReadOnlySpan<byte>(Pointer + offset, length);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_view != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _mmf?.Dispose();
    }
}
