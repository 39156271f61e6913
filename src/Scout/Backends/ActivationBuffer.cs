namespace Scout.Backends;

/// <summary>
/// Activation memory owned by a backend: host arrays on the CPU backend, device memory on a GPU backend. The model
/// never reads one directly; it passes <see cref="BufferView"/>s of them to the backend's operations, so on a GPU the
/// residual stream, Q/K/V and the FFN activations stay on the device for a whole forward pass.
/// </summary>
public abstract class ActivationBuffer
{
    /// <summary>Elements (floats or ints, see <see cref="WorkspaceBuffer.Integers"/>).</summary>
    public abstract long Length { get; }

    /// <summary>The whole buffer as a view.</summary>
    public BufferView All => new(this, 0, checked((int)Length));
}

/// <summary>A buffer in managed memory: what the CPU backend allocates (and a GPU backend for its host-side tables).</summary>
public sealed class HostBuffer : ActivationBuffer
{
    public HostBuffer(float[] floats) => Floats = floats;
    public HostBuffer(int[] ints) => Ints = ints;

    /// <summary>The elements of a float buffer (empty for an int buffer).</summary>
    public float[] Floats { get; } = [];
    /// <summary>The elements of an int buffer (empty for a float buffer).</summary>
    public int[] Ints { get; } = [];

    public override long Length => Math.Max(Floats.Length, Ints.Length);
}

/// <summary>Elements [Offset, Offset + Length) of one backend's buffer. Cheap to copy; allocates nothing.</summary>
public readonly struct BufferView
{
    public BufferView(ActivationBuffer buffer, int offset, int length)
    {
        if ((uint)offset > (ulong)buffer.Length || (ulong)(uint)length > (ulong)(buffer.Length - offset))
            throw new ArgumentOutOfRangeException(nameof(length), $"view [{offset}, {offset + (long)length}) outside a buffer of {buffer.Length} elements");
        Buffer = buffer;
        Offset = offset;
        Length = length;
    }

    public ActivationBuffer Buffer { get; }
    public int Offset { get; }
    public int Length { get; }

    /// <summary>Elements [offset, offset + length) of this view.</summary>
    public BufferView Slice(int offset, int length)
    {
        if ((uint)offset > (uint)Length || (uint)length > (uint)(Length - offset))
            throw new ArgumentOutOfRangeException(nameof(length), $"slice [{offset}, {offset + (long)length}) outside a view of {Length} elements");
        return new BufferView(Buffer, Offset + offset, length);
    }

    /// <summary>The first <paramref name="length"/> elements.</summary>
    public BufferView Take(int length) => Slice(0, length);

    /// <summary>The floats of a host buffer's view (throws for a device buffer: the backend that owns it must read it).</summary>
    public Span<float> HostFloats => Buffer is HostBuffer h
        ? h.Floats.AsSpan(Offset, Length)
        : throw new InvalidOperationException($"a {Buffer.GetType().Name} is not host memory");

    /// <summary>The ints of a host buffer's view.</summary>
    public Span<int> HostInts => Buffer is HostBuffer h
        ? h.Ints.AsSpan(Offset, Length)
        : throw new InvalidOperationException($"a {Buffer.GetType().Name} is not host memory");
}
