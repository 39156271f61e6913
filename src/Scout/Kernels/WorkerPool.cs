using System.Diagnostics;

namespace Scout.Kernels;

/// <summary>A unit of parallel work: <see cref="Execute"/> is called once for every index in [0, count).</summary>
public interface IParallelJob
{
    void Execute(int index);
}

/// <summary>How a pool hands the indices of a job to its threads.</summary>
public enum PoolSchedule
{
    /// <summary>Every thread claims the next unclaimed index (a shared ticket): a descheduled thread delays nothing.</summary>
    Dynamic,
    /// <summary>Thread p of P runs the contiguous indices [p·count/P, (p+1)·count/P): the same rows on every call
    /// (cache and NUMA locality), but a late thread makes everyone wait.</summary>
    Static,
}

/// <summary>
/// A small fork/join pool for compute kernels: N-1 dedicated workers plus the calling thread claim task indices
/// from a shared ticket. Workers spin (for <see cref="SpinMicroseconds"/>) between jobs before they block, so the
/// back-to-back matmuls of a decode step neither pay a thread wake-up nor allocate: <see cref="Run"/> takes a
/// reusable <see cref="IParallelJob"/> object. One job runs at a time (calls are serialised). There is no
/// process-wide pool: a <see cref="Backends.CpuBackend"/> owns one and hands it to the matrices it creates.
/// </summary>
public sealed class WorkerPool : IDisposable
{
    [ThreadStatic] private static bool _insideJob;

    /// <summary>How long an idle worker keeps spinning for the next job before it blocks.</summary>
    public static int SpinMicroseconds { get; set; } = 2000;

    private const long ClosedIndex = int.MaxValue;

    private readonly Thread[] _workers;
    private readonly object _runLock = new();
    private readonly object _sleepLock = new();
    private IParallelJob? _job;
    private int _count;
    // (generation << 32) | next index: a worker can only claim indices of the job it read, never a later one's.
    private long _ticket;
    private int _generation;
    private int _remaining;
    private int _sleepers;
    private volatile bool _stopping;
    private Exception? _error;
    private readonly ActionJob _actionJob = new();
    private readonly RangeJob _rangeJob = new();

    /// <summary>Dynamic unless SCOUT_POOL_SCHEDULE=static (for measuring the two against each other; BENCHMARKS.md).</summary>
    public static PoolSchedule DefaultSchedule { get; } =
        Enum.TryParse<PoolSchedule>(Environment.GetEnvironmentVariable("SCOUT_POOL_SCHEDULE"), true, out var s) ? s : PoolSchedule.Dynamic;

    public int Threads { get; }
    public PoolSchedule Schedule { get; }

    /// <summary>A pool of <paramref name="threads"/> threads (the caller counts as one) on <see cref="DefaultSchedule"/>.</summary>
    public WorkerPool(int threads) : this(threads, DefaultSchedule) { }

    public WorkerPool(int threads, PoolSchedule schedule)
    {
        Threads = Math.Max(1, threads);
        Schedule = schedule;
        _ticket = ClosedIndex;
        _workers = new Thread[Threads - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            int participant = i + 1;
            _workers[i] = new Thread(() => WorkerLoop(participant)) { IsBackground = true, Name = $"scout-worker-{i}" };
            _workers[i].Start();
        }
    }

    /// <summary>Runs job.Execute(i) for i in [0, count) across the pool and waits for all. Allocates nothing.</summary>
    public void Run(IParallelJob job, int count)
    {
        if (count <= 0) return;
        if (count == 1 || Threads == 1 || _insideJob)
        {
            // Nested parallel calls (from inside a job) run inline: the pool is already busy with the outer job.
            for (int i = 0; i < count; i++) job.Execute(i);
            return;
        }
        lock (_runLock)
        {
            _insideJob = true;
            try { RunLocked(job, count); }
            finally { _insideJob = false; }
        }
    }

    private void RunLocked(IParallelJob job, int count)
    {
        _job = job;
        _count = count;
        _error = null;
        Volatile.Write(ref _remaining, count);
        int generation = _generation + 1;
        Interlocked.Exchange(ref _ticket, (long)generation << 32);
        Interlocked.Exchange(ref _generation, generation);   // full fence: publish, then look for sleepers
        if (Volatile.Read(ref _sleepers) > 0)
            lock (_sleepLock) Monitor.PulseAll(_sleepLock);

        if (Schedule == PoolSchedule.Static) RunShare(0, job, count);
        else Drain(generation, job, count);
        // Busy-wait (~0.1 ms) for the workers' last chunks before yielding: a yield can hand the core to another
        // process for a whole time slice, far longer than the microseconds the peers normally need.
        long spins = 0;
        while (Volatile.Read(ref _remaining) > 0)
        {
            if (++spins < 20_000) Thread.SpinWait(4);
            else Thread.Yield();
        }
        // Close this generation's ticket before the next job is written, so late workers claim nothing.
        Interlocked.Exchange(ref _ticket, ((long)generation << 32) | ClosedIndex);
        _job = null;
        if (_error is { } e) throw new AggregateException(e);
    }

