namespace Scout.Kernels;

/// <summary>
/// A small fork/join pool for compute kernels: N-1 dedicated workers plus the calling thread pull task indices
/// from a shared counter. Workers spin briefly before sleeping, so back-to-back matmuls during decode do not pay
/// a thread wake-up each time. One job runs at a time (calls are serialised).
/// </summary>
public sealed class WorkerPool : IDisposable
{
    private static WorkerPool? _shared;
    private readonly Thread[] _workers;
    private readonly ManualResetEventSlim[] _wake;
    private readonly object _runLock = new();
    private Action<int>? _job;
    private int _taskCount;
    private int _nextTask;
    private int _pending;
    private volatile bool _stopping;
    private Exception? _error;

    /// <summary>The process-wide pool (all cores unless <see cref="ConfigureShared"/> said otherwise).</summary>
    public static WorkerPool Shared => _shared ??= new WorkerPool(Environment.ProcessorCount);

    public static void ConfigureShared(int threads)
    {
        var old = _shared;
        _shared = new WorkerPool(threads);
        old?.Dispose();
    }

    public int Threads { get; }

    public WorkerPool(int threads)
    {
        Threads = Math.Max(1, threads);
        _workers = new Thread[Threads - 1];
        _wake = new ManualResetEventSlim[Threads - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            _wake[i] = new ManualResetEventSlim(false, spinCount: 2047);
            int id = i;
            _workers[i] = new Thread(() => WorkerLoop(id)) { IsBackground = true, Name = $"scout-worker-{i}" };
            _workers[i].Start();
        }
    }

    /// <summary>Runs <paramref name="task"/>(i) for i in [0, count) across the pool and waits for all.</summary>
    public void For(int count, Action<int> task)
    {
        if (count <= 0) return;
        if (count == 1 || Threads == 1)
        {
            for (int i = 0; i < count; i++) task(i);
            return;
        }
        lock (_runLock)
        {
            _job = task;
            _taskCount = count;
            _error = null;
            Volatile.Write(ref _pending, count);
            Volatile.Write(ref _nextTask, 0);
            int wake = Math.Min(_workers.Length, count - 1);
            for (int i = 0; i < wake; i++) _wake[i].Set();
            Drain();
            var spin = new SpinWait();
            while (Volatile.Read(ref _pending) > 0) spin.SpinOnce(-1);
            _job = null;
            if (_error is { } e) throw new AggregateException(e);
        }
    }

    /// <summary>Splits [0, total) into about Threads×4 ranges (multiples of <paramref name="grain"/>) and runs them.</summary>
    public void ForRange(int total, int grain, Action<int, int> body)
    {
        if (total <= 0) return;
        int chunks = Math.Max(1, Math.Min(Threads * 4, (total + grain - 1) / grain));
        int size = (total + chunks - 1) / chunks;
        size = (size + grain - 1) / grain * grain;
        chunks = (total + size - 1) / size;
        For(chunks, c =>
        {
            int start = c * size;
            body(start, Math.Min(total, start + size));
        });
    }

    private void Drain()
    {
        var job = _job!;
        int count = _taskCount;
        while (true)
        {
            int i = Interlocked.Increment(ref _nextTask) - 1;
            if (i >= count) return;
            try { job(i); }
            catch (Exception e) { _error ??= e; }
            Interlocked.Decrement(ref _pending);
        }
    }

    private void WorkerLoop(int id)
    {
        var wake = _wake[id];
        while (true)
        {
            wake.Wait();
            wake.Reset();
            if (_stopping) return;
            if (_job != null) Drain();
        }
    }

    public void Dispose()
    {
        _stopping = true;
        foreach (var w in _wake) w.Set();
    }
}
