namespace Scout.Kernels;

/// <summary>A product whose output rows [r0, r1) can be computed independently.</summary>
internal unsafe interface IRangeProduct
{
    void MultiplyRange(float* x, int n, float* y, int r0, int r1);
}

/// <summary>
/// Splits a product's output rows over a <see cref="WorkerPool"/> with a reusable per-thread job object, so a
/// matrix product allocates no closure (the decode loop calls hundreds of them per token).
/// </summary>
internal sealed unsafe class RangeProductJob : IParallelJob
{
    [ThreadStatic] private static RangeProductJob? _current;

    private IRangeProduct? _product;
    private float* _x, _y;
    private int _n, _size, _total;

    public static void Run(WorkerPool pool, IRangeProduct product, float* x, int n, float* y, int total, int grain)
    {
        if (total <= 0) return;
        int size = pool.ChunkSize(total, grain);
        int chunks = (total + size - 1) / size;
        var job = _current;
        if (job is null || job._product is not null) job = new RangeProductJob();   // first use, or nested on this thread
        _current ??= job;
        job._product = product; job._x = x; job._y = y; job._n = n; job._size = size; job._total = total;
        try { pool.Run(job, chunks); }
        finally { job._product = null; job._x = null; job._y = null; }
    }

    public void Execute(int index)
    {
        int r0 = index * _size;
        _product!.MultiplyRange(_x, _n, _y, r0, Math.Min(_total, r0 + _size));
    }
}