    /// <summary>Runs <paramref name="task"/>(i) for i in [0, count) across the pool and waits for all.</summary>
    public void For(int count, Action<int> task)
    {
        if (count <= 0) return;
        if (count == 1 || Threads == 1 || _insideJob)
        {
            for (int i = 0; i < count; i++) task(i);
            return;
        }
        lock (_runLock)   // re-entrant for Run's own lock; keeps the shared adapter safe across callers
        {
            _actionJob.Body = task;
            try { Run(_actionJob, count); }
            finally { _actionJob.Body = null; }
        }
    }

    /// <summary>Chunk length (a multiple of <paramref name="grain"/>) that splits [0, total) into about Threads×chunksPerThread pieces.</summary>
    public int ChunkSize(int total, int grain, int chunksPerThread = 4)
    {
        int chunks = Math.Max(1, Math.Min(Threads * chunksPerThread, (total + grain - 1) / grain));
        int size = (total + chunks - 1) / chunks;
        return Math.Max(grain, (size + grain - 1) / grain * grain);
    }

    /// <summary>Splits [0, total) into about Threads×4 ranges (multiples of <paramref name="grain"/>) and runs them.</summary>
    public void ForRange(int total, int grain, Action<int, int> body)
    {
        if (total <= 0) return;
        int size = ChunkSize(total, grain);
        int chunks = (total + size - 1) / size;
        if (chunks == 1 || Threads == 1 || _insideJob)
        {
            for (int c = 0; c < chunks; c++) body(c * size, Math.Min(total, c * size + size));
            return;
        }
        lock (_runLock)
        {
            _rangeJob.Body = body;
            _rangeJob.Size = size;
            _rangeJob.Total = total;
            try { Run(_rangeJob, chunks); }
            finally { _rangeJob.Body = null; }
        }
    }

    private void Drain(int generation, IParallelJob job, int count)
    {
        while (true)
        {
            // Compare-and-swap, not increment: a stale worker must not advance a later job's ticket.
            long ticket = Volatile.Read(ref _ticket);
            if ((int)(ticket >> 32) != generation) return;
            long index = ticket & 0xFFFFFFFFL;
            if (index >= count) return;
            if (Interlocked.CompareExchange(ref _ticket, ticket + 1, ticket) != ticket) continue;
            try { job.Execute((int)index); }
            catch (Exception e) { Interlocked.CompareExchange(ref _error, e, null); }
            Interlocked.Decrement(ref _remaining);
        }
    }

    /// <summary>Static schedule: participant p's contiguous share of [0, count).</summary>
    private void RunShare(int participant, IParallelJob job, int count)
    {
        int start = (int)((long)participant * count / Threads), end = (int)((long)(participant + 1) * count / Threads);
        for (int i = start; i < end; i++)
        {
            try { job.Execute(i); }
            catch (Exception e) { Interlocked.CompareExchange(ref _error, e, null); }
            Interlocked.Decrement(ref _remaining);
        }
    }

    private void WorkerLoop(int participant)
    {
        _insideJob = true;
        int seen = 0;
        long spinTicks = 0;
        while (true)
        {
            int generation = Volatile.Read(ref _generation);
            if (generation == seen)
            {
                if (_stopping) return;
                if (spinTicks == 0) spinTicks = Stopwatch.GetTimestamp() + SpinMicroseconds * Stopwatch.Frequency / 1_000_000;
                if (Stopwatch.GetTimestamp() < spinTicks)
                {
                    Thread.SpinWait(16);
                    continue;
                }
                Interlocked.Increment(ref _sleepers);
                lock (_sleepLock)
                {
                    while (Volatile.Read(ref _generation) == seen && !_stopping) Monitor.Wait(_sleepLock, 100);
                }
                Interlocked.Decrement(ref _sleepers);
                continue;
            }
            seen = generation;
            spinTicks = 0;
            if (_stopping) return;
            var job = Volatile.Read(ref _job);
            int count = Volatile.Read(ref _count);
            if (job == null) continue;
            if (Schedule == PoolSchedule.Static) RunShare(participant, job, count);
            else Drain(generation, job, count);
        }
    }

    public void Dispose()
    {
        _stopping = true;
        lock (_sleepLock) Monitor.PulseAll(_sleepLock);
    }

    private sealed class ActionJob : IParallelJob
    {
        public Action<int>? Body;
        public void Execute(int index) => Body!(index);
    }

    private sealed class RangeJob : IParallelJob
    {
        public Action<int, int>? Body;
        public int Size, Total;
        public void Execute(int index)
        {
            int start = index * Size;
            Body!(start, Math.Min(Total, start + Size));
        }
    }
}
