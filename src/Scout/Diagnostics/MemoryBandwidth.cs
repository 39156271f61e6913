using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Scout.Kernels;

namespace Scout.Diagnostics;

/// <summary>
/// Measures the machine's sustained read bandwidth: every thread of the pool streams its share of a buffer far larger
/// than the last-level cache with wide loads (the access pattern of a decode step over the weights).
/// </summary>
public static unsafe class MemoryBandwidth
{
    /// <summary>Best of <paramref name="reps"/> passes, in bytes per second, using <paramref name="pool"/>'s threads.</summary>
    public static double MeasureReadBytesPerSecond(WorkerPool pool, long bufferBytes = 512L << 20, int reps = 5)
    {
        bufferBytes = bufferBytes / 4096 * 4096;
        byte* buffer = (byte*)NativeMemory.AlignedAlloc((nuint)bufferBytes, 4096);
        try
        {
            new Span<byte>(buffer, (int)Math.Min(int.MaxValue, bufferBytes)).Fill(1);
            for (long i = int.MaxValue; i < bufferBytes; i += 4096) buffer[i] = 1;   // touch every page
            var job = new ReadJob(buffer, bufferBytes, pool.Threads * 4);
            pool.Run(job, job.Chunks);   // warm-up pass
            double best = 0;
            for (int r = 0; r < reps; r++)
            {
                long t0 = Stopwatch.GetTimestamp();
                pool.Run(job, job.Chunks);
                double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                best = Math.Max(best, bufferBytes / seconds);
            }
            if (job.Checksum == 42) Console.Write("");   // keep the loads observable
            return best;
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
    }

    private sealed class ReadJob(byte* buffer, long bytes, int chunks) : IParallelJob
    {
        public int Chunks { get; } = chunks;
        public long Checksum;

        public void Execute(int index)
        {
            long size = bytes / Chunks / 256 * 256;
            byte* p = buffer + index * size;
            byte* end = index == Chunks - 1 ? buffer + bytes : p + size;
            var a0 = Vector256<long>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
            for (; p + 256 <= end; p += 256)
            {
                a0 += Vector256.Load((long*)p) + Vector256.Load((long*)(p + 128));
                a1 += Vector256.Load((long*)(p + 32)) + Vector256.Load((long*)(p + 160));
                a2 += Vector256.Load((long*)(p + 64)) + Vector256.Load((long*)(p + 192));
                a3 += Vector256.Load((long*)(p + 96)) + Vector256.Load((long*)(p + 224));
            }
            Interlocked.Add(ref Checksum, Vector256.Sum(a0 + a1 + a2 + a3));
        }
    }
}
