namespace Scout.Quantization;

/// <summary>
/// Row ranges run on the framework's thread pool, for the offline tools (synthesis, export): they run without a
/// model, so there is no backend whose <see cref="Kernels.WorkerPool"/> they could share.
/// </summary>
internal static class ParallelRows
{
    public static void For(long count, int grain, Action<long, long> body)
    {
        if (count <= 0) return;
        long chunks = Math.Max(1, Math.Min(Environment.ProcessorCount * 4L, (count + grain - 1) / grain));
        long size = (count + chunks - 1) / chunks;
        chunks = (count + size - 1) / size;
        if (chunks == 1) { body(0, count); return; }
        Parallel.For(0L, chunks, c => body(c * size, Math.Min(count, c * size + size)));
    }
}
